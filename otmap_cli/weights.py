"""Finding, saving and loading weights: safetensors only, never pickle.

Every file otmap writes or reads (shipped models, fitted colour maps, training checkpoints) is a
safetensors file whose string metadata carries ``otmap_kind`` (what the file is) and ``otmap_meta``
(a JSON object: configuration, metrics, provenance). A file without our marker is refused with a
clear message instead of being interpreted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from otmap_cli.errors import InputError
from otmap_cli.io import atomic_output

KIND_KEY = "otmap_kind"
META_KEY = "otmap_meta"


def models_dir() -> Path:
    """Folder of the shipped models: ``otmap_cli/models`` in an installed wheel (pyproject maps the
    repository's ``models/`` there), else ``models/`` of a source checkout."""
    installed = Path(__file__).parent / "models"
    return installed if installed.is_dir() else Path(__file__).parents[1] / "models"


def shipped_model(name: str) -> Path:
    """Path of a shipped model file such as ``flow_natural.safetensors``; clear error if missing."""
    path = models_dir() / name
    if not path.is_file():
        raise InputError(f"shipped model {name} not found in {models_dir()}; give your own weights file "
                         "(see 'otmap train --help')")
    return path


def save_tensors(path: Path | str, tensors: dict[str, Any], kind: str, meta: dict[str, Any]) -> None:
    """Write tensors + our metadata atomically (temporary file in the same folder, then rename)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_output(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata={KIND_KEY: kind, META_KEY: json.dumps(meta)})


def load_tensors(path: Path | str, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a safetensors file written by :func:`save_tensors`; refuse anything else cleanly."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() in {".pt", ".pth", ".pkl", ".ckpt", ".bin"}:
        raise InputError(f"{path}: pickled weights are refused for safety; otmap reads only .safetensors files")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a valid safetensors file ({str(exc).splitlines()[0][:120]})") from None
    found = metadata.get(KIND_KEY)
    if found != kind:
        raise InputError(f"{path}: not an otmap {kind} file (found kind {found!r})")
    try:
        meta = json.loads(metadata.get(META_KEY, "{}"))
    except json.JSONDecodeError:
        raise InputError(f"{path}: corrupt otmap metadata") from None
    return tensors, meta


def save_half(path: Path | str, module, kind: str, meta: dict[str, Any]) -> None:
    """Ship a model: its floating-point state in fp16 (half the bytes; the model cards give the
    measured effect), ``module.config`` in the metadata so that the file rebuilds the model."""
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in module.state_dict().items()}
    save_tensors(path, tensors, kind, {"config": module.config, **meta})


def load_half(module, tensors: dict[str, Any]):
    """Load a state saved by :func:`save_half` into ``module`` (fp32 again); returns it in eval mode."""
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    return module.eval()


def optimizer_tensors(prefix: str, optimizer) -> dict[str, Any]:
    """An optimiser's per-parameter state as flat tensors ``{prefix}.{index}.{name}`` (for checkpoints)."""
    import torch

    tensors = {}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            tensors[f"{prefix}.{index}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors


def load_optimizer_tensors(prefix: str, optimizer, tensors: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_tensors`; hyper-parameters come from the optimiser as built."""
    state = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            _, index, name = key.split(".", 2)
            state["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(state)


def sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
