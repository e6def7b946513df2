"""Benchmark of ``recolor --preserve-luminance`` and ``--mask``/``--style-mask`` (issue 16, items 1 and 2).

On the pairs of benchmarks/recolor.py (the demo pair, CBSD68 files 2i -> 2i+1, issue 11's two failure
cases), one map is fitted per pair with the defaults and applied with and without the flag, so the
rows differ by the flag alone (the CLI fits the same map either way). Reported per pair:

* colour only: |L*(output) - L*(source)| (CIELAB, skimage ``rgb2lab``), mean and p99, of the output as
  an 8-bit file holds it, of the float output, and through the 65^3 table that images above 0.27 MP
  go through; W2 of the chroma (a*, b*) of the output against the style's (exact EMD, ``ot.emd2``, N
  pixels, mean over seeds) with and without the flag, beside the source's and the sampling floor
  (style against a disjoint resample of itself); the fraction of pixels whose chroma the gamut
  reduced by more than 1;
* regions: masks by a simple rule (the brighter half of each image by Rec. 709 luminance); W2 (RGB)
  of the output's masked pixels against the style's masked pixels, beside the source's and the
  floor, and the number of pixels that changed outside the feather (must be 0).

    python benchmarks/recolor_regions.py --pairs 3 --seeds 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from skimage.color import rgb2lab

from recolor import pairs
from recolor_metrics import emd_w2, luminance

from otmap_cli.io import Image, read_image
from otmap_cli.transport.lut import apply_lut
from otmap_cli.transport.recolor import recolor
from otmap_cli.transport.regions import DEFAULT_FEATHER, feather_weights

HERE = Path(__file__).resolve().parent


def lab(rgb: np.ndarray) -> np.ndarray:
    return rgb2lab(np.clip(rgb, 0, 1).reshape(-1, 3).astype(np.float64))


def eight_bit(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0, 1) * 255) / 255


def lightness_error(out: np.ndarray, src_lab: np.ndarray) -> dict:
    error = np.abs(lab(out)[:, 0] - src_lab[:, 0])
    return {"mean": float(error.mean()), "p99": float(np.percentile(error, 99))}


def w2_samples(a: np.ndarray, b: np.ndarray, n: int, seeds: int) -> float:
    values = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        values.append(emd_w2(a[rng.choice(len(a), min(n, len(a)), replace=False)],
                             b[rng.choice(len(b), min(n, len(b)), replace=False)]))
    return float(np.mean(values))


def floor(b: np.ndarray, n: int, seeds: int) -> float:
    values = []
    for seed in range(seeds):
        index = np.random.default_rng(100 + seed).permutation(len(b))
        half = min(n, len(b) // 2)
        values.append(emd_w2(b[index[:half]], b[index[half:2 * half]]))
    return float(np.mean(values))


def colour_only(src: np.ndarray, sty: np.ndarray, args) -> dict:
    start = time.perf_counter()
    _, colour_map, _ = recolor(Image(rgb=src), Image(rgb=sty))
    fit_seconds = time.perf_counter() - start
    plain = colour_map.apply(src, preserve_luminance=False)
    start = time.perf_counter()
    flagged = colour_map.apply(src, preserve_luminance=True)
    flag_seconds = time.perf_counter() - start
    via_table = apply_lut(colour_map.lut(65, preserve_luminance=True), src)
    src_lab, sty_lab, plain_lab, flag_lab = lab(src), lab(sty), lab(plain), lab(flagged)
    chroma = lambda x: np.hypot(x[:, 1], x[:, 2])  # noqa: E731
    return {
        "lightness_error_8bit": lightness_error(eight_bit(flagged), src_lab),
        "lightness_error_float": lightness_error(flagged, src_lab),
        "lightness_error_table65": lightness_error(eight_bit(via_table), src_lab),
        "lightness_error_without_flag": lightness_error(eight_bit(plain), src_lab),
        "chroma_w2_source": w2_samples(src_lab[:, 1:], sty_lab[:, 1:], args.pixels, args.seeds),
        "chroma_w2_without_flag": w2_samples(plain_lab[:, 1:], sty_lab[:, 1:], args.pixels, args.seeds),
        "chroma_w2_with_flag": w2_samples(flag_lab[:, 1:], sty_lab[:, 1:], args.pixels, args.seeds),
        "chroma_w2_floor": floor(sty_lab[:, 1:], args.pixels, args.seeds),
        "chroma_reduced_fraction": float((chroma(flag_lab) < chroma(plain_lab) - 1).mean()),
        "fit_seconds": fit_seconds, "flag_seconds": flag_seconds,
    }


def regions(src: np.ndarray, sty: np.ndarray, args) -> dict:
    mask = (luminance(src) > np.median(luminance(src))).astype(np.float32)
    style_mask = (luminance(sty) > np.median(luminance(sty))).astype(np.float32)
    start = time.perf_counter()
    out, _, _ = recolor(Image(rgb=src), Image(rgb=sty), mask=mask, style_mask=style_mask)
    seconds = time.perf_counter() - start
    region, style_region = mask.reshape(-1) > 0.5, style_mask.reshape(-1) > 0.5
    outside = feather_weights(mask > 0.5, DEFAULT_FEATHER) == 0
    flat_src, flat_out, flat_sty = (x.reshape(-1, 3).astype(np.float64) for x in (src, out.rgb, sty))
    return {
        "w2_region_source": w2_samples(flat_src[region], flat_sty[style_region], args.pixels, args.seeds),
        "w2_region_output": w2_samples(flat_out[region], flat_sty[style_region], args.pixels, args.seeds),
        "w2_region_floor": floor(flat_sty[style_region], args.pixels, args.seeds),
        "changed_outside_feather": int((eight_bit(out.rgb) != eight_bit(src)).any(-1)[outside].sum()),
        "pixels_outside_feather": int(outside.sum()), "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="CBSD68 pairs besides the demo pair and issue 11's two")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--pixels", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "recolor_regions.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name, src_path, sty_path in pairs(args.pairs):
        src, sty = read_image(src_path).rgb, read_image(sty_path).rgb
        row = {"pair": name, **colour_only(src, sty, args), "regions": regions(src, sty, args)}
        rows.append(row)
        error = row["lightness_error_8bit"]
        print(f"{name:>16}  L* err {error['mean']:.3f} (p99 {error['p99']:.2f})"
              f"  chroma W2 {row['chroma_w2_without_flag']:.2f} -> {row['chroma_w2_with_flag']:.2f}"
              f"  region W2 {row['regions']['w2_region_output']:.4f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print("\n| pair | mean abs dL* 8-bit (p99) | float (p99) | 65^3 table, 8-bit (p99) | without flag | chroma W2: "
          "source | without flag | with flag | floor | chroma reduced by gamut |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        e8, ef, et, en = (r[k] for k in ("lightness_error_8bit", "lightness_error_float", "lightness_error_table65",
                                         "lightness_error_without_flag"))
        print(f"| {r['pair']} | {e8['mean']:.3f} ({e8['p99']:.2f}) | {ef['mean']:.4f} ({ef['p99']:.3f}) | "
              f"{et['mean']:.3f} ({et['p99']:.2f}) | {en['mean']:.1f} | {r['chroma_w2_source']:.2f} | "
              f"{r['chroma_w2_without_flag']:.2f} | {r['chroma_w2_with_flag']:.2f} | {r['chroma_w2_floor']:.2f} | "
              f"{100 * r['chroma_reduced_fraction']:.1f} % |")
    print("\n| pair | region W2 (RGB): source | output | floor | pixels changed outside the feather | s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        g = r["regions"]
        print(f"| {r['pair']} | {g['w2_region_source']:.4f} | {g['w2_region_output']:.4f} | {g['w2_region_floor']:.4f} "
              f"| {g['changed_outside_feather']} of {g['pixels_outside_feather']} | {g['seconds']:.1f} |")
    print(f"\nmedian fit s {np.median([r['fit_seconds'] for r in rows]):.2f}, "
          f"median s of an apply with the flag {np.median([r['flag_seconds'] for r in rows]):.2f}")


if __name__ == "__main__":
    main()
