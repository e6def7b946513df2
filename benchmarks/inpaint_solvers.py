"""Which inpainting solver for which hole: biharmonic, PnP-Flow and the splitting solver ("dpir").

On the 6 held-out training crops (never the test sets), four kinds of mask, each with noise 0.005 and
seed = image index: 70 % and 50 % of pixels missing at random, a centred box of a quarter of the side,
and scribbles (8 random strokes, 6 px wide). For every mask the table gives the widest hole, as the
largest distance from a missing pixel to the nearest kept one, and PSNR and seconds per method.

    python benchmarks/inpaint_solvers.py --out benchmarks/results
    python benchmarks/inpaint_solvers.py --kinds box --figure benchmarks/results/inpaint_box.jpg   # pictures
    python benchmarks/inpaint_solvers.py --crop 256 --boxes --no-pnp-flow   # the half-resolution start, 4 boxes a crop

``--figure`` writes one row per crop and mask: the input (holes black), biharmonic, PnP-Flow, the
default (dpir), the clean crop.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage, ImageDraw
from skimage import restoration

from otmap_cli.restoration import api, hqs
from otmap_cli.restoration.physics import degrade, make_mask, mask_tensor, to_array, to_tensor

from restore import psnr
from tune_restore import add_held_out_arguments, held_out_setup

NOISE = 0.005


def scribbles(h: int, w: int, seed: int, strokes: int = 8, width: int = 6) -> np.ndarray:
    """1 = kept; ``strokes`` random straight strokes of ``width`` px are missing."""
    rng = np.random.default_rng(seed)
    canvas = PILImage.new("L", (w, h), 255)
    draw = ImageDraw.Draw(canvas)
    for _ in range(strokes):
        x0, x1 = rng.uniform(0, w, 2)
        y0, y1 = rng.uniform(0, h, 2)
        draw.line([(x0, y0), (x1, y1)], fill=0, width=width)
    return (np.asarray(canvas) > 127).astype(np.float32)


def masks(h: int, w: int, seed: int) -> dict[str, np.ndarray]:
    side = min(h, w) // 4
    return {"random 70 %": make_mask(h, w, mask_ratio=0.7, seed=seed),
            "random 50 %": make_mask(h, w, mask_ratio=0.5, seed=seed),
            "box 1/4 side": make_mask(h, w, box=((w - side) // 2, (h - side) // 2, side, side)),
            "scribbles 6 px": scribbles(h, w, seed)}


def boxes(h: int, w: int, seed: int) -> dict[str, np.ndarray]:
    """Four boxes of a quarter of the side: centred, and three off-centre (one box is one sample of a
    very uneven score, so the half-resolution start was chosen on four a crop)."""
    side = min(h, w) // 4
    return {f"box at {fx:.2f},{fy:.2f}": make_mask(h, w, box=(int(fx * (w - side)), int(fy * (h - side)), side, side))
            for fx, fy in [(0.5, 0.5), (0.2, 0.3), (0.75, 0.2), (0.4, 0.8)]}


def widest_hole(mask: np.ndarray) -> float:
    return hqs.widest_hole(torch.from_numpy(mask)[None, None])


def one_resolution(y: np.ndarray, mask: np.ndarray, prior) -> np.ndarray:
    """The splitting solver without its half-resolution starts (the default before session 16)."""
    with torch.inference_mode():
        out = hqs.inpaint(to_tensor(y), mask_tensor(mask, mask.shape), prior, NOISE, coarse_start=False)
    return to_array(out).clip(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_held_out_arguments(parser, images=6, threads=1)
    parser.add_argument("--out", type=Path, default=Path("bench_out/restore"))
    parser.add_argument("--kinds", default="", help="comma-separated substrings: only these masks (e.g. 'box')")
    parser.add_argument("--figure", type=Path, default=None, help="also save the pictures (a .jpg or .png)")
    parser.add_argument("--boxes", action="store_true", help="instead of the four kinds: four boxes per crop")
    parser.add_argument("--no-pnp-flow", action="store_true", help="skip PnP-Flow (the slowest method)")
    args = parser.parse_args()
    wanted = [part for part in args.kinds.split(",") if part]
    rows: list[np.ndarray] = []
    prior, held_out, clean = held_out_setup(args)
    methods = {
        "biharmonic": lambda y, m: restoration.inpaint_biharmonic(y, m == 0, channel_axis=-1),
        "pnp-flow": lambda y, m: api.restore_rgb(y, "inpaint", mask=m, noise_sigma=NOISE, prior=prior,
                                                 solver="pnp-flow"),
        "dpir": lambda y, m: api.restore_rgb(y, "inpaint", mask=m, noise_sigma=NOISE, prior=prior, solver="dpir"),
        "dpir, one resolution": lambda y, m: one_resolution(y, m, prior),
    }
    if args.no_pnp_flow:
        del methods["pnp-flow"]
    scores: dict[str, dict[str, list[float]]] = {}
    holes: dict[str, list[float]] = {}
    for index, ref in enumerate(clean):
        h, w = ref.shape[:2]
        for kind, mask in (boxes if args.boxes else masks)(h, w, index).items():
            if wanted and not any(part in kind for part in wanted):
                continue
            noisy = degrade(ref, "denoise", noise_sigma=NOISE, seed=index)[0]
            y = noisy * mask[..., None]
            holes.setdefault(kind, []).append(widest_hole(mask))
            pictures = [y]
            for name, run in methods.items():
                start = time.perf_counter()
                out = run(y, mask)
                seconds = time.perf_counter() - start
                pictures.append(out)
                cell = scores.setdefault(kind, {}).setdefault(name, [])
                cell.append((psnr(out, ref), seconds))
                print(f"{held_out[index].name} {kind:15s} {name:10s} {cell[-1][0]:6.2f} dB {seconds:5.1f} s",
                      flush=True)
            rows.append(np.concatenate(pictures + [ref], axis=1))
    print(f"\n{len(clean)} held-out crops of {args.crop} px, noise {NOISE}, {args.threads} thread(s)\n")
    print("| mask | widest hole (px) | " + " | ".join(f"{m} dB (s)" for m in methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    report = {}
    for kind, by_method in scores.items():
        means = {m: (float(np.mean([p for p, _ in v])), float(np.mean([s for _, s in v])))
                 for m, v in by_method.items()}
        report[kind] = {"widest_hole": float(np.max(holes[kind])), **means}
        print(f"| {kind} | {np.max(holes[kind]):.1f} | "
              + " | ".join(f"{p:.2f} ({s:.1f})" for p, s in means.values()) + " |")
    gains = [a[0] - b[0] for by_method in scores.values()
             for a, b in zip(by_method.get("dpir", []), by_method.get("dpir, one resolution", []))]
    if gains:
        error = np.std(gains, ddof=1) / len(gains) ** 0.5 if len(gains) > 1 else 0.0
        print(f"\ndpir - dpir, one resolution over {len(gains)} holes: mean {np.mean(gains):+.2f} dB, median "
              f"{np.median(gains):+.2f}, standard error {error:.2f}, ahead on {sum(g > 0 for g in gains)}")
    if args.figure is not None:
        grid = (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).round().astype(np.uint8)
        PILImage.fromarray(grid).save(args.figure, quality=90)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inpaint_solvers.json").write_text(json.dumps(
        {"images": [p.name for p in held_out], "crop": args.crop, "threads": args.threads, "table": report},
        indent=1))


if __name__ == "__main__":
    main()
