"""Finding, saving and loading weights: safetensors only, never pickle.

Every file otmap writes or reads (shipped models, fitted colour maps, training checkpoints) is a
safetensors file whose string metadata carries ``otmap_kind`` (what the file is) and ``otmap_meta``
(a JSON object: configuration, metrics, provenance). A file without our marker is refused with a
clear message instead of being interpreted.

A model file is untrusted input: its configuration decides how big a network gets built. So
:func:`load_model` checks the configuration against a schema (known keys, types, ranges), builds
the network on PyTorch's "meta" device (shapes only, no memory) and compares every parameter's
shape with the tensors actually stored, before anything real is allocated: memory stays bounded
by the size of the file, whatever its configuration claims.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

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


def save_tensors(path: Path | str, tensors: dict[str, Any], kind: str, meta: dict[str, Any],
                 overwrite: bool = True) -> None:
    """Write tensors (torch, or all NumPy arrays) + our metadata atomically (temporary file in the same
    folder, then rename; ``overwrite=False``: InputError if the file exists by then)."""
    import numpy as np

    if tensors and all(isinstance(v, np.ndarray) for v in tensors.values()):
        from safetensors.numpy import save_file

        tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    else:
        from safetensors.torch import save_file

        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_output(Path(path), overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata={KIND_KEY: kind, META_KEY: json.dumps(meta)})


def load_tensors(path: Path | str, kind: str, framework: str = "pt") -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a safetensors file written by :func:`save_tensors` as torch tensors (``framework`` "pt") or
    NumPy arrays ("numpy"); refuse anything else cleanly."""
    from safetensors import SafetensorError

    if framework == "numpy":
        from safetensors.numpy import load_file
    else:
        from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() in {".pt", ".pth", ".pkl", ".ckpt", ".bin"}:
        raise InputError(f"{path}: pickled weights are refused for safety; otmap reads only .safetensors files")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework=framework) as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a valid safetensors file ({str(exc).splitlines()[0][:120]})") from None
    found = metadata.get(KIND_KEY)
    if found != kind:
        raise InputError(f"{path}: not an otmap {kind} file (found kind {found!r})")
    try:
        meta = json.loads(metadata.get(META_KEY, "{}"))
    except (json.JSONDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise InputError(f"{path}: corrupt otmap metadata (not a JSON object of sane depth)") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: corrupt otmap metadata (a JSON object was expected)")
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


@dataclass(frozen=True)
class Number:
    """A numeric field of a stored configuration: ``kind`` (int or float) within [low, high]."""

    kind: type
    low: float
    high: float

    def problem(self, value: Any) -> str | None:
        numeric = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric):
            return f"must be {'an integer' if self.kind is int else 'a number'}"
        if (isinstance(value, float) and not math.isfinite(value)) or not self.low <= value <= self.high:
            return f"must be within {self.low:g}..{self.high:g}"
        return None


@dataclass(frozen=True)
class Choice:
    """A field that takes one of a few values (compared with their type: ``1`` is not ``True``)."""

    options: tuple

    def problem(self, value: Any) -> str | None:
        if any(type(value) is type(option) and value == option for option in self.options):
            return None
        return f"must be one of {', '.join(map(repr, self.options))}"


@dataclass(frozen=True)
class NumberList:
    """A list of ``item`` numbers with ``min_len`` to ``max_len`` entries."""

    item: Number
    min_len: int
    max_len: int

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, list) or not self.min_len <= len(value) <= self.max_len:
            length = str(self.min_len) if self.min_len == self.max_len else f"{self.min_len}..{self.max_len}"
            return f"must be a list of {length} numbers"
        return next((f"[{i}] {p}" for i, v in enumerate(value) if (p := self.item.problem(v))), None)


def config_problem(config: Any, fields: Mapping[str, Number | Choice | NumberList]) -> str | None:
    """What is wrong with a stored configuration (first problem found), None if it fits ``fields``.

    Missing keys are allowed (the constructor's default applies); unknown keys are not.
    """
    if not isinstance(config, dict):
        return "no configuration object"
    unknown = sorted(set(config) - set(fields), key=str)
    if unknown:
        return f"unknown setting {str(unknown[0])[:40]!r}"
    for key, value in config.items():
        problem = fields[key].problem(value)
        if problem:
            return f"{key} {problem}"
    return None


