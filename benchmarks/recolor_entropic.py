"""Is the closeness gap of ``otmap recolor`` the C-MGN's, or any smooth monotone map's? (issue 11)

The default C-MGN fit stays at ~2.5x the sampling floor in W2 (docs/decisions.md: the regression
onto the optimal plan's targets stalls). This script measures another monotone gradient map on the
same pairs and scores: the entropic Brenier-map estimator (Pooladian & Niles-Weed 2021, "Entropic
estimation of optimal transport maps", arXiv 2109.12004, Eq. (3.4)):

    T_eps(x) = sum_j y_j exp((g_j - |x - y_j|^2) / eps) / sum_j exp((g_j - |x - y_j|^2) / eps),

with (y_j) the style's colour-histogram cells and g the entropic dual potential of the cell-to-cell
problem. T_eps is the gradient of the convex (eps/2) logsumexp_j((2 x.y_j + g_j - |y_j|^2) / eps),
so it is a Brenier-type map (a PSD Jacobian: the softmax covariance of the y_j over eps), and it
never leaves the gamut (a convex combination of style colours). Also the average
(1 - lam) C-MGN + lam T_eps, still the gradient of a convex function.

    python benchmarks/recolor_entropic.py --eps 1e-3,3e-3 --blend 0.3,0.5 --out bench_out/recolor_entropic
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import ot

from recolor import color_matcher, idt, mgn, pairs, timed
from recolor_metrics import references, score

from otmap_cli.io import read_image
from otmap_cli.transport.fit import colour_histogram
from otmap_cli.transport.lut import map_colours


def entropic_potential(a: np.ndarray, b: np.ndarray, cost: np.ndarray, eps: float, rounds: int = 50) -> np.ndarray:
    """The target-side entropic dual potential g (plan_ij = exp((f_i + g_j - cost_ij) / eps)).

    Started from POT's exact (``ot.emd``) duals, where the kernel is O(1) on the plan's support, then
    Sinkhorn scaling on that absorbed kernel (Schmitzer 2019, "Stabilized sparse scaling algorithms
    for entropy regularized transport problems", Sec. 3.1); POT's ``sinkhorn_log`` from zero took
    minutes for the same problem at this eps.
    """
    _, log = ot.emd(a, b, cost, log=True, numItermax=10_000_000)
    f, g = log["u"].copy(), log["v"].copy()
    f -= (f[:, None] + g[None] - cost).max()
    for _ in range(rounds):
        kernel = np.exp(np.minimum((f[:, None] + g[None] - cost) / eps, 50))
        u, v = np.ones(len(a)), np.ones(len(b))
        for _ in range(20):
            u = a / np.maximum(kernel @ v, 1e-300)
            v = b / np.maximum(kernel.T @ u, 1e-300)
        f += eps * np.log(u)
        g += eps * np.log(v)
        if np.abs(np.exp((f[:, None] + g[None] - cost) / eps).sum(1) - a).sum() < 1e-4:
            break
    return g


def entropic_map(eps: float, bins: int = 16, pixels: int = 20_000):
    def run(src, sty):
        rng = np.random.default_rng(0)
        xs = src.reshape(-1, 3)[rng.choice(src.size // 3, min(pixels, src.size // 3), replace=False)]
        ys = sty.reshape(-1, 3)[rng.choice(sty.size // 3, min(pixels, sty.size // 3), replace=False)]
        _, xc, a = colour_histogram(xs, bins)
        _, yc, b = colour_histogram(ys, bins)
        xc, yc, a, b = (np.asarray(v, dtype=np.float64) for v in (xc, yc, a, b))
        g = entropic_potential(a / a.sum(), b / b.sum(), ot.dist(xc, yc), eps)

        def transform(colours: np.ndarray) -> np.ndarray:
            logits = (g[None] - ot.dist(colours.astype(np.float64), yc)) / eps
            weights = np.exp(logits - logits.max(1, keepdims=True))
            return ((weights / weights.sum(1, keepdims=True)) @ yc).astype(np.float32)

        return map_colours(transform, src, chunk=20_000)
    run.__name__ = f"entropic map eps={eps:g} ({bins}^3 cells)"
    return run


def blend(lam: float, eps: float):
    smooth, entropic = mgn("cmgn", "sliced"), entropic_map(eps)

    def run(src, sty):
        return (1 - lam) * np.clip(smooth(src, sty), 0, 1) + lam * entropic(src, sty)
    run.__name__ = f"(1-{lam:g}) C-MGN + {lam:g} entropic eps={eps:g}"
    return run


def summary(rows: dict[str, list[dict]]) -> None:
    idt_rough = {r["pair"]: r["roughness"] for r in rows[idt.__name__]}
    hm_structure = {r["pair"]: r["structure"] for r in rows["color-matcher hm-mkl-hm"]}
    print("\n| method | median W2 / floor | median roughness (x IDT's) | median displacement / OT cost "
          "| max clipped excess, pp | structure >= hm-mkl-hm | s / pair |\n|---|---|---|---|---|---|---|")
    for name, records in rows.items():
        print(f"| {name} | {np.median([r['w2'] / r['floor'] for r in records]):.2f} "
              f"| {np.median([r['roughness'] / idt_rough[r['pair']] for r in records]):.2f} "
              f"| {np.median([r['displacement'] / r['ot_cost'] for r in records]):.3f} "
              f"| {max(100 * (r['clipped'] - r['clipped_allowed']) for r in records):+.1f} "
              f"| {sum(r['structure'] >= hm_structure[r['pair']] for r in records)}/{len(records)} "
              f"| {np.median([r['seconds'] for r in records]):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10, help="CBSD68 pairs besides the demo pair and issue 11's two")
    parser.add_argument("--pixels", type=int, default=5000)
    parser.add_argument("--eps", type=str, default="1e-3,3e-3", help="comma-separated eps of the entropic map rows")
    parser.add_argument("--blend", type=str, default="0.5", help="comma-separated weights lam of the blended rows "
                                                                   "(with the first --eps)")
    parser.add_argument("--out", type=Path, default=Path("bench_out/recolor_entropic"))
    args = parser.parse_args()
    eps = [float(e) for e in args.eps.split(",")]
    methods = [mgn("cmgn", "sliced"), idt, color_matcher("hm-mkl-hm"), *(entropic_map(e) for e in eps),
               *(blend(float(lam), eps[0]) for lam in args.blend.split(",") if lam)]
    rows: dict[str, list[dict]] = {}
    for name, src_path, sty_path in pairs(args.pairs):
        src, sty = read_image(src_path).rgb, read_image(sty_path).rgb
        refs = references(src, sty, args.pixels, 1)
        for fn in methods:
            out, seconds = timed(fn, src, sty)
            record = {"pair": name, "seconds": seconds, **score(src, sty, out, refs)}
            rows.setdefault(fn.__name__, []).append(record)
            print(f"{name:>16}  {fn.__name__:<44} W2/floor {record['w2'] / record['floor']:.2f}  "
                  f"rough {record['roughness']:.2f}  clip {100 * record['clipped']:.1f}% "
                  f"(allowed {100 * record['clipped_allowed']:.1f})  struct {record['structure']:.3f}  {seconds:.1f}s",
                  flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(rows, indent=1))
    summary(rows)


if __name__ == "__main__":
    main()
