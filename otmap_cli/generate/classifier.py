"""A small MNIST classifier, trained by us, whose penultimate features replace Inception's for evaluation.

There are no Inception weights offline, and Inception features of 28 x 28 digits say little anyway;
the TTUR authors (Heusel et al. 2017) recommend a domain classifier for MNIST. Three conv blocks
(3 x 3, BatchNorm, ReLU, 2 x 2 max-pool; 32/64/128 channels) then a 128-unit layer (the features)
and the 10-way output; trained with Adam, a one-cycle schedule and random +-2 px translations.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from otmap_cli.generate.mnist import load_mnist, to_unit
from otmap_cli.weights import Number, NumberList, load_model, save_half

CLASSIFIER_KIND = "mnist-classifier"
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


def train_classifier(data: Path | str, out: Path | str | None = None, epochs: float = 2.0, batch: int = 128,
                     lr: float = 3e-3, seed: int = 0, device: str = "cpu", threads: int = 0, bf16: bool = True,
                     log: Callable[[str], None] = print) -> tuple[MnistClassifier, dict]:
    """Train on the 60 000 training images, measure test accuracy, export fp16 safetensors to ``out``."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    images, labels = load_mnist(data, "train")
    test_images, test_labels = load_mnist(data, "test")
    model = MnistClassifier().to(device)
    steps = int(epochs * len(images) / batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    start = time.time()
    model.train()
    for step in range(steps):
        idx = torch.randint(len(images), (batch,), generator=gen)
        x = _translate(to_unit(images[idx]), 2.0, gen).to(device)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            _, logits = model(x)
        loss = F.cross_entropy(logits.float(), labels[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % 100 == 0:
            log(f"step {step + 1}/{steps} loss {loss.item():.4f} ({time.time() - start:.0f} s)")
    seconds = time.time() - start
    acc = accuracy(model, test_images, test_labels, device)
    report = {"test_accuracy": acc, "train_seconds": round(seconds, 1), "epochs": epochs, "batch": batch, "lr": lr,
              "seed": seed, "threads": torch.get_num_threads(), "bf16": bf16, "steps": steps}
    log(f"test accuracy {acc:.4f} after {seconds:.0f} s")
    if out:
        save_half(out, model, CLASSIFIER_KIND, report)
    return model.eval(), report


def load_classifier(path: Path | str, device: str = "cpu") -> MnistClassifier:
    fields = {"channels": NumberList(Number(int, 1, 4096), 3, 3)}
    model, _ = load_model(path, CLASSIFIER_KIND, fields, lambda config: MnistClassifier(**config))
    return model.to(device)
