"""Sweep of the colour fit's settings on the recolor benchmark pairs (how the defaults were chosen).

Each variant is a set of ``FitSettings`` overrides; every variant runs ``recolor`` on the same pairs
and is scored by ``recolor_metrics.score`` (one seed, 5 000 pixels, as benchmarks/recolor.py). The
table gives the median and the worst pair of W2 / sampling floor, the median roughness and
displacement / OT cost, the worst clipped excess (pp), the pairs whose structure is >= hm-mkl-hm's
(computed here) and the median CPU seconds of one fit + apply (one thread).

    python benchmarks/recolor_fit_sweep.py --variants "default,gradient (v2.4 default)" --pairs 10 \
        --out benchmarks/results/recolor_fit_sweep.json
    python benchmarks/recolor_fit_sweep.py --variants "default,gradient (v2.4 default)" --natural 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from recolor import SHARED, pairs
from recolor_metrics import references, score

from classical_process import hm_mkl_hm
from otmap_cli.io import Image, read_image
from otmap_cli.transport.fit import FitSettings
from otmap_cli.transport.recolor import recolor

VARIANTS: dict[str, dict] = {
    "default": {},
    "ridge + 150 refine": {"steps": 150},
    "ridge b24": {"summary_bins": 24},
    "gradient (v2.4 default)": {"warm_start": "gradient"},
    "gradient, warm only": {"warm_start": "gradient", "steps": 0},
    "gradient, no edge rule": {"warm_start": "gradient", "edge_weight": 0.0},
}


def natural_pairs(count: int) -> list[tuple[str, Path, Path]]:
    """``count`` pairs spread over the sorted training photos: each with the photo half a stride later."""
    files = sorted((SHARED / "train_natural").glob("*"))
    stride = len(files) // (2 * count)
    return [(f"{files[k].stem}->{files[k + stride // 2].stem}", files[k], files[k + stride // 2])
            for k in range(0, count * stride, stride)]


def run(variants: list[str], chosen, pixels: int, extra: dict[str, dict]) -> dict:
    table = {**VARIANTS, **extra}
    rows: dict[str, list[dict]] = {name: [] for name in variants}
    for pair, src_path, sty_path in chosen:
        src, sty = read_image(src_path).rgb, read_image(sty_path).rgb
        refs = references(src, sty, pixels, 1)
        reference = score(src, sty, hm_mkl_hm(src, sty), refs)["structure"]
        for name in variants:
            start = time.process_time()
            out, _, result = recolor(Image(rgb=src), Image(rgb=sty), FitSettings(**table[name]))
            seconds = time.process_time() - start
            record = {"pair": pair, "seconds": seconds, "fell_back": result.fell_back,
                      "structure_hm_mkl_hm": reference, **score(src, sty, out.rgb, refs)}
            rows[name].append(record)
            print(f"{pair:>16}  {name:<44} W2/floor {record['w2'] / record['floor']:.2f}  "
                  f"clip {100 * (record['clipped'] - record['clipped_allowed']):+.1f}pp  "
                  f"struct {record['structure']:.3f} (hm {reference:.3f})  rough {record['roughness']:.2f}  "
                  f"{seconds:.2f}s", flush=True)
    return rows


def summary(rows: dict[str, list[dict]]) -> None:
    print("\n| variant | median W2/floor | worst W2/floor (pair) | median roughness | median disp/OT | "
          "worst clipped excess pp (pair) | structure >= hm-mkl-hm | median CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, records in rows.items():
        ratios = [r["w2"] / r["floor"] for r in records]
        excess = [100 * (r["clipped"] - r["clipped_allowed"]) for r in records]
        worst, clip = int(np.argmax(ratios)), int(np.argmax(excess))
        kept = sum(r["structure"] >= r["structure_hm_mkl_hm"] - 1e-3 for r in records)
        falls = sum(r["fell_back"] for r in records)
        print(f"| {name}{f' ({falls} fell back)' if falls else ''} | {np.median(ratios):.2f} | "
              f"{ratios[worst]:.2f} ({records[worst]['pair']}) | {np.median([r['roughness'] for r in records]):.2f} | "
              f"{np.median([r['displacement'] / r['ot_cost'] for r in records]):.3f} | "
              f"{excess[clip]:+.1f} ({records[clip]['pair']}) | {kept}/{len(records)} | "
              f"{np.median([r['seconds'] for r in records]):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="default", help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--extra", default="{}", help='JSON {name: FitSettings overrides} of more variants')
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--only", default=None, help="comma-separated pair indices (0 = demo)")
    parser.add_argument("--natural", type=int, default=0,
                        help="instead: N pairs of ../shared/data/train_natural (a set the defaults were not chosen on)")
    parser.add_argument("--pixels", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    extra = json.loads(args.extra)
    chosen = natural_pairs(args.natural) if args.natural else pairs(args.pairs)
    if args.only:
        chosen = [chosen[int(i)] for i in args.only.split(",")]
    rows = run(args.variants.split(","), chosen, args.pixels, extra)
    summary(rows)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
