"""Fitting a monotone gradient network that pushes one point cloud (pixel colours) onto another.

The fit never needs the whole image: a few tens of thousands of random pixels describe a photo's
colour distribution, so it costs the same for 0.3 and 50 megapixels. Three stages:

1. closed-form Gaussian Brenier map (``gaussian.py``): the classical MKL transfer, where the gradient
   warm start begins and what the fit falls back to;
2. warm start at the exact OT plan: both samples are summarised as weighted colour histograms (the
   centroid and pixel count of every occupied cell of a ``summary_bins``^3 grid), and exact discrete OT
   (POT ``ot.emd``) between the two histograms gives each source cell its barycentric target. For a
   C-MGN a dictionary of softplus ridges is fitted to those targets in one non-negative least-squares
   solve (``ridge.py``; a monotone gradient fitted to an optimal plan is a smoothed Brenier map);
   ``warm_start="gradient"`` regresses the network onto them by Adam steps instead
   (the M-MGN's only warm start). The histogram keeps all the sampled pixels at a fraction of the
   points, so the exact OT is cheap;
3. minimising a distribution loss (``losses.py``) on fresh mini-batches, Adam with cosine decay.

A C-MGN on the CPU with the sliced loss (the default) is fitted in NumPy, torch never imported
(``nets.monotone_numpy``: a hand-written forward/backward pass, checked against autograd in the
tests): the steps work on a few hundred to a thousand points, where torch's per-operation overhead,
not the arithmetic, set the time, and importing torch cost more than the fit. Other networks,
losses and devices use autograd (``fit_torch.py``).

A held-out sliced-W2 check compares the result with the Gaussian map; a fit that is worse or
non-finite falls back to the Gaussian map (reported in ``FitResult.fell_back``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from otmap_cli.nets.monotone_numpy import NumpyCMGN
from otmap_cli.progress import Progress, or_silent
from otmap_cli.transport.gaussian import gaussian_brenier
from otmap_cli.transport.ridge import fit_ridges
from otmap_cli.transport.settings import FitSettings
from otmap_cli.transport.sliced import SlicedWasserstein, sliced_w2

FIT_PHASE = "fitting map"
MIN_POINTS = 5  # a fifth of the points is held out for the final check, so five is the least that leaves one
ANCHORS = 4096  # data points the hidden units' kinks are placed on


@dataclass
class FitResult:
    """``net`` maps (N, d) float32 arrays: a ``NumpyCMGN`` for every C-MGN fit, else the torch network
    (``nets.monotone``, on the CPU; ``colormap.ColourMap`` applies either). When the held-out check
    preferred the Gaussian map (``fell_back``), the fitted network is kept in ``rejected``."""

    net: Any
    settings: FitSettings
    seconds: float
    fell_back: bool
    metrics: dict = field(default_factory=dict)
    rejected: Any = None


def sample_rows(points: np.ndarray, n: int, generator: np.random.Generator) -> np.ndarray:
    """``n`` random rows (all of them, shuffled, if there are fewer) of an (N, d) array."""
    index = generator.choice(len(points), size=min(n, len(points)), replace=False)
    return np.asarray(points)[index].astype(np.float32)


class Adam:
    """Adam (Kingma & Ba, ICLR 2015, Algorithm 1) on NumPy arrays, in place, with per-array learning
    rates and a decay factor (a dozen lines: ``torch.optim`` would import torch)."""

    def __init__(self, params: dict[str, np.ndarray], rates: dict[str, float], betas=(0.9, 0.999),
                 eps: float = 1e-8):
        self.params, self.rates = params, rates
        self.beta1, self.beta2, self.eps = betas[0], betas[1], eps
        self.moments = {name: (np.zeros_like(p), np.zeros_like(p)) for name, p in params.items()}
        self.steps = 0

    def apply(self, grads: dict[str, np.ndarray], decay: float = 1.0) -> None:
        self.steps += 1
        correction1, correction2 = 1 - self.beta1**self.steps, 1 - self.beta2**self.steps
        for name, grad in grads.items():
            first, second = self.moments[name]
            first *= self.beta1
            first += (1 - self.beta1) * grad
            second *= self.beta2
            second += (1 - self.beta2) * grad * grad
            self.params[name] -= (self.rates[name] * decay / correction1) * first / (
                np.sqrt(second / correction2) + self.eps)


def learning_rates(names, settings: FitSettings) -> dict[str, float]:
    """The gains are exp-like (softplus far left): a 10x larger step lets them grow by e^1 in ~10 steps."""
    return {name: (10 if name == "gain_raw" else 1) * settings.lr for name in names}


EDGE_TOLERANCE = 2 / 255  # a barycentric target this close to the gamut edge counts as on it
# where the target is on the edge the map may run past it, at this fraction of the cost elsewhere: enough
# to keep the region from drifting far out (chosen on the clipped-fraction column, docs/decisions.md)
ALLOWED_OVERSHOOT_WEIGHT = 0.03


def _cell_codes(points: np.ndarray, bins: int) -> np.ndarray:
    cells = (np.clip(points, 0, 1) * (bins - 1e-6)).astype(np.int64)
    code = np.zeros(len(points), dtype=np.int64)
    for axis in range(points.shape[1]):
        code = code * bins + cells[:, axis]
    return code


def colour_histogram(points: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes, centroids and weights (summing to 1) of the occupied cells of a ``bins``^d grid on [0, 1]^d."""
    occupied, index, counts = np.unique(_cell_codes(points, bins), return_inverse=True, return_counts=True)
    sums = np.stack([np.bincount(index, weights=points[:, axis], minlength=len(occupied))
                     for axis in range(points.shape[1])], axis=1)
    return occupied, (sums / counts[:, None]).astype(np.float32), (counts / len(points)).astype(np.float32)


