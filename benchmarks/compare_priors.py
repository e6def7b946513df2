"""Compare flow priors as the product's default denoiser (--solver mmse) on test images, beside BM3D.

Every image is degraded with the same seeded Gaussian noise (sigma 25/255 by default) and restored
by each prior through ``restore_rgb(..., solver="mmse")`` (the ``api.ENSEMBLE`` flip/rotation views that
``otmap restore --task denoise`` runs), and by BM3D with the true sigma when the ``bm3d`` package
is installed. Prints a markdown table of mean PSNR (dB, [0, 1] units) per set.

    python benchmarks/compare_priors.py models/flow_natural.safetensors runs/flow/flow_natural.safetensors \
        --cbsd 68 --set5 5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from otmap_cli.io import list_images, read_image
from otmap_cli.restoration.api import restore_rgb
from otmap_cli.restoration.prior import load_prior

from restore import SHARED, psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("priors", nargs="+", type=Path)
    parser.add_argument("--cbsd", type=int, default=68)
    parser.add_argument("--set5", type=int, default=5)
    parser.add_argument("--sigma", type=float, default=25 / 255)
    parser.add_argument("--no-bm3d", action="store_true")
    args = parser.parse_args()
    sets = {"CBSD68": list_images(SHARED / "cbsd68")[:args.cbsd], "Set5": list_images(SHARED / "set5")[:args.set5]}
    priors = {str(p): load_prior(p) for p in args.priors}
    try:
        import bm3d
    except ImportError:
        bm3d = None
    use_bm3d = bm3d is not None and not args.no_bm3d
    rows = {}
    for name, paths in sets.items():
        scores: dict[str, list[float]] = {k: [] for k in ["input", *priors, *(["bm3d"] if use_bm3d else [])]}
        for i, path in enumerate(paths):
            clean = read_image(path).rgb.astype(np.float64)
            noisy = clean + args.sigma * np.random.default_rng(i).standard_normal(clean.shape)
            scores["input"].append(psnr(noisy, clean))
            for key, prior in priors.items():
                out = restore_rgb(noisy.astype(np.float32), "denoise", noise_sigma=args.sigma, prior=prior,
                                  solver="mmse")
                scores[key].append(psnr(out, clean))
            if use_bm3d:
                scores["bm3d"].append(psnr(bm3d.bm3d_rgb(noisy, args.sigma), clean))
            print(f"{name} {i + 1}/{len(paths)} " + " ".join(f"{v[-1]:.2f}" for v in scores.values()), flush=True)
        rows[name] = {k: (float(np.mean(v)), len(v)) for k, v in scores.items()}
    print(f"\n| method | " + " | ".join(f"{n} ({len(p)} images)" for n, p in sets.items()) + " |")
    print("|---|" + "---|" * len(sets))
    for key in rows["CBSD68"]:
        print(f"| {key} | " + " | ".join(f"{rows[n][key][0]:.2f}" for n in sets) + " |")


if __name__ == "__main__":
    started = time.time()
    main()
    print(f"\n{time.time() - started:.0f} s")
