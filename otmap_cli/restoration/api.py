"""The functions behind ``otmap restore`` and ``otmap degrade``: Image in, Image out.

Pixels go through :mod:`~otmap_cli.restoration.physics` (forward models), :mod:`~otmap_cli.restoration.pnpflow`
(the solver) and :mod:`~otmap_cli.restoration.tiles` (large images); this module adds what a file
needs: alpha, grayscale, and metrics; the options are validated once, by
:class:`~otmap_cli.restoration.options.RestoreOptions`. The CLI imports it lazily, so torch may be imported at the top here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from otmap_cli.errors import InputError
from otmap_cli.io import Image, is_grey, read_image
from otmap_cli.restoration import hqs, pnpflow, tiles
from otmap_cli.restoration.options import RestoreOptions, resolve
from otmap_cli.progress import Progress
from otmap_cli.restoration.physics import (blur_filter, degrade, estimate_noise_sigma, luma, make_physics,
                                           mask_tensor, to_array, to_tensor)
from otmap_cli.restoration.pnpflow import Denoiser
from otmap_cli.restoration.prior import AsDeepinvDenoiser, default_prior

SR_REACH = 2  # the bicubic filter reaches 2 low-resolution pixels (4 * scale taps)
DPIR_ITERATIONS = 8  # deepinv's get_DPIR_params: one denoiser pass per iteration
ENSEMBLE = 4  # views averaged by the mmse solver: most of the x8 gain at half the cost (docs/decisions.md)
# Tile side (output pixels) per solver; images up to side^2 pixels are solved whole (tiles.py).
# A 1024^2 pass of the prior peaks at +280 MB: the few-pass solvers take such tiles, which waste
# less on overlaps than 512^2 ones (a 1000^2 image: 1 tile instead of 9 of 366^2, 1.2x the pixels).
TILE_SIDE = {"pnp-flow": tiles.TILE, "dpir": 1024, "mmse": 1024}


def read_mask(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """An inpainting mask image as an (h, w) array: 1 = kept (white), 0 = missing (black); checks ``size`` = (w, h)."""
    image = read_image(path)
    if size is not None and image.size != tuple(size):
        raise InputError(f"{path}: mask is {image.size[0]}x{image.size[1]} but the image is {size[0]}x{size[1]}")
    return (image.rgb.mean(axis=2) > 0.5).astype(np.float32)


def mask_to_image(mask: np.ndarray) -> Image:
    """The inverse of :func:`read_mask`: white where kept, black where missing (for ``--mask-out``)."""
    return Image(rgb=np.repeat(np.asarray(mask, dtype=np.float32)[..., None], 3, axis=2), name="mask")


def noise_level(rgb: np.ndarray, task: str, mask: np.ndarray | None = None) -> tuple[float, str]:
    """The noise std to restore ``rgb`` with when the user gives none: (sigma, "estimated" or "default").

    Estimated from the image (:func:`~otmap_cli.restoration.physics.estimate_noise_sigma`); for inpainting
    only from patches without missing pixels, and the task's default when there are too few of them
    (random holes leave almost none).
    """
    sigma = estimate_noise_sigma(rgb, mask if task == "inpaint" else None)
    if sigma is None:
        return resolve(task).noise_sigma, "default"
    return sigma, "estimated"


def restore_rgb(rgb: np.ndarray, task: str, *, noise_sigma: float | None = None, blur_sigma: float | None = None,
                kernel: np.ndarray | None = None, scale: int | None = None, mask: np.ndarray | None = None,
                steps: int | None = None, averages: int | None = None, alpha: float | None = None, seed: int = 0,
                device: str = "cpu", prior: Denoiser | None = None, progress: Progress | None = None,
                solver: str = "auto") -> np.ndarray:
    """Restoration of an (h, w, 3) array in [0, 1]; superres returns (scale h, scale w, 3). Clipped to [0, 1].

    For colorize, ``rgb`` is a grey image (a colour one is reduced to its Rec. 601 luma first) and the
    answer has exactly that luma (:func:`keep_luma`).

    ``noise_sigma`` None: estimated from ``rgb`` (:func:`noise_level`). ``solver`` (all three use the
    same flow prior):

    * "pnp-flow": PnP-Flow (:mod:`~otmap_cli.restoration.pnpflow`);
    * "mmse" (denoising only): the prior as the minimum-mean-square-error denoiser at the given
      noise level, D_t(t y) with t = 1 / (1 + sigma) (the x1-prediction of Martin et al. 2025,
      read as Tweedie's formula), averaged over :data:`ENSEMBLE` flips and quarter turns of the image;
    * "dpir": deepinv's DPIR (half-quadratic splitting) with the prior as its denoiser; for inpainting
      our own splitting with the data step in closed form and a filled-in start (:mod:`~otmap_cli.restoration.hqs`);
    * "auto" (the default): the one measured best for the task, :data:`~otmap_cli.choices.AUTO_SOLVER`.
    ``progress(done, total, phase)`` is called after every network pass, with phase like "tile 2/4 · step 7/100".
    """
    options = RestoreOptions(task, noise_sigma, blur_sigma, kernel, scale, steps, averages, alpha, solver)
    deg, settings, solver = options.validate(has_mask=mask is not None)
    h, w = rgb.shape[:2]
    reach = 0  # how far (in pixels of y) the operator spreads a pixel, for the tile margins
    inpaint_passes = 0
    if task == "inpaint":
        inpaint_passes = hqs.passes(mask_tensor(mask, (h, w)))  # also checks the size
    elif task == "deblur":
        reach = max(blur_filter(deg.blur_sigma, deg.kernel).shape[-2:]) // 2
    elif task == "superres":
        reach = SR_REACH
    if task == "colorize":
        grey = luma(rgb)
        rgb = np.repeat(grey[..., None], 3, axis=2)
    if noise_sigma is None:
        deg = replace(deg, noise_sigma=noise_level(rgb, task, mask)[0])
    if prior is None:
        prior = default_prior(device)
    y = to_tensor(grey[..., None]) if task == "colorize" else to_tensor(rgb)
    generator = torch.Generator(device).manual_seed(seed)
    # inpainting: the passes at every resolution (the whole mask's count; a tile may need fewer)
    dpir_iterations = inpaint_passes if task == "inpaint" else DPIR_ITERATIONS
    stages, per_step = {"pnp-flow": (settings.steps, settings.averages), "dpir": (dpir_iterations, 1),
                        "mmse": (ENSEMBLE, 1)}[solver]
    unit = "view" if solver == "mmse" else "step"

    def solve(box: tiles.Box, index: int, count: int) -> torch.Tensor:
        r0, r1, c0, c1 = box

        def tick(passes: int) -> None:
            if progress is not None:
                done = min(-(-passes // per_step), stages)
                where = f"tile {index + 1}/{count} · " if count > 1 else ""
                progress(index * stages + done, count * stages, f"{where}{unit} {done}/{stages}")

        tick(0)  # the tile's phase, named before its first (slow) pass
        tile = y[..., r0:r1, c0:c1].to(device)
        counted = _Counting(prior, tick)
        if solver == "mmse":  # one denoising; no forward model, so no deepinv import
            return AsDeepinvDenoiser(counted, ensemble=ENSEMBLE)(tile, deg.noise_sigma)
        holes = mask_tensor(mask[r0:r1, c0:c1], (r1 - r0, c1 - c0), device) if task == "inpaint" else None
        if solver == "dpir" and task == "inpaint":  # the data step in closed form: no physics needed
            return hqs.inpaint(tile, holes, counted, deg.noise_sigma)
        physics = make_physics(task, (deg.scale * (r1 - r0), deg.scale * (c1 - c0)), deg.noise_sigma,
                               deg.blur_sigma, deg.kernel, deg.scale,
                               None if mask is None else mask[r0:r1, c0:c1], device)
        if solver == "pnp-flow":
            return pnpflow.solve(tile, physics, counted, settings, generator=generator, noise_sigma=deg.noise_sigma,
                                 start=first_guess(tile, holes))
        return _dpir(tile, physics, counted, deg.noise_sigma, device, deg.scale)

    with torch.inference_mode():
        side = TILE_SIDE[solver]
        out = to_array(tiles.tiled(y, deg.scale, reach + tiles.NET_MARGIN, solve, tile_pixels=side * side,
                                   tile=side)).clip(0, 1)
    if task == "colorize":
        return keep_luma(out, grey)
    if is_grey(rgb):
        out[:] = out.mean(axis=2, keepdims=True)  # grey in, grey out
    return out


def first_guess(y: torch.Tensor, holes: torch.Tensor | None) -> torch.Tensor | None:
    """PnP-Flow's start where its settings begin at t_0 > 0 (inpainting): the normalised-convolution fill of
    the holes (:func:`hqs.fill_holes`), taken in [-1, 1] so that a tile without a kept pixel starts grey, not
    black; None without a mask."""
    return None if holes is None else (hqs.fill_holes(2 * y - 1, holes) + 1) / 2


def keep_luma(rgb: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``rgb`` (h, w, 3, in [0, 1]) with its luma set exactly to ``target`` (h, w) and its hue kept.

    Adding d = target - luma to all three channels changes the luma by d (the weights sum to 1) and
    the channel differences not at all; where that leaves [0, 1], the colour is pulled towards the
    grey of the same luma, x = Y + s (x - Y) with the largest s <= 1 that fits: the luma stays Y
    (Y is in [0, 1], so s = 0 always fits) and only the saturation of those pixels drops.
    """
    target = np.clip(np.asarray(target, dtype=np.float32), 0, 1)[..., None]
    shifted = rgb + (target - luma(rgb)[..., None])
    offset = shifted - target
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(offset > 0, (1 - target) / offset, np.where(offset < 0, -target / offset, np.inf))
    scale = np.minimum(1.0, room.min(axis=2, keepdims=True))
    return np.clip(target + scale * offset, 0, 1).astype(np.float32)


def restore_with_uncertainty(image: Image, task: str, *, runs: int = 4, seed: int = 0,
                             progress: Progress | None = None, solver: str = "auto",
                             **options) -> tuple[Image, np.ndarray]:
    """The mean of ``runs`` PnP-Flow restorations (seeds ``seed`` .. ``seed + runs - 1``) and their
    per-pixel standard deviation, (h, w): the root mean over channels of the sample variance.

    PnP-Flow's re-noising draws make each run a different plausible answer; where they disagree the
    data leave the image undetermined. ``options`` are those of :func:`restore_image`. With
    ``solver="auto"`` PnP-Flow runs; dpir and mmse are deterministic and refused.
    """
    solver = RestoreOptions(task, solver=solver, uncertainty_runs=runs).validate(has_mask=True)[2]
    restored = []
    for k in range(runs):
        def tick(done: int, total: int, phase: str, k: int = k) -> None:
            progress(k * total + done, runs * total, f"run {k + 1}/{runs} · {phase}")

        restored.append(restore_image(image, task, seed=seed + k, solver=solver,
                                      progress=None if progress is None else tick, **options))
    stack = np.stack([r.rgb for r in restored])
    std = np.sqrt(stack.var(axis=0, ddof=1).mean(axis=2)).astype(np.float32)
    # the mean of colorize runs keeps the luma: every run has it exactly, and luma is linear
    return restored[0].with_rgb(stack.mean(axis=0)), std


# matplotlib's "inferno" at 0, 1/4, 1/2, 3/4, 1 (perceptually uniform, dark = certain); linear between
HEAT_COLOURS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]]) / 255


