"""Shared fixtures: the shipped samples and small synthetic images, one torch thread for speed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"

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
