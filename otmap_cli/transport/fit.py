"""Fitting a monotone gradient network that pushes one point cloud (pixel colours) onto another.

The fit never needs the whole image: a few tens of thousands of random pixels describe a photo's
colour distribution, so it costs the same for 0.3 and 50 megapixels. Three stages:

1. closed-form Gaussian Brenier map (``gaussian.py``) as the starting point, so even a short fit
   starts at the classical MKL transfer;
2. optional warm start: both samples are summarised as weighted colour histograms (the centroid
   and pixel count of every occupied cell of a ``summary_bins``^3 grid), exact discrete OT (POT
   ``ot.emd``) between the two histograms gives each source cell its barycentric target, and
   full-batch weighted regression of T onto those targets lands close to the Brenier map (a
   monotone gradient fitted to an optimal plan is a smoothed Brenier map). The histogram keeps all
   the sampled pixels at a fraction of the points, so the exact OT and each step are cheap;
3. minimising a distribution loss (``losses.py``) on fresh mini-batches, Adam with cosine decay.

For a C-MGN on the CPU (the default) stages 2 and 3 take their gradients from a hand-written NumPy
forward/backward pass (``cmgn_forward_backward``; same formula, checked against autograd in the tests):
the steps work on a few hundred to a thousand points, where torch's per-operation overhead, not the
arithmetic, sets the time. Other networks, losses and devices use autograd.

A held-out sliced-W2 check compares the result with the Gaussian map; a fit that is worse or
non-finite falls back to the Gaussian map (reported in ``FitResult.fell_back``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from otmap_cli.nets.monotone import CMGN, MODELS, STRICT_EPS, MonotoneGradientNet
from otmap_cli.progress import Progress, or_silent
from otmap_cli.transport.gaussian import gaussian_brenier
from otmap_cli.transport.losses import SlicedWasserstein, make_loss
from otmap_cli.transport.settings import FitSettings

FIT_PHASE = "fitting map"
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
    """Sliced W2 (not squared) on equal-size samples, for quick held-out checks (NumPy sorts, see losses)."""
    with torch.no_grad():
        return float(SlicedWasserstein(projections, seed)(a.double(), b.double()).sqrt())


class Adam:
    """Adam (Kingma & Ba, ICLR 2015, Algorithm 1) with per-group learning rates and a decay factor.

    Hand-written because the first ``torch.optim`` optimizer imports ``torch._dynamo``, which costs
    about as much CPU time as importing torch itself (docs/decisions.md).
    """

    def __init__(self, groups: list[tuple[list[torch.Tensor], float]], betas=(0.9, 0.999), eps: float = 1e-8):
        self.groups = [(params, lr) for params, lr in groups if params]
        self.beta1, self.beta2, self.eps = betas[0], betas[1], eps
        self.moments = {id(p): (torch.zeros_like(p), torch.zeros_like(p)) for params, _ in self.groups for p in params}
        self.steps = 0

    def step(self, loss: torch.Tensor, decay: float = 1.0) -> None:
        params = [p for group, _ in self.groups for p in group]
        self.apply(dict(zip(map(id, params), torch.autograd.grad(loss, params, allow_unused=True))), decay)

    def apply(self, grads_by_param: dict[int, torch.Tensor | None], decay: float = 1.0) -> None:
        """One update from gradients keyed by ``id(parameter)``."""
        self.steps += 1
        correction1, correction2 = 1 - self.beta1**self.steps, 1 - self.beta2**self.steps
        with torch.no_grad():
            for group, lr in self.groups:
                for p in group:
                    grad = grads_by_param.get(id(p))
                    if grad is None:
                        continue
                    first, second = self.moments[id(p)]
                    first.mul_(self.beta1).add_(grad, alpha=1 - self.beta1)
                    second.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
                    denom = (second / correction2).sqrt_().add_(self.eps)
                    p.addcdiv_(first, denom, value=-lr * decay / correction1)


EDGE_TOLERANCE = 2 / 255  # a barycentric target this close to the gamut edge counts as on it
# where the target is on the edge the map may run past it, at this fraction of the cost elsewhere: enough
# to keep the region from drifting far out (chosen on the clipped-fraction column, docs/decisions.md)
ALLOWED_OVERSHOOT_WEIGHT = 0.03


def _cell_codes(points: torch.Tensor, bins: int) -> torch.Tensor:
    cells = (points.clamp(0, 1) * (bins - 1e-6)).long()
    code = torch.zeros(len(points), dtype=torch.long)
    for axis in range(points.shape[1]):
        code = code * bins + cells[:, axis]
    return code


def colour_histogram(points: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes, centroids and weights (summing to 1) of the occupied cells of a ``bins``^d grid on [0, 1]^d."""
    occupied, index, counts = torch.unique(_cell_codes(points, bins), return_inverse=True, return_counts=True)
    sums = torch.zeros(len(occupied), points.shape[1], dtype=torch.float64).index_add_(0, index, points.double())
    return occupied, (sums / counts[:, None]).float(), (counts / len(points)).float()


