"""Convolutional potentials psi: R^(1x28x28) -> R, whose gradient is an image-to-image map.

``DecoderPotential`` (end of the file) is the one the shipped generator uses; ``ConvPotential``
was the first, and stays as the architecture of the input-convex baseline. It is one
architecture with two modes, so that a comparison isolates the constraint and nothing else:

* ``convex=False``: an unconstrained conv net with smooth activations, the potential of the
  Brenier-GAN (Drygala, Gottschalk, Kruse, Martin, Muetze 2025, arXiv 2504.19779), whose
  convexity is only *promoted* by a penalty during training;
* ``convex=True``: an input-convex conv net (Amos, Xu, Kolter, "Input Convex Neural Networks",
  ICML 2017, Prop. 1): hidden-to-hidden kernels and output weights are non-negative (softplus
  reparameterisation), activations convex and non-decreasing, skip connections from the input
  unconstrained, hence psi is convex in x by construction.

Layout (x: B x 1 x 28 x 28, c1/c2 channels, h hidden units)::

    z1  = s(C1 x + b1)                      14 x 14 x c1
    z2  = s(C2 z1 + S2 x + b2)              7 x 7 x c2
    z3  = s(L3 vec(z2) + S3 vec(x) + b3)    h
    psi = w . z3

Backpropagating psi to x runs a DCGAN-like decoder (dense -> transposed conv -> transposed conv),
its weights tied to the encoder and gated by s'(.) of the forward pass: grad psi has the shape
and size of a small DCGAN generator whose "latent code" is s'(z3) in R^h.

Activations (both convex and non-decreasing, so both modes can use either):

* ``softplus``: s'' <= 1/4, so grad psi is globally Lipschitz and the pushed-forward density
  stays bounded, and s is C-infinity;
* ``recu``: max(0, t)^3 of the paper (C^2, Lipschitz density on bounded sets), but s'' = 6 t is
  unbounded and depth composes cubics.

With ReCU |grad psi| grows far faster than the norm of the noise, and a short adversarial run
left phi clearly non-convex where softplus stayed near convex (docs/decisions.md), so softplus is
the default; ReCU stays selectable to reproduce the paper.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from otmap_cli.weights import Choice, Number, NumberList

IMAGE_SIDE = 28
ACTIVATIONS = ("softplus", "recu")
_CHANNELS = NumberList(Number(int, 1, 4096), 2, 2)
CONV_FIELDS = {"potential": Choice(("conv",)), "channels": _CHANNELS, "hidden": Number(int, 1, 1 << 16),
               "activation_name": Choice(ACTIVATIONS), "convex": Choice((False, True))}
DECODER_FIELDS = {"potential": Choice(("decoder",)), "code": Number(int, 1, IMAGE_SIDE * IMAGE_SIDE),
                  "channels": _CHANNELS, "gain": Number(float, -1e6, 1e6), "convex": Choice((False, True)),
                  "noise_scale": Number(float, 1e-3, 1e3), "pca_source": Choice((False, True))}
_OUTPUT_GAIN = 1e-2  # grad psi starts small: the generator starts at its affine (Gaussian) part


def activation(name: str, t: torch.Tensor) -> torch.Tensor:
    if name == "softplus":
        return F.softplus(t)
    if name == "recu":
        return F.relu(t).pow(3)
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


class ConvPotential(nn.Module):
    """psi(x) for 28 x 28 single-channel inputs; ``forward`` returns one value per sample."""

    def __init__(self, channels: tuple[int, int] = (64, 128), hidden: int = 512,
                 activation_name: str = "softplus", convex: bool = False):
        super().__init__()
        if activation_name not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation_name!r}")
        c1, c2 = channels
        self.channels, self.hidden, self.activation_name, self.convex = (c1, c2), hidden, activation_name, convex
        self.conv1 = nn.Conv2d(1, c1, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 4, stride=2, padding=1, bias=False)
        self.skip2 = nn.Conv2d(1, c2, 4, stride=4)
        self.dense3 = nn.Linear(c2 * 7 * 7, hidden, bias=False)
        self.skip3 = nn.Linear(IMAGE_SIDE * IMAGE_SIDE, hidden)
        self.out = nn.Parameter(torch.randn(hidden) * _OUTPUT_GAIN / math.sqrt(hidden))
        if convex:
            self._init_nonnegative()

    @torch.no_grad()
    def _init_nonnegative(self) -> None:
        """Raw parameters such that softplus(raw) averages the previous layer (mean weight 1/fan-in).

        Positive weights drawn like a signed init would make each layer sum fan-in positive
        activations and saturate softplus into its linear (curvature-free) regime.
        """
        for layer in (self.conv2, self.dense3):
            fan_in = layer.weight[0].numel()
            positive = torch.empty_like(layer.weight).exponential_() / fan_in
            layer.weight.copy_(_inverse_softplus(positive))
        self.out.copy_(_inverse_softplus(torch.full_like(self.out, _OUTPUT_GAIN / self.hidden)))

    @property
    def config(self) -> dict:
        return {"channels": list(self.channels), "hidden": self.hidden,
                "activation_name": self.activation_name, "convex": self.convex}

    def _positive(self, weight: torch.Tensor) -> torch.Tensor:
        return F.softplus(weight) if self.convex else weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.activation_name
        z1 = activation(s, self.conv1(x))
        z2 = activation(s, F.conv2d(z1, self._positive(self.conv2.weight), stride=2, padding=1) + self.skip2(x))
        z3 = activation(s, F.linear(z2.flatten(1), self._positive(self.dense3.weight)) + self.skip3(x.flatten(1)))
        return z3 @ self._positive(self.out)


class DecoderPotential(nn.Module):
    """psi(x) = gain / a * sum_p softplus(a x_p + D(E x)_p): a DCGAN-like decoder D inside a potential.

    Why: in ``ConvPotential`` every backward gate s'(.) of the gradient is set by features of the
    noise itself, so at 14 x 14 the strokes G draws pass through random masks and come out broken.
    Here the pixel gate is decided by a decoder D of a global code y = E x (E: k x 784, orthonormal
    rows, fixed at the k leading principal directions of the data, so y ~ N(0, I_k) for noise):

        grad psi(x) = gain * sigmoid(a x + D(y))  +  gain / a * E^T J_D(y)^T sigmoid(a x + D(y)),

    i.e. a DCGAN-like image plus a correction in the k-dimensional span of E (with ``pca_source``,
    y = E x / std and the correction is divided by std: ``source_noise``). The noise scale a
    (``noise_scale``) sets how much a pixel's own noise x_p moves its gate: at a = 1 it blurs every
    stroke edge by a unit of logit; a smaller a gives crisper edges for a larger span(E) term.
    The Hessian is

        gain / a * (a I + J E)^T diag(s'') (a I + J E)  +  gain / a * E^T [sum_p s'_p Hess D_p(y)] E,

    PSD except for the last term, of rank k: phi has at most k directions of negative curvature
    per point (they mix span(E) with its complement, so the search must still run in all 784
    dimensions), and none at all when every D_p is convex in y. ``convex=True`` makes it so, as
    an ICNN does (Amos et al. 2017): the two transposed convolutions get non-negative weights
    (softplus reparameterisation) after the unconstrained first layer, and softplus is convex
    and non-decreasing. With a smooth (softplus) decoder every term is C-infinity and the
    autograd Hessian is the true one.
    """

    def __init__(self, code: int = 16, channels: tuple[int, int] = (128, 64), gain: float = 2.0,
                 background: float = -4.0, convex: bool = False, noise_scale: float = 1.0,
                 pca_source: bool = False):
        super().__init__()
        c1, c2 = channels
        self.code, self.channels, self.gain, self.convex = code, (c1, c2), gain, convex
        self.noise_scale, self.pca_source = noise_scale, pca_source
        self.register_buffer("encoder", torch.zeros(code, IMAGE_SIDE * IMAGE_SIDE))
        if pca_source:
            self.register_buffer("code_std", torch.ones(code))
        self.dense = nn.Linear(code, c1 * 7 * 7)
        self.up1 = nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1)
        self.up2 = nn.ConvTranspose2d(c2, 1, 4, stride=2, padding=1)
        with torch.no_grad():
            self.up2.bias.fill_(background)  # sigmoid(x - 4) ~ 0.02: the map starts on the background
            if convex:  # each output averages ~4 c_in positive inputs (stride 2, kernel 4)
                for layer in (self.up1, self.up2):
                    fan_in = 4 * layer.weight.shape[0]
                    layer.weight.copy_(_inverse_softplus(torch.empty_like(layer.weight).exponential_() / fan_in))

    @property
    def config(self) -> dict:
        return {"potential": "decoder", "code": self.code, "channels": list(self.channels), "gain": self.gain,
                **({"convex": True} if self.convex else {}),
                **({"noise_scale": self.noise_scale} if self.noise_scale != 1.0 else {}),
                **({"pca_source": True} if self.pca_source else {})}

    def _up(self, layer: nn.ConvTranspose2d, h: torch.Tensor) -> torch.Tensor:
        weight = F.softplus(layer.weight) if self.convex else layer.weight
        return F.conv_transpose2d(h, weight, layer.bias, stride=2, padding=1)

    @torch.no_grad()
    def set_encoder(self, directions: torch.Tensor, std: torch.Tensor | None = None) -> None:
        """E: the rows of ``directions`` (k x 784, orthonormal), e.g. leading principal directions;
        ``std`` (k): the source's standard deviation along each of them (``pca_source`` only)."""
        self.encoder.copy_(directions)
        if self.pca_source and std is not None:
            self.code_std.copy_(std)

    def source_noise(self, z: torch.Tensor) -> torch.Tensor:
        """Standard normal z -> the source noise x: with ``pca_source``, x has the data's standard
        deviations along E (x = z + E^T ((std - 1) * E z)), N(0, I) elsewhere.

        Why: the map's span(E) term is gain / a * E^T J_D(y)^T s'(.) with y = E x / std, so a source
        as wide as the data along E shrinks it by std (1-5 for MNIST) for the same decoder, meant to
        leave the drawing to the sharp gated image s'(a x + D(y)) (measured: it did not; the card,
        session 13). The map is then the
        Brenier map from N(0, Sigma) rather than from N(0, I); phi is checked on that source.
        """
        if not self.pca_source:
            return z
        flat = z.flatten(1)
        return (flat + ((flat @ self.encoder.T) * (self.code_std - 1)) @ self.encoder).view_as(z)

    def code_of(self, x: torch.Tensor) -> torch.Tensor:
        """y = E x (divided by the source's std along E with ``pca_source``): y ~ N(0, I_k) for noise."""
        y = x.flatten(1) @ self.encoder.T
        return y / self.code_std if self.pca_source else y

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        h = F.softplus(self.dense(y)).view(len(y), self.channels[0], 7, 7)
        return self._up(self.up2, F.softplus(self._up(self.up1, h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.noise_scale * x + self.decode(self.code_of(x))
        return self.gain / self.noise_scale * F.softplus(logits).flatten(1).sum(1)
