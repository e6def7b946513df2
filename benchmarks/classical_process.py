"""A whole classical colour-transfer process, PNG in and PNG out, for the timing table of recolor.py.

    python benchmarks/classical_process.py hm-mkl-hm SOURCE STYLE OUT
    python benchmarks/classical_process.py idt SOURCE STYLE OUT

``hm-mkl-hm`` is color-matcher's recipe written with scikit-image's 8-bit histogram matching and the
numpy closed-form Gaussian (MKL) map, so no torch is imported: the reference a user would time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def gaussian_map(src: np.ndarray, sty: np.ndarray) -> np.ndarray:
    """x -> m2 + A (x - m1), A = S1^-1/2 (S1^1/2 S2 S1^1/2)^1/2 S1^-1/2 (Pitie & Kokaram 2007)."""
    def sym_power(matrix, power):
        evals, evecs = np.linalg.eigh(matrix)
        return evecs @ np.diag(np.clip(evals, 1e-6, None) ** power) @ evecs.T

    x, y = src.reshape(-1, 3).astype(np.float64), sty.reshape(-1, 3).astype(np.float64)
    s1, s2 = np.cov(x.T) + 1e-6 * np.eye(3), np.cov(y.T) + 1e-6 * np.eye(3)
    root, inv_root = sym_power(s1, 0.5), sym_power(s1, -0.5)
    matrix = inv_root @ sym_power(root @ s2 @ root, 0.5) @ inv_root
    return ((x - x.mean(0)) @ matrix + y.mean(0)).reshape(src.shape)


def hm_mkl_hm(src: np.ndarray, sty: np.ndarray) -> np.ndarray:
    from skimage.exposure import match_histograms

    out = match_histograms(src, sty, channel_axis=-1)
    out = np.clip(gaussian_map(out, sty), 0, 1)
    return match_histograms(out, sty, channel_axis=-1)


def main() -> None:
    method, source, style, output = sys.argv[1:5]
    src = np.asarray(Image.open(source).convert("RGB"), dtype=np.float32) / 255
    sty = np.asarray(Image.open(style).convert("RGB"), dtype=np.float32) / 255
    if method == "hm-mkl-hm":
        out = hm_mkl_hm(src, sty)
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        from idt import idt_transfer

        out = idt_transfer(src, sty)
    Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)).save(output)


if __name__ == "__main__":
    main()
