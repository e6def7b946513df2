"""PnP-Flow (Martin, Gagneux, Hagemann, Steidl, ICLR 2025, arXiv 2410.02423, Algorithm 1), by hand.

deepinv 0.5 has no PnP-Flow, so the loop is written here. With t_n = n/N and gamma_n = (1 - t_n)^alpha,
for n = 0 .. N-1:

    z   = x - (gamma_n / L) H^T (H x - y)               gradient step on F(x) = 1/2 ||H x - y||^2
    z~  = t_n z + (1 - t_n) eps,  eps ~ N(0, I)          re-noise onto the flow path (K draws)
    x   = mean_k D_{t_n}(z~_k)                           x1-prediction of the flow prior

and the last x is the answer. The prior was trained on images in [-1, 1], so the solver works
there: x' = 2x - 1 and, for the same linear H, y' = 2y - H(1) (the noise std doubles; the
iteration itself does not use it: the official code scales both its step and its data term by
sigma^2, which cancel).

Six options beyond Algorithm 1 (:class:`Settings`; all off reproduces the paper): a time
schedule t_n = t_0 + (t_last - t_0)(1 - (1 - n/(N-1))^p) that keeps the paper's end points but puts more
iterations near t = 1; m gradient steps per iteration instead of one; a final deterministic
step, z = x - H^T(Hx - y) / L then x = D_t(t z) at t = 1 / (1 + sigma_y): the MMSE denoiser at the
noise level of y instead of a re-noised draw (the noise that the data step lets back in is what is
left to remove); the noise carried by z; a start at t_0 > 0 from a first guess (the hole fill, for
inpainting) instead of pure noise, so that no iteration is spent where the small prior sees only noise; and
iteration n asking the prior in the n-th of the 8 flips and quarter turns of the image, which averages the
prior's errors over the iterations for free (as :mod:`~otmap_cli.restoration.hqs` does).

The carried noise: the re-noising assumes z is a clean image; after a data
step it is x1 + s n with s ~ c sigma_y (the measurement noise the step lets in, c a per-task constant),
so z~ = t z + (1 - t) eps = t x1 + sqrt(t^2 s^2 + (1 - t)^2) eps', which is the path's point at t' with
(1 - t') / t' = sqrt(((1 - t) / t)^2 + s^2), scaled by t / t'. The prior is asked D_t'((t' / t) z~):
without it, the late iterations ask it to remove noise of std (1 - t) / t << s, and the iterate
gathers the measurement noise (PSNR against iteration: docs/restore_pnpflow.md).

Step size. The paper's data term assumes ||H|| <= 1 with gamma_0 = 1, i.e. the first step is a
full Landweber step. That holds for denoising, inpainting, plain decimation and circular blur,
but not for our operators (measured with the power method on 48x48 to 256x256 images):
reflect-padded Gaussian blur has ||H^T H|| = 1.005 to 1.03 (reflection counts border pixels
twice), and bicubic down-sampling has ||H^T H|| = 0.27 (x2), 0.17 (x3), 0.115 (x4), so the paper's
step would be 4 to 9 times too short for super-resolution. We therefore divide the step by
L = ||H^T H|| (deepinv's power method): gamma_0 = 1 keeps its meaning for every operator, and
since the power method under-estimates L by at most a few per cent, gamma_n / L < 2 / L keeps
each step a contraction of the data term.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import torch

from otmap_cli.restoration.options import Settings
from otmap_cli.restoration.prior import VIEWS, from_view, to_view

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""D(x_t, t) = E[x1 | x_t] for images in [-1, 1] and times t of shape (batch,), e.g. a FlowPrior."""


def squared_norm(physics, x: torch.Tensor) -> float:
    """L = ||H^T H|| by deepinv's power method, with a fixed seed so that restore is reproducible."""
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "convergence not reached": a few per cent low is fine (see above)
        torch.manual_seed(0)
        return float(physics.compute_sqnorm(x, max_iter=100, tol=1e-4, verbose=False))


