"""Training the flow prior D(x_t, t) on random patches of natural images, resumable, on CPU or CUDA.

Loss: E_t,x1,eps || F(c_in z, c_noise) - (x1 - c_skip z) / c_out ||^2, i.e. the x1-prediction form of
conditional flow matching (Lipman et al. 2023) with EDM preconditioning (Karras et al. 2022, Eq. 8),
which weights every noise level evenly. Patches of 64-128 px keep a fixed pixel budget per batch.
Times t are drawn with extra mass in [0.5, 1], where restoration spends its final iterations.

Mixed precision: the forward/backward runs under bfloat16 autocast (1.8x the steps per minute on
AVX512-BF16 CPUs, measured), with fp32 master weights, optimiser and loss.

Checkpoints (model, EMA, optimiser, step, RNG) go atomically to ``<run>/checkpoint.safetensors``
every ``checkpoint_minutes``, the best one (by validation PSNR) also to ``<run>/best.safetensors``,
and only an improved EMA is exported to ``out``; validation PSNR of the EMA weights (one-step denoising of held-out
training images at sigma = 15, 25, 50 /255) is logged to ``<run>/log.jsonl``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from otmap_cli.io import list_images
from otmap_cli.restore.prior import FlowPrior
from otmap_cli.training import RunControls, ema_update
from otmap_cli.weights import load_optimizer_tensors, load_tensors, optimizer_tensors, save_tensors

CHECKPOINT_KIND = "flow-checkpoint"
MODEL_KIND = "flow-prior"
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


def _state(prior, ema, optimizer, step, gen, elapsed, lr_scale=1.0, best=-math.inf) -> tuple[dict, dict]:
    tensors = {f"model.{k}": v for k, v in prior.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    tensors.update(optimizer_tensors("opt", optimizer))
    tensors["rng.data"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"step": step, "elapsed_s": elapsed, "config": prior.config, "lr_scale": lr_scale, "best_psnr_25": best}
    return tensors, meta


def _restore(path: Path, prior, ema, optimizer, gen) -> tuple[int, float, float, float]:
    tensors, meta = load_tensors(path, CHECKPOINT_KIND)
    prior.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    load_optimizer_tensors("opt", optimizer, tensors)
    gen.set_state(tensors["rng.data"])
    torch.set_rng_state(tensors["rng.torch"])
    return (int(meta["step"]), float(meta["elapsed_s"]), float(meta.get("lr_scale", 1.0)),
            float(meta.get("best_psnr_25", -math.inf)))


def export_prior(ema: FlowPrior, out: Path, meta: dict) -> None:
    """Ship EMA weights as fp16 safetensors with the configuration in the metadata."""
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in ema.state_dict().items()}
    save_tensors(out, tensors, MODEL_KIND, {"config": ema.config, **meta})


def load_prior(path: Path, device: str = "cpu") -> FlowPrior:
    tensors, meta = load_tensors(path, MODEL_KIND)
    prior = FlowPrior.from_config(meta["config"])
    prior.load_state_dict({k: v.float() for k, v in tensors.items()})
    return prior.to(device).eval()


def learning_rate(cfg: FlowTrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 10 % over ``schedule_steps`` (then flat)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(cfg.schedule_steps, 1))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_flow(cfg: FlowTrainConfig, log: Callable[[str], None] = print) -> FlowPrior:
    """Train (or resume) until ``cfg.minutes`` of wall time or ``cfg.max_steps``; return the EMA prior."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    images = load_training_images(cfg.data)
    val_images, train_images = images[-cfg.validation_images:], images[:-cfg.validation_images]
    val_clean = torch.stack([v[:, :128, :128].float() / 127.5 - 1 for v in val_images])
    prior = FlowPrior.from_config({"channels": list(cfg.channels), "blocks": cfg.blocks}).to(cfg.device)
    if cfg.init:
        init = load_prior(cfg.init)
        prior.load_state_dict(init.state_dict())
        log(f"warm start from {cfg.init}")
    ema = copy.deepcopy(prior).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(prior.parameters(), lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    checkpoint, best_path = run / "checkpoint.safetensors", run / "best.safetensors"
    step, elapsed_before, lr_scale, best = 0, 0.0, 1.0, -math.inf
    if cfg.resume and checkpoint.exists():
        step, elapsed_before, lr_scale, best = _restore(checkpoint, prior, ema, optimizer, gen)
        log(f"resumed from {checkpoint} at step {step}")
    n_params = sum(p.numel() for p in prior.parameters())
    log(f"flow prior: {n_params / 1e6:.2f} M parameters, {len(train_images)} training images")
    first_step = step
    start = time.time()
    last_ckpt = start
    losses: list[float] = []

    def save(final: bool = False):
        """Checkpoint; keep the best EMA (by validation PSNR at sigma 25) and roll back on divergence.

        A run at a too-high learning rate can blow up after an hour of progress (seen here at
        lr 1e-3): a drop of more than ``divergence_db`` restores the best state and halves the rate.
        """
        nonlocal step, elapsed_before, lr_scale, best
        elapsed = elapsed_before + time.time() - start
        scores = validation_psnr(ema, val_clean, cfg.device)
        record = {"step": step, "elapsed_min": round(elapsed / 60, 2), "lr_scale": lr_scale,
                  "loss": round(float(np.mean(losses)) if losses else float("nan"), 5), **scores}
        losses.clear()
        if scores["psnr_25"] < best - cfg.divergence_db and best_path.exists():
            step, _, lr_scale, best = _restore(best_path, prior, ema, optimizer, gen)
            lr_scale *= 0.5
            record["rolled_back_to"] = step
        improved = scores["psnr_25"] > best
        best = max(best, scores["psnr_25"])
        tensors, meta = _state(prior, ema, optimizer, step, gen, elapsed, lr_scale, best)
        save_tensors(checkpoint, tensors, CHECKPOINT_KIND, meta)
        if improved:
            save_tensors(best_path, tensors, CHECKPOINT_KIND, meta)
            if cfg.out:
                export_prior(ema, cfg.out, {"steps": step, "train_minutes": round(elapsed / 60, 1),
                                            "validation": scores, "data": str(cfg.data)})
        with open(run / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        log(("final " if final else "checkpoint ") + json.dumps(record))

    while True:
        if cfg.max_steps and step >= cfg.max_steps:
            break
        if (time.time() - start) / 60 >= cfg.minutes:
            break
        size = cfg.patch_sizes[int(torch.randint(len(cfg.patch_sizes), (1,), generator=gen))]
        batch = max(1, cfg.pixels_per_batch // (size * size))
        x1 = random_patches(train_images, batch, size, gen).to(cfg.device)
        t = sample_times(batch, gen).to(cfg.device)
        eps = torch.randn(x1.shape, generator=gen).to(cfg.device)
        x_t = t.view(-1, 1, 1, 1) * x1 + (1 - t.view(-1, 1, 1, 1)) * eps
        with cfg.autocast():
            raw, target = prior.raw_and_target(x1, x_t, t)
        loss = (raw.float() - target.float()).pow(2).mean()
        lr = learning_rate(cfg, step) * lr_scale
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if not torch.isfinite(torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)):
            continue  # skip a non-finite step rather than poison the weights
        optimizer.step()
        ema_update(ema, prior, step, cfg.ema_decay)
        step += 1
        losses.append(loss.item())
        if step % 50 == 0:
            rate = (step - first_step) / max(time.time() - start, 1e-9) * 60
            log(f"step {step} loss {np.mean(losses[-50:]):.4f} lr {lr:.2e} ({rate:.0f} steps/min)")
        if (time.time() - last_ckpt) / 60 >= cfg.checkpoint_minutes:
            save()
            last_ckpt = time.time()
    save(final=True)
    return ema
