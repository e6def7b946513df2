"""The fit with torch autograd: the networks, losses and devices the NumPy fit does not cover.

The M-MGN, the losses other than sliced W2 (``losses.py``) and fits on CUDA take their gradients
from autograd; the stages and the losses are those of ``fit.py`` (whose NumPy gradients the tests
check against ``warm_loss`` and ``edge_excess`` here).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from otmap_cli.nets.monotone import CMGN, MODELS, TorchMonotoneMap
from otmap_cli.nets.monotone_numpy import NumpyCMGN
from otmap_cli.transport.fit import ALLOWED_OVERSHOOT_WEIGHT, HistogramPlan, learning_rates, sample_rows
from otmap_cli.transport.losses import make_loss
from otmap_cli.transport.settings import FitSettings


def gamut_clip(raw: torch.Tensor, on_low: torch.Tensor, on_high: torch.Tensor,
               output_range: tuple[float, float] | None) -> torch.Tensor:
    """T(x) clipped at the edges where the plan sends x onto them, and left free elsewhere."""
    if output_range is None:
        return raw
    low, high = output_range
    return torch.where(on_high, raw.clamp_max(high), torch.where(on_low, raw.clamp_min(low), raw))


def edge_excess(raw: torch.Tensor, on_low: torch.Tensor, on_high: torch.Tensor,
                settings: FitSettings, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared distance of T(x) past the gamut edges it is not allowed to pass (``fit.edge_pull``)."""
    if settings.output_range is None or settings.edge_weight == 0:
        return raw.new_zeros(())
    low, high = settings.output_range
    below = (low - raw).clamp_min(0).pow(2) * (1 - (1 - ALLOWED_OVERSHOOT_WEIGHT) * on_low.float())
    above = (raw - high).clamp_min(0).pow(2) * (1 - (1 - ALLOWED_OVERSHOOT_WEIGHT) * on_high.float())
    per_point = (below + above).sum(1)
    return per_point.mean() if weights is None else (per_point * weights).sum()


def warm_loss(raw: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, on_low: torch.Tensor,
              on_high: torch.Tensor, settings: FitSettings) -> torch.Tensor:
    """The warm start's loss (``fit.warm_gradient`` is its gradient)."""
    pushed = gamut_clip(raw, on_low, on_high, settings.output_range)
    return ((pushed - targets).pow(2).sum(1) * weights).sum() + settings.edge_weight * edge_excess(
        raw, on_low, on_high, settings, weights)


def fit_with_autograd(matrix: np.ndarray, offset: np.ndarray, anchors: np.ndarray, plan: HistogramPlan,
                      source: np.ndarray, target: np.ndarray, settings: FitSettings, rng: np.random.Generator,
                      tick, start: NumpyCMGN | None = None):
    """Stages 2 and 3 of ``fit.py`` for ``settings.model`` on ``settings.device``, one CPU thread.

    Returns a NumPy-callable map: a ``NumpyCMGN`` for a C-MGN, else the network behind
    ``TorchMonotoneMap``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a few thousand points per step: threads' hand-offs cost more than they save
    try:
        torch.manual_seed(settings.seed)
        device = torch.device(settings.device)
        if start is None:
            net = MODELS[settings.model](dim=source.shape[1], **settings.model_options)
            net.init_from_affine(torch.from_numpy(matrix), torch.from_numpy(offset), torch.from_numpy(anchors))
        else:  # the ridge warm start: already at the plan, no regression steps
            net = start.to_torch().train()
        warm_steps = settings.gradient_warm_steps
        net.to(device)
        rates = learning_rates(dict(net.named_parameters()), settings)
        optimizer = torch.optim.Adam([{"params": [p], "lr": rates[name]} for name, p in net.named_parameters()])
        base_rates = [group["lr"] for group in optimizer.param_groups]

        def step(loss: torch.Tensor, decay: float = 1.0) -> None:
            for group, rate in zip(optimizer.param_groups, base_rates):
                group["lr"] = rate * decay
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        def on(device_array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(device_array)).to(device)

        xs, targets, weights = on(plan.centroids), on(plan.targets), on(plan.weights)
        on_low, on_high = (on(edge) for edge in plan.edges(plan.centroids))
        for k in range(warm_steps):
            step(warm_loss(net(xs), targets, weights, on_low, on_high, settings))
            tick(k + 1)
        loss_fn = make_loss(settings.loss, source.shape[1], seed=settings.seed)
        for k in range(settings.refine_steps):
            batch, ys = sample_rows(source, settings.batch, rng), on(sample_rows(target, settings.batch, rng))
            raw = net(on(batch))
            pushed = raw if settings.output_range is None else raw.clamp(*settings.output_range)
            loss_fn.update(pushed, ys)
            edges = (on(edge) for edge in plan.edges(batch))
            step(loss_fn(pushed, ys) + settings.edge_weight * edge_excess(raw, *edges, settings),
                 decay=0.5 * (1 + math.cos(math.pi * k / max(settings.refine_steps, 1))))
            tick(warm_steps + k + 1)
        net = net.cpu().eval()
    finally:
        torch.set_num_threads(threads)
    return NumpyCMGN.from_torch(net) if isinstance(net, CMGN) else TorchMonotoneMap(net)
