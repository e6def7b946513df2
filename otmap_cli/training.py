"""What every trainer of otmap shares: the run controls and the EMA of the weights.

The flow prior (``restore/train.py``) and the MNIST generators (``generate/brenier.py``) train
differently but are run alike: a wall-clock budget, atomic checkpoints every few minutes, resume,
a warm start, and an exponential moving average (EMA) of the weights that is what gets shipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(kw_only=True)
class RunControls:
    """How long a run goes, where it writes, and what it starts from."""

    run_dir: Path
    out: Path | None = None  # where the EMA weights are exported (fp16 safetensors)
    ema_decay: float = 0.999
    minutes: float = 60.0  # wall time of this call; resumed calls add up in the log
    max_steps: int = 0  # 0 = no limit
    checkpoint_minutes: float = 10.0
    resume: bool = False  # continue from <run_dir>/checkpoint.safetensors
    init: Path | None = None  # warm start from exported weights
    seed: int = 0
    device: str = "cpu"
    threads: int = 0  # 0 = torch's default
    bf16: bool = True  # bfloat16 autocast: ~1.8x the steps per minute of float32 on AVX512-BF16 CPUs

    def autocast(self) -> torch.autocast:
        return torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16, enabled=self.bf16)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, step: int, decay: float) -> None:
    """ema <- decay ema + (1 - decay) model, with the decay ramped up over the first steps
    (min(decay, (1 + step) / (10 + step)), as in TensorFlow's ExponentialMovingAverage with
    num_updates) so that early averages do not remember the random initialisation."""
    rate = 1 - min(decay, (1 + step) / (10 + step))
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, rate)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)
