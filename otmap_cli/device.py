"""Choosing where tensors live: ``auto`` means CUDA when present, CPU otherwise."""

from __future__ import annotations

from otmap_cli.choices import DEVICES, one_of
from otmap_cli.errors import InputError


def resolve_device(name: str = "auto") -> str:
    """Turn a user's ``--device`` into a torch device string, refusing CUDA where there is none."""
    import torch

    name = one_of(name.lower(), DEVICES, "device")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda asked for, but no CUDA device is available (use cpu or auto)")
    return name


def inference_autocast(device: str):
    """bfloat16 autocast for network inference on CPUs with native bfloat16 (oneDNN), else a no-op.

    About twice as fast at a negligible loss (docs/decisions.md); CPUs without native bfloat16
    would emulate it slowly, and CUDA keeps float32: neither is changed.
    """
    import contextlib

    import torch

    if device == "cpu" and cpu_has_native_bfloat16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_has_native_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX512-BF16 / AMX); elsewhere it is emulated: a flow-prior
    training step on an AVX2-only CPU took ~25x longer in bfloat16 than in float32 (docs/decisions.md)."""
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