@dataclass
class HistogramPlan:
    """Exact OT (POT ``ot.emd``) between two colour histograms: each source cell's barycentric target.

    It also says where the map may run past the gamut edge: only in the cells, and the channels,
    whose optimal target lies on that edge (a style's blown sky or black shadows). Everywhere else
    the clip would erase detail the style does not ask to erase.
    """

    bins: int
    centroids: torch.Tensor
    weights: torch.Tensor
    targets: torch.Tensor
    on_low: torch.Tensor  # (bins^d, d) bool: the cell's target is on the lower edge in that channel
    on_high: torch.Tensor

    @classmethod
    def fit(cls, source: torch.Tensor, target: torch.Tensor, bins: int,
            output_range: tuple[float, float] | None) -> "HistogramPlan":
        import ot

        codes, xs, a = colour_histogram(source, bins)
        _, ys, b = colour_histogram(target, bins)
        a64, b64 = a.double().numpy(), b.double().numpy()
        plan = ot.emd(a64 / a64.sum(), b64 / b64.sum(), ot.dist(xs.double().numpy(), ys.double().numpy()),
                      numItermax=10_000_000)
        plan = torch.from_numpy(plan).float()
        targets = (plan @ ys) / plan.sum(1, keepdim=True).clamp_min(1e-12)
        on_low = torch.zeros(bins ** source.shape[1], source.shape[1], dtype=torch.bool)
        on_high = torch.zeros_like(on_low)
        if output_range is not None:
            on_low[codes] = targets <= output_range[0] + EDGE_TOLERANCE
            on_high[codes] = targets >= output_range[1] - EDGE_TOLERANCE
        return cls(bins, xs, a / a.sum(), targets, on_low, on_high)

    def edges(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = _cell_codes(x.cpu(), self.bins)
        return self.on_low[codes].to(x.device), self.on_high[codes].to(x.device)


def _gamut_clip(raw: torch.Tensor, on_low: torch.Tensor, on_high: torch.Tensor,
                output_range: tuple[float, float] | None) -> torch.Tensor:
    """T(x) clipped at the edges where the plan sends x onto them, and left free elsewhere."""
    if output_range is None:
        return raw
    low, high = output_range
    return torch.where(on_high, raw.clamp_max(high), torch.where(on_low, raw.clamp_min(low), raw))


def _pushed(net: MonotoneGradientNet, x: torch.Tensor, settings: FitSettings) -> torch.Tensor:
    """T(x), clipped to ``output_range`` when the result will be clipped anyway (colours in [0, 1])."""
    out = net(x)
    return out if settings.output_range is None else out.clamp(*settings.output_range)


def _edge_excess(raw: torch.Tensor, on_low: torch.Tensor, on_high: torch.Tensor,
                 settings: FitSettings, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared distance of T(x) past the gamut edges it is not allowed to pass (see HistogramPlan).

    The distribution loss sees the clipped output, so it lets the map reach a point mass that the
    style has on the edge (the Brenier map must collapse a region there, which a map with a PSD
    Jacobian bounded below can only do by running onto or past the edge). But a pixel past the edge
    gets no gradient from a clipped loss, and nothing would stop a whole region from drifting out and
    turning flat black or white; this term pulls back the pixels whose target is inside the gamut.
    """
    if settings.output_range is None or settings.edge_weight == 0:
        return raw.new_zeros(())
    low, high = settings.output_range
    below = (low - raw).clamp_min(0).pow(2) * (1 - (1 - ALLOWED_OVERSHOOT_WEIGHT) * on_low.float())
    above = (raw - high).clamp_min(0).pow(2) * (1 - (1 - ALLOWED_OVERSHOOT_WEIGHT) * on_high.float())
    per_point = (below + above).sum(1)
    return per_point.mean() if weights is None else (per_point * weights).sum()


def _warm_start(net, plan: HistogramPlan, settings, optimizer, tick) -> None:
    """Weighted regression onto the barycentric map of the exact OT plan between colour histograms."""
    xs, targets, weights = (t.to(settings.device) for t in (plan.centroids, plan.targets, plan.weights))
    on_low, on_high = plan.edges(xs)
    if _by_hand(net, settings):
        return _warm_start_numpy(net, xs, targets, weights, on_low, on_high, settings, optimizer, tick)
    for step in range(settings.warm_steps):
        optimizer.step(_warm_loss(net(xs), targets, weights, on_low, on_high, settings))
        tick(step + 1)


def _warm_loss(raw: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, on_low: torch.Tensor,
               on_high: torch.Tensor, settings: FitSettings) -> torch.Tensor:
    """Weighted squared error of the edge-clipped T(x) to the targets, plus the pull back of ``_edge_excess``.

    The pull back matters here as much as in the refinement: without it a cell next to one whose
    target is on the edge is dragged past the edge with it, and the clip then flattens that region.
    """
    pushed = _gamut_clip(raw, on_low, on_high, settings.output_range)
    return ((pushed - targets).pow(2).sum(1) * weights).sum() + settings.edge_weight * _edge_excess(
        raw, on_low, on_high, settings, weights)


def _warm_gradient(raw: np.ndarray, targets: np.ndarray, weights: np.ndarray, on_low: np.ndarray,
                   on_high: np.ndarray, settings: FitSettings) -> np.ndarray:
    """d/dT of ``_warm_loss``, in NumPy (``weights`` is (N, 1))."""
    low, high = settings.output_range or (-np.inf, np.inf)
    clipped = np.where(on_high, np.minimum(raw, high), np.where(on_low, np.maximum(raw, low), raw))  # _gamut_clip
    grad = 2 * weights * (clipped - targets) * (clipped == raw)
    if settings.edge_weight and settings.output_range is not None:
        grad += settings.edge_weight * weights * _edge_pull(raw, on_low, on_high, low, high)
    return grad


def _edge_pull(raw: np.ndarray, on_low: np.ndarray, on_high: np.ndarray, low: float, high: float) -> np.ndarray:
    """d/dT of the per-point sum in ``_edge_excess``."""
    below = np.maximum(low - raw, 0) * np.where(on_low, ALLOWED_OVERSHOOT_WEIGHT, 1).astype(raw.dtype)
    above = np.maximum(raw - high, 0) * np.where(on_high, ALLOWED_OVERSHOOT_WEIGHT, 1).astype(raw.dtype)
    return 2 * (above - below)


def _by_hand(net, settings) -> bool:
    """Whether the fit takes its gradients from ``cmgn_forward_backward`` (a C-MGN on the CPU)."""
    return isinstance(net, CMGN) and torch.device(settings.device).type == "cpu"


def _refine_gradient(raw: np.ndarray, target: np.ndarray, on_low: np.ndarray, on_high: np.ndarray,
                     loss_fn: SlicedWasserstein, settings: FitSettings) -> np.ndarray:
    """d/dT of the refinement loss (sliced W2 of the clipped output + the pull back of ``_edge_excess``)."""
    if settings.output_range is None:
        return loss_fn.gradient(raw, target)
    low, high = settings.output_range
    pushed = np.clip(raw, low, high)
    grad = loss_fn.gradient(pushed, target) * (pushed == raw)
    if settings.edge_weight:
        grad += settings.edge_weight / len(raw) * _edge_pull(raw, on_low, on_high, low, high)
    return grad


def _softplus_and_sigmoid(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e = np.exp(-np.abs(z))
    inverse = 1 / (1 + e)
    return np.maximum(z, 0) + np.log1p(e), np.where(z >= 0, inverse, e * inverse)


def cmgn_forward_backward(params: dict[str, np.ndarray], x: np.ndarray,
                          loss_grad: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """Gradients of loss(T(x)) for a C-MGN (``nets.monotone.CMGN``, same formula), by hand in NumPy.

    ``loss_grad(T)`` returns dloss/dT. The warm start takes thousands of steps on a few hundred
    points, where each torch operation's overhead, not arithmetic, sets the time: this is ~3x faster
    per step than torch autograd (docs/decisions.md). A test checks it against autograd.
    """
    V, W, layer_bias, gain_raw = params["V"], params["W"], params["layer_bias"], params["gain_raw"]
    wx = x @ W.T
    z = wx + layer_bias[0]
    slopes = []
    for bias in layer_bias[1:]:
        soft, slope = _softplus_and_sigmoid(z)
        slopes.append(slope)
        z = wx + soft + bias
    soft, slope = _softplus_and_sigmoid(z)
    gain, gain_slope = _softplus_and_sigmoid(gain_raw)
    hidden = soft * gain
    matrix = V.T @ V + STRICT_EPS * np.eye(len(V), dtype=V.dtype)
    d_out = loss_grad(x @ matrix + params["bias"] + hidden @ W)
    d_matrix = x.T @ d_out
    d_hidden = d_out @ W.T
    grads = {"V": V @ (d_matrix + d_matrix.T), "bias": d_out.sum(0), "gain_raw": (d_hidden * soft).sum(0) * gain_slope}
    dz = d_hidden * gain * slope
    d_layer_bias = np.empty_like(layer_bias)
    d_wx = np.zeros_like(wx)
    for layer in range(len(layer_bias) - 1, 0, -1):  # z_l = W x + softplus(z_{l-1}) + b_l
        d_layer_bias[layer] = dz.sum(0)
        d_wx += dz
        dz = dz * slopes[layer - 1]
    d_layer_bias[0] = dz.sum(0)
    d_wx += dz
    grads["layer_bias"] = d_layer_bias
    grads["W"] = hidden.T @ d_out + d_wx.T @ x
    return grads


def _warm_start_numpy(net, xs, targets, weights, on_low, on_high, settings, optimizer, tick) -> None:
    """The weighted regression of ``_warm_start`` for a C-MGN, with NumPy gradients (same loss)."""
    named = dict(net.named_parameters())
    params = {name: p.detach().numpy() for name, p in named.items()}  # views: Adam updates them in place
    arrays = targets.numpy(), weights.numpy()[:, None], on_low.numpy(), on_high.numpy()
    for step in range(settings.warm_steps):
        grads = cmgn_forward_backward(params, xs.numpy(), lambda raw: _warm_gradient(raw, *arrays, settings))
        optimizer.apply({id(named[name]): torch.from_numpy(g) for name, g in grads.items()})
        tick(step + 1)


def fit_monotone_map(source: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor,
                     settings: FitSettings | None = None, progress: Progress | None = None,
                     net: MonotoneGradientNet | None = None) -> FitResult:
    """Fit T = grad(phi) with T#source ~= target; both are (N, d) point clouds (pixel colours).

    ``progress`` gets one phase, "fitting map · step k/N", from k = 0 (before the exact OT of the
    warm start) to N = warm steps + steps.

    Runs on one CPU thread: each step works on a few thousand points, where the threads' hand-offs
    cost more than they save, and far more on a busy machine (docs/decisions.md).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(source, target, settings, progress, net)
    finally:
        torch.set_num_threads(threads)


def _fit(source, target, settings, progress, net) -> FitResult:
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
    net = net or MODELS[settings.model](dim=dim, **settings.model_options)
    net.init_from_affine(matrix, offset, sample_rows(source, 4096, rng))
    net.to(settings.device)
    total = settings.warm_steps + settings.steps
    report = or_silent(progress)

    def tick(done: int) -> None:  # one phase counted in steps: warm start and distribution loss together
        report(done, total, f"{FIT_PHASE} · step {done}/{total}")

    tick(0)
    gains = [p for name, p in net.named_parameters() if name == "gain_raw"]
    others = [p for name, p in net.named_parameters() if name != "gain_raw"]
    # gains are exp-like (softplus far left): a larger step lets them grow by e^1 in ~10 steps
    optimizer = Adam([(others, settings.lr), (gains, 10 * settings.lr)])
    plan = HistogramPlan.fit(source, target, settings.summary_bins, settings.output_range)
    _warm_start(net, plan, settings, optimizer, tick)
    loss_fn = make_loss(settings.loss, dim, seed=settings.seed)
    by_hand = _by_hand(net, settings) and isinstance(loss_fn, SlicedWasserstein)
    named = dict(net.named_parameters())
    params = {name: p.detach().numpy() for name, p in named.items()} if by_hand else {}  # views, as in the warm start
    for step in range(settings.steps):
        xs = sample_rows(source, settings.batch, rng).to(settings.device)
        ys = sample_rows(target, settings.batch, rng).to(settings.device)
        decay = 0.5 * (1 + math.cos(math.pi * step / max(settings.steps, 1)))  # cosine
        if by_hand:
            on_low, on_high = (edge.numpy() for edge in plan.edges(xs))
            grads = cmgn_forward_backward(params, xs.numpy(), lambda raw: _refine_gradient(
                raw, ys.numpy(), on_low, on_high, loss_fn, settings))
            optimizer.apply({id(named[name]): torch.from_numpy(g) for name, g in grads.items()}, decay)
        else:
            raw = net(xs)
            pushed = raw if settings.output_range is None else raw.clamp(*settings.output_range)
            loss_fn.update(pushed, ys)
            loss = loss_fn(pushed, ys) + settings.edge_weight * _edge_excess(raw, *plan.edges(xs), settings)
            optimizer.step(loss, decay=decay)
        tick(settings.warm_steps + step + 1)
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
