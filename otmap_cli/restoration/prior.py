"""The flow-matching prior: an x1-predictor D(x_t, t) = E[x1 | x_t] on images in [-1, 1].

Path (PnP-Flow, Martin et al. ICLR 2025, Sec. 2): x_t = t*x1 + (1-t)*eps, t = 1 is data. The
velocity of the flow is v(x, t) = (D(x, t) - x) / (1 - t), so one network is both the flow and,
through z = x_t / t = x1 + sigma*eps with sigma = (1-t)/t, a Gaussian denoiser for every sigma.

The network is wrapped in the preconditioning of Karras et al. (EDM, NeurIPS 2022, Table 1),
written in terms of t so that it stays finite at t = 0:
    D = c_skip * z + c_out * F(c_in * z, c_noise),  sigma_data = 0.5,
    c_in * z   = x_t / r,   c_skip * z = sigma_data^2 * t * x_t / r^2,   c_out = (1-t) * sigma_data / r,
    r = sqrt((1-t)^2 + sigma_data^2 t^2),  c_noise = log(sigma) / 4.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from otmap_cli.device import inference_autocast
from otmap_cli.nets.unet import TimeUNet
from otmap_cli.weights import load_model, save_half, shipped_model

MODEL_KIND = "flow-prior"
PRIOR_FILE = "flow_natural.safetensors"  # the shipped prior, in models/

SIGMA_DATA = 0.5
T_MIN = 1e-4
T_MAX = 1.0 - 1e-5


def _coefficients(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    t = t.clamp(T_MIN, T_MAX)
    r = torch.sqrt((1 - t) ** 2 + SIGMA_DATA**2 * t**2)
    in_scale = 1.0 / r
    skip_scale = SIGMA_DATA**2 * t / r**2
    out_scale = (1 - t) * SIGMA_DATA / r
    c_noise = torch.log((1 - t) / t) / 4
    return in_scale, skip_scale, out_scale, c_noise


class FlowPrior(nn.Module):
    """D(x_t, t): the conditional mean of the clean image (in [-1, 1]) given the flow state."""

    def __init__(self, net: TimeUNet):
        super().__init__()
        self.net = net

    CONFIG_FIELDS = TimeUNet.CONFIG_FIELDS

    @classmethod
    def from_config(cls, config: dict) -> "FlowPrior":
        """Build from a config; a config read from a file goes through ``weights.load_model`` with
        ``CONFIG_FIELDS`` first (see :func:`load_prior`)."""
        return cls(TimeUNet(**config))

    @property
    def config(self) -> dict:
        return self.net.config

    def raw_and_target(self, x1: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """Network output and its regression target (the EDM loss with uniform effective weight)."""
        in_s, skip_s, out_s, c_noise = (c.view(-1, 1, 1, 1) for c in _coefficients(t))
        raw = self.net(x_t * in_s, c_noise.view(-1))
        target = (x1 - skip_s * x_t) / out_s
        return raw, target

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        in_s, skip_s, out_s, c_noise = (c.view(-1, 1, 1, 1) for c in _coefficients(t))
        precision = contextlib.nullcontext() if self.training else inference_autocast(x_t.device.type)
        net_input = x_t * in_s
        if not self.training:  # oneDNN's fast convolutions want NHWC (see load_prior)
            net_input = net_input.contiguous(memory_format=torch.channels_last)
        with precision:
            residual = self.net(net_input, c_noise.view(-1))
        return skip_s * x_t + out_s * residual.to(x_t.dtype)

    def denoise(self, noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        return mmse_denoise(self, noisy, sigma)


def load_prior(path, device: str = "cpu") -> FlowPrior:
    """A flow prior file (written by :func:`export_prior`) on ``device``, in eval mode, weights in channels-last
    layout (with channels-last inputs, oneDNN's bfloat16 convolutions run much faster on CPU; docs/decisions.md).
    Any other or crafted file is an InputError, refused before anything is built (``weights.load_model``)."""
    prior, _ = load_model(path, MODEL_KIND, FlowPrior.CONFIG_FIELDS, FlowPrior.from_config)
    return prior.to(device, memory_format=torch.channels_last)


def default_prior(device: str = "cpu") -> FlowPrior:
    """The shipped prior ``models/flow_natural.safetensors``."""
    return load_prior(shipped_model(PRIOR_FILE), device)


def export_prior(ema: FlowPrior, out, meta: dict) -> None:
    """Ship weights as fp16 safetensors with the configuration in the metadata."""
    save_half(out, ema, MODEL_KIND, meta)


def mmse_denoise(prior, noisy: torch.Tensor, sigma: float, ensemble: int = 1) -> torch.Tensor:
    """MMSE Gaussian denoiser for images in [-1, 1] with noise std ``sigma``, from any x1-predictor
    ``prior(x_t, t)``: y = x1 + sigma eps is x_t / t at t = 1 / (1 + sigma), so E[x1 | y] = D_t(t y).

    ``ensemble`` (1, 2, 4 or 8) averages the estimate over that many of the 8 flips and quarter turns
    of the image (the "x8" self-ensemble of Timofte, Rothe, Van Gool, CVPR 2016): the exact posterior
    mean is invariant to them, a learned one only nearly, and the average removes part of its error.
    The first views are the identity, the half turn and the two mirror images.
    """
    if ensemble not in VIEWS:
        raise ValueError(f"ensemble must be one of {sorted(VIEWS)}, got {ensemble}")
    t = torch.full((noisy.shape[0],), 1.0 / (1.0 + sigma), device=noisy.device, dtype=noisy.dtype)
    x_t = noisy * t.view(-1, 1, 1, 1)
    total = torch.zeros_like(noisy)
    for view in VIEWS[ensemble]:
        total += from_view(prior(to_view(x_t, view), t), view)
    return total / ensemble


def to_view(x: torch.Tensor, view: tuple[int, bool]) -> torch.Tensor:
    """``x`` (n, c, h, w) turned by ``view`` = (quarter turns, mirror), one of :data:`VIEWS`."""
    turns, flip = view
    x = torch.rot90(x, turns, (2, 3))
    return x.flip(3) if flip else x


def from_view(x: torch.Tensor, view: tuple[int, bool]) -> torch.Tensor:
    """The inverse of :func:`to_view`."""
    turns, flip = view
    return torch.rot90(x.flip(3) if flip else x, -turns, (2, 3))


_ALL_VIEWS = ((0, False), (2, False), (0, True), (2, True), (1, False), (3, False), (1, True), (3, True))
VIEWS = {n: _ALL_VIEWS[:n] for n in (1, 2, 4, 8)}  # (quarter turns, mirror) of each view


class AsDeepinvDenoiser(nn.Module):
    """Any x1-predictor as an MMSE denoiser in deepinv's interface (x in [0, 1], noise std sigma in
    [0, 1] units): for ``otmap restore --solver mmse`` and deepinv's plug-and-play algorithms (DPIR)."""

    def __init__(self, prior, ensemble: int = 1):
        super().__init__()
        self.prior, self.ensemble = prior, ensemble

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = float(torch.as_tensor(sigma).flatten()[0])
        with torch.no_grad():
            return (mmse_denoise(self.prior, 2 * x - 1, 2 * sigma, self.ensemble) + 1) / 2
