"""What every trainer of otmap shares: run controls, the EMA of the weights, checkpoints and the run loop.

The flow prior (``restoration/train.py``) and the MNIST generators (``generate/brenier.py``) train
differently but are run alike: a wall-clock budget, atomic checkpoints every few minutes, resume,
a warm start, a ``log.jsonl`` line per checkpoint, and an exponential moving average (EMA) of the
weights that is what gets shipped (fp16, :func:`~otmap_cli.weights.save_half`). :class:`Trainer`
owns all of that; a subclass supplies one optimisation step, its checkpoint state and what it
evaluates and exports at a checkpoint (the shape of deepinv's ``Trainer``).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from otmap_cli.errors import InputError
from otmap_cli.weights import load_tensors, save_tensors, tensors_problem


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
    bf16: bool = True  # bfloat16 autocast (speed-up on CPUs with native bf16: docs/decisions.md)

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


def ema_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` in eval mode, the start of its EMA."""
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


def module_tensors(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's state as checkpoint tensors ``{prefix}.{name}``."""
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def load_module_tensors(prefix: str, module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`module_tensors`; a one-line InputError if the tensors do not fit ``module``."""
    part = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    problem = tensors_problem(module.state_dict(), part)
    if problem:
        raise InputError(f"checkpoint of another model or damaged ({prefix}: {problem})")
    module.load_state_dict(part)


class Trainer:
    """The run loop: ``fit()`` resumes, steps until the time or step budget is spent, and checkpoints.

    Subclasses set ``checkpoint_kind`` and ``log_every`` and implement :meth:`train_step` (one
    update; ``None`` when it was skipped), :meth:`state` / :meth:`load_state` (checkpoint tensors
    and metadata), :meth:`summary`, :meth:`progress_line` and :meth:`checkpoint` (save, evaluate,
    export, then :meth:`write_log`); :meth:`prepare` is optional. ``self.history`` holds the step statistics since the last checkpoint.
    """

    checkpoint_kind = ""
    log_every = 50
    rate_unit = ("steps/min", 60)

    def __init__(self, cfg: RunControls, log: Callable[[str], None] = print):
        self.cfg, self.log = cfg, log
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.run_dir = Path(cfg.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = self.run_dir / "checkpoint.safetensors"
        self.step = 0
        self.elapsed_before = 0.0  # seconds of earlier (resumed) calls
        self.history: list[dict[str, float]] = []
        self.start = time.time()

    # --- what a subclass supplies
    def train_step(self) -> dict[str, float] | None:
        raise NotImplementedError

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        raise NotImplementedError

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        raise NotImplementedError

    def prepare(self) -> None:
        """Work that must follow a resume because it draws random numbers (e.g. building an evaluator)."""

    def summary(self) -> str:
        """One line logged before the first step (size of the model and the data)."""
        raise NotImplementedError

    def progress_line(self) -> str:
        raise NotImplementedError

    def checkpoint(self, final: bool) -> None:
        raise NotImplementedError

    # --- what every trainer shares
    def elapsed(self) -> float:
        """Wall seconds of the whole run, resumed calls included."""
        return self.elapsed_before + time.time() - self.start

    def save(self, path: Path) -> None:
        tensors, meta = self.state()
        save_tensors(path, tensors, self.checkpoint_kind, meta)

    def restore(self, path: Path) -> None:
        tensors, meta = load_tensors(path, self.checkpoint_kind)
        try:
            self.load_state(tensors, meta)
        except InputError as exc:
            raise InputError(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}") from None
        except KeyError as exc:
            raise InputError(f"{path}: damaged checkpoint ({exc} missing)") from None

    def write_log(self, record: dict, final: bool) -> None:
        with open(self.run_dir / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.log(("final " if final else "checkpoint ") + json.dumps(record))

    def rate(self) -> str:
        unit, per_second = self.rate_unit
        rate = (self.step - self.first_step) / max(time.time() - self.start, 1e-9) * per_second
        return f"({rate:.0f} {unit})"

    def fit(self) -> None:
        """Train (or resume) until ``cfg.minutes`` of wall time or ``cfg.max_steps``."""
        cfg = self.cfg
        if cfg.resume and self.checkpoint_path.exists():
            self.restore(self.checkpoint_path)
            self.log(f"resumed from {self.checkpoint_path} at step {self.step}")
        self.prepare()
        self.log(self.summary())
        self.first_step, self.start = self.step, time.time()
        last_checkpoint = self.start
        while not (cfg.max_steps and self.step >= cfg.max_steps) and (time.time() - self.start) / 60 < cfg.minutes:
            stats = self.train_step()
            if stats is None:
                continue
            self.history.append(stats)
            if self.step % self.log_every == 0:
                self.log(self.progress_line())
            if (time.time() - last_checkpoint) / 60 >= cfg.checkpoint_minutes:
                self.checkpoint(final=False)
                last_checkpoint = time.time()
        self.checkpoint(final=True)
