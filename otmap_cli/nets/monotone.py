"""Monotone gradient networks: maps R^d -> R^d whose Jacobian is symmetric PSD by construction.

Such a map is the gradient of a convex potential, so by Brenier's theorem any such map that pushes
mu onto nu *is* the optimal transport map for the squared Euclidean cost.

Both networks (Chaudhari, Pranav, Moura, "Learning Gradients of Convex Functions with Monotone
Gradient Networks", ICASSP 2023; "Gradient Networks", IEEE TSP 2025) are written as

    T(x) = b + (V^T V + eps I) x + N(x),

an affine part with a PSD matrix (eps > 0 makes T strictly monotone, hence invertible) plus a
nonlinear monotone-gradient part N. Each hidden unit / module carries a non-negative gain
c = softplus(rho): the Jacobian stays PSD, and starting the gains near zero (where softplus is an
exponential, so Adam grows them multiplicatively) lets a fit begin
exactly at a given affine map (e.g. the closed-form Gaussian Brenier map) while the hidden
features are already spread over the data.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from otmap_cli.errors import InputError
from otmap_cli.nets.monotone_numpy import DEFAULTS, INIT_SPREAD, STRICT_EPS, inverse_softplus


class MonotoneGradientNet(nn.Module):
    """Shared affine part and initialisation for C-MGN and M-MGN; subclasses define ``nonlinear``."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.V = nn.Parameter(torch.eye(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def linear_matrix(self) -> torch.Tensor:
        return self.V.T @ self.V + STRICT_EPS * torch.eye(self.dim, device=self.V.device)

    def nonlinear(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.linear_matrix() + self.bias + self.nonlinear(x)

    @property
    def config(self) -> dict:
        raise NotImplementedError

    @torch.no_grad()
    def init_from_affine(self, matrix: torch.Tensor, offset: torch.Tensor, anchors: torch.Tensor) -> None:
        """Start at T(x) ~= matrix @ x + offset (matrix symmetric PD), hidden units cut through ``anchors``.

        Each hidden hyperplane w.(x - p) = 0 passes through a random data point p with a random
        direction w of norm ``sharpness`` (Chaudhari et al. leave initialisation open; putting the
        kinks where the data is makes every unit useful from the first step).
        """
        evals, evecs = torch.linalg.eigh(0.5 * (matrix + matrix.T))
        root = evecs @ torch.diag((evals - STRICT_EPS).clamp_min(1e-6).sqrt()) @ evecs.T
        self.V.copy_(root)
        self._init_hidden(anchors)
        self.gain_raw.fill_(inverse_softplus(1.0))
        spread = self.nonlinear(anchors).std(0).max().clamp_min(1e-12)
        self.gain_raw.fill_(inverse_softplus(float(INIT_SPREAD / spread)))
        residual = self.nonlinear(anchors).mean(0)
        self.bias.copy_(offset - residual)

    def _spread_hyperplanes(self, weight: torch.Tensor, bias: torch.Tensor, anchors: torch.Tensor,
                            sharpness: float) -> None:
        directions = torch.randn_like(weight)
        directions = directions / directions.norm(dim=-1, keepdim=True) * sharpness
        weight.copy_(directions)
        picks = anchors[torch.randint(len(anchors), bias.shape)]
        bias.copy_(-(directions * picks).sum(-1))

    def _init_hidden(self, anchors: torch.Tensor) -> None:
        raise NotImplementedError


class CMGN(MonotoneGradientNet):
    """Cascaded MGN (Chaudhari et al. 2023, Eq. 6), one weight matrix W shared by every layer:

        z_0 = W x + b_0,   z_l = W x + sigma(z_{l-1}) + b_l,   N(x) = W^T diag(c) sigma(z_{L-1}).

    dz_l/dx = M_l W with M_l diagonal >= 0, so J_N = W^T diag(c) D M W is symmetric PSD for any
    non-decreasing sigma (softplus here: smooth, so the map has no kinks that would band gradients).
    """

    def __init__(self, dim: int = 3, width: int = DEFAULTS["cmgn"]["width"], layers: int = DEFAULTS["cmgn"]["layers"],
                 sharpness: float = DEFAULTS["cmgn"]["sharpness"]):
        super().__init__(dim)
        self.width, self.layers, self.sharpness = width, layers, sharpness
        self.W = nn.Parameter(torch.randn(width, dim) / math.sqrt(dim))
        self.layer_bias = nn.Parameter(torch.zeros(layers, width))
        self.gain_raw = nn.Parameter(torch.zeros(width))

    @property
    def config(self) -> dict:
        return {"model": "cmgn", "dim": self.dim, "width": self.width, "layers": self.layers,
                "sharpness": self.sharpness}

    def nonlinear(self, x: torch.Tensor) -> torch.Tensor:
        wx = x @ self.W.T
        z = wx + self.layer_bias[0]
        for bias in self.layer_bias[1:]:
            z = wx + F.softplus(z) + bias
        return (F.softplus(z) * F.softplus(self.gain_raw)) @ self.W

    def _init_hidden(self, anchors: torch.Tensor) -> None:
        self._spread_hyperplanes(self.W, self.layer_bias[0], anchors, self.sharpness)
        wx = anchors @ self.W.T
        z = wx + self.layer_bias[0]
        for bias in self.layer_bias[1:]:  # keep every layer's kinks inside the data cloud
            bias.copy_(-F.softplus(z).mean(0) + self.layer_bias[0])
            z = wx + F.softplus(z) + bias


class MMGN(MonotoneGradientNet):
    """Modular MGN (Chaudhari et al. 2023, Eq. 8), K modules z_k = W_k x + b_k:

        N(x) = sum_k c_k s(z_k) W_k^T tanh(z_k),   s(z) = sum_i log cosh(z_i),

    each term the gradient of c_k s(z_k)^2 / 2, whose Hessian W_k^T (tanh tanh^T + s diag(sech^2)) W_k
    is PSD because s >= 0.
    """

    def __init__(self, dim: int = 3, modules: int = DEFAULTS["mmgn"]["modules"], width: int = DEFAULTS["mmgn"]["width"],
                 sharpness: float = DEFAULTS["mmgn"]["sharpness"]):
        super().__init__(dim)
        self.modules_count, self.width, self.sharpness = modules, width, sharpness
        self.W = nn.Parameter(torch.randn(modules, width, dim) / math.sqrt(dim))
        self.module_bias = nn.Parameter(torch.zeros(modules, width))
        self.gain_raw = nn.Parameter(torch.zeros(modules))

    @property
    def config(self) -> dict:
        return {"model": "mmgn", "dim": self.dim, "modules": self.modules_count, "width": self.width,
                "sharpness": self.sharpness}

    def nonlinear(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.einsum("nd,kwd->nkw", x, self.W) + self.module_bias
        s = (F.softplus(2 * z) - z - math.log(2)).sum(-1, keepdim=True)  # log cosh, overflow-free
        weighted = s * torch.tanh(z) * F.softplus(self.gain_raw)[:, None]
        return torch.einsum("nkw,kwd->nd", weighted, self.W)

    def _init_hidden(self, anchors: torch.Tensor) -> None:
        self._spread_hyperplanes(self.W, self.module_bias, anchors, self.sharpness / math.sqrt(self.width))


MODELS = {"cmgn": CMGN, "mmgn": MMGN}


def build_monotone(config: dict) -> MonotoneGradientNet:
    """Rebuild a network from its ``config`` (as stored in a saved map)."""
    options = dict(config)
    model = options.pop("model")
    if model not in MODELS:
        raise InputError(f"unknown monotone network {model!r}")
    return MODELS[model](**options)


class TorchMonotoneMap:
    """A torch monotone network behind the NumPy interface of ``NumpyCMGN`` (call, config, state_dict),
    so a colour map applies and saves it the same way."""

    def __init__(self, net: MonotoneGradientNet):
        self.module = net.cpu().eval()

    @property
    def config(self) -> dict:
        return self.module.config

    def state_dict(self) -> dict:
        return {name: value.detach().numpy() for name, value in self.module.state_dict().items()}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
