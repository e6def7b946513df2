"""Monotone gradient networks without torch: the schema of a stored network, and the C-MGN in NumPy.

A colour map is a C-MGN on three inputs, fitted on a few thousand colours and applied to at most
a 65^3 grid or an image's distinct colours: every operation is small, so NumPy is as fast as
torch there, and ``otmap recolor`` / ``otmap apply`` then never import torch, whose import alone
cost more CPU than the whole fit (docs/decisions.md, "A colour map without torch").
``nets.monotone`` holds the torch networks (the M-MGN, the MNIST generator, fits on CUDA); the
formula is the same, and tests check the two against each other.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from otmap_cli.errors import InputError
from otmap_cli.weights import Choice, Number

STRICT_EPS = 1e-3  # T(x) = b + (V^T V + eps I) x + N(x): eps > 0 makes T strictly monotone
INIT_SPREAD = 1e-3  # std of the nonlinear part over the data at initialisation

# the constructors' defaults (nets.monotone), for configs that leave a size out
DEFAULTS = {"cmgn": {"width": 128, "layers": 3, "sharpness": 8.0},
            "mmgn": {"modules": 8, "width": 16, "sharpness": 4.0}}
_SHARPNESS = Number(float, 0.0, 1e6)
CONFIG_FIELDS = {  # what a stored config may hold; sizes beyond these are not networks we would fit
    "cmgn": {"model": Choice(("cmgn",)), "dim": Number(int, 1, 4096), "width": Number(int, 1, 1 << 20),
             "layers": Number(int, 1, 1024), "sharpness": _SHARPNESS},
    "mmgn": {"model": Choice(("mmgn",)), "dim": Number(int, 1, 4096), "modules": Number(int, 1, 4096),
             "width": Number(int, 1, 1 << 16), "sharpness": _SHARPNESS},
}


def monotone_config_fields(config: dict) -> dict:
    """The schema a stored monotone-network config must fit (see ``weights.load_model``)."""
    model = config.get("model")
    if not isinstance(model, str) or model not in CONFIG_FIELDS:
        raise InputError(f"unknown monotone network {str(model)[:40]!r}; expected one of {', '.join(CONFIG_FIELDS)}")
    return CONFIG_FIELDS[model]


def monotone_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of the network ``config`` describes, computed without building it (for loading files)."""
    options = {"dim": 3, **DEFAULTS[config["model"]], **config}
    dim, width = options["dim"], options["width"]
    shapes = {"V": (dim, dim), "bias": (dim,)}
    if config["model"] == "cmgn":
        return {**shapes, "W": (width, dim), "layer_bias": (options["layers"], width), "gain_raw": (width,)}
    modules = options["modules"]
    return {**shapes, "W": (modules, width, dim), "module_bias": (modules, width), "gain_raw": (modules,)}


def inverse_softplus(y: float) -> float:
    return math.log(math.expm1(y))


