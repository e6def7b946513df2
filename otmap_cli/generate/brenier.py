"""Brenier-GAN on MNIST: training (resumable), sampling, interpolation and an honest convexity check.

The generator is G = grad phi for a convolutional potential phi (Drygala, Gottschalk, Kruse, Martin,
Muetze 2025, arXiv 2504.19779): by Brenier's theorem the gradient of a convex function that pushes
the noise onto the data is *the* optimal transport map for the squared Euclidean cost. It is
trained adversarially with the classical cross-entropy GAN loss (non-saturating form for G,
Goodfellow et al. 2014) plus gamma times a hinge penalty towards kappa-strong convexity, in the
spirit of the paper's penalty P^(kappa) (the exact expression used here is ours):

    P = mean over pairs of relu(kappa - <G(x) - G(x'), x - x'> / |x - x'|^2) / kappa,

on two kinds of pairs that ride in the generator's batch (G is evaluated once on all of them):
  * far pairs: each noise draw of the batch with its neighbour (monotonicity of G);
  * near pairs x' = x + h u, h = ``near_step``: finite-difference Hessian Rayleigh quotients
    u^T Hess phi(x) u, with u the Ritz vector of the smallest eigenvalue after ``search_steps``
    Lanczos iterations at x, restarted from the previous step's u. Random directions in 784
    dimensions average the spectrum and almost never see a negative eigenvalue.

Measured (1.5 min runs, 1 thread, default architecture, EMA weights, smallest Lanczos eigenvalue at
64 points): near directions kept by one step of subspace iteration, gamma 1, kappa 0.01: -0.017
after 679 steps; Lanczos search, gamma 1, kappa 0.01: -0.0012 after 476 steps; Lanczos search,
gamma 10, kappa 0.02 (the defaults): +0.015 after 467 steps with the same FLD (619 vs 618). With
ReCU activations instead of softplus (gamma 1, kappa 0.01, no search) it was -5.35 after 843 steps.

Noise lives in image space (z ~ N(0, I_784)), as in the paper, because Brenier's theorem needs a
source with a density on the space of the data: with OTM-style noise lifted to a k-dimensional
subspace by a fixed Q (Rout, Korotin, Burnaev 2022), the quadratic cost only sees the projection
of G onto range(Q) and the optimal map is no longer unique. Measured cost of the choice: none in
speed (phi reads 784 numbers either way), and the starting point is only slightly worse --
FLD 565.5 for the full-rank Gaussian map against 521.3 for the rank-64 one (the Gaussian map
from noise lifted by Q = the 64 leading principal directions), recall 0.007 against 0.008.

Speed, one D + one G step at batch 64, bfloat16 autocast. With the decoder potential (0.85 M
parameters): 1 thread beside another 1-thread training, 22 k it/h with 4 Lanczos steps, 19.5 k
with 6, 13.6 k with 12 (the default); 2 threads alone, 24 k it/h; its convex-by-construction
twin (icnn, no penalty) 40 k. Measured earlier, 1 thread beside a 2-thread training (+-20 %):
the conv potential (4.36 M parameters) 16.8 k it/h with 4 Lanczos steps (fp32: 11.3 k; without
penalty and search: 30.6 k; ReCU: 20.6 k), icnn (conv) 22.8 k, dcgan 64 k, cmgn 68 k.

Checkpoints (generator, EMA, discriminator, both optimisers, Lanczos directions, step, RNG) go
atomically to ``<run_dir>/checkpoint.safetensors`` every ``checkpoint_minutes``, with an 8 x 8 grid
of EMA samples from fixed noise (``samples_<step>.png``), the Frechet distance in classifier
features against 2000 held-out training images (when a classifier is available), the smallest
Lanczos eigenvalue at 64 points, and a line in ``<run_dir>/log.jsonl``. Watch ``min_eigenvalue``
there: if it turns negative, resume with a larger ``penalty_weight`` or ``search_steps``.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from otmap_cli.errors import InputError
from otmap_cli.generate.mnist import image_grid, load_mnist, save_png, to_uint8, to_unit
from otmap_cli.generate.models import (IMAGE_NOISE, Discriminator, build_generator, export_generator,
                                       load_generator, pca, slerp)
from otmap_cli.training import RunControls, ema_update
from otmap_cli.weights import load_optimizer_tensors, load_tensors, models_dir, optimizer_tensors, save_tensors

__all__ = ["BrenierTrainConfig", "ConvexityReport", "check_convexity", "interpolate", "lanczos_smallest",
           "load_generator", "sample", "train_brenier"]

CHECKPOINT_KIND = "mnist-gan-checkpoint"
MODELS = ("brenier", "icnn", "dcgan", "cmgn")
VALIDATION_IMAGES = 2000  # the last training images, held out for the FLD logged during training
GRID_SEED = 1234
BRENIER_POTENTIAL = {"potential": "decoder", "code": 16}  # the product's potential (measurements: BrenierTrainConfig)
LOG_EVERY = 100


@dataclass(kw_only=True)
class BrenierTrainConfig(RunControls):
    """One configuration for every trained variant (``model``), so comparisons share one loop.

    ``model_options`` overrides the generator's constructor (e.g. ``{"potential": "conv"}``); for
    ``brenier`` it is laid over ``BRENIER_POTENTIAL``, the decoder potential reading 16 principal
    components. Measured (held-out FLD logged during training, 1 thread beside another training):
    the conv potential reached 430 at 10 min and then stayed at 415-431 up to 63 min (its strokes
    pass through gates set by the noise and come out broken; with 2048 hidden units, half the
    speed: 423 at 12 min); the decoder potential with 16 components: 489 / 394 / 373 / 350 at
    10 / 20 / 30 / 40 min, with continuous strokes; with 32 components 574 at 10 min and with 64
    (near_step 1) 773, both non-convex (-0.36, -0.24): every component is a direction in which phi
    may bend down, and the penalty has to hold them all; a decoder twice as wide (256, 128) ran at
    half the speed and stood at 1037 after 5 min.

    ``near_step`` 0.3 and ``search_steps`` 12: with the decoder potential and near pairs 1.0 apart,
    the smallest eigenvalue at 64 points fell to -0.90 after 15 min, as the hinge saw the
    curvature averaged over a segment that spans a whole unit of the code; resumed with 0.3 and 6
    Lanczos steps it read +0.032 five minutes later, but a 20-step search still found negative
    curvature at 186 of 256 points after 45 min. With 12 steps (and kicks in span(E), see
    ``ConvexityPenalty.search``) that fell to 2 of 256 within 5 minutes, at 30 % fewer steps/min.

    ``penalty_weight`` (gamma) defaults to 10 for ``brenier`` and 0 for the others, whose
    monotonicity holds by construction (icnn, cmgn) or is meaningless (dcgan). ``kappa`` equals
    the generator's alpha (0.02): the hinge wakes up as soon as psi bends downwards at all along a
    searched direction, leaving the alpha |x|^2 / 2 term as the margin for unsearched points.
    ``minutes`` is wall time of this call; resumed calls add up in ``elapsed_min`` of the log.

    ``init_rank``: the quadratic part starts at the Gaussian map of the ``init_rank`` leading
    principal directions only (the full-rank map adds pixel-level noise the potential then has to
    cancel), and ``affine_lr_scale`` = 1 lets the affine part move as fast as the rest. Measured
    (1000 steps, 1 thread, beside another training): full rank with affine rate 0.1 left speckled
    blobs at step 4556 and a smallest Hessian eigenvalue of -0.73; rank 64 with rate 1: FLD 622,
    eigenvalue +0.019 at step 1000; the same with G's rate 1e-3: FLD 953; with the potential
    reading a Gaussian-blurred (sigma 1 px) noise: FLD 635; with the noise projected onto the 64
    leading principal directions (OTM-style noise lifted by a fixed Q; 2 threads, alone): FLD 656,
    still speckled, so the speckle comes from the untrained conv weights, not from reading white
    noise, and image-space noise (the paper's choice, under which Brenier's theorem applies) stays.
    No variant drew clean digits within 1000 steps.

    ``clip_for_discriminator``: the discriminator sees G's output clipped to the pixel range, i.e.
    the image a user gets. Real digits are mostly pixels at exactly -1; a gradient map has no
    output squashing (a tanh would break G = grad phi), so without the clip it must hit -1 exactly
    and every bit of background speckle gives it away, whereas with it anything below -1 is clean
    background (the role tanh plays in a DCGAN). Gradients stop at clipped pixels; with a
    straight-through clip instead they pushed outputs without bound (FLD 606, eigenvalue -7383 at
    step 1000). Measured with the plain clip (1000 steps, 1 thread): FLD 444 against 622 without,
    eigenvalue +0.020, and the samples became recognisable digits of several classes.
    """

    data: Path
    run_dir: Path = Path("runs/brenier")
    model: str = "brenier"
    model_options: dict = field(default_factory=dict)
    batch: int = 64
    lr: float = 2e-4
    lr_discriminator: float = 2e-4
    affine_lr_scale: float = 1.0
    init_rank: int = 64
    penalty_weight: float | None = None
    kappa: float = 0.02
    near_pairs: int = 16
    near_step: float = 0.3
    search_steps: int = 12
    classifier: Path | None = None
    clip_for_discriminator: bool = True


def _new_generator(cfg: BrenierTrainConfig, train_images: torch.Tensor, log: Callable[[str], None]) -> nn.Module:
    """A fresh generator started at the Gaussian map, or a warm start from ``cfg.init`` (its own config)."""
    if cfg.model not in MODELS:
        raise InputError(f"unknown model {cfg.model!r}; choose one of {', '.join(MODELS)}")
    if cfg.init:
        generator = load_generator(cfg.init)
        if generator.config["model"] != cfg.model:
            raise InputError(f"{cfg.init}: a {generator.config['model']} generator, not {cfg.model}")
        log(f"warm start from {cfg.init}")
        return generator.to(cfg.device)
    defaults = BRENIER_POTENTIAL if cfg.model == "brenier" else {}
    generator = build_generator({"model": cfg.model, **defaults, **cfg.model_options})
    if hasattr(generator, "init_gaussian"):
        mean, evals, evecs = pca(to_unit(train_images))
        if cfg.init_rank:
            evals[:-cfg.init_rank] = 0  # ascending: keep the init_rank leading principal directions
        generator.init_gaussian(mean, evals, evecs)
    return generator.to(cfg.device)


# --- convexity penalty -----------------------------------------------------------------------

def _rayleigh(dx: torch.Tensor, dg: torch.Tensor) -> torch.Tensor:
    """<dg, dx> / |dx|^2 per row: the mean curvature of phi along the segment."""
    return (dx * dg).sum(1) / dx.pow(2).sum(1).clamp_min(1e-12)


def _code_directions(generator: nn.Module, n: int, gen: torch.Generator) -> torch.Tensor | None:
    """n random directions (n x 784, CPU) in span(E) for a decoder potential, where its negative
    curvature enters; None for potentials without a code."""
    encoder = getattr(getattr(generator, "potential", None), "encoder", None)
    if encoder is None:
        return None
    return torch.randn((n, len(encoder)), generator=gen) @ encoder.float().cpu()


class ConvexityPenalty:
    """The hinge P above; holds the near-pair directions (n x 784 unit rows) between steps."""

    def __init__(self, n: int, step: float, kappa: float, search_steps: int, gen: torch.Generator):
        self.step, self.kappa, self.search_steps = step, kappa, search_steps
        self.directions = F.normalize(torch.randn(n, IMAGE_NOISE[1] * IMAGE_NOISE[2], generator=gen), dim=1)

    def search(self, generator: nn.Module, points: torch.Tensor, gen: torch.Generator) -> None:
        """Point each direction at the lowest curvature of phi at its point (a few Lanczos steps).

        Lanczos restarts from the previous directions plus a random kick: the low-curvature
        directions of a conv potential move little from one batch to the next, and the kick keeps
        the search from settling in one of them. A decoder potential can only bend down through
        its code, so its kick is drawn in span(E): measured at 256 points of a trained one, 12
        Lanczos steps found negative curvature at 108 points from such starts, at 14 from
        random ones.
        """
        kick = _code_directions(generator, len(self.directions), gen)
        if kick is None:
            kick = torch.randn(self.directions.shape, generator=gen)
        kick = F.normalize(kick, dim=1)
        start = (self.directions + 0.5 * kick).view(points.shape)
        _, vectors = lanczos_smallest(lambda v: _hvp(generator, points, v.to(points.device)), start,
                                      self.search_steps)
        self.directions = F.normalize(vectors.flatten(1), dim=1)

    def inputs(self, z: torch.Tensor) -> torch.Tensor:
        """The batch with its near partners appended: G is evaluated once on both."""
        n = len(self.directions)
        near = z[:n] + self.step * self.directions.to(z.device).view(n, *z.shape[1:])
        return torch.cat([z, near])

    def __call__(self, z: torch.Tensor, g_all: torch.Tensor) -> tuple[torch.Tensor, dict]:
        b, n = len(z), len(self.directions)
        x, g = z.flatten(1), g_all[:b].flatten(1)
        q_far = _rayleigh(x - x.roll(1, 0), g - g.roll(1, 0))
        q_near = ((g_all[b:].flatten(1) - g[:n]) * self.directions.to(z.device)).sum(1) / self.step
        q = torch.cat([q_far, q_near])
        penalty = F.relu(self.kappa - q).mean() / self.kappa
        stats = {"q_far_min": q_far.min().item(), "q_near_min": q_near.min().item(),
                 "violated": (q < self.kappa).float().mean().item()}
        return penalty, stats


# --- checkpoints -----------------------------------------------------------------------------

@dataclass
class _Trainer:
    """Everything a checkpoint must hold, with the two conversions to and from tensors."""

    generator: nn.Module
    ema: nn.Module
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    gen: torch.Generator
    penalty: ConvexityPenalty | None
    step: int = 0
    elapsed: float = 0.0

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "ema": self.ema, "discriminator": self.discriminator}

    def save(self, path: Path, cfg: BrenierTrainConfig) -> None:
        tensors = {f"{name}.{k}": v for name, m in self.modules().items() for k, v in m.state_dict().items()}
        tensors.update(optimizer_tensors("opt_g", self.opt_g))
        tensors.update(optimizer_tensors("opt_d", self.opt_d))
        tensors["rng.data"] = self.gen.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        if self.penalty is not None:
            tensors["penalty.directions"] = self.penalty.directions
        meta = {"step": self.step, "elapsed_s": self.elapsed, "config": self.generator.config,
                "train_config": json.loads(json.dumps(asdict(cfg), default=str))}
        save_tensors(path, tensors, CHECKPOINT_KIND, meta)

    def restore(self, path: Path) -> None:
        tensors, meta = load_tensors(path, CHECKPOINT_KIND)
        if meta["config"] != self.generator.config:
            raise InputError(f"{path}: checkpoint of another model {meta['config']} (asked {self.generator.config})")
        for name, module in self.modules().items():
            module.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")})
        load_optimizer_tensors("opt_g", self.opt_g, tensors)
        load_optimizer_tensors("opt_d", self.opt_d, tensors)
        self.gen.set_state(tensors["rng.data"])
        torch.set_rng_state(tensors["rng.torch"])
        saved = tensors.get("penalty.directions")
        if self.penalty is not None and saved is not None and saved.shape == self.penalty.directions.shape:
            self.penalty.directions = saved  # (a resume with another near_pairs starts new directions)
        self.step, self.elapsed = int(meta["step"]), float(meta["elapsed_s"])


def _default_classifier(cfg: BrenierTrainConfig) -> Path | None:
    if cfg.classifier:
        return Path(cfg.classifier)
    shipped = models_dir() / "mnist_classifier.safetensors"
    return shipped if shipped.is_file() else None


def _build_trainer(cfg: BrenierTrainConfig, train_images: torch.Tensor, log: Callable[[str], None]) -> _Trainer:
    generator = _new_generator(cfg, train_images, log)
    ema = copy.deepcopy(generator).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    discriminator = Discriminator().to(cfg.device)
    affine = [p for name, p in generator.named_parameters() if name in ("V", "bias")]
    rest = [p for name, p in generator.named_parameters() if name not in ("V", "bias")]
    betas = (0.5, 0.999)  # DCGAN's Adam settings (Radford et al. 2016)
    opt_g = torch.optim.Adam([{"params": rest}, {"params": affine, "lr": cfg.lr * cfg.affine_lr_scale}],
                             lr=cfg.lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_discriminator, betas=betas)
    gen = torch.Generator().manual_seed(cfg.seed)
    gamma = _penalty_weight(cfg)
    penalty = (ConvexityPenalty(cfg.near_pairs, cfg.near_step, cfg.kappa, cfg.search_steps, gen)
               if gamma > 0 else None)
    return _Trainer(generator, ema, discriminator, opt_g, opt_d, gen, penalty)


def _penalty_weight(cfg: BrenierTrainConfig) -> float:
    gamma = cfg.penalty_weight if cfg.penalty_weight is not None else (10.0 if cfg.model == "brenier" else 0.0)
    if gamma > 0 and cfg.model != "brenier":
        raise InputError("the convexity penalty applies to the brenier model only")
    return gamma


def _train_step(t: _Trainer, cfg: BrenierTrainConfig, images: torch.Tensor, gamma: float) -> dict[str, float]:
    """One discriminator and one generator update on the same fake batch (G evaluated once)."""
    device = cfg.device
    idx = torch.randint(len(images), (cfg.batch,), generator=t.gen)
    real = to_unit(images[idx]).to(device)
    z = torch.randn((cfg.batch, *t.generator.noise_shape), generator=t.gen).to(device)
    autocast = cfg.autocast()
    t.generator.train()
    with autocast:
        if t.penalty is not None:
            t.penalty.search(t.generator, z[:cfg.near_pairs], t.gen)
        g_all = t.generator(t.penalty.inputs(z) if t.penalty else z).float()
        fake = g_all[:cfg.batch]
        if cfg.clip_for_discriminator:  # D judges the image a user sees (pixels clipped to the valid range)
            fake = fake.clamp(-1, 1)
        d_real, d_fake_detached = t.discriminator(real).float(), t.discriminator(fake.detach()).float()
        loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake_detached).mean()
    t.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    t.opt_d.step()
    t.discriminator.requires_grad_(False)
    with autocast:
        d_fake = t.discriminator(fake).float()
    loss_g = F.softplus(-d_fake).mean()
    stats = {"loss_d": loss_d.item(), "loss_g": loss_g.item()}
    total = loss_g
    if t.penalty is not None:
        penalty, penalty_stats = t.penalty(z, g_all)
        total = total + gamma * penalty
        stats.update(penalty=penalty.item(), **penalty_stats)
    t.opt_g.zero_grad(set_to_none=True)
    total.backward()
    t.opt_g.step()
    t.discriminator.requires_grad_(True)
    ema_update(t.ema, t.generator, t.step, cfg.ema_decay)
    t.step += 1
    return stats


def _evaluate(t: _Trainer, cfg: BrenierTrainConfig, run: Path, reference_features, classifier) -> dict:
    """EMA grid (fixed noise), FLD against held-out training images, quick convexity estimate."""
    grid_noise = torch.randn((64, *t.ema.noise_shape), generator=torch.Generator().manual_seed(GRID_SEED))
    with torch.no_grad():
        pixels = to_uint8(t.ema(grid_noise.to(cfg.device))).cpu().numpy()
    grid = image_grid(pixels, 8)
    save_png(grid, run / f"samples_{t.step:06d}.png")
    save_png(grid, run / "samples_latest.png")
    scores = {}
    if classifier is not None:
        from otmap_cli.generate.classifier import features
        from otmap_cli.generate.metrics import frechet_distance

        fake = sample(t.ema, len(reference_features), seed=GRID_SEED, device=cfg.device)
        scores["fld"] = round(frechet_distance(features(classifier, fake, cfg.device), reference_features), 3)
    if cfg.model != "dcgan":
        report = check_convexity(t.ema, n_points=64, lanczos_steps=12, n_pairs=256, device=cfg.device)
        scores["min_eigenvalue"] = round(report.min_eigenvalue, 5)
    return scores


def train_brenier(cfg: BrenierTrainConfig, log: Callable[[str], None] = print) -> nn.Module:
    """Train (or resume) until ``cfg.minutes`` of wall time or ``cfg.max_steps``; return the EMA generator.

    The EMA generator is exported (fp16) to ``cfg.out`` at every checkpoint when ``cfg.out`` is set.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    images, _ = load_mnist(cfg.data, "train")
    n_held = min(VALIDATION_IMAGES, len(images) // 10)
    train_images, held_out = images[:-n_held], images[-n_held:]
    t = _build_trainer(cfg, train_images, log)
    gamma = _penalty_weight(cfg)
    checkpoint = run / "checkpoint.safetensors"
    if cfg.resume and checkpoint.exists():
        t.restore(checkpoint)
        log(f"resumed from {checkpoint} at step {t.step}")
    classifier_path = _default_classifier(cfg)
    classifier = reference = None
    if classifier_path:
        from otmap_cli.generate.classifier import features, load_classifier

        classifier = load_classifier(classifier_path, cfg.device)
        reference = features(classifier, held_out, cfg.device)
    n_params = sum(p.numel() for p in t.generator.parameters())
    log(f"{cfg.model}: {n_params / 1e6:.2f} M parameters, gamma {gamma}, {len(train_images)} training images")
    first_step, start = t.step, time.time()
    elapsed_before, last_ckpt = t.elapsed, start
    history: list[dict] = []

    def save(final: bool = False) -> None:
        t.elapsed = elapsed_before + time.time() - start
        t.save(checkpoint, cfg)
        scores = _evaluate(t, cfg, run, reference, classifier)
        means = {k: round(float(np.mean([h[k] for h in history])), 4) for k in (history[0] if history else {})}
        record = {"step": t.step, "elapsed_min": round(t.elapsed / 60, 2), **means, **scores}
        with open(run / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        log(("final " if final else "checkpoint ") + json.dumps(record))
        history.clear()
        if cfg.out:
            export_generator(t.ema, cfg.out, {"steps": t.step, "train_minutes": round(t.elapsed / 60, 1),
                                              "data": str(cfg.data), "scores": scores,
                                              "penalty_weight": gamma, "kappa": cfg.kappa})

    while not (cfg.max_steps and t.step >= cfg.max_steps) and (time.time() - start) / 60 < cfg.minutes:
        history.append(_train_step(t, cfg, train_images, gamma))
        if t.step % LOG_EVERY == 0:
            rate = (t.step - first_step) / max(time.time() - start, 1e-9) * 3600
            recent = {k: np.mean([h[k] for h in history[-LOG_EVERY:]]) for k in history[-1]}
            log(f"step {t.step} " + " ".join(f"{k} {v:.4g}" for k, v in recent.items()) + f" ({rate:.0f} it/h)")
        if (time.time() - last_ckpt) / 60 >= cfg.checkpoint_minutes:
            save()
            last_ckpt = time.time()
    save(final=True)
    return t.ema


# --- using a generator -----------------------------------------------------------------------

def _noise(generator: nn.Module, n: int, seed: int) -> torch.Tensor:
    """Noise drawn on the CPU from a seeded generator: the same samples on every device."""
    return torch.randn((n, *generator.noise_shape), generator=torch.Generator().manual_seed(seed))


def _generate(generator: nn.Module, z: torch.Tensor, device: str, batch: int) -> torch.Tensor:
    generator = generator.to(device).eval()
    with torch.no_grad():
        return torch.cat([to_uint8(generator(chunk.to(device))).cpu() for chunk in z.split(batch)])


def sample(generator: nn.Module, n: int, seed: int = 0, device: str = "cpu", batch: int = 500) -> torch.Tensor:
    """n images as uint8 n x 28 x 28, reproducible for a given seed."""
    return _generate(generator, _noise(generator, n, seed), device, batch)


def interpolate(generator: nn.Module, steps: int, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """A walk of ``steps`` images (uint8) between two noise draws, along the great circle (slerp)."""
    if steps < 2:
        raise InputError("an interpolation needs at least 2 steps")
    ends = _noise(generator, 2, seed)
    return _generate(generator, slerp(ends[0], ends[1], torch.linspace(0, 1, steps)), device, steps)


# --- certifying convexity --------------------------------------------------------------------

@dataclass
class ConvexityReport:
    """What ``otmap sample --check-convexity`` prints.

    ``min_eigenvalue`` is the smallest, over the points, of a Lanczos estimate of the smallest
    eigenvalue of Hess phi(x). Each estimate is a Ritz value, hence an *upper* bound of the true
    smallest eigenvalue at that point (it converges from above): a negative value proves
    non-convexity, a positive one is evidence, not proof. The pair checks are exact statements
    about the pairs tried (up to float32 rounding).
    """

    n_points: int
    lanczos_steps: int
    min_eigenvalue: float
    eigenvalue_p01: float
    eigenvalue_median: float
    negative_points: int
    n_pairs: int
    min_far_pair: float
    min_near_pair: float
    violated_pairs: int
    seconds: float

    @property
    def convex(self) -> bool:
        return self.min_eigenvalue >= 0 and self.violated_pairs == 0


def _hvp(generator: nn.Module, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Hess phi(x) v as the vector-Jacobian product of G = grad phi (its Jacobian is symmetric)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (hv,) = torch.autograd.grad((generator(x) * v).sum(), x)
    return hv.detach()


def lanczos_smallest(hvp: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor,
                     steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest Ritz value and its Ritz vector after ``steps`` Lanczos iterations, batched over rows.

    ``start`` (n x ...) holds one start vector per point and ``hvp`` maps such a batch to the
    Hessian-vector products at the n points. Full reorthogonalisation (twice, after Kahan) keeps
    the basis orthogonal in float32, so no spurious copies of converged Ritz values appear.
    """
    n, shape = len(start), start.shape
    q = F.normalize(start.flatten(1).float().cpu(), dim=1)
    restarts = torch.Generator().manual_seed(0)
    basis, alphas, betas = [], [], []

    def orthogonalise(w: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack(basis)  # k x n x d
        for _ in range(2):
            w = w - torch.einsum("kn,knd->nd", torch.einsum("knd,nd->kn", stacked, w), stacked)
        return w

    for _ in range(steps):
        basis.append(q)
        hq = hvp(q.view(shape)).flatten(1).float().cpu()
        alphas.append((hq * q).sum(1))
        w = orthogonalise(hq)
        beta = w.norm(dim=1)
        # an invariant subspace is exhausted (few distinct eigenvalues): go on from a fresh direction
        stalled = beta <= 1e-5 * hq.norm(dim=1).clamp_min(1e-30)
        if stalled.any():
            fresh = orthogonalise(torch.randn(w.shape, generator=restarts))
            w = torch.where(stalled[:, None], fresh, w)
            beta = torch.where(stalled, torch.zeros_like(beta), beta)
        betas.append(beta)
        q = F.normalize(w, dim=1)
    k = len(alphas)
    idx = torch.arange(k)
    tri = torch.zeros(n, k, k, dtype=torch.float64)
    tri[:, idx, idx] = torch.stack(alphas, 1).double()
    off = torch.stack(betas[:-1], 1).double() if k > 1 else torch.zeros(n, 0, dtype=torch.float64)
    tri[:, idx[:-1], idx[1:]] = off
    tri[:, idx[1:], idx[:-1]] = off
    evals, evecs = torch.linalg.eigh(tri)
    vectors = torch.einsum("nk,knd->nd", evecs[:, :, 0].float(), torch.stack(basis))
    return evals[:, 0].float(), vectors.view(shape)


def check_convexity(generator: nn.Module, n_points: int = 1000, lanczos_steps: int = 20, n_pairs: int = 1000,
                    near_distance: float = 0.5, seed: int = 0, device: str = "cpu",
                    batch: int = 250) -> ConvexityReport:
    """Smallest Hessian eigenvalue of phi at ``n_points`` noise draws, and monotonicity over pairs.

    Far pairs are independent draws; near pairs are x, x + d with |d| = ``near_distance`` (the
    noise itself has norm ~ 28). Only maps of the noise space onto itself have a potential: a
    DCGAN generator is refused. For a decoder potential, whose negative curvature enters through
    its code, each point gets a second Lanczos run started in span(E) and keeps the lower
    estimate: on a trained one that found negative curvature at 186 of 256 points where random
    starts found 102.
    """
    if tuple(generator.noise_shape) != IMAGE_NOISE:
        raise InputError(f"{generator.config['model']}: noise and images differ in dimension, "
                         "so the generator is not the gradient of a potential")
    start = time.time()
    generator = generator.to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    points = torch.randn((n_points, *IMAGE_NOISE), generator=gen)
    estimates = []
    for chunk in points.split(batch):
        x = chunk.to(device)
        starts = [torch.randn(chunk.shape, generator=gen)]
        in_code = _code_directions(generator, len(chunk), gen)
        if in_code is not None:
            starts.append(in_code.view(chunk.shape))
        runs = [lanczos_smallest(lambda v, x=x: _hvp(generator, x, v.to(device)), start, lanczos_steps)[0]
                for start in starts]
        estimates.append(torch.stack(runs).min(0).values)
    eigen = torch.cat(estimates)
    x = torch.randn((n_pairs, *IMAGE_NOISE), generator=gen)
    far = torch.randn((n_pairs, *IMAGE_NOISE), generator=gen)
    step = torch.randn((n_pairs, *IMAGE_NOISE), generator=gen)
    near = x + near_distance * step / step.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    with torch.no_grad():
        outputs = [torch.cat([generator(c.to(device)).cpu() for c in t.split(batch)]) for t in (x, far, near)]
    q_far = _rayleigh((x - far).flatten(1), (outputs[0] - outputs[1]).flatten(1))
    q_near = _rayleigh((x - near).flatten(1), (outputs[0] - outputs[2]).flatten(1))
    return ConvexityReport(
        n_points=n_points, lanczos_steps=lanczos_steps, min_eigenvalue=float(eigen.min()),
        eigenvalue_p01=float(eigen.quantile(0.01)), eigenvalue_median=float(eigen.median()),
        negative_points=int((eigen < 0).sum()), n_pairs=n_pairs, min_far_pair=float(q_far.min()),
        min_near_pair=float(q_near.min()), violated_pairs=int((q_far < 0).sum() + (q_near < 0).sum()),
        seconds=round(time.time() - start, 2))
