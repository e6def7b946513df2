"""The options of one restoration, validated once, without torch: the CLI checks them before it loads anything.

:class:`RestoreOptions` holds what ``otmap restore`` is asked for; :meth:`RestoreOptions.validate`
fills in the task's defaults and returns the :class:`Degradation` (the forward model) and the
PnP-Flow :class:`Settings`, or raises a one-line :class:`~otmap_cli.errors.InputError` that names
the parameter (never a command-line flag). ``degrade`` uses the same :func:`resolve`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from otmap_cli.choices import AUTO_SOLVER, DETERMINISTIC_SOLVERS, SCALES, SOLVERS, TASKS, one_of
from otmap_cli.errors import InputError

# Used when an option is left out, so that a task alone works. The noise levels are those of the
# restoration benchmark (denoise 25/255, deblur and super-res 0.025, inpainting 0.005).
TASK_DEFAULTS = {
    "denoise": {"noise_sigma": 25 / 255},
    "deblur": {"noise_sigma": 0.025, "blur_sigma": 1.0},
    "superres": {"noise_sigma": 0.025, "scale": 2},
    "inpaint": {"noise_sigma": 0.005, "mask_ratio": 0.7},
    "colorize": {"noise_sigma": 0.005},  # a clean grey photo: a little above 8-bit rounding (0.0011)
}
# Upper bounds that keep a typo from running for days: 100 iterations is the paper's N, and the
# largest Gaussian PSF we build (radius 3 sigma) must stay far below any image size.
MAX_STEPS = 10_000
MAX_AVERAGES = 100
MAX_BLUR_SIGMA = 100.0
MAX_UNCERTAINTY_RUNS = 100


@dataclass(frozen=True)
class Degradation:
    """The validated parameters of one forward model (only those the task uses are set)."""

    task: str
    noise_sigma: float
    blur_sigma: float | None = None
    kernel: np.ndarray | None = None
    scale: int = 1


@dataclass(frozen=True)
class Settings:
    """PnP-Flow's iteration (Martin et al. 2025, Algorithm 1, and three options beyond it; all off = the paper)."""

    steps: int  # N, number of iterations
    alpha: float  # exponent of the step schedule gamma_n = (1 - n / N)^alpha
    averages: int  # K, re-noising draws averaged per iteration
    time_power: float = 1.0  # p of the time schedule (pnpflow.times); 1 = the paper's t_n = n / N
    data_steps: int = 1  # gradient steps on the data term per iteration; 1 = the paper
    final_step: bool = False  # a last data step and a noise-free MMSE denoising at the noise level of y
    carried_noise: float = 0.0  # c: the data step leaves noise of std c * sigma_y in z; the prior's t counts it
    start_time: float = 0.0  # t_0: start on the path at t_0 from a first guess (0 = the paper: from pure noise)
    views: int = 1  # iteration n asks the prior in view n mod views of the 8 flips and quarter turns


# N = 100 and alpha near the paper's (CelebA column of its appendix table), tuned for our prior on
# held-out training crops (benchmarks/tune_restore.py; the grid is in docs/decisions.md). K = 1 is
# the paper's cheap variant. Beyond the paper (measured on the 6 held-out crops, docs/restore_pnpflow.md):
# the time schedule p = 2, which spends the iterations where our small prior is accurate (deblur,
# inpainting); two data steps per iteration (deblur; four over-fit the noise); the final step
# (deblur, super-resolution, inpainting); the noise that z carries after the data step, counted in the
# prior's time (deblur c = 0.4, super-resolution 0.5; session 17); the prior asked in the next of the 8 flips
# and quarter turns each iteration (deblur, super-resolution, inpainting; session 18); for inpainting, a start
# at t_0 = 0.7 from the holes' fill and two draws in each of 50 iterations instead of one in 100 (session 18).
# Super-resolution lost 0.16 dB with p = 2 and two data steps but gained 0.19 dB from the final step alone.
# Denoising keeps the paper's iteration: with H = I the final step alone is the mmse solver. Colourisation:
# alpha chosen on 3 CBSD68 crops; the final step is kept from the other tasks, not measured without
# (docs/restore_pnpflow.md, section 4).
PNPFLOW_DEFAULTS: dict[str, Settings] = {
    "denoise": Settings(steps=100, alpha=0.8, averages=1),
    "deblur": Settings(steps=100, alpha=0.01, averages=1, time_power=2.0, data_steps=2, final_step=True,
                       carried_noise=0.4, views=8),
    "superres": Settings(steps=100, alpha=0.3, averages=1, final_step=True, carried_noise=0.5, views=8),
    "inpaint": Settings(steps=50, alpha=0.1, averages=2, time_power=2.0, final_step=True, start_time=0.7, views=8),
    "colorize": Settings(steps=100, alpha=0.1, averages=1, final_step=True),
}


def finite_number(value, name: str) -> float:
    """``value`` as a finite float (a string may be a fraction such as ``25/255``), or a one-line InputError."""
    try:
        if isinstance(value, str) and "/" in value:
            numerator, denominator = value.split("/")
            number = float(numerator) / float(denominator)
        else:
            number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise InputError(f"{name} must be a number or a fraction such as 25/255, got {value!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{name} must be finite, got {value}")
    return number


def whole_number(value, name: str, maximum: int) -> int:
    """``value`` as an int in [1, maximum], or a one-line InputError."""
    number = finite_number(value, name)
    if isinstance(value, bool) or not number.is_integer() or not 1 <= number <= maximum:
        raise InputError(f"{name} must be a whole number from 1 to {maximum:,}, got {value}")
    return int(number)


