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

Noise lives in image space (z ~ N(0, I_784)), as in the paper: Brenier's theorem needs a source
with a density on the space of the data (with noise lifted from a k-dimensional subspace the
optimal map is no longer unique). The measurements behind the defaults: docs/decisions.md.

Checkpoints (generator, EMA, discriminator, both optimisers, Lanczos directions, step, RNG) go
atomically to ``<run_dir>/checkpoint.safetensors`` every ``checkpoint_minutes``, with an 8 x 8 grid
of EMA samples from fixed noise (``samples_<step>.png``), the Frechet distance in classifier
features against 2000 held-out training images (when a classifier is available), the smallest
Lanczos eigenvalue at 64 points, and a line in ``<run_dir>/log.jsonl``. Watch ``min_eigenvalue``
there: if it turns negative, resume with a larger ``penalty_weight`` or ``search_steps``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from otmap_cli.choices import GENERATOR_MODELS, one_of
from otmap_cli.errors import InputError
from otmap_cli.generate.convexity import check_convexity
from otmap_cli.generate.mnist import image_grid, load_mnist, save_png, to_uint8, to_unit
from otmap_cli.generate.models import (Discriminator, build_generator, export_generator, load_generator, pca,
                                       source_noise)
from otmap_cli.generate.penalty import ConvexityPenalty
from otmap_cli.generate.sampling import noise_draws, sample
from otmap_cli.training import (RunControls, Trainer, ema_copy, ema_update, load_module_tensors,
                                module_tensors)
from otmap_cli.weights import load_optimizer_tensors, models_dir, optimizer_tensors

CHECKPOINT_KIND = "mnist-gan-checkpoint"
VALIDATION_IMAGES = 2000  # the last training images, held out for the FLD logged during training
GRID_SEED = 1234
BRENIER_POTENTIAL = {"potential": "decoder", "code": 16}  # the product's potential (docs/decisions.md)
LOG_EVERY = 100


