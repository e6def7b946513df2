"""Choosing where tensors live: ``auto`` means CUDA when present, CPU otherwise."""

from __future__ import annotations

from otmap_cli.errors import InputError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> str:
    """Turn a user's ``--device`` into a torch device string, refusing CUDA where there is none."""
    import torch

    name = name.lower()
    if name not in DEVICES:
        raise InputError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but no CUDA device is available (use --device cpu or auto)")
    return name