def noise_level(value) -> float:
    """A noise standard deviation in [0, 1] image units."""
    sigma = finite_number(value, "noise sigma")
    if not 0 <= sigma <= 1:
        raise InputError(f"noise sigma must be in [0, 1] image units (e.g. 0.098 = 25/255 for 8-bit noise "
                         f"of std 25), got {value}")
    return sigma


def normalise_kernel(kernel: np.ndarray, label: str = "kernel") -> np.ndarray:
    """A 2-D PSF as float32 summing to 1 (colour PSF images are averaged over channels)."""
    psf = np.asarray(kernel, dtype=np.float64)
    if psf.ndim == 3:
        psf = psf.mean(axis=2)
    if psf.ndim != 2 or psf.size == 0:
        raise InputError(f"{label}: a blur kernel must be a 2-D array, got shape {psf.shape}")
    if not np.isfinite(psf).all():
        raise InputError(f"{label}: blur kernel contains NaN or infinity")
    total = psf.sum()
    if total <= 0:
        raise InputError(f"{label}: blur kernel must have a positive sum")
    return (psf / total).astype(np.float32)


def resolve(task: str, noise_sigma=None, blur_sigma=None, kernel: np.ndarray | None = None,
            scale=None) -> Degradation:
    """Validate the forward model of ``task`` and fill in :data:`TASK_DEFAULTS`; options it does not use are dropped."""
    one_of(task, TASKS, "task")
    defaults = TASK_DEFAULTS[task]
    sigma = noise_level(defaults["noise_sigma"] if noise_sigma is None else noise_sigma)
    if task == "deblur":
        if kernel is not None and blur_sigma is not None:
            raise InputError("give either a blur sigma or a kernel file, not both")
        if kernel is not None:
            return Degradation(task, sigma, kernel=normalise_kernel(kernel))
        blur = finite_number(defaults["blur_sigma"] if blur_sigma is None else blur_sigma, "blur sigma")
        if not 0 < blur <= MAX_BLUR_SIGMA:
            raise InputError(f"blur sigma must be positive and at most {MAX_BLUR_SIGMA:g} pixels, got {blur_sigma}")
        return Degradation(task, sigma, blur_sigma=blur)
    if task == "superres":
        factor = defaults["scale"] if scale is None else scale
        if factor not in SCALES:
            raise InputError(f"scale must be one of {', '.join(map(str, SCALES))}, got {factor}")
        return Degradation(task, sigma, scale=int(factor))
    return Degradation(task, sigma)


def settings_for(task: str, steps=None, alpha=None, averages=None) -> Settings:
    """The task's :data:`PNPFLOW_DEFAULTS` with the given overrides, validated."""
    one_of(task, TASKS, "task")
    base = PNPFLOW_DEFAULTS[task]
    alpha = finite_number(base.alpha if alpha is None else alpha, "alpha")
    if alpha < 0:
        raise InputError(f"alpha must be >= 0, got {alpha}")
    return replace(base, steps=whole_number(base.steps if steps is None else steps, "steps", MAX_STEPS), alpha=alpha,
                   averages=whole_number(base.averages if averages is None else averages, "averages", MAX_AVERAGES))


@dataclass(frozen=True)
class RestoreOptions:
    """Everything ``otmap restore`` is asked for, as given (None = the task's default)."""

    task: str
    noise_sigma: float | str | None = None
    blur_sigma: float | str | None = None
    kernel: np.ndarray | None = None
    scale: int | None = None
    steps: int | None = None
    averages: int | None = None
    alpha: float | str | None = None
    solver: str = "auto"
    uncertainty_runs: int | None = None  # restorations whose spread is asked for (restore --uncertainty)

    def validate(self, has_mask: bool = True) -> tuple[Degradation, Settings, str]:
        """(forward model, PnP-Flow settings, the solver that will run); ``has_mask``: is an inpainting mask given.

        With ``uncertainty_runs``, "auto" means PnP-Flow: the only solver whose answer depends on the seed."""
        degradation = resolve(self.task, self.noise_sigma, self.blur_sigma, self.kernel, self.scale)
        settings = settings_for(self.task, self.steps, self.alpha, self.averages)
        one_of(self.solver, SOLVERS, "solver")
        if self.solver == "mmse" and self.task != "denoise":
            raise InputError("the mmse solver only denoises; use pnp-flow or dpir for the other tasks")
        if self.task == "inpaint" and not has_mask:
            raise InputError("inpainting needs a mask (white = kept pixel, black = missing)")
        if self.uncertainty_runs is not None:
            whole_number(self.uncertainty_runs, "uncertainty runs", MAX_UNCERTAINTY_RUNS)
            if self.uncertainty_runs < 2:
                raise InputError(f"uncertainty runs must be at least 2 (a spread needs two restorations), "
                                 f"got {self.uncertainty_runs}")
            if self.solver in DETERMINISTIC_SOLVERS:
                raise InputError(f"the {self.solver} solver is deterministic: every run gives the same image, "
                                 "so there is no spread to measure; use the pnp-flow solver (or auto) for "
                                 "uncertainty")
            return degradation, settings, "pnp-flow" if self.solver == "auto" else self.solver
        return degradation, settings, AUTO_SOLVER[self.task] if self.solver == "auto" else self.solver
