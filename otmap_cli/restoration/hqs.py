"""Inpainting by half-quadratic splitting with the flow prior as the denoiser (DPIR's algorithm).

DPIR (Zhang, Li, Zuo, Zhang, Van Gool, Timofte, TPAMI 2021, eq. 6-7) alternates a denoising of x at
a decreasing noise level sigma_k with the proximal step of the data term. For a mask M the data step
has a closed form per pixel, so no deepinv physics (and no deepinv import) is needed:

    x = (M y / sigma_n^2 + z / sigma_k^2) / (M / sigma_n^2 + 1 / sigma_k^2),   z = D(x, sigma_k).

Two choices differ from deepinv's DPIR, whose start A^T y is the zero-filled image (a black field
the denoiser cannot see through at the first sigma): the start is the normalised-convolution fill
of the holes (:func:`fill_holes`), and each iteration denoises in one of the 8 flips and quarter
turns of the image in turn, which averages the prior's errors over the iterations for free.
A hole wider than :data:`COARSE_HOLE` is first inpainted at half resolution (recursively), where
it is half as wide for the prior's receptive field; that result, upsampled, is the start at full
resolution, whose schedule then begins at the lower :data:`COARSE_SIGMA_START` and takes only
:data:`COARSE_FINE_ITERATIONS` steps (a coarse-to-fine start, as in multiscale PnP schemes).
Schedule, coarse start and their measurements: docs/decisions.md, "Inpainting by half-quadratic splitting".
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from otmap_cli.restoration.prior import VIEWS, from_view, mmse_denoise, to_view

ITERATIONS = 24  # one prior pass each
SIGMA_START = 0.2  # [0, 1] units; DPIR's 49/255
SIGMA_END = 0.01  # or the noise level of y, if larger
FILL_SIGMA = 2.0  # px: the Gaussian of the first fill; doubled until every hole is reached
COARSE_HOLE = 8.0  # px from the nearest kept pixel: wider holes get a half-resolution start
COARSE_SIGMA_START = 0.1  # where the schedule starts after a half-resolution start
COARSE_FINE_ITERATIONS = 8  # iterations after a half-resolution start
MIN_COARSE_SIDE = 32  # px: no half-resolution level below this side


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of an (n, c, h, w) tensor, reflect padding (replicate where the image is too small)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    h, w = x.shape[-2:]
    mode = "reflect" if radius < min(h, w) else "replicate"
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode=mode), kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode=mode), kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def fill_holes(y: torch.Tensor, mask: torch.Tensor, sigma: float = FILL_SIGMA) -> torch.Tensor:
    """``y`` with its holes (mask 0) filled by normalised convolution, blur(M y) / blur(M) (Knutsson and
    Westin, CVPR 1993); the Gaussian doubles until it reaches every hole, so a large box is filled from
    its border inwards by ever wider averages. Kept pixels are returned unchanged."""
    if not bool(mask.any()):
        return torch.zeros_like(y)
    filled = y * mask
    todo = mask < 0.5
    while bool(todo.any()):
        weight = _blur(mask, sigma)
        reached = todo & (weight > 1e-3)
        average = _blur(y * mask, sigma) / weight.clamp_min(1e-3)
        filled = torch.where(reached, average, filled)
        todo = todo & ~reached
        sigma *= 2
    return filled


def schedule(noise_sigma: float, iterations: int = ITERATIONS, start: float = SIGMA_START) -> np.ndarray:
    """The denoiser's noise levels, geometric from ``start`` down to max(:data:`SIGMA_END`, noise)."""
    end = max(SIGMA_END, noise_sigma)
    return np.geomspace(max(start, end), end, iterations)


def widest_hole(mask: torch.Tensor) -> float:
    """The largest distance (px) from a missing pixel to the nearest kept one; 0 without holes."""
    from scipy.ndimage import distance_transform_edt

    holes = mask[0, 0].cpu().numpy() < 0.5
    return float(distance_transform_edt(holes).max()) if holes.any() and not holes.all() else 0.0


def levels(mask: torch.Tensor) -> int:
    """How many half-resolution starts :func:`inpaint` runs for ``mask``."""
    count, hole, side = 0, widest_hole(mask), min(mask.shape[-2:])
    while hole > COARSE_HOLE and side // 2 >= MIN_COARSE_SIDE:
        count, hole, side = count + 1, hole / 2, side // 2
    return count


def passes(mask: torch.Tensor, iterations: int = ITERATIONS) -> int:
    """Prior passes of :func:`inpaint` for ``mask``: all iterations at the coarsest resolution, then
    :data:`COARSE_FINE_ITERATIONS` at each finer one."""
    return iterations + levels(mask) * min(iterations, COARSE_FINE_ITERATIONS)


def half_resolution(y: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``y`` and ``mask`` on a grid of half the side: a coarse pixel is kept if at least half of its
    (up to four) pixels are, with their mean as its value."""
    kept = F.avg_pool2d(mask, 2, ceil_mode=True)
    coarse = F.avg_pool2d(y * mask, 2, ceil_mode=True) / kept.clamp_min(1e-6)
    coarse_mask = (kept >= 0.5).to(y.dtype)
    return coarse * coarse_mask, coarse_mask


def inpaint(y: torch.Tensor, mask: torch.Tensor, prior, noise_sigma: float,
            iterations: int = ITERATIONS, coarse_start: bool = True) -> torch.Tensor:
    """Inpainting of ``y`` ((n, 3, h, w) in [0, 1]) where ``mask`` ((1, 1, h, w), 1 = kept) is 0.

    ``prior(x_t, t)`` is an x1-predictor on [-1, 1] images (its MMSE denoiser is used); ``noise_sigma``
    is the noise std of the kept pixels in [0, 1] units; ``coarse_start`` False skips the half-resolution
    starts (the single-resolution solver, kept for comparison). Returns the restoration in [0, 1] (not clipped)."""
    mask = mask.to(y.dtype)
    data = 2 * y - 1  # the prior's [-1, 1] units: every sigma doubles
    if coarse_start and levels(mask):
        coarse_y, coarse_mask = half_resolution(y, mask)
        coarse = inpaint(coarse_y, coarse_mask, prior, noise_sigma / 2, iterations)  # a mean of ~4 noisy pixels
        start = F.interpolate(2 * coarse - 1, size=y.shape[-2:], mode="bilinear", align_corners=False)
        x, sigma_start = torch.where(mask > 0.5, data, start), COARSE_SIGMA_START
        iterations = min(iterations, COARSE_FINE_ITERATIONS)
    else:
        x, sigma_start = fill_holes(data, mask), SIGMA_START
    data_weight = mask / max(2 * noise_sigma, 1e-3) ** 2
    views = VIEWS[8]
    for k, sigma in enumerate(schedule(noise_sigma, iterations, sigma_start)):
        view = views[k % len(views)]
        z = from_view(mmse_denoise(prior, to_view(x, view), 2 * float(sigma)), view)
        prior_weight = 1 / (2 * float(sigma)) ** 2
        x = (data_weight * data + prior_weight * z) / (data_weight + prior_weight)
    return (x + 1) / 2