def times(settings: Settings) -> list[float]:
    """t_n = t_0 + (t_last - t_0)(1 - (1 - n / (N - 1))^p), t_last = (N - 1) / N: t_0 = 0 and p = 1 is the
    paper's t_n = n / N; p > 1 keeps the same ends and spends more of the N iterations near t = 1, where the
    prior is accurate."""
    last = (settings.steps - 1) / settings.steps
    span = max(settings.steps - 1, 1)
    first = settings.start_time
    return [first + (last - first) * (1 - (1 - n / span) ** settings.time_power) for n in range(settings.steps)]


def carried_time(t: float, carried: float) -> float:
    """The path time t' whose noise, (1 - t') / t' = sqrt(((1 - t) / t)^2 + carried^2), is that of the
    re-noised t z + (1 - t) eps when z itself carries noise of std ``carried`` (t itself for 0 or t = 0)."""
    if t <= 0 or carried <= 0:
        return t
    return 1.0 / (1.0 + math.hypot((1 - t) / t, carried))


@torch.inference_mode()
def solve(y: torch.Tensor, physics, prior: Denoiser, settings: Settings, *, generator: torch.Generator,
          noise_sigma: float = 0.0, start: torch.Tensor | None = None,
          observe: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Run PnP-Flow on observations ``y`` (1 x 3 x h x w, [0, 1] units); return x in [0, 1] units, unclipped.

    ``noise_sigma`` (std of the noise in y) is used only by the final deterministic step and the carried noise;
    ``start`` (the shape of x, [0, 1] units) is the first guess that ``settings.start_time`` > 0 starts from;
    ``observe(n, x)`` sees the estimate (in [0, 1] units) after each iteration, for benchmarks.
    """
    shape = physics.A_adjoint(y).shape
    ones = torch.ones(shape, device=y.device, dtype=y.dtype)
    y = 2 * y - physics.A(ones)
    lipschitz = squared_norm(physics, ones)

    def data_steps(x: torch.Tensor, gamma: float, count: int) -> torch.Tensor:
        if lipschitz == 0:  # an inpainting tile with no kept pixel has no data term
            return x
        for _ in range(count):
            x = x - gamma / lipschitz * physics.A_adjoint(physics.A(x) - y)
        return x

    carried = settings.carried_noise * 2 * noise_sigma  # in the [-1, 1] units of z
    if settings.start_time > 0 and start is None:
        raise ValueError("a start time t_0 > 0 needs a first guess (start)")
    # the paper's t_0 = 0 ignores the start: its first re-noising is pure noise
    x = 2 * start - 1 if settings.start_time > 0 else torch.zeros(shape, device=y.device, dtype=y.dtype)
    views = VIEWS[settings.views]
    for n, t in enumerate(times(settings)):
        z = data_steps(x, (1 - n / settings.steps) ** settings.alpha, settings.data_steps)
        seen = carried_time(t, carried)
        scale = seen / t if t > 0 else 1.0  # the re-noised z as a point of the path at t'
        t_batch = torch.full((shape[0],), seen, device=y.device, dtype=y.dtype)
        x = torch.zeros_like(z)
        view = views[n % len(views)]
        for _ in range(settings.averages):
            eps = torch.randn(shape, generator=generator, device=y.device, dtype=y.dtype)
            x += from_view(prior(to_view(scale * (t * z + (1 - t) * eps), view), t_batch), view)
        x /= settings.averages
        if observe is not None:
            observe(n, (x + 1) / 2)
    if settings.final_step:
        # one full data step, then the MMSE denoiser at the noise level of y, without re-noising
        z = data_steps(x, 1.0, 1)
        t = 1.0 / (1.0 + 2 * noise_sigma)
        x = prior(t * z, torch.full((shape[0],), t, device=y.device, dtype=y.dtype))
    return (x + 1) / 2