def softplus_and_sigmoid(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """softplus(z) and its derivative, overflow-free."""
    e = np.exp(-np.abs(z))
    inverse = 1 / (1 + e)
    return np.maximum(z, 0) + np.log1p(e), np.where(z >= 0, inverse, e * inverse)


def cmgn_forward_backward(params: dict[str, np.ndarray], x: np.ndarray,
                          loss_grad: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """Gradients of loss(T(x)) for a C-MGN (:class:`NumpyCMGN`), by hand.

    ``loss_grad(T)`` returns dloss/dT. The warm start takes hundreds of steps on a few hundred
    points, where each torch operation's overhead, not arithmetic, set the time: this was ~3x faster
    per step than torch autograd (docs/decisions.md). A test checks it against autograd.
    """
    V, W, layer_bias, gain_raw = params["V"], params["W"], params["layer_bias"], params["gain_raw"]
    wx = x @ W.T
    z = wx + layer_bias[0]
    slopes = []
    for bias in layer_bias[1:]:
        soft, slope = softplus_and_sigmoid(z)
        slopes.append(slope)
        z = wx + soft + bias
    soft, slope = softplus_and_sigmoid(z)
    gain, gain_slope = softplus_and_sigmoid(gain_raw)
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


class NumpyCMGN:
    """Cascaded MGN (Chaudhari et al. 2023, Eq. 6; ``nets.monotone.CMGN`` has the derivation):

        T(x) = b + (V^T V + eps I) x + W^T diag(softplus(rho)) softplus(z_{L-1}),
        z_0 = W x + b_0,   z_l = W x + softplus(z_{l-1}) + b_l.

    Parameters are float32 arrays in ``params``, named as the torch module's state dict, so a
    saved map reads the same in both.
    """

    def __init__(self, dim: int = 3, width: int = DEFAULTS["cmgn"]["width"], layers: int = DEFAULTS["cmgn"]["layers"],
                 sharpness: float = DEFAULTS["cmgn"]["sharpness"], params: dict[str, np.ndarray] | None = None):
        self.dim, self.width, self.layers, self.sharpness = dim, width, layers, sharpness
        shapes = monotone_shapes(self.config)
        self.params = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()} if params is None else {
            name: np.ascontiguousarray(params[name], dtype=np.float32) for name in shapes}
        if params is None:
            self.params["V"][:] = np.eye(dim)

    @property
    def config(self) -> dict:
        return {"model": "cmgn", "dim": self.dim, "width": self.width, "layers": self.layers,
                "sharpness": self.sharpness}

    def state_dict(self) -> dict[str, np.ndarray]:
        return dict(self.params)

    def linear_matrix(self) -> np.ndarray:
        V = self.params["V"]
        return V.T @ V + STRICT_EPS * np.eye(self.dim, dtype=np.float32)

    def nonlinear(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        wx = x @ p["W"].T
        z = wx + p["layer_bias"][0]
        for bias in p["layer_bias"][1:]:
            z = wx + softplus_and_sigmoid(z)[0] + bias
        return (softplus_and_sigmoid(z)[0] * softplus_and_sigmoid(p["gain_raw"])[0]) @ p["W"]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return x @ self.linear_matrix() + self.params["bias"] + self.nonlinear(x)

    def forward_backward(self, x: np.ndarray, loss_grad: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
        return cmgn_forward_backward(self.params, x, loss_grad)

    def init_from_affine(self, matrix: np.ndarray, offset: np.ndarray, anchors: np.ndarray,
                         rng: np.random.Generator) -> None:
        """Start at T(x) ~= x @ matrix + offset (matrix symmetric PD), hidden units cut through ``anchors``.

        Each hidden hyperplane w.(x - p) = 0 passes through a random data point p with a random
        direction w of norm ``sharpness`` (Chaudhari et al. leave initialisation open; putting the
        kinks where the data is makes every unit useful from the first step); each later layer's bias
        centres its kinks on the data too. The gains start so small that T is the affine map.
        """
        p = self.params
        matrix = np.asarray(matrix, dtype=np.float64)
        evals, evecs = np.linalg.eigh(0.5 * (matrix + matrix.T))
        p["V"][:] = evecs @ np.diag(np.sqrt(np.clip(evals - STRICT_EPS, 1e-6, None))) @ evecs.T
        anchors = np.asarray(anchors, dtype=np.float32)
        directions = rng.standard_normal((self.width, self.dim)).astype(np.float32)
        p["W"][:] = directions / np.linalg.norm(directions, axis=1, keepdims=True) * self.sharpness
        picks = anchors[rng.integers(len(anchors), size=self.width)]
        p["layer_bias"][0] = -(p["W"] * picks).sum(1)
        wx = anchors @ p["W"].T
        z = wx + p["layer_bias"][0]
        for layer in range(1, self.layers):
            soft = softplus_and_sigmoid(z)[0]
            p["layer_bias"][layer] = -soft.mean(0) + p["layer_bias"][0]
            z = wx + soft + p["layer_bias"][layer]
        p["gain_raw"][:] = inverse_softplus(1.0)
        spread = max(float(self.nonlinear(anchors).std(0, ddof=1).max()), 1e-12)
        p["gain_raw"][:] = inverse_softplus(INIT_SPREAD / spread)
        p["bias"][:] = np.asarray(offset, dtype=np.float32) - self.nonlinear(anchors).mean(0)

    def to_torch(self):
        """The same network as a ``nets.monotone.CMGN`` (for autograd or CUDA)."""
        import torch

        from otmap_cli.nets.monotone import CMGN

        net = CMGN(self.dim, self.width, self.layers, self.sharpness)
        net.load_state_dict({name: torch.from_numpy(value.copy()) for name, value in self.params.items()})
        return net.eval()

    @classmethod
    def from_torch(cls, net) -> "NumpyCMGN":
        return cls(net.dim, net.width, net.layers, net.sharpness,
                   params={name: value.detach().cpu().numpy() for name, value in net.state_dict().items()})
