"""The MNIST generators compared in issue 4, their discriminator, and their safetensors files.

Every generator maps noise of shape ``noise_shape`` (standard normal, or ``source_noise`` of it) to
images in [-1, 1] units (N x 1 x 28 x 28; values outside are clamped only for display) and has a ``config`` from which
:func:`build_generator` rebuilds it. The ones that are gradients of a potential (noise in image
space) can be certified by ``check_convexity``:

* ``brenier``  G = grad phi, phi = alpha/2 |x|^2 + 1/2 |V x|^2 + b.x + psi(x), psi a conv net
  (Brenier-GAN, Drygala et al. 2025): convexity promoted by a penalty in training; psi is a
  ``DecoderPotential`` (``potential="decoder"``) or a plain ``ConvPotential`` (``"conv"``, the
  default of files written before the decoder existed);
* ``icnn``     the same with psi input-convex (comparison (a)): convex by construction;
* ``dcgan``    an unconstrained DCGAN generator (Radford et al. 2016) of similar size (b);
* ``gaussian`` the closed-form Brenier map N(0, I) -> N(m, S), T(z) = m + S^(1/2) z (c);
* ``cmgn``     the fully-connected cascaded monotone gradient network (Chaudhari et al. 2023) (d).

The affine part V^T V x + b of the potential generators starts at the Gaussian map (V = (S^(1/2) -
alpha I)^(1/2)), so training begins from the baseline and only has to learn the nonlinear rest.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from otmap_cli.choices import AFFINE_INPUTS
from otmap_cli.errors import InputError
from otmap_cli.nets.convex import CONV_FIELDS, DECODER_FIELDS, ConvPotential, DecoderPotential
from otmap_cli.nets.monotone import CMGN
from otmap_cli.weights import Choice, Number, NumberList, load_model, save_half

GENERATOR_KIND = "mnist-generator"
PIXELS = 28 * 28
IMAGE_NOISE = (1, 28, 28)


def pca(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, eigenvalues ascending, eigenvectors) of flattened images (float64 internally)."""
    x = images.reshape(len(images), -1).double()
    mean = x.mean(0)
    centred = x - mean
    evals, evecs = torch.linalg.eigh(centred.T @ centred / max(len(x) - 1, 1))
    return mean.float(), evals.clamp_min(0).float(), evecs.float()


