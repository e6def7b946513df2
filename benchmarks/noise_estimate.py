"""Error of the blind noise estimate of ``otmap restore`` (issue 12): synthetic Gaussian noise of
sigma in {0, 5, 15, 25, 50}/255 on clean photos, clipped and quantised to 8 bits as in a PNG.

Two estimators: ours (``physics.estimate_noise_sigma``, patch PCA of Chen, Zhu, Heng, ICCV 2015)
and scikit-image's wavelet-MAD ``estimate_sigma`` (Donoho & Johnstone 1994). Photos: the 6 held-out
train_natural images and Set5, full size. Prints a markdown table of mean error (bias) and mean
absolute error in /255 units, and writes ``noise_estimate.json``.

    python benchmarks/noise_estimate.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from skimage.restoration import estimate_sigma

from otmap_cli.io import list_images, read_image
from otmap_cli.restoration.physics import estimate_noise_sigma

from restore import SHARED

SIGMAS = (0, 5, 15, 25, 50)
ESTIMATORS = {
    "patch PCA (ours)": estimate_noise_sigma,
    "skimage wavelet MAD": lambda rgb: float(estimate_sigma(rgb, channel_axis=-1, average_sigmas=True)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench_out/restore"))
    args = parser.parse_args()
    photos = {"held-out train_natural": list_images(SHARED / "train_natural")[-6:],
              "Set5": sorted((SHARED / "set5").glob("*.png"))}
    rng = np.random.default_rng(0)
    rows = []
    print("| photos | estimator | " + " | ".join(f"σ={s}" for s in SIGMAS) + " |")
    print("|---|---|" + "---|" * len(SIGMAS))
    for group, paths in photos.items():
        images = [read_image(p).rgb for p in paths]
        noisy = {s: [np.round(np.clip(im + rng.normal(0, s / 255, im.shape), 0, 1) * 255) / 255 for im in images]
                 for s in SIGMAS}
        for name, estimate in ESTIMATORS.items():
            cells = []
            for s in SIGMAS:
                errors = np.array([255 * estimate(y) - s for y in noisy[s]])
                rows.append({"photos": group, "estimator": name, "sigma": s, "bias": float(errors.mean()),
                             "mae": float(np.abs(errors).mean()), "errors": errors.round(3).tolist()})
                cells.append(f"{errors.mean():+.2f} ({np.abs(errors).mean():.2f})")
            print(f"| {group} | {name} | " + " | ".join(cells) + " |", flush=True)
    print("cells: mean error (mean absolute error) of the estimate, in /255 units")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "noise_estimate.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
