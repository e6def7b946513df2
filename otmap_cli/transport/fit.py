"""Fitting a monotone gradient network that pushes one point cloud (pixel colours) onto another.

The fit never needs the whole image: a few tens of thousands of random pixels describe a photo's
colour distribution, so it costs the same for 0.3 and 50 megapixels. Three stages:

1. closed-form Gaussian Brenier map (``gaussian.py``) as the starting point, so even a short fit
   starts at the classical MKL transfer;
2. optional warm start: exact discrete OT (POT ``ot.emd``) between ``warm_pixels`` source and
   target samples gives each source sample its optimal partner; a few hundred steps of regression
   of T onto those partners land close to the Brenier map (a monotone gradient fitted to an
   optimal assignment is a smoothed Brenier map);
3. minimising a distribution loss (``losses.py``) on fresh mini-batches, Adam with cosine decay.

A held-out sliced-W2 check compares the result with the Gaussian map; a fit that is worse or
non-finite falls back to the Gaussian map (reported in ``FitResult.fell_back``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from otmap_cli.nets.monotone import MODELS, MonotoneGradientNet
from otmap_cli.transport.gaussian import gaussian_brenier
from otmap_cli.transport.losses import make_loss
from otmap_cli.transport.settings import FitSettings

ProgressFn = Callable[[int, int], None]
MIN_POINTS = 5  # a fifth of the points is held out for the final check, so five is the least that leaves one


@dataclass
class FitResult:
    net: MonotoneGradientNet
    settings: FitSettings
    seconds: float
    fell_back: bool
    metrics: dict = field(default_factory=dict)


def sample_rows(points: np.ndarray | torch.Tensor, n: int, generator: np.random.Generator) -> torch.Tensor:
    """``n`` random rows (all of them, shuffled, if there are fewer) of an (N, d) array."""
    points = torch.as_tensor(points)
    index = generator.choice(len(points), size=min(n, len(points)), replace=False)
    return points[torch.as_tensor(index)].float()


def sliced_w2(a: torch.Tensor, b: torch.Tensor, projections: int = 256, seed: int = 0) -> float:
    """Sliced W2 (not squared) on equal-size samples, for quick held-out checks."""
    import ot

    n = min(len(a), len(b))
    return float(ot.sliced_wasserstein_distance(a[:n].double(), b[:n].double(), n_projections=projections,
                                                seed=seed))


def _pushed(net: MonotoneGradientNet, x: torch.Tensor, settings: FitSettings) -> torch.Tensor:
    """T(x), clipped to ``output_range`` when the result will be clipped anyway (colours in [0, 1]).

    Fitting the clipped output lets the map overshoot where the style has a point mass on the
    boundary (a white sky, black shadows): the Brenier map must collapse a region onto that point,
    which a map with a PSD Jacobian bounded below can only do by pushing it past the edge.
    """
    out = net(x)
    return out if settings.output_range is None else out.clamp(*settings.output_range)


def _warm_start(net, source, target, settings, optimizer, rng, progress, total) -> None:
    import ot

    n = min(settings.warm_pixels, len(source), len(target))
    if n < 16 or settings.warm_steps == 0:
        return
    xs, ys = sample_rows(source, n, rng), sample_rows(target, n, rng)
    weights = np.full(n, 1.0 / n)
    plan = ot.emd(weights, weights, ot.dist(xs.double().numpy(), ys.double().numpy()), numItermax=1_000_000)
    partners = ys[torch.as_tensor(plan.argmax(1))].to(settings.device)
    xs = xs.to(settings.device)
    for step in range(settings.warm_steps):
        loss = (_pushed(net, xs, settings) - partners).pow(2).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if progress:
            progress(step + 1, total)


def fit_monotone_map(source: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor,
                     settings: FitSettings | None = None, progress: ProgressFn | None = None,
                     net: MonotoneGradientNet | None = None) -> FitResult:
    """Fit T = grad(phi) with T#source ~= target; both are (N, d) point clouds (pixel colours)."""
    settings = settings or FitSettings()
    settings.validate()
    start = time.time()
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    source = torch.as_tensor(source).float()
    target = torch.as_tensor(target).float()
    if min(len(source), len(target)) < MIN_POINTS:
        raise ValueError(f"a fit needs at least {MIN_POINTS} points (pixels) on each side, got {len(source)} "
                         f"and {len(target)}")
    holdout = min(4096, len(source) // 5, len(target) // 5)  # kept out of the fit, for the final check
    source, target = sample_rows(source, len(source), rng), sample_rows(target, len(target), rng)
    src_check, tgt_check = source[:holdout], target[:holdout]
    source, target = source[holdout:], target[holdout:]
    dim = source.shape[1]
    matrix, offset = gaussian_brenier(source, target)
    if settings.init == "identity":
        matrix, offset = torch.eye(dim), torch.zeros(dim)
    net = net or MODELS[settings.model](dim=dim)
    net.init_from_affine(matrix, offset, sample_rows(source, 4096, rng))
    net.to(settings.device)
    total = settings.warm_steps + settings.steps
    gains = [p for name, p in net.named_parameters() if name == "gain_raw"]
    others = [p for name, p in net.named_parameters() if name != "gain_raw"]
    # gains are exp-like (softplus far left): a larger step lets them grow by e^1 in ~10 steps
    optimizer = torch.optim.Adam([{"params": others}, {"params": gains, "lr": 10 * settings.lr}], lr=settings.lr)
    _warm_start(net, source, target, settings, optimizer, rng, progress, total)
    loss_fn = make_loss(settings.loss, dim, seed=settings.seed)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, settings.steps) / max(settings.steps, 1))))
    for step in range(settings.steps):
        xs = sample_rows(source, settings.batch, rng).to(settings.device)
        ys = sample_rows(target, settings.batch, rng).to(settings.device)
        pushed = _pushed(net, xs, settings)
        loss_fn.update(pushed, ys)
        loss = loss_fn(pushed, ys)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress:
            progress(settings.warm_steps + step + 1, total)
    net.eval()
    with torch.no_grad():
        pushed = _pushed(net, src_check.to(settings.device), settings).cpu()
        gauss = src_check.double() @ matrix.double() + offset.double()
        if settings.output_range is not None:
            gauss = gauss.clamp(*settings.output_range)
        w2_net = sliced_w2(pushed, tgt_check) if torch.isfinite(pushed).all() else math.inf
        w2_gauss = sliced_w2(gauss, tgt_check)
    fell_back = not (w2_net <= w2_gauss * 1.02)
    if fell_back:
        net.init_from_affine(*gaussian_brenier(source, target), sample_rows(source, 4096, rng))
        net.gain_raw.data.fill_(-60.0)
    metrics = {"sliced_w2_heldout": w2_gauss if fell_back else w2_net,
               "sliced_w2_gaussian_map": w2_gauss, "sliced_w2_identity": sliced_w2(src_check, tgt_check)}
    return FitResult(net=net.cpu(), settings=settings, seconds=time.time() - start, fell_back=fell_back,
                     metrics=metrics)