def _sym_function(evecs: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """U diag(values) U^T for the eigenvectors U of a covariance."""
    return (evecs * values) @ evecs.T


class PotentialGenerator(nn.Module):
    """G(x) = grad phi(x) with phi = alpha/2 |x|^2 + 1/2 |V x|^2 + b.x + psi(x) on image-space noise.

    Only psi needs automatic differentiation; the quadratic part is applied in closed form. Called
    with gradients enabled (training, Hessian-vector products) the map keeps its graph
    (``create_graph``); under ``torch.no_grad`` (sampling) it returns a detached tensor.
    """

    noise_shape = IMAGE_NOISE

    def __init__(self, channels: tuple[int, int] | None = None, hidden: int = 512, activation_name: str = "softplus",
                 convex: bool = False, alpha: float = 0.02, potential: str = "conv", code: int = 16,
                 gain: float = 2.0, noise_scale: float = 1.0, affine: str = "full", pca_source: bool = False):
        super().__init__()
        self.alpha, self.affine = alpha, affine
        if potential == "conv":
            if noise_scale != 1.0 or pca_source:
                raise InputError("noise_scale and pca_source apply to the decoder potential only")
            self.potential = ConvPotential(tuple(channels or (64, 128)), hidden, activation_name, convex)
        elif potential == "decoder":
            self.potential = DecoderPotential(code, tuple(channels or (128, 64)), gain, convex=convex,
                                              noise_scale=noise_scale, pca_source=pca_source)
        else:
            raise InputError(f"unknown potential {potential!r}")
        if affine not in AFFINE_INPUTS or (affine == "code" and potential != "decoder"):
            raise InputError(f"affine {affine!r}: choose 'full', or 'code' with the decoder potential")
        self.V = nn.Parameter(torch.eye(code if affine == "code" else PIXELS))
        self.bias = nn.Parameter(torch.zeros(PIXELS))

    @property
    def config(self) -> dict:
        model = "icnn" if getattr(self.potential, "convex", False) else "brenier"
        return {"model": model, "alpha": self.alpha, **self.potential.config,
                **({"affine": self.affine} if self.affine != "full" else {})}

    @torch.no_grad()
    def init_gaussian(self, mean: torch.Tensor, evals: torch.Tensor, evecs: torch.Tensor) -> None:
        """Start at the Gaussian Brenier map m + S^(1/2) x (Gaussian part exact where S^(1/2) > alpha).

        The decoder potential draws the image itself: it reads the leading principal directions
        (E) and the affine part starts as a plain background (b = -1, V small but not zero, so
        that its gradient V x x^T is not zero either).
        """
        if isinstance(self.potential, DecoderPotential):
            k = self.potential.code
            self.potential.set_encoder(evecs[:, -k:].flip(1).T, evals[-k:].flip(0).clamp_min(0).sqrt())
            self.V.copy_(0.05 * torch.eye(len(self.V)))
            self.bias.fill_(-1.0)
            return
        self.V.copy_(_sym_function(evecs, (evals.sqrt() - self.alpha).clamp_min(0).sqrt()))
        self.bias.copy_(mean)

    def _affine_input(self, flat: torch.Tensor) -> torch.Tensor:
        """What V reads: the noise itself, or (``affine="code"``) its code E x, so that no pixel's own
        noise passes straight into the image (V^T V x then lies in span(E), where the decoder's
        curvature may need the help)."""
        return flat @ self.potential.encoder.T if self.affine == "code" else flat

    def _affine_output(self, coords: torch.Tensor) -> torch.Tensor:
        return coords @ self.potential.encoder if self.affine == "code" else coords

    def phi(self, x: torch.Tensor) -> torch.Tensor:
        """The potential itself, one value per sample (x: N x 1 x 28 x 28)."""
        flat = x.flatten(1)
        quadratic = 0.5 * self.alpha * flat.pow(2).sum(1) + 0.5 * (self._affine_input(flat) @ self.V.T).pow(2).sum(1)
        return quadratic + flat @ self.bias + self.potential(x).to(quadratic.dtype)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        keep_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            x = z if z.requires_grad else z.detach().requires_grad_(True)
            (grad_psi,) = torch.autograd.grad(self.potential(x).sum(), x, create_graph=keep_graph)
        with torch.autocast(x.device.type, enabled=False):  # exact: near-pair differences are small
            flat = x.flatten(1)
            affine = self.alpha * flat + self._affine_output((self._affine_input(flat) @ self.V.T) @ self.V) + self.bias
        out = affine.view_as(x) + grad_psi.to(affine.dtype)
        return out if keep_graph else out.detach()


class GaussianGenerator(nn.Module):
    """The closed-form Brenier map of the Gaussian fit: T(z) = m + S^(1/2) z (Dowson & Landau 1982).

    With ``rank`` k > 0 only the k leading principal directions U_k are kept: T(z) = m +
    U_k L_k^(1/2) U_k^T z, the Gaussian Brenier map from OTM-style noise lifted by the fixed
    embedding Q = U_k (U_k^T z ~ N(0, I_k)), i.e. where a lifted-noise generator would start.
    """

    noise_shape = IMAGE_NOISE

    def __init__(self, rank: int = 0):
        super().__init__()
        self.rank = rank
        self.register_buffer("matrix", torch.eye(PIXELS))
        self.register_buffer("mean", torch.zeros(PIXELS))

    @property
    def config(self) -> dict:
        return {"model": "gaussian", "rank": self.rank}

    @classmethod
    def fit(cls, images: torch.Tensor, rank: int = 0) -> "GaussianGenerator":
        """From training images in [-1, 1] units (N x 1 x 28 x 28)."""
        mean, evals, evecs = pca(images)
        roots = evals.sqrt()
        if rank:
            roots[:-rank] = 0  # eigenvalues ascend
        gen = cls(rank)
        gen.matrix.copy_(_sym_function(evecs, roots))
        gen.mean.copy_(mean)
        return gen

    def phi(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return 0.5 * ((flat @ self.matrix) * flat).sum(1) + flat @ self.mean

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z.flatten(1) @ self.matrix + self.mean).view_as(z)

class CMGNGenerator(nn.Module):
    """Fully-connected C-MGN on 784-d noise (comparison (d)): Jacobian symmetric PSD by construction.

    ``sharpness`` is the norm of the hidden directions; 0.2 puts |w.(x - p)| ~ 1 for two noise
    draws (|x - p| ~ 40), where softplus bends, instead of the 8 used for colours in [0, 1].
    """

    noise_shape = IMAGE_NOISE

    def __init__(self, width: int = 1024, layers: int = 2, sharpness: float = 0.2):
        super().__init__()
        self.net = CMGN(dim=PIXELS, width=width, layers=layers, sharpness=sharpness)

    @property
    def config(self) -> dict:
        return {"model": "cmgn", "width": self.net.width, "layers": self.net.layers, "sharpness": self.net.sharpness}

    @torch.no_grad()
    def init_gaussian(self, mean: torch.Tensor, evals: torch.Tensor, evecs: torch.Tensor) -> None:
        anchors = torch.randn(2048, PIXELS)
        self.net.init_from_affine(_sym_function(evecs, evals.sqrt()), mean, anchors)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.flatten(1)).view_as(z)