@dataclass(kw_only=True)
class BrenierTrainConfig(RunControls):
    """One configuration for every trained variant (``model``), so comparisons share one loop.

    ``model_options`` overrides the generator's constructor (e.g. ``{"potential": "conv"}``); for
    ``brenier`` it is laid over ``BRENIER_POTENTIAL``. ``penalty_weight`` (gamma) defaults to 10
    for ``brenier`` and 0 for the others, whose monotonicity holds by construction (icnn, cmgn)
    or is meaningless (dcgan); ``kappa`` equals the generator's alpha (0.02), so the hinge wakes
    up as soon as psi bends downwards along a searched direction. ``init_rank``: the quadratic part
    starts at the Gaussian map of that many leading principal directions only (the full-rank map
    adds pixel noise the potential must cancel). ``clip_for_discriminator``: the discriminator
    judges G's output clipped to the pixel range, the image a user gets (the role a tanh plays
    in a DCGAN, which a gradient map cannot have). ``discriminator_warmup``: the first steps of a
    run update the discriminator only, so that a warm start from an exported generator (which
    carries no discriminator) meets a trained critic instead of re-opening the game against a
    random one. ``penalty_every`` k > 1: the near pairs (and their Lanczos search) on every k-th step
    only, weighted k (``ConvexityPenalty.__call__``). Why each default: docs/decisions.md.
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
    penalty_every: int = 1
    classifier: Path | None = None
    clip_for_discriminator: bool = True
    discriminator_warmup: int = 0


def _new_generator(cfg: BrenierTrainConfig, train_images: torch.Tensor, log: Callable[[str], None]) -> nn.Module:
    """A fresh generator started at the Gaussian map, or a warm start from ``cfg.init`` (its own config)."""
    one_of(cfg.model, GENERATOR_MODELS, "model")
    if cfg.init:
        generator = load_generator(cfg.init)
        if generator.config["model"] != cfg.model:
            raise InputError(f"{cfg.init}: a {generator.config['model']} generator, not {cfg.model}")
        log(f"warm start from {cfg.init}")
        _rescale_noise(generator, cfg.model_options.get("noise_scale"), log)
        return generator.to(cfg.device)
    defaults = BRENIER_POTENTIAL if cfg.model == "brenier" else {}
    generator = build_generator({"model": cfg.model, **defaults, **cfg.model_options})
    if hasattr(generator, "init_gaussian"):
        mean, evals, evecs = pca(to_unit(train_images))
        if cfg.init_rank:
            evals[:-cfg.init_rank] = 0  # ascending: keep the init_rank leading principal directions
        generator.init_gaussian(mean, evals, evecs)
    return generator.to(cfg.device)


def _rescale_noise(generator: nn.Module, noise_scale: float | None, log: Callable[[str], None]) -> None:
    """A warm start may change the decoder potential's noise scale: the weights keep their meaning
    (only the pixel's own share of its gate changes), so a trained potential can be sharpened."""
    if noise_scale is None:
        return
    if generator.config.get("potential") != "decoder":
        raise InputError("noise_scale applies to the decoder potential only")
    log(f"noise scale {generator.potential.noise_scale:g} -> {noise_scale:g}")
    generator.potential.noise_scale = noise_scale


def _default_classifier(cfg: BrenierTrainConfig) -> Path | None:
    if cfg.classifier:
        return Path(cfg.classifier)
    shipped = models_dir() / "mnist_classifier.safetensors"
    return shipped if shipped.is_file() else None


def _penalty_weight(cfg: BrenierTrainConfig) -> float:
    gamma = cfg.penalty_weight if cfg.penalty_weight is not None else (10.0 if cfg.model == "brenier" else 0.0)
    if gamma > 0 and cfg.model != "brenier":
        raise InputError("the convexity penalty applies to the brenier model only")
    return gamma


class BrenierTrainer(Trainer):
    """Adversarial training of one generator variant (``cfg.model``) with the convexity penalty."""

    checkpoint_kind = CHECKPOINT_KIND
    log_every = LOG_EVERY
    rate_unit = ("it/h", 3600)

    def __init__(self, cfg: BrenierTrainConfig, log: Callable[[str], None] = print):
        super().__init__(cfg, log)
        cfg = self.cfg  # on this rank's device
        images, _ = load_mnist(cfg.data, "train")
        n_held = min(VALIDATION_IMAGES, len(images) // 10)
        self.images, self.held_out = images[:-n_held], images[-n_held:]
        self.generator = _new_generator(cfg, self.images, self.log)
        self.ema = ema_copy(self.generator)
        self.discriminator = Discriminator().to(cfg.device)
        # The losses go through DDP; the Lanczos search, the EMA and the discriminator's judgement
        # in the generator loss (its weights frozen there) use the modules themselves.
        self.generator_ddp, self.discriminator_ddp = self.wrap(self.generator), self.wrap(self.discriminator)
        affine = [p for name, p in self.generator.named_parameters() if name in ("V", "bias")]
        rest = [p for name, p in self.generator.named_parameters() if name not in ("V", "bias")]
        betas = (0.5, 0.999)  # DCGAN's Adam settings (Radford et al. 2016)
        self.opt_g = torch.optim.Adam([{"params": rest}, {"params": affine, "lr": cfg.lr * cfg.affine_lr_scale}],
                                      lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr_discriminator, betas=betas)
        self.gamma = _penalty_weight(cfg)
        if cfg.penalty_every < 1:
            raise InputError(f"penalty_every must be at least 1, got {cfg.penalty_every}")
        self.penalty = (ConvexityPenalty(cfg.near_pairs, cfg.near_step, cfg.kappa, cfg.search_steps, self.gen)
                        if self.gamma > 0 else None)
        self.classifier = self.reference = None

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "ema": self.ema, "discriminator": self.discriminator}

    def state(self) -> tuple[dict, dict]:
        tensors = {k: v for name, m in self.modules().items() for k, v in module_tensors(name, m).items()}
        tensors.update(optimizer_tensors("opt_g", self.opt_g))
        tensors.update(optimizer_tensors("opt_d", self.opt_d))
        tensors["rng.data"] = self.gen.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        if self.penalty is not None:
            tensors["penalty.directions"] = self.penalty.directions
        meta = {"step": self.step, "elapsed_s": self.elapsed(), "config": self.generator.config,
                "train_config": json.loads(json.dumps(asdict(self.cfg), default=str))}
        return tensors, meta

    def load_state(self, tensors: dict, meta: dict) -> None:
        saved, asked = dict(meta.get("config") or {}), self.generator.config
        saved_scale, asked_scale = saved.pop("noise_scale", 1.0), asked.get("noise_scale", 1.0)
        if saved != {k: v for k, v in asked.items() if k != "noise_scale"}:
            raise InputError(f"{self.checkpoint_path}: checkpoint of another model {str(meta.get('config'))[:200]} "
                             f"(asked {asked})")
        if saved_scale != asked_scale:  # as a warm start may (_rescale_noise), with the game's state kept
            self.log(f"noise scale {saved_scale:g} -> {asked_scale:g}")
        for name, module in self.modules().items():
            load_module_tensors(name, module, tensors)
        load_optimizer_tensors("opt_g", self.opt_g, tensors)
        load_optimizer_tensors("opt_d", self.opt_d, tensors)
        self.gen.set_state(tensors["rng.data"])
        torch.set_rng_state(tensors["rng.torch"])
        saved = tensors.get("penalty.directions")
        if self.penalty is not None and saved is not None and saved.shape == self.penalty.directions.shape:
            self.penalty.directions = saved  # (a resume with another near_pairs starts new directions)
        self.step, self.elapsed_before = int(meta["step"]), float(meta["elapsed_s"])

    def prepare(self) -> None:
        classifier_path = _default_classifier(self.cfg)
        if classifier_path and self.is_main:  # rank 0 evaluates
            from otmap_cli.generate.classifier import features, load_classifier

            self.classifier = load_classifier(classifier_path, self.cfg.device)
            self.reference = features(self.classifier, self.held_out, self.cfg.device)

    def summary(self) -> str:
        n_params = sum(p.numel() for p in self.generator.parameters())
        return (f"{self.cfg.model}: {n_params / 1e6:.2f} M parameters, gamma {self.gamma}, "
                f"{len(self.images)} training images")

    def train_step(self) -> dict[str, float]:
        """One discriminator and one generator update on the same fake batch (G evaluated once)."""
        cfg, device, penalty = self.cfg, self.cfg.device, self.penalty
        idx = torch.randint(len(self.images), (cfg.batch,), generator=self.gen)
        real = to_unit(self.images[idx]).to(device)
        z = source_noise(self.generator, torch.randn((cfg.batch, *self.generator.noise_shape), generator=self.gen))
        z = z.to(device)
        autocast = cfg.autocast()
        if self.step < cfg.discriminator_warmup:
            return self._discriminator_step(real, z, autocast)
        self.generator.train()
        near = penalty is not None and self.step % cfg.penalty_every == 0
        with autocast:
            if near:
                penalty.search(self.generator, z[:cfg.near_pairs], self.gen)
            g_all = self.generator_ddp(penalty.inputs(z, near) if penalty else z).float()
            fake = g_all[:cfg.batch]
            if cfg.clip_for_discriminator:  # D judges the image a user sees (pixels clipped to the valid range)
                fake = fake.clamp(-1, 1)
            d_real, d_fake_detached = self.discriminator_ddp(real).float(), self.discriminator_ddp(fake.detach()).float()
            loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake_detached).mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        self.discriminator.requires_grad_(False)
        with autocast:
            d_fake = self.discriminator(fake).float()
        loss_g = F.softplus(-d_fake).mean()
        stats = {"loss_d": loss_d.item(), "loss_g": loss_g.item()}
        total = loss_g
        if penalty is not None:
            value, penalty_stats = penalty(z, g_all, cfg.penalty_every)
            total = total + self.gamma * value
            stats.update(penalty=value.item(), **penalty_stats)
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        self.discriminator.requires_grad_(True)
        ema_update(self.ema, self.generator, self.step, cfg.ema_decay)
        self.step += 1
        return stats

    def _discriminator_step(self, real: torch.Tensor, z: torch.Tensor, autocast) -> dict[str, float]:
        """A warm-up step: the discriminator learns against the fixed generator, which is untouched."""
        with torch.no_grad(), autocast:
            fake = self.generator(z).float()
        if self.cfg.clip_for_discriminator:
            fake = fake.clamp(-1, 1)
        with autocast:
            loss_d = (F.softplus(-self.discriminator_ddp(real).float()).mean()
                      + F.softplus(self.discriminator_ddp(fake).float()).mean())
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        self.step += 1
        return {"loss_d": loss_d.item()}

    def progress_line(self) -> str:
        window = self.history[-self.log_every:]
        recent = {k: np.mean([h[k] for h in window if k in h]) for k in window[-1]}
        return f"step {self.step} " + " ".join(f"{k} {v:.4g}" for k, v in recent.items()) + f" {self.rate()}"

    def evaluate(self) -> dict:
        """EMA grid (fixed noise), FLD against held-out training images, quick convexity estimate."""
        cfg, ema = self.cfg, self.ema
        grid_noise = noise_draws(ema, 64, GRID_SEED)
        with torch.no_grad():
            pixels = to_uint8(ema(grid_noise.to(cfg.device))).cpu().numpy()
        grid = image_grid(pixels, 8)
        save_png(grid, self.run_dir / f"samples_{self.step:06d}.png")
        save_png(grid, self.run_dir / "samples_latest.png")
        scores = {}
        if self.classifier is not None:
            from otmap_cli.generate.classifier import features
            from otmap_cli.generate.metrics import frechet_distance

            fake = sample(ema, len(self.reference), seed=GRID_SEED, device=cfg.device)
            scores["fld"] = round(frechet_distance(features(self.classifier, fake, cfg.device), self.reference), 3)
        if cfg.model != "dcgan":
            report = check_convexity(ema, n_points=64, lanczos_steps=12, n_pairs=256, device=cfg.device)
            scores["min_eigenvalue"] = round(report.min_eigenvalue, 5)
        return scores

    def checkpoint(self, final: bool) -> None:
        if not self.is_main:
            self.history.clear()
            return
        self.save(self.checkpoint_path)
        elapsed = self.elapsed()
        scores = self.evaluate()
        history = self.history
        keys = dict.fromkeys(k for h in history for k in h)  # warm-up steps log fewer keys
        means = {k: round(float(np.mean([h[k] for h in history if k in h])), 4) for k in keys}
        self.write_log({"step": self.step, "elapsed_min": round(elapsed / 60, 2), **means, **scores}, final)
        history.clear()
        if self.cfg.out:
            export_generator(self.ema, self.cfg.out, {"steps": self.step, "train_minutes": round(elapsed / 60, 1),
                                                      "data": str(self.cfg.data), "scores": scores,
                                                      "penalty_weight": self.gamma, "kappa": self.cfg.kappa})


def train_brenier(cfg: BrenierTrainConfig, log: Callable[[str], None] = print) -> nn.Module:
    """Train (or resume) until ``cfg.minutes`` of wall time or ``cfg.max_steps``; return the EMA generator.

    The EMA generator is exported (fp16) to ``cfg.out`` at every checkpoint when ``cfg.out`` is set.
    """
    trainer = BrenierTrainer(cfg, log)
    trainer.fit()
    return trainer.ema
