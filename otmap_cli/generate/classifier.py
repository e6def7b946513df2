"""A small MNIST classifier, trained by us, whose penultimate features replace Inception's for evaluation.

There are no Inception weights offline, and Inception features of 28 x 28 digits say little anyway;
the TTUR authors (Heusel et al. 2017) recommend a domain classifier for MNIST. Three conv blocks
(3 x 3, BatchNorm, ReLU, 2 x 2 max-pool; 32/64/128 channels) then a 128-unit layer (the features)
and the 10-way output; trained with Adam, a one-cycle schedule and random +-2 px translations, on
the :class:`~otmap_cli.training.Trainer` loop (time budget, checkpoints, resume, ``log.jsonl``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from otmap_cli.errors import InputError
from otmap_cli.generate.mnist import load_mnist, to_unit
from otmap_cli.training import RunControls, Trainer, load_module_tensors, module_tensors
from otmap_cli.weights import (Number, NumberList, load_model, load_optimizer_tensors, optimizer_tensors,
                               save_half)

CLASSIFIER_KIND = "mnist-classifier"
CLASSIFIER_CHECKPOINT_KIND = "mnist-classifier-checkpoint"
FEATURES = 128


class MnistClassifier(nn.Module):
    def __init__(self, channels: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        c1, c2, c3 = channels
        self.channels = (c1, c2, c3)

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.body = nn.Sequential(block(1, c1), block(c1, c2), block(c2, c3), nn.Flatten(),
                                  nn.Linear(c3 * 3 * 3, FEATURES), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(FEATURES, 10))

    @property
    def config(self) -> dict:
        return {"channels": list(self.channels)}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) for images in [-1, 1] units, N x 1 x 28 x 28."""
        feats = self.body(x)
        return feats, self.head(feats)


def _as_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x 28 x 28 (what samplers write) or float N x 1 x 28 x 28 already in [-1, 1]."""
    return to_unit(images) if images.dtype == torch.uint8 else images.float().reshape(-1, 1, 28, 28)


@torch.no_grad()
def classify(model: MnistClassifier, images: torch.Tensor, device: str = "cpu",
             batch: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(penultimate features N x 128, class probabilities N x 10), float64."""
    model = model.to(device).eval()
    feats, probs = [], []
    for chunk in images.split(batch):
        f, logits = model(_as_unit(chunk).to(device))
        feats.append(f.double().cpu())
        probs.append(logits.double().softmax(1).cpu())
    return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def features(model: MnistClassifier, images: torch.Tensor, device: str = "cpu") -> np.ndarray:
    return classify(model, images, device)[0]


def _translate(x: torch.Tensor, pixels: float, gen: torch.Generator) -> torch.Tensor:
    """Random sub-pixel translations of up to ``pixels`` in each direction (bilinear)."""
    n = len(x)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * pixels * 2 / x.shape[-1]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


def accuracy(model: MnistClassifier, images: torch.Tensor, labels: torch.Tensor, device: str = "cpu") -> float:
    _, probs = classify(model, images, device)
    return float((probs.argmax(1) == labels.numpy()).mean())


@dataclass(kw_only=True)
class ClassifierTrainConfig(RunControls):
    """The classifier's recipe: ``epochs`` fixes the step count (and the one-cycle schedule over it);
    ``max_steps`` may stop earlier, ``minutes`` bounds the wall time as for every trainer."""

    data: Path
    run_dir: Path = Path("runs/classifier")
    epochs: float = 2.0
    batch: int = 128
    lr: float = 3e-3
    translate_pixels: float = 2.0