def _is_float(tensor: Any) -> bool:
    """Floating point, for a torch tensor or a NumPy array."""
    if hasattr(tensor, "is_floating_point"):
        return tensor.is_floating_point()
    return tensor.dtype.kind == "f"


def tensors_problem(expected: Mapping[str, tuple[int, ...] | Any], found: Mapping[str, Any]) -> str | None:
    """First difference between what a network needs (a state dict, or float tensor shapes by name) and the
    stored tensors: names, shapes, float vs integer."""
    missing = sorted(set(expected) - set(found))
    if missing:
        return f"tensor {missing[0]!r} is missing"
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        return f"unexpected tensor {unexpected[0][:60]!r}"
    for name, needed in expected.items():
        stored = found[name]
        shape = tuple(needed) if isinstance(needed, tuple) else tuple(needed.shape)
        if tuple(stored.shape) != shape:
            return f"tensor {name!r} has shape {list(stored.shape)}, the configuration needs {list(shape)}"
        if _is_float(stored) != (isinstance(needed, tuple) or _is_float(needed)):
            return f"tensor {name!r} has type {stored.dtype}"
    return None


def _checked_tensors(path: Path | str, kind: str, fields: Callable[[dict], Mapping] | Mapping,
                     expected_of: Callable[[dict], Mapping], framework: str) -> tuple[dict[str, Any], dict]:
    """The file's tensors and metadata once its config fits ``fields`` and its tensors what
    ``expected_of(config)`` says (shapes by name, or a state dict); InputError otherwise."""
    tensors, meta = load_tensors(path, kind, framework)
    config = meta.get("config")
    if not isinstance(config, dict):
        raise InputError(f"{path}: no model configuration in the file")
    try:
        problem = config_problem(config, fields(config) if callable(fields) else fields)
        if problem:
            raise InputError(problem)
        expected = expected_of(config)
    except (InputError, TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: bad model configuration: {str(exc).splitlines()[0][:100]}") from None
    problem = tensors_problem(expected, tensors)
    if problem:
        raise InputError(f"{path}: does not match its configuration: {problem}")
    return tensors, meta


def load_model(path: Path | str, kind: str, fields: Callable[[dict], Mapping] | Mapping,
               build: Callable[[dict], Any],
               shapes: Callable[[dict], Mapping[str, tuple[int, ...]]] | None = None) -> tuple[Any, dict]:
    """(network in fp32 on the CPU in eval mode, metadata) from a file of ``kind`` whose ``config`` must fit ``fields``
    (a schema, or a function of the config giving one) and whose tensors must fit what ``build(config)``
    makes; InputError, before any allocation beyond the file itself, if not.

    The tensors a config needs come from ``shapes(config)`` when given (float tensor shapes by name),
    else from building the network on the meta device. (The first meta-device arithmetic of a process
    imports PyTorch's Python meta kernels, seconds on a CPU; ``shapes`` spares small hot-path models that.)
    """
    import torch

    def expected_of(config: dict) -> Mapping:
        if shapes is not None:
            return shapes(config)
        with torch.device("meta"):
            return build(config).state_dict()

    tensors, meta = _checked_tensors(path, kind, fields, expected_of, "pt")
    if not all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point()):
        raise InputError(f"{path}: holds non-finite weights")
    return load_half(build(meta["config"]), tensors), meta


def load_arrays(path: Path | str, kind: str, fields: Callable[[dict], Mapping] | Mapping,
                shapes: Callable[[dict], Mapping[str, tuple[int, ...]]]) -> tuple[dict[str, Any], dict]:
    """:func:`load_model`'s checks without torch: (float32 NumPy arrays by name, metadata)."""
    import numpy as np

    tensors, meta = _checked_tensors(path, kind, fields, shapes, "numpy")
    if not all(np.isfinite(v).all() for v in tensors.values()):
        raise InputError(f"{path}: holds non-finite weights")
    return {name: value.astype(np.float32) for name, value in tensors.items()}, meta


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