def heat_map(values: np.ndarray, top: float | None = None) -> Image:
    """An (h, w) array as an "inferno" heat map image: 0 black, ``top`` (default: the maximum) pale yellow."""
    top = float(values.max()) if top is None else float(top)
    level = np.clip(np.asarray(values, dtype=np.float64) / top, 0, 1) if top > 0 else np.zeros(values.shape)
    position = level * (len(HEAT_COLOURS) - 1)
    low = np.minimum(position.astype(int), len(HEAT_COLOURS) - 2)
    frac = (position - low)[..., None]
    rgb = HEAT_COLOURS[low] * (1 - frac) + HEAT_COLOURS[low + 1] * frac
    return Image(rgb=rgb.astype(np.float32), name="uncertainty")


class _Counting:
    """The prior, calling ``tick(n)`` after its n-th pass of a solve (for progress; one pass = one step)."""

    def __init__(self, prior: Denoiser, tick: Callable[[int], None]):
        self.prior, self.tick, self.passes = prior, tick, 0

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.prior(x_t, t)
        self.passes += 1
        self.tick(self.passes)
        return out


def _dpir(y: torch.Tensor, physics, prior, noise_sigma: float, device: str, scale: int) -> torch.Tensor:
    """deepinv's DPIR (half-quadratic splitting, :data:`DPIR_ITERATIONS` iterations, Zhang et al. TPAMI
    2021) with our prior as its denoiser: the same network as PnP-Flow, another algorithm.

    Super-resolution starts from the bicubic up-sampling of y, as the DPIR paper's code does; deepinv's
    default start, A^T y, is the zero-filled image blurred, a quarter as bright at x2 (docs/decisions.md)."""
    import deepinv as dinv

    model = dinv.optim.DPIR(sigma=max(noise_sigma, 1e-3), denoiser=AsDeepinvDenoiser(prior), device=device)
    if scale > 1:
        return model(y, physics, init=torch.nn.functional.interpolate(y, scale_factor=scale, mode="bicubic"))
    return model(y, physics)


