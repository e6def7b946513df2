"""Benchmark of colourisation: ``otmap restore --task colorize`` and ``otmap colorize --reference``.

CBSD68 images (the first --images of the sorted folder, centre-cropped to --crop pixels: CPU time)
are reduced to their Rec. 601 luma (``otmap degrade --task colorize``, no noise) and coloured back by:

* ``grey``: the grey image itself as RGB (PSNR's floor of any method that keeps the luma);
* ``mean chroma``: the grey image's L* with the mean (a*, b*) of --train photos of train_natural
  (CBSD432, disjoint from CBSD68): the exemplar-free classical baseline;
* ``exemplar (other photo)``: ``otmap colorize`` with the next test image as reference (an unrelated
  scene: what a careless reference gives);
* ``exemplar (own colours)``: ``otmap colorize`` with the original colour image as reference (an
  oracle: the best a reference can give this method; not a fair comparison);
* ``pnp-flow`` and ``dpir``: ``otmap restore --task colorize`` with the shipped prior;
* ``original``: the colour image (colourfulness only).

Scores per method, averaged over images: PSNR (dB) against the colour original, the colourfulness
M of Hasler & Suesstrunk, "Measuring colourfulness in natural images", SPIE 2003 (Eq. 3: M =
sqrt(s_rg^2 + s_yb^2) + 0.3 sqrt(m_rg^2 + m_yb^2), rg = R - G, yb = (R + G)/2 - B on 0..255), the
largest luma error against the grey input (x 255: what restore keeps), the mean |L*| error (what the
exemplar method keeps), and seconds per image. Writes colorize.md and
colorize.json into --out.

    nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/colorize.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from otmap_cli.io import Image, list_images, read_image
from otmap_cli.restoration import api
from otmap_cli.restoration.colorize import colorize
from otmap_cli.restoration.physics import degrade, luma
from otmap_cli.restoration.prior import default_prior
from restore import SHARED, centre_crop, psnr


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk 2003, Eq. 3, on 0..255 RGB."""
    r, g, b = (255 * np.clip(rgb, 0, 1)[..., c].astype(np.float64) for c in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def mean_chroma(paths: list[Path]) -> np.ndarray:
    from skimage.color import rgb2lab

    return np.mean([rgb2lab(read_image(p).rgb)[..., 1:].reshape(-1, 2).mean(0) for p in paths], axis=0)


def with_chroma(grey: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    from skimage.color import lab2rgb, rgb2lab

    lab = rgb2lab(grey)
    lab[..., 1:] = chroma
    return np.clip(lab2rgb(lab), 0, 1).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--train", type=int, default=50, help="train_natural photos for the mean chroma")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    from skimage.color import rgb2lab

    torch.set_num_threads(1)
    prior = default_prior()
    paths = list_images(SHARED / "cbsd68")[:args.images]
    originals = [centre_crop(read_image(p).rgb, args.crop) for p in paths]
    chroma = mean_chroma(list_images(SHARED / "train_natural")[:args.train])
    methods = {
        "grey": lambda i, g: g,
        "mean chroma": lambda i, g: with_chroma(g, chroma),
        "exemplar (other photo)": lambda i, g: colorize(Image(rgb=g), Image(rgb=originals[(i + 1) % len(originals)])).rgb,
        "exemplar (own colours, oracle)": lambda i, g: colorize(Image(rgb=g), Image(rgb=originals[i])).rgb,
        "pnp-flow": lambda i, g: api.restore_rgb(g, "colorize", prior=prior, solver="pnp-flow"),
        "dpir": lambda i, g: api.restore_rgb(g, "colorize", prior=prior, solver="dpir"),
        "original": lambda i, g: originals[i],
    }
    rows = {name: [] for name in methods}
    for i, (path, clean) in enumerate(zip(paths, originals)):
        grey, _ = degrade(clean, "colorize", noise_sigma=0)
        grey_lightness = rgb2lab(grey)[..., 0]
        for name, method in methods.items():
            start = time.time()
            out = method(i, grey)
            seconds = time.time() - start
            rows[name].append({"image": path.stem, "colourfulness": colourfulness(out),
                               "luma_error_255": 255 * float(np.abs(luma(out) - grey[..., 0]).max()),
                               "lightness_error": float(np.abs(rgb2lab(out)[..., 0] - grey_lightness).mean()),
                               "seconds": seconds, **({} if name == "original" else {"psnr": psnr(out, clean)})})
        print(path.stem, {k: round(v[-1]["psnr"], 2) for k, v in rows.items() if k != "original"}, flush=True)
    lines = [f"Colourisation of {len(paths)} CBSD68 images (first of the sorted folder), centre crops "
             f"{args.crop}x{args.crop}, grey = Rec. 601 luma; CPU, 1 thread, machine loaded by a background "
             "training (seconds are pessimistic).", "",
             "| method | PSNR (dB) | colourfulness M | max luma error (/255) | mean L* error | s / image |",
             "|---|---|---|---|---|---|"]
    for name, values in rows.items():
        mean = {k: float(np.mean([v.get(k, np.inf) for v in values]))
                for k in ("psnr", "colourfulness", "luma_error_255", "lightness_error", "seconds")}
        shown = f"{mean['psnr']:.2f}"
        lines.append(f"| {name} | {shown} | {mean['colourfulness']:.1f} | {mean['luma_error_255']:.2f} | "
                     f"{mean['lightness_error']:.2f} | {mean['seconds']:.1f} |")
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "colorize.md").write_text(table + "\n")
    (args.out / "colorize.json").write_text(json.dumps({"crop": args.crop, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
