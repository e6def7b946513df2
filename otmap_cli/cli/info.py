"""``otmap info``: versions, device and the shipped models."""

from __future__ import annotations

import typer

from otmap_cli.cli.common import emit_json


def info(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """Versions, compute device, and the shipped models with their checksums."""
    import platform

    import torch

    from otmap_cli import __version__
    from otmap_cli.weights import models_dir, sha256

    models = {p.name: {"bytes": p.stat().st_size, "sha256": sha256(p)}
              for p in sorted(models_dir().glob("*.safetensors"))}
    payload = {"otmap": __version__, "python": platform.python_version(), "torch": torch.__version__,
               "cuda": torch.cuda.is_available(), "device": "cuda" if torch.cuda.is_available() else "cpu",
               "threads": torch.get_num_threads(), "models_dir": str(models_dir()), "models": models}
    if as_json:
        emit_json(payload)
        return
    for key, value in payload.items():
        if key != "models":
            print(f"{key}: {value}")
    for model_name, meta in models.items():
        print(f"model {model_name}: {meta['bytes']:,} bytes sha256 {meta['sha256']}")
