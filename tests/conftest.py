"""Shared fixtures: the shipped samples and small synthetic images, one torch thread for speed."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
PHOTOS = [SAMPLES / "day.jpg", SAMPLES / "sunset.jpg"]

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)


def run_cli(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess (exit codes and stderr as users see them)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "otmap_cli.cli", *args], input=stdin, capture_output=True,
                          cwd=cwd or ROOT, env=env, timeout=600)


def invoke(*args: str, stdin: bytes | None = None):
    """Run the ``otmap`` app in-process (Typer's CliRunner): exit code, ``stdout``/``stderr`` apart."""
    from typer.testing import CliRunner

    from otmap_cli.cli import app

    return CliRunner().invoke(app, list(args), input=stdin, prog_name="otmap")


@pytest.fixture
def gradient_image(tmp_path: Path):
    """Write a small smooth RGB test image and return its path."""

    def make(name: str = "grad.png", size: tuple[int, int] = (40, 30), mode: str = "RGB") -> Path:
        from PIL import Image

        w, h = size
        yy, xx = np.mgrid[0:h, 0:w]
        rgb = np.stack([xx / max(w - 1, 1), yy / max(h - 1, 1), 0.5 + 0.4 * np.sin(xx / 5.0)], axis=-1)
        arr = (rgb * 255).astype(np.uint8)
        img = Image.fromarray(arr)
        if mode == "RGBA":
            alpha = ((xx * 7 + yy * 3) % 256).astype(np.uint8)
            img = Image.fromarray(np.dstack([arr, alpha]), "RGBA")
        elif mode != "RGB":
            img = img.convert(mode)
        path = tmp_path / name
        img.save(path)
        return path

    return make


def natural_crop(size: int = 48) -> np.ndarray:
    """A size x size crop of a sample photo, or a synthetic scene (gradients, discs, edges) without one."""
    from otmap_cli.io import read_image

    for path in PHOTOS:
        if path.is_file():
            rgb = read_image(path).rgb
            y, x = (rgb.shape[0] - size) // 2, (rgb.shape[1] - size) // 2
            return rgb[y:y + size, x:x + size].copy()
    yy, xx = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([0.3 + 0.4 * xx, 0.2 + 0.5 * yy, 0.6 - 0.3 * xx * yy], axis=2)
    for cy, cx, r, colour in ((0.3, 0.3, 0.18, (0.9, 0.8, 0.2)), (0.7, 0.6, 0.22, (0.1, 0.3, 0.7))):
        rgb[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = colour
    rgb[:, int(0.8 * size):] *= 0.5
    return rgb.astype(np.float32)


def tiny_prior():
    """A small untrained flow prior (fixed seed): for plumbing, not for quality."""
    import torch

    from otmap_cli.restoration.prior import FlowPrior

    torch.manual_seed(0)
    return FlowPrior.from_config({"channels": [8, 16], "blocks": 1}).eval()


def shipped_prior():
    """The shipped flow prior, or skip the test where it is not shipped."""
    from otmap_cli.restoration.prior import PRIOR_FILE, default_prior
    from otmap_cli.weights import models_dir

    if not (models_dir() / PRIOR_FILE).is_file():
        pytest.skip(f"{PRIOR_FILE} is not shipped yet (train it with `otmap train flow`)")
    return default_prior("cpu")


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class k: a bright bar at column 4 + 2k with random thickness and height, on black."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i, k in enumerate(labels):
        top, width = rng.integers(2, 10), rng.integers(1, 3)
        images[i, top:top + 14, 4 + 2 * k: 4 + 2 * k + width] = rng.integers(180, 256)
    return images, labels.astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mnist")
    for split, n, seed in (("train", 600, 0), ("t10k", 200, 1)):
        images, labels = synthetic_digits(n, seed)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder
