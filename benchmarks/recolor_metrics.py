"""Scores of a colour transfer (output image vs source and style), shared by the recolor benchmarks.

* ``w2``: exact W2 (``ot.emd2``) between N output pixels and N style pixels, beside the sampling floor
  W2(style, independent resample of style) and the exact OT cost W2^2(source, style);
* ``roughness``: p99 of |T(x_i) - T(x_j)| / |x_i - x_j| over pixel pairs with 0 < |x_i - x_j| < 0.02
  (grain, banding);
* ``clipped``: fraction of pixels with a channel that quantises to 0 or 255 (detail erased there);
* ``structure``: Pearson correlation between the Sobel gradient fields (d/dx and d/dy stacked) of the
  source's and the output's luminance. Chosen over SSIM because a colour transfer is *meant* to change
  contrast and brightness, which SSIM's luminance and contrast terms penalise; a correlation is blind
  to a positive affine change of tone, yet drops where edges vanish (crushed shadows: the gradient
  goes to zero) or where new ones appear (grain).
"""

from __future__ import annotations

import numpy as np
import ot


def emd_w2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(max(ot.emd2([], [], ot.dist(a, b), numItermax=10_000_000), 0.0)))


def roughness(src: np.ndarray, out: np.ndarray, n: int = 40_000, radius: float = 0.02, seed: int = 0) -> float:
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    index = rng.choice(src.size // 3, min(n, src.size // 3), replace=False)
    x, y = src.reshape(-1, 3)[index].astype(np.float64), out.reshape(-1, 3)[index].astype(np.float64)
    close = cKDTree(x).query_pairs(radius, output_type="ndarray")
    if len(close) > 200_000:
        close = close[rng.choice(len(close), 200_000, replace=False)]
    dx = np.linalg.norm(x[close[:, 0]] - x[close[:, 1]], axis=1)
    keep = dx > 1e-9
    dy = np.linalg.norm(y[close[keep, 0]] - y[close[keep, 1]], axis=1)
    return float(np.percentile(dy / dx[keep], 99)) if keep.any() else float("nan")


def clipped_fraction(rgb: np.ndarray) -> float:
    flat = rgb.reshape(-1, 3)
    return float(((flat <= 0.5 / 255) | (flat >= 1 - 0.5 / 255)).any(1).mean())


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3] @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)  # Rec. 709


def structure(src: np.ndarray, out: np.ndarray) -> float:
    from skimage.filters import sobel_h, sobel_v

    a, b = luminance(src), luminance(np.clip(out, 0, 1))
    ga = np.concatenate([sobel_h(a).ravel(), sobel_v(a).ravel()])
    gb = np.concatenate([sobel_h(b).ravel(), sobel_v(b).ravel()])
    if ga.std() < 1e-12 or gb.std() < 1e-12:
        return 0.0
    return float(np.corrcoef(ga, gb)[0, 1])


def references(src: np.ndarray, sty: np.ndarray, n: int, seeds: int) -> list[dict]:
    """Per seed: source pixel indices, two disjoint style samples, the floor and the exact OT cost."""
    refs = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        i = rng.choice(src.size // 3, min(n, src.size // 3), replace=False)
        j = rng.permutation(sty.size // 3)[: 2 * n]
        s = src.reshape(-1, 3)[i].astype(np.float64)
        t1, t2 = sty.reshape(-1, 3)[j[:n]].astype(np.float64), sty.reshape(-1, 3)[j[n:]].astype(np.float64)
        refs.append({"index": i, "source": s, "style": t1, "floor": emd_w2(t2, t1), "ot_cost": emd_w2(s, t1) ** 2})
    return refs


def score(src: np.ndarray, sty: np.ndarray, out: np.ndarray, refs: list[dict]) -> dict:
    out = np.clip(out, 0, 1)
    w2, disp = [], []
    for ref in refs:
        o = out.reshape(-1, 3)[ref["index"]].astype(np.float64)
        w2.append(emd_w2(o, ref["style"]))
        disp.append(float(((o - ref["source"]) ** 2).sum(1).mean()))
    return {"w2": float(np.mean(w2)), "floor": float(np.mean([r["floor"] for r in refs])),
            "displacement": float(np.mean(disp)), "ot_cost": float(np.mean([r["ot_cost"] for r in refs])),
            "roughness": roughness(src, out), "clipped": clipped_fraction(out),
            "clipped_allowed": max(clipped_fraction(src), clipped_fraction(sty)), "structure": structure(src, out)}
