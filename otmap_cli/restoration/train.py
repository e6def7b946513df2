"""Training the flow prior D(x_t, t) on random patches of natural images, resumable, on CPU or CUDA.

Loss: E_t,x1,eps || F(c_in z, c_noise) - (x1 - c_skip z) / c_out ||^2, i.e. the x1-prediction form of
conditional flow matching (Lipman et al. 2023) with EDM preconditioning (Karras et al. 2022, Eq. 8),
which weights every noise level evenly. Patches of 64-128 px keep a fixed pixel budget per batch.
Times t are drawn with extra mass in [0.5, 1], where restoration spends its final iterations.

Mixed precision: the forward/backward runs under bfloat16 autocast, with fp32 master weights,
optimiser and loss (the measured speed-up: docs/decisions.md).

Checkpoints (model, EMA, optimiser, step, RNG) go atomically to ``<run>/checkpoint.safetensors``
every ``checkpoint_minutes``, the best one (by validation PSNR) also to ``<run>/best.safetensors``,
and only an improved EMA is exported to ``out``; validation PSNR of the EMA weights (one-step denoising of held-out
training images at sigma = 15, 25, 50 /255) is logged to ``<run>/log.jsonl``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from otmap_cli.io import list_images
from otmap_cli.restoration.prior import FlowPrior, export_prior, load_prior
from otmap_cli.training import RunControls, Trainer, ema_copy, ema_update, load_module_tensors, module_tensors
from otmap_cli.weights import load_optimizer_tensors, optimizer_tensors, save_tensors

CHECKPOINT_KIND = "flow-checkpoint"
VALIDATION_SIGMAS = (15 / 255, 25 / 255, 50 / 255)


@dataclass(kw_only=True)
class FlowTrainConfig(RunControls):
    data: Path
    run_dir: Path = Path("runs/flow")
    channels: tuple[int, ...] = (64, 128, 256)
    blocks: int = 2
    pixels_per_batch: int = 32 * 64 * 64
    patch_sizes: tuple[int, ...] = (64, 96, 128)
    lr: float = 5e-4
    warmup_steps: int = 500
    schedule_steps: int = 60_000
    divergence_db: float = 1.0
    validation_images: int = 6


def load_training_images(folder: Path) -> list[torch.Tensor]:
    """All images of a folder as uint8 CHW tensors (CBSD432 is ~200 MB this way)."""
    from PIL import Image as PILImage

    images = []
    for path in list_images(folder):
        with PILImage.open(path) as pil:
            images.append(torch.from_numpy(np.array(pil.convert("RGB"))).permute(2, 0, 1).contiguous())
    if not images:
        raise FileNotFoundError(f"no images in {folder}")
    return images


def random_patches(images: list[torch.Tensor], batch: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """Random crops with random flips and 90-degree rotations, in [-1, 1]."""
    out = torch.empty(batch, 3, size, size)
    picks = torch.randint(len(images), (batch,), generator=gen)
    for i, k in enumerate(picks.tolist()):
        img = images[k]
        h, w = img.shape[1:]
        y = int(torch.randint(h - size + 1, (1,), generator=gen))
        x = int(torch.randint(w - size + 1, (1,), generator=gen))
        crop = img[:, y:y + size, x:x + size]
        if torch.rand(1, generator=gen) < 0.5:
            crop = crop.flip(2)
        crop = torch.rot90(crop, int(torch.randint(4, (1,), generator=gen)), dims=(1, 2))
        out[i] = crop.float() / 127.5 - 1.0
    return out


def sample_times(batch: int, gen: torch.Generator) -> torch.Tensor:
    """25 % uniform on [0, 1], 75 % uniform on [0.5, 1]."""
    u = torch.rand(batch, generator=gen)
    high = torch.rand(batch, generator=gen) < 0.75
    return torch.where(high, 0.5 + 0.5 * u, u)


@torch.no_grad()
def validation_psnr(prior: FlowPrior, clean: torch.Tensor, device: str) -> dict[str, float]:
    """One-step denoising PSNR (dB, [0,1] units) at each validation sigma, fixed noise."""
    gen = torch.Generator().manual_seed(1234)
    scores = {}
    for sigma in VALIDATION_SIGMAS:
        noise = torch.randn(clean.shape, generator=gen)
        noisy = (clean + 2 * sigma * noise).to(device)
        est = prior.denoise(noisy, 2 * sigma).clamp(-1, 1).cpu()
        mse = ((est - clean) / 2).pow(2).mean(dim=(1, 2, 3))
        scores[f"psnr_{round(sigma * 255)}"] = float((-10 * torch.log10(mse)).mean())
    return scores


def learning_rate(cfg: FlowTrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 10 % over ``schedule_steps`` (then flat)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(cfg.schedule_steps, 1))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class FlowTrainer(Trainer):
    """The flow-matching loss above on random patches; keeps the best EMA and rolls back on divergence."""

    checkpoint_kind = CHECKPOINT_KIND
    log_every = 50

    def __init__(self, cfg: FlowTrainConfig, log: Callable[[str], None] = print):
        super().__init__(cfg, log)
        cfg = self.cfg  # on this rank's device
        images = load_training_images(cfg.data)
        val_images, self.images = images[-cfg.validation_images:], images[:-cfg.validation_images]
        self.val_clean = torch.stack([v[:, :128, :128].float() / 127.5 - 1 for v in val_images])
        self.prior = FlowPrior.from_config({"channels": list(cfg.channels), "blocks": cfg.blocks}).to(cfg.device)
        if cfg.init:
            self.prior.load_state_dict(load_prior(cfg.init).state_dict())
            self.log(f"warm start from {cfg.init}")
        self.loss_terms = self.wrap(self.prior, "raw_and_target")
        self.ema = ema_copy(self.prior)
        self.optimizer = torch.optim.AdamW(self.prior.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.best_path = self.run_dir / "best.safetensors"
        self.lr_scale, self.best, self.lr = 1.0, -math.inf, cfg.lr

    def summary(self) -> str:
        n_params = sum(p.numel() for p in self.prior.parameters())
        return (f"flow prior: {n_params / 1e6:.2f} M parameters, {len(self.images)} training images, "
                f"{self.cfg.pixels_per_batch:,} pixels a batch")

    def state(self) -> tuple[dict, dict]:
        tensors = {**module_tensors("model", self.prior), **module_tensors("ema", self.ema),
                   **optimizer_tensors("opt", self.optimizer)}
        tensors["rng.data"] = self.gen.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        meta = {"step": self.step, "elapsed_s": self.elapsed(), "config": self.prior.config,
                "lr_scale": self.lr_scale, "best_psnr_25": self.best}
        return tensors, meta

    def load_state(self, tensors: dict, meta: dict) -> None:
        load_module_tensors("model", self.prior, tensors)
        load_module_tensors("ema", self.ema, tensors)
        load_optimizer_tensors("opt", self.optimizer, tensors)
        self.gen.set_state(tensors["rng.data"])
        torch.set_rng_state(tensors["rng.torch"])
        self.step, self.elapsed_before = int(meta["step"]), float(meta["elapsed_s"])
        self.lr_scale, self.best = float(meta.get("lr_scale", 1.0)), float(meta.get("best_psnr_25", -math.inf))

    def train_step(self) -> dict | None:
        cfg, gen = self.cfg, self.gen
        size = cfg.patch_sizes[int(torch.randint(len(cfg.patch_sizes), (1,), generator=gen))]
        batch = max(1, cfg.pixels_per_batch // (size * size))
        x1 = random_patches(self.images, batch, size, gen).to(cfg.device)
        t = sample_times(batch, gen).to(cfg.device)
        eps = torch.randn(x1.shape, generator=gen).to(cfg.device)
        x_t = t.view(-1, 1, 1, 1) * x1 + (1 - t.view(-1, 1, 1, 1)) * eps
        with cfg.autocast():
            raw, target = self.loss_terms(x1, x_t, t)
        loss = (raw.float() - target.float()).pow(2).mean()
        self.lr = learning_rate(cfg, self.step) * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if not torch.isfinite(torch.nn.utils.clip_grad_norm_(self.prior.parameters(), 1.0)):
            return None  # skip a non-finite step rather than poison the weights
        self.optimizer.step()
        ema_update(self.ema, self.prior, self.step, cfg.ema_decay)
        self.step += 1
        return {"loss": loss.item()}

    def progress_line(self) -> str:
        recent = np.mean([h["loss"] for h in self.history[-self.log_every:]])
        return f"step {self.step} loss {recent:.4f} lr {self.lr:.2e} {self.rate()}"

    def checkpoint(self, final: bool) -> None:
        """Checkpoint; keep the best EMA (by validation PSNR at sigma 25) and roll back on divergence.

        A run at a too-high learning rate can blow up after an hour of progress: a drop of more
        than ``divergence_db`` restores the best state and halves the rate.
        """
        cfg = self.cfg
        elapsed = self.elapsed()
        scores, has_best = self.from_main((validation_psnr(self.ema, self.val_clean, cfg.device),
                                           self.best_path.exists()) if self.is_main else None)
        losses = [h["loss"] for h in self.history]
        record = {"step": self.step, "elapsed_min": round(elapsed / 60, 2), "lr_scale": self.lr_scale,
                  "loss": round(float(np.mean(losses)) if losses else float("nan"), 5), **scores}
        self.history.clear()
        if scores["psnr_25"] < self.best - cfg.divergence_db and has_best:  # every rank rolls back
            elapsed_before = self.elapsed_before
            self.restore(self.best_path)
            self.elapsed_before = elapsed_before  # the clock goes on
            self.lr_scale *= 0.5
            record["rolled_back_to"] = self.step
        improved = scores["psnr_25"] > self.best
        self.best = max(self.best, scores["psnr_25"])
        if not self.is_main:
            return
        tensors, meta = self.state()
        meta["elapsed_s"] = elapsed
        save_tensors(self.checkpoint_path, tensors, CHECKPOINT_KIND, meta)
        if improved:
            save_tensors(self.best_path, tensors, CHECKPOINT_KIND, meta)
            if cfg.out:
                export_prior(self.ema, cfg.out, {"steps": self.step, "train_minutes": round(elapsed / 60, 1),
                                                 "validation": scores, "data": str(cfg.data)})
        self.write_log(record, final)


def train_flow(cfg: FlowTrainConfig, log: Callable[[str], None] = print) -> FlowPrior:
    """Train (or resume) until ``cfg.minutes`` of wall time or ``cfg.max_steps``; return the EMA prior."""
    trainer = FlowTrainer(cfg, log)
    trainer.fit()
    return trainer.ema
