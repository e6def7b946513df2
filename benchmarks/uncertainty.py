"""Is ``otmap restore --uncertainty`` informative? Correlation of the predicted std with the actual error.

For each task (the degradations of benchmarks/restore.py: denoise 25/255, deblur sigma_b 1 with
noise 0.025, super-res x2 with noise 0.025, random inpainting 70 % missing) and the first --images
CBSD68 images, centre-cropped to --crop pixels (CPU time), the degraded image is restored by
``api.restore_with_uncertainty`` (--runs PnP-Flow runs, the true noise level) and compared per pixel:
predicted std (root mean over channels of the runs' variance) against the actual error of the
written output, |x_hat - x| (root mean square over channels). Reported per task: Pearson r and
Spearman rho, per image then averaged, and the ratio of the mean error over the 10 % of pixels with
the highest predicted std to that over the 50 % with the lowest (1 = uninformative). Also the mean
std and the RMSE, for calibration. Writes uncertainty.md and uncertainty.json into --out.

    nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/uncertainty.py --out benchmarks/results
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
from otmap_cli.restoration.options import resolve
from otmap_cli.restoration.prior import default_prior
from restore import SHARED, centre_crop, degrade_for

TASKS = ("denoise", "deblur", "superres", "inpaint-random")


def ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    out = np.empty(len(values))
    out[order] = np.arange(len(values))
    return out


def scores(std: np.ndarray, error: np.ndarray) -> dict[str, float]:
    s, e = std.ravel().astype(np.float64), error.ravel().astype(np.float64)
    order = np.argsort(s)
    top, bottom = order[-max(1, len(s) // 10):], order[:len(s) // 2]
    return {"pearson": float(np.corrcoef(s, e)[0, 1]), "spearman": float(np.corrcoef(ranks(s), ranks(e))[0, 1]),
            "top10_over_bottom50": float(e[top].mean() / max(e[bottom].mean(), 1e-12)),
            "mean_std": float(s.mean()), "rmse": float(np.sqrt(np.mean(e ** 2)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    prior = default_prior()
    paths = list_images(SHARED / "cbsd68")[:args.images]
    rows = {}
    for task in args.tasks:
        rows[task] = []
        for i, path in enumerate(paths):
            clean = centre_crop(read_image(path).rgb, args.crop)
            otmap_task, y, mask, scale = degrade_for(task, clean, seed=i)
            start = time.time()
            mean, std = api.restore_with_uncertainty(
                Image(rgb=y), otmap_task, runs=args.runs, mask=mask, prior=prior,
                scale=scale if otmap_task == "superres" else None, noise_sigma=resolve(otmap_task).noise_sigma)
            error = np.sqrt(np.mean((np.clip(mean.rgb, 0, 1) - clean) ** 2, axis=2))
            rows[task].append({"image": path.stem, **scores(std, error), "seconds": time.time() - start})
            print(task, path.stem, {k: round(v, 3) for k, v in rows[task][-1].items() if k != "image"}, flush=True)
    keys = ("pearson", "spearman", "top10_over_bottom50", "mean_std", "rmse", "seconds")
    lines = [f"Predicted std (--uncertainty, {args.runs} PnP-Flow runs) against the actual per-pixel error of "
             f"their mean, {len(paths)} CBSD68 images (first of the sorted folder), centre crops {args.crop}x"
             f"{args.crop}; per-image figures averaged. CPU, 1 thread, machine loaded by a background training.", "",
             "| task | Pearson r | Spearman rho | error ratio top 10 % / bottom 50 % std | mean std | RMSE | s / image |",
             "|---|---|---|---|---|---|---|"]
    for task, values in rows.items():
        mean = {k: float(np.mean([v[k] for v in values])) for k in keys}
        lines.append(f"| {task} | {mean['pearson']:.2f} | {mean['spearman']:.2f} | "
                     f"{mean['top10_over_bottom50']:.2f} | {mean['mean_std']:.4f} | {mean['rmse']:.4f} | "
                     f"{mean['seconds']:.0f} |")
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "uncertainty.md").write_text(table + "\n")
    (args.out / "uncertainty.json").write_text(json.dumps({"crop": args.crop, "runs": args.runs, "rows": rows},
                                                          indent=1))


if __name__ == "__main__":
    main()
