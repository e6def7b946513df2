"""MNIST from its four idx files (LeCun et al. 1998 format), no torchvision, no downloads.

Images are kept as uint8 (60 000 x 28 x 28 is 47 MB) and turned into model units only per batch:
``to_unit`` maps [0, 255] to [-1, 1], the range every generator here works in.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from otmap_cli.errors import InputError
from otmap_cli.io import atomic_output

SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_DTYPE_CODE_UBYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """One idx file (optionally gzipped) as an array; the header gives dtype and shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _DTYPE_CODE_UBYTE:
        raise InputError(f"{path}: not an unsigned-byte idx file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise InputError(f"{path}: truncated idx file ({body.size} values for shape {shape})")
    return body.reshape(shape)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise InputError(f"{folder}: missing {stem}[.gz] (the MNIST idx files)")


def load_mnist(folder: Path | str, split: str = "train"):
    """(images uint8 N x 28 x 28, labels int64 N) of the ``train`` or ``test`` split, as torch tensors."""
    import torch

    if split not in SPLITS:
        raise InputError(f"unknown MNIST split {split!r}; choose train or test")
    folder = Path(folder)
    image_stem, label_stem = SPLITS[split]
    images = read_idx(_find(folder, image_stem))
    labels = read_idx(_find(folder, label_stem))
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise InputError(f"{folder}: image and label files of the {split} split do not match")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def to_unit(images):
    """uint8 N x 28 x 28 -> float N x 1 x 28 x 28 in [-1, 1]."""
    return images.float().unsqueeze(1) / 127.5 - 1.0


def to_uint8(images):
    """Model units ([-1, 1], clamped) -> uint8 N x 28 x 28."""
    import torch

    pixels = (images.detach().float().clamp(-1, 1) + 1) * 127.5
    return pixels.round().to(torch.uint8).reshape(-1, 28, 28)


def image_grid(images: np.ndarray, columns: int | None = None, gap: int = 2) -> np.ndarray:
    """Tile uint8 N x h x w images into one uint8 array, ``columns`` across (square by default)."""
    n, h, w = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    grid = np.zeros((rows * (h + gap) + gap, columns * (w + gap) + gap), dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, columns)
        grid[gap + r * (h + gap): gap + r * (h + gap) + h, gap + c * (w + gap): gap + c * (w + gap) + w] = images[k]
    return grid


def save_png(pixels: np.ndarray, path: Path | str, overwrite: bool = True) -> None:
    """A grayscale uint8 array as PNG, written atomically (``-``: to standard output;
    ``overwrite=False``: fail if the file exists)."""
    import io
    import sys

    from PIL import Image as PILImage

    if str(path) == "-":
        buffer = io.BytesIO()
        PILImage.fromarray(pixels, mode="L").save(buffer, format="PNG")
        sys.stdout.buffer.write(buffer.getvalue())
        sys.stdout.buffer.flush()
        return
    with atomic_output(Path(path), overwrite=overwrite) as tmp:
        PILImage.fromarray(pixels, mode="L").save(tmp, format="PNG")