@dataclass
class HistogramPlan:
    """Exact OT (POT ``ot.emd``) between two colour histograms: each source cell's barycentric target.

    It also says where the map may run past the gamut edge: only in the cells, and the channels,
    whose optimal target lies on that edge (a style's blown sky or black shadows). Everywhere else
    the clip would erase detail the style does not ask to erase.
    """

    bins: int
    centroids: np.ndarray
    weights: np.ndarray
    targets: np.ndarray
    on_low: np.ndarray  # (bins^d, d) bool: the cell's target is on the lower edge in that channel
    on_high: np.ndarray

    @classmethod
    def fit(cls, source: np.ndarray, target: np.ndarray, bins: int,
            output_range: tuple[float, float] | None) -> "HistogramPlan":
        import ot

        codes, xs, a = colour_histogram(source, bins)
        _, ys, b = colour_histogram(target, bins)
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        plan = ot.emd(a64 / a64.sum(), b64 / b64.sum(), ot.dist(xs.astype(np.float64), ys.astype(np.float64)),
                      numItermax=10_000_000)
        targets = ((plan @ ys) / np.maximum(plan.sum(1, keepdims=True), 1e-12)).astype(np.float32)
        on_low = np.zeros((bins ** source.shape[1], source.shape[1]), dtype=bool)
        on_high = np.zeros_like(on_low)
        if output_range is not None:
            on_low[codes] = targets <= output_range[0] + EDGE_TOLERANCE
            on_high[codes] = targets >= output_range[1] - EDGE_TOLERANCE
        return cls(bins, xs, a / a.sum(), targets, on_low, on_high)

    def edges(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        codes = _cell_codes(x, self.bins)
        return self.on_low[codes], self.on_high[codes]


def warm_gradient(raw: np.ndarray, targets: np.ndarray, weights: np.ndarray, on_low: np.ndarray,
                  on_high: np.ndarray, settings: FitSettings) -> np.ndarray:
    """d/dT of the warm start's loss (``weights`` is (N, 1)): the weighted squared error of T(x), clipped
    at the edges where the plan sends x onto them, to the targets, plus the pull back of ``edge_pull``.

    The pull back matters here as much as in the refinement: without it a cell next to one whose
    target is on the edge is dragged past the edge with it, and the clip then flattens that region.
    ``fit_torch.warm_loss`` is the same loss for autograd.
    """
    low, high = settings.output_range or (-np.inf, np.inf)
    clipped = np.where(on_high, np.minimum(raw, high), np.where(on_low, np.maximum(raw, low), raw))
    grad = 2 * weights * (clipped - targets) * (clipped == raw)
    if settings.edge_weight and settings.output_range is not None:
        grad += settings.edge_weight * weights * edge_pull(raw, on_low, on_high, low, high)
    return grad


def edge_pull(raw: np.ndarray, on_low: np.ndarray, on_high: np.ndarray, low: float, high: float) -> np.ndarray:
    """d/dT of the per-point squared distance past the gamut edges T(x) is not allowed to pass.

    The distribution loss sees the clipped output, so it lets the map reach a point mass that the
    style has on the edge (the Brenier map must collapse a region there, which a map with a PSD
    Jacobian bounded below can only do by running onto or past the edge). But a pixel past the edge
    gets no gradient from a clipped loss, and nothing would stop a whole region from drifting out and
    turning flat black or white; this term pulls back the pixels whose target is inside the gamut
    (and, at ``ALLOWED_OVERSHOOT_WEIGHT``, those whose target is on the edge).
    """
    below = np.maximum(low - raw, 0) * np.where(on_low, ALLOWED_OVERSHOOT_WEIGHT, 1).astype(raw.dtype)
    above = np.maximum(raw - high, 0) * np.where(on_high, ALLOWED_OVERSHOOT_WEIGHT, 1).astype(raw.dtype)
    return 2 * (above - below)


def refine_gradient(raw: np.ndarray, target: np.ndarray, on_low: np.ndarray, on_high: np.ndarray,
                    loss_fn: SlicedWasserstein, settings: FitSettings) -> np.ndarray:
    """d/dT of the refinement loss (sliced W2 of the clipped output + the mean pull back of ``edge_pull``)."""
    if settings.output_range is None:
        return loss_fn.gradient(raw, target)
    low, high = settings.output_range
    pushed = np.clip(raw, low, high)
    grad = loss_fn.gradient(pushed, target) * (pushed == raw)
    if settings.edge_weight:
        grad += settings.edge_weight / len(raw) * edge_pull(raw, on_low, on_high, low, high)
    return grad


def in_numpy(settings: FitSettings) -> bool:
    """Whether the fit runs in NumPy (a C-MGN on the CPU with the sliced loss), else with torch autograd."""
    return settings.model == "cmgn" and settings.loss == "sliced" and settings.device.split(":")[0] == "cpu"


def _fit_numpy(net: NumpyCMGN, plan: HistogramPlan, source: np.ndarray, target: np.ndarray,
               settings: FitSettings, warm_steps: int, rng: np.random.Generator, tick) -> None:
    """Stages 2 and 3 with the gradients of ``cmgn_forward_backward``; Adam updates ``net.params`` in place."""
    optimizer = Adam(net.params, learning_rates(net.params, settings))
    on_low, on_high = plan.edges(plan.centroids)
    weights = plan.weights[:, None]
    for step in range(warm_steps):
        optimizer.apply(net.forward_backward(plan.centroids, lambda raw: warm_gradient(
            raw, plan.targets, weights, on_low, on_high, settings)))
        tick(step + 1)
    loss_fn = SlicedWasserstein(seed=settings.seed)
    for step in range(settings.refine_steps):
        xs, ys = sample_rows(source, settings.batch, rng), sample_rows(target, settings.batch, rng)
        decay = 0.5 * (1 + math.cos(math.pi * step / max(settings.refine_steps, 1)))  # cosine
        batch_low, batch_high = plan.edges(xs)
        optimizer.apply(net.forward_backward(xs, lambda raw: refine_gradient(
            raw, ys, batch_low, batch_high, loss_fn, settings)), decay)
        tick(warm_steps + step + 1)


def fit_monotone_map(source: np.ndarray, target: np.ndarray, settings: FitSettings | None = None,
                     progress: Progress | None = None) -> FitResult:
    """Fit T = grad(phi) with T#source ~= target; both are (N, d) point clouds (pixel colours).

    ``progress`` gets one phase, "fitting map · step k/N", from k = 0 (before the exact OT of the
    warm start) to N = warm steps + steps.
    """
    settings = settings or FitSettings()
    settings.validate()
    start = time.time()
    rng = np.random.default_rng(settings.seed)
    source, target = np.asarray(source, dtype=np.float32), np.asarray(target, dtype=np.float32)
    if min(len(source), len(target)) < MIN_POINTS:
        raise ValueError(f"a fit needs at least {MIN_POINTS} points (pixels) on each side, got {len(source)} "
                         f"and {len(target)}")
    holdout = min(4096, len(source) // 5, len(target) // 5)  # kept out of the fit, for the final check
    source, target = sample_rows(source, len(source), rng), sample_rows(target, len(target), rng)
    src_check, tgt_check = source[:holdout], target[:holdout]
    source, target = source[holdout:], target[holdout:]
    dim = source.shape[1]
    gauss_matrix, gauss_offset = gaussian_brenier(source, target)
    matrix, offset = (np.eye(dim, dtype=np.float32), np.zeros(dim, np.float32)) if settings.init == "identity" \
        else (gauss_matrix, gauss_offset)
    warm_steps = settings.gradient_warm_steps
    total = warm_steps + settings.refine_steps
    report = or_silent(progress)

    def tick(done: int) -> None:  # one phase counted in steps: warm start and distribution loss together
        report(done, total, f"{FIT_PHASE} · step {done}/{total}")

    tick(0)
    plan = HistogramPlan.fit(source, target, settings.summary_bins, settings.output_range)
    anchors = sample_rows(source, ANCHORS, rng)
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging fit is caught below, not warned about
        ridge_start = None if settings.warm_method == "gradient" else fit_ridges(
            plan.centroids, plan.targets, plan.weights, settings.ridge_directions, settings.ridge_knots,
            settings.ridge_sharpness, rng)
        if in_numpy(settings):
            net = ridge_start
            if net is None:
                net = NumpyCMGN(dim=dim, **settings.model_options)
                net.init_from_affine(matrix, offset, anchors, rng)
            _fit_numpy(net, plan, source, target, settings, warm_steps, rng, tick)
        else:
            from otmap_cli.transport.fit_torch import fit_with_autograd

            net = fit_with_autograd(matrix, offset, anchors, plan, source, target, settings, rng, tick, ridge_start)
        pushed = net(src_check)
    gauss = src_check.astype(np.float64) @ gauss_matrix + gauss_offset
    if settings.output_range is not None:
        pushed, gauss = np.clip(pushed, *settings.output_range), np.clip(gauss, *settings.output_range)
    w2_net = sliced_w2(pushed, tgt_check) if np.isfinite(pushed).all() else math.inf
    w2_gauss = sliced_w2(gauss, tgt_check)
    fell_back = not (w2_net <= w2_gauss * 1.02)
    rejected = net if fell_back else None
    if fell_back:  # the Gaussian map itself: a C-MGN whose nonlinear part is off
        net = NumpyCMGN(dim=dim, **(settings.model_options if settings.model == "cmgn" else {}))
        net.init_from_affine(gauss_matrix, gauss_offset, anchors, rng)
        net.params["gain_raw"][:] = -60.0
    metrics = {"sliced_w2_heldout": w2_gauss if fell_back else w2_net, "sliced_w2_network": w2_net,
               "sliced_w2_gaussian_map": w2_gauss, "sliced_w2_identity": sliced_w2(src_check, tgt_check)}
    return FitResult(net=net, settings=settings, seconds=time.time() - start, fell_back=fell_back, metrics=metrics,
                     rejected=rejected)
