"""The training checkpoints committed in campaigns/ still load into today's modules, so that the next
session resumes its campaign instead of restarting it (campaigns/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from otmap_cli.generate.brenier import CHECKPOINT_KIND
from otmap_cli.generate.models import Discriminator, build_generator, source_noise
from otmap_cli.training import load_module_tensors
from otmap_cli.weights import load_tensors

CAMPAIGNS = Path(__file__).resolve().parents[2] / "campaigns"
BRENIER_CHECKPOINTS = sorted(CAMPAIGNS.glob("brenier_*/checkpoint.safetensors"))


@pytest.mark.parametrize("path", BRENIER_CHECKPOINTS, ids=lambda path: path.parent.name)
def test_a_committed_brenier_checkpoint_loads_and_its_ema_draws_digits(path):
    tensors, meta = load_tensors(path, CHECKPOINT_KIND)
    assert meta["step"] > 0 and meta["elapsed_s"] > 0
    modules = {"generator": build_generator(meta["config"]), "ema": build_generator(meta["config"]),
               "discriminator": Discriminator()}
    for name, module in modules.items():
        load_module_tensors(name, module, tensors)  # raises on a missing, extra or reshaped tensor
    ema = modules["ema"].eval()
    noise = source_noise(ema, torch.randn((8, *ema.noise_shape), generator=torch.Generator().manual_seed(0)))
    images = ema(noise).detach()
    assert torch.isfinite(images).all()
    assert 0.02 < float((images > 0).float().mean()) < 0.5  # strokes on a dark background, as MNIST (~19 %)