def _resize_alpha(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of an alpha plane to ``size`` = (w, h)."""
    from PIL import Image as PILImage

    resized = PILImage.fromarray(alpha.astype(np.float32), mode="F").resize(size, PILImage.Resampling.BICUBIC)
    return np.clip(np.asarray(resized, dtype=np.float32), 0, 1)


def _with_pixels(image: Image, rgb: np.ndarray, scale: int) -> Image:
    """``image`` with new colours; for superres alpha is resized bicubically (after degrade's crop)."""
    alpha = image.alpha
    h, w = rgb.shape[:2]
    if alpha is not None and alpha.shape != (h, w):
        alpha = _resize_alpha(alpha[:scale * h, :scale * w], (w, h))
    return replace(image, rgb=np.ascontiguousarray(rgb, dtype=np.float32), alpha=alpha)


def restore_image(image: Image, task: str, *, noise_sigma: float | None = None, blur_sigma: float | None = None,
                  kernel: np.ndarray | None = None, scale: int | None = None, mask: np.ndarray | None = None,
                  steps: int | None = None, averages: int | None = None, alpha: float | None = None, seed: int = 0,
                  device: str = "cpu", prior: Denoiser | None = None, progress: Progress | None = None,
                  solver: str = "auto") -> Image:
    """Restore ``image`` (see :func:`restore_rgb`); alpha is kept aside, and resized for superres.

        >>> clean = restore_image(read_image("noisy.png"), "denoise", noise_sigma=25 / 255)  # doctest: +SKIP
    """
    rgb = restore_rgb(image.rgb, task, noise_sigma=noise_sigma, blur_sigma=blur_sigma, kernel=kernel, scale=scale,
                      mask=mask, steps=steps, averages=averages, alpha=alpha, seed=seed, device=device, prior=prior,
                      progress=progress, solver=solver)
    return _with_pixels(image, rgb, resolve(task, scale=scale).scale)


def degrade_image(image: Image, task: str, *, noise_sigma: float | None = None, blur_sigma: float | None = None,
                  kernel: np.ndarray | None = None, scale: int | None = None, mask_ratio: float | None = None,
                  box: tuple[int, int, int, int] | None = None, seed: int = 0) -> tuple[Image, np.ndarray | None]:
    """Simulate the forward model that :func:`restore_image` inverts (see :func:`physics.degrade`).

        >>> holed, mask = degrade_image(read_image("clean.png"), "inpaint", mask_ratio=0.5)  # doctest: +SKIP
    """
    rgb, mask = degrade(image.rgb, task, noise_sigma, blur_sigma, kernel, scale, mask_ratio, box, seed)
    return _with_pixels(image, rgb, resolve(task, scale=scale).scale), mask


def _pixels(image: Image | np.ndarray) -> np.ndarray:
    return image.rgb if isinstance(image, Image) else np.asarray(image, dtype=np.float32)


def quality(restored: Image | np.ndarray, reference: Image | np.ndarray) -> dict[str, float]:
    """PSNR (dB) and SSIM of ``restored`` (clipped to [0, 1]) against ``reference``, by deepinv's metrics."""
    from deepinv.loss.metric import PSNR, SSIM

    x_hat, x = _pixels(restored), _pixels(reference)
    if x_hat.shape != x.shape:
        raise InputError(f"the reference is {x.shape[1]}x{x.shape[0]} but the restored image is "
                         f"{x_hat.shape[1]}x{x_hat.shape[0]}")
    x_hat, x = to_tensor(np.clip(x_hat, 0, 1)), to_tensor(x)
    return {"psnr": float(PSNR()(x_hat, x)), "ssim": float(SSIM()(x_hat, x))}
