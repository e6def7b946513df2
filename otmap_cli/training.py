"""What every trainer of otmap shares: run controls, the EMA of the weights, checkpoints and the run loop.

The flow prior (``restoration/train.py``) and the MNIST generators (``generate/brenier.py``) train
differently but are run alike: a wall-clock budget, atomic checkpoints every few minutes, resume,
a warm start, a ``log.jsonl`` line per checkpoint, and an exponential moving average (EMA) of the
weights that is what gets shipped (fp16, :func:`~otmap_cli.weights.save_half`). :class:`Trainer`
owns all of that; a subclass supplies one optimisation step, its checkpoint state and what it
evaluates and exports at a checkpoint (the shape of deepinv's ``Trainer``).

Under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` set, more than one process) the same
loop runs DistributedDataParallel (gloo on CPU, NCCL with one GPU per local rank): each rank draws
its own data, DDP averages the gradients so the replicas (and hence their EMAs) stay equal without
further communication, and rank 0 alone logs and writes. A checkpoint holds the unwrapped modules
and rank 0's random state, so it resumes under any number of processes (docs/large_jobs.md).
One process without torchrun runs exactly as before: no process group, the same random streams.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from otmap_cli.device import cpu_has_native_bfloat16
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
    bf16: bool = True  # bfloat16 autocast where the hardware runs it natively (docs/decisions.md)

    def autocast(self) -> torch.autocast:
        kind = torch.device(self.device).type
        native = kind != "cpu" or cpu_has_native_bfloat16()
        return torch.autocast(device_type=kind, dtype=torch.bfloat16, enabled=self.bf16 and native)


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


def join_process_group(device: str) -> tuple[int, int, str, bool]:
    """Join the torchrun job that ``WORLD_SIZE`` / ``LOCAL_RANK`` describe (or one already joined).

    Returns (rank, world size, this rank's device, whether the group was created here). One
    process is rank 0 of 1 and creates nothing. On CUDA each local rank takes its own GPU.
    """
    import torch.distributed as dist

    joined = dist.is_available() and dist.is_initialized()
    if not joined and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, device, False
    if not dist.is_available():
        raise InputError("WORLD_SIZE > 1 (torchrun), but this torch build has no torch.distributed")
    if torch.device(device).type == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    if not joined:  # env:// rendezvous: MASTER_ADDR / MASTER_PORT / RANK / WORLD_SIZE from torchrun
        dist.init_process_group("nccl" if torch.device(device).type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device, not joined


class _MethodAsForward(nn.Module):
    """``module.<method>`` as the forward of a module: DDP synchronises the gradients of forward calls only."""

    def __init__(self, module: nn.Module, method: str):
        super().__init__()
        self.module, self.method = module, method

    def forward(self, *args, **kwargs):
        return getattr(self.module, self.method)(*args, **kwargs)


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
    export, then :meth:`write_log`); :meth:`prepare` is optional. ``self.history`` holds the step
    statistics since the last checkpoint, ``self.gen`` is the data generator (seeded per rank).

    Distributed: a subclass builds its modules on ``self.cfg.device`` (this rank's device), calls
    the module through :meth:`wrap` for the losses it backpropagates, and writes files only when
    :attr:`is_main`; :meth:`checkpoint` runs on every rank (between two of them nothing else does).
    """

    checkpoint_kind = ""
    log_every = 50
    rate_unit = ("steps/min", 60)

    def __init__(self, cfg: RunControls, log: Callable[[str], None] = print):
        self.rank, self.world_size, device, self.owns_process_group = join_process_group(cfg.device)
        self.cfg = replace(cfg, device=device) if device != cfg.device else cfg
        self.is_main = self.rank == 0
        self.log = log if self.is_main else (lambda line: None)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        self.run_dir = Path(cfg.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = self.run_dir / "checkpoint.safetensors"
        self.step = 0
        self.gen = torch.Generator().manual_seed(self.data_seed())
        self.elapsed_before = 0.0  # seconds of earlier (resumed) calls
        self.history: list[dict[str, float]] = []
        self.start = time.time()

    # --- distributed training (each a no-op in one process)
    def data_seed(self) -> int:
        """The seed of this rank's data at the current step: ``cfg.seed`` for rank 0 at step 0 (one
        process draws as it always did); the other ranks' streams, and rank r's after a resume, are
        derived from (seed, rank, step) so that no two ranks, nor a resumed rank, replay a batch."""
        if self.rank == 0 and self.step == 0:
            return self.cfg.seed
        return int(np.random.SeedSequence([self.cfg.seed, self.rank, self.step]).generate_state(1, np.uint64)[0])

    def wrap(self, module: nn.Module, method: str = "forward") -> Callable:
        """``module.<method>`` for the losses that are backpropagated: under torchrun through DDP
        (which averages the gradients of the replicas), in one process the module (or method) itself."""
        if self.world_size == 1:
            return module if method == "forward" else getattr(module, method)
        from torch.nn.parallel import DistributedDataParallel

        target = module if method == "forward" else _MethodAsForward(module, method)
        on_cuda = torch.device(self.cfg.device).type == "cuda"
        return DistributedDataParallel(target, device_ids=[torch.device(self.cfg.device).index] if on_cuda else None)

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when true on one: all ranks stop, and checkpoint, at the same step."""
        if self.world_size == 1:
            return flag
        import torch.distributed as dist

        value = torch.tensor([float(flag)], device=self.cfg.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a decision, scores, or a checkpoint only rank 0 read)."""
        if self.world_size == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

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
        if self.is_main:
            tensors, meta = self.state()
            save_tensors(path, tensors, self.checkpoint_kind, meta)

    def restore(self, path: Path) -> None:
        """Load a checkpoint that rank 0 reads (every rank gets its tensors); ranks other than 0
        then re-derive their data stream, the checkpoint holding rank 0's."""
        tensors, meta = self.from_main(load_tensors(path, self.checkpoint_kind) if self.is_main else None)
        try:
            self.load_state(tensors, meta)
        except InputError as exc:
            raise InputError(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}") from None
        except KeyError as exc:
            raise InputError(f"{path}: damaged checkpoint ({exc} missing)") from None
        if not self.is_main:
            self.gen.manual_seed(self.data_seed())

    def write_log(self, record: dict, final: bool) -> None:
        if not self.is_main:
            return
        with open(self.run_dir / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.log(("final " if final else "checkpoint ") + json.dumps(record))

    def rate(self) -> str:
        unit, per_second = self.rate_unit
        rate = (self.step - self.first_step) / max(time.time() - self.start, 1e-9) * per_second
        return f"({rate:.0f} {unit})"

    def fit(self) -> None:
        """Train (or resume) until ``cfg.minutes`` of wall time or ``cfg.max_steps``."""
        try:
            self._fit()
        finally:
            if self.owns_process_group:
                import torch.distributed as dist

                dist.destroy_process_group()

    def _fit(self) -> None:
        cfg = self.cfg
        if cfg.resume and self.from_main(self.checkpoint_path.exists()):
            self.restore(self.checkpoint_path)
            self.log(f"resumed from {self.checkpoint_path} at step {self.step}")
        self.prepare()
        self.log(self.summary())
        if self.world_size > 1:
            self.log(f"DistributedDataParallel: {self.world_size} processes, each with its own data")
        self.first_step, self.start = self.step, time.time()
        last_checkpoint = self.start
        while not self.any_rank(bool(cfg.max_steps and self.step >= cfg.max_steps)
                                or (time.time() - self.start) / 60 >= cfg.minutes):
            stats = self.train_step()
            if stats is None:
                continue
            self.history.append(stats)
            if self.step % self.log_every == 0:
                self.log(self.progress_line())
            if self.any_rank((time.time() - last_checkpoint) / 60 >= cfg.checkpoint_minutes):
                self.checkpoint(final=False)
                self.barrier()
                last_checkpoint = time.time()
        self.checkpoint(final=True)
        self.barrier()