class DCGANGenerator(nn.Module):
    """Unconstrained DCGAN generator (Radford, Metz, Chintala 2016) for 28 x 28: latent -> 7x7 -> 14x14 -> 28x28."""

    def __init__(self, latent: int = 64, channels: tuple[int, int] = (128, 64)):
        super().__init__()
        c1, c2 = channels
        self.latent, self.channels = latent, (c1, c2)
        self.noise_shape = (latent,)
        self.net = nn.Sequential(
            nn.Linear(latent, c1 * 7 * 7, bias=False), nn.Unflatten(1, (c1, 7, 7)), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.ConvTranspose2d(c2, 1, 4, stride=2, padding=1), nn.Tanh())

    @property
    def config(self) -> dict:
        return {"model": "dcgan", "latent": self.latent, "channels": list(self.channels)}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Discriminator(nn.Module):
    """DCGAN discriminator with spectral normalisation (Miyato et al. 2018): 28 -> 14 -> 7 -> logit."""

    def __init__(self, channels: tuple[int, int] = (64, 128)):
        super().__init__()
        c1, c2 = channels
        sn = nn.utils.parametrizations.spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(1, c1, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(c1, c2, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
            nn.Flatten(), sn(nn.Linear(c2 * 7 * 7, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def source_noise(generator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Standard normal draws ``z`` -> the noise ``generator`` maps (its source measure): z itself,
    except for a decoder potential with ``pca_source`` (``DecoderPotential.source_noise``)."""
    if isinstance(generator, PotentialGenerator) and isinstance(generator.potential, DecoderPotential):
        return generator.potential.source_noise(z)
    return z


def build_generator(config: dict) -> nn.Module:
    """Rebuild a generator from its ``config`` (as stored in a generator file)."""
    options = dict(config)
    model = options.pop("model", None)
    if model in ("brenier", "icnn"):
        options["convex"] = model == "icnn"
        return PotentialGenerator(**options)
    builders = {"gaussian": GaussianGenerator, "cmgn": CMGNGenerator, "dcgan": DCGANGenerator}
    if model not in builders:
        raise InputError(f"unknown generator model {model!r}")
    return builders[model](**options)


def generator_config_fields(config: dict) -> dict:
    """The schema a stored generator config must fit (see ``weights.load_model``)."""
    model = config.get("model")
    if model in ("brenier", "icnn"):
        potential = DECODER_FIELDS if config.get("potential") == "decoder" else CONV_FIELDS
        affine = {"affine": Choice(AFFINE_INPUTS)} if potential is DECODER_FIELDS else {}
        return {**potential, **affine, "model": Choice(("brenier", "icnn")), "alpha": Number(float, 0.0, 1e3)}
    fields = {"gaussian": {"rank": Number(int, 0, PIXELS)},
              "cmgn": {"width": Number(int, 1, 1 << 16), "layers": Number(int, 1, 1024),
                       "sharpness": Number(float, 0.0, 1e6)},
              "dcgan": {"latent": Number(int, 1, 1 << 16), "channels": NumberList(Number(int, 1, 4096), 2, 2)}}
    if not isinstance(model, str) or model not in fields:
        raise InputError(f"unknown generator model {str(model)[:40]!r}")
    return {"model": Choice((model,)), **fields[model]}


def restrict_affine_to_code(generator: PotentialGenerator) -> PotentialGenerator:
    """The same decoder-potential generator with its quadratic part 1/2 |V x|^2 cut down to span(E).

    V^T V becomes P V^T V P (P = E^T E): the part of the affine map that passes the noise of the
    other 784 - k directions straight into the image (speckle on every stroke) goes, the rest of
    phi is kept. Curvature outside span(E) then rests on alpha and psi alone: re-check convexity.
    """
    if generator.config.get("potential") != "decoder":
        raise InputError("only a decoder-potential generator has a code to restrict its affine part to")
    encoder = generator.potential.encoder
    with torch.no_grad():
        in_code = generator.V @ encoder.T if generator.affine == "full" else generator.V
        evals, evecs = torch.linalg.eigh(in_code.T @ in_code)  # E V^T V E^T, k x k
        restricted = build_generator({**generator.config, "affine": "code"}).to(encoder.device, encoder.dtype)
        state = {k: v for k, v in generator.state_dict().items() if k != "V"}
        restricted.load_state_dict({**state, "V": _sym_function(evecs, evals.clamp_min(0).sqrt())})
    return restricted.eval()


def export_generator(generator: nn.Module, path: Path | str, meta: dict) -> None:
    """fp16 safetensors with the config in the metadata (the effect of fp16: models/brenier_mnist.md)."""
    save_half(path, generator, GENERATOR_KIND, meta)


def load_generator(path: Path | str, device: str = "cpu") -> nn.Module:
    """A generator file written by :func:`export_generator`, in fp32, eval mode, offline."""
    generator, meta = load_model(path, GENERATOR_KIND, generator_config_fields, build_generator)
    generator.meta = meta
    return generator.to(device)


def count_parameters(module: nn.Module) -> int:
    """Stored numbers of a model: parameters and fixed matrices, not normalisation statistics."""
    return sum(v.numel() for k, v in module.state_dict().items() if v.is_floating_point() and "running_" not in k)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (White 2016, "Sampling Generative Networks"): keeps |z| typical of N(0, I).

    A straight line between two draws in d dimensions passes through norms ~ sqrt(d/2) at its
    middle, where the generator has seen no noise.
    """
    af, bf = a.flatten(), b.flatten()
    omega = torch.arccos((af @ bf / (af.norm() * bf.norm())).clamp(-1 + 1e-7, 1 - 1e-7))
    t = t.view(-1, *([1] * a.dim()))
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / math.sin(float(omega))