class ClassifierTrainer(Trainer):
    """Cross-entropy on randomly translated training digits; the weights themselves (no EMA) are exported."""

    checkpoint_kind = CLASSIFIER_CHECKPOINT_KIND
    log_every = 100

    def __init__(self, cfg: ClassifierTrainConfig, log: Callable[[str], None] = print):
        super().__init__(cfg, log)
        cfg = self.cfg
        self.images, self.labels = load_mnist(cfg.data, "train")
        self.test_images, self.test_labels = load_mnist(cfg.data, "test")
        self.total_steps = max(1, int(cfg.epochs * len(self.images) / cfg.batch))
        self.cfg = replace(cfg, max_steps=min(cfg.max_steps or self.total_steps, self.total_steps))
        self.model = MnistClassifier().to(cfg.device)
        if cfg.init:
            self.model.load_state_dict(load_classifier(cfg.init).state_dict())
        self.model_ddp = self.wrap(self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=cfg.lr, total_steps=self.total_steps)

    def summary(self) -> str:
        n_params = sum(p.numel() for p in self.model.parameters())
        return (f"classifier: {n_params / 1e3:.0f} k parameters, {len(self.images)} training images, "
                f"{self.total_steps} steps ({self.cfg.epochs:g} epochs of {self.cfg.batch})")

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        self.model.train()
        idx = torch.randint(len(self.images), (cfg.batch,), generator=self.gen)
        x = _translate(to_unit(self.images[idx]), cfg.translate_pixels, self.gen).to(cfg.device)
        with cfg.autocast():
            _, logits = self.model_ddp(x)
        loss = F.cross_entropy(logits.float(), self.labels[idx].to(cfg.device))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        self.step += 1
        return {"loss": loss.item()}

    def progress_line(self) -> str:
        return (f"step {self.step}/{self.total_steps} loss {self.history[-1]['loss']:.4f} "
                f"({time.time() - self.start:.0f} s)")

    def state(self) -> tuple[dict, dict]:
        tensors = {**module_tensors("model", self.model), **optimizer_tensors("opt", self.optimizer),
                   "rng.data": self.gen.get_state(), "rng.torch": torch.get_rng_state()}
        groups = [{"lr": g["lr"], "betas": list(g["betas"])} for g in self.optimizer.param_groups]
        meta = {"step": self.step, "elapsed_s": self.elapsed(), "config": self.model.config,
                "total_steps": self.total_steps, "schedule": self.schedule.state_dict(), "param_groups": groups}
        return tensors, meta

    def load_state(self, tensors: dict, meta: dict) -> None:
        if meta.get("total_steps") != self.total_steps:
            raise InputError(f"checkpoint of a {meta.get('total_steps')}-step schedule, this run has "
                             f"{self.total_steps} (same --epochs to resume)")
        load_module_tensors("model", self.model, tensors)
        load_optimizer_tensors("opt", self.optimizer, tensors)
        self.schedule.load_state_dict(meta["schedule"])
        for group, saved in zip(self.optimizer.param_groups, meta["param_groups"]):
            group.update(lr=saved["lr"], betas=tuple(saved["betas"]))  # the schedule's place, which it set
        self.gen.set_state(tensors["rng.data"])
        torch.set_rng_state(tensors["rng.torch"])
        self.step, self.elapsed_before = int(meta["step"]), float(meta["elapsed_s"])

    def report(self) -> dict:
        cfg = self.cfg
        return {"test_accuracy": accuracy(self.model, self.test_images, self.test_labels, cfg.device),
                "train_seconds": round(self.elapsed(), 1), "epochs": cfg.epochs, "batch": cfg.batch, "lr": cfg.lr,
                "seed": cfg.seed, "threads": torch.get_num_threads(), "bf16": cfg.bf16, "steps": self.step}

    def checkpoint(self, final: bool) -> None:
        if not self.is_main:
            self.history.clear()
            return
        self.save(self.checkpoint_path)
        self.last_report = report = self.report()
        losses = [h["loss"] for h in self.history]
        self.write_log({"step": self.step, "elapsed_min": round(self.elapsed() / 60, 2),
                        **({"loss": round(float(np.mean(losses)), 4)} if losses else {}),
                        "test_accuracy": report["test_accuracy"]}, final)
        self.history.clear()
        if final:
            self.log(f"test accuracy {report['test_accuracy']:.4f} after {report['train_seconds']:.0f} s")
        if self.cfg.out:
            save_half(self.cfg.out, self.model, CLASSIFIER_KIND, report)


def train_classifier(cfg: ClassifierTrainConfig, log: Callable[[str], None] = print) -> tuple[MnistClassifier, dict]:
    """Train (or resume) on the 60 000 training images; return the model and its report (test accuracy
    included), exported (fp16) to ``cfg.out`` at every checkpoint when set."""
    trainer = ClassifierTrainer(cfg, log)
    trainer.fit()
    return trainer.model.eval(), trainer.last_report


def load_classifier(path: Path | str, device: str = "cpu") -> MnistClassifier:
    fields = {"channels": NumberList(Number(int, 1, 4096), 3, 3)}
    model, _ = load_model(path, CLASSIFIER_KIND, fields, lambda config: MnistClassifier(**config))
    return model.to(device)
