"""Tune PnP-Flow's alpha (and N) per task on validation images, never on the test sets.

The validation images are the last ``validation_images`` (6) files of train_natural, the ones
``otmap train flow`` holds out of training; centre crops keep the CPU time small. Every task of
benchmarks/restore.py is degraded with seed = image index and restored for each (N, alpha) in the
grid; prints the grid best first, per task, and writes JSON. The chosen values go into
``otmap_cli/restoration/options.PNPFLOW_DEFAULTS`` by hand, with the table in docs/decisions.md.

    python benchmarks/tune_restore.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from otmap_cli.io import list_images, read_image
from otmap_cli.restoration import api
from otmap_cli.restoration.options import resolve

from restore import SHARED, TASKS, centre_crop, degrade_for

GRID = {  # the paper's CelebA value of each task and its neighbours
    "denoise": (0.3, 0.8, 1.5),
    "deblur": (0.01, 0.1, 0.3),
    "superres": (0.1, 0.3, 0.6),
    "inpaint-random": (0.01, 0.1, 0.3),
    "inpaint-box": (0.1, 0.5, 1.0),
}


def add_held_out_arguments(parser: argparse.ArgumentParser, images: int, threads: int) -> None:
    """The options :func:`held_out_setup` reads."""
    parser.add_argument("--images", type=int, default=images, help="how many of the 6 held-out training images")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--weights", type=Path, default=None, help="a prior other than the shipped one")
    parser.add_argument("--threads", type=int, default=threads)


def held_out_setup(args):
    """(prior, paths, crops): the prior (--weights, else shipped) on --threads threads, and --crop centre crops
    of the first --images of the 6 held-out train_natural photos."""
    from otmap_cli.restoration.prior import default_prior, load_prior

    torch.set_num_threads(args.threads)
    prior = load_prior(args.weights, "cpu") if args.weights else default_prior("cpu")
    held_out = list_images(SHARED / "train_natural")[-6:][:args.images]
    return prior, held_out, [centre_crop(read_image(p).rgb, args.crop) for p in held_out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_held_out_arguments(parser, images=3, threads=2)
    parser.add_argument("--steps", default="100", help="comma-separated N values")
    parser.add_argument("--tasks", default=",".join(GRID))
    parser.add_argument("--out", type=Path, default=Path("bench_out/restore"))
    args = parser.parse_args()
    prior, held_out, clean = held_out_setup(args)
    steps = [int(n) for n in args.steps.split(",")]
    report = {}
    for task in args.tasks.split(","):
        rows = []
        for n in steps:
            for alpha in GRID[task]:
                scores = []
                for index, ref in enumerate(clean):
                    otmap_task, y, mask, scale = degrade_for(task, ref, seed=index)
                    out = api.restore_rgb(y, otmap_task, mask=mask, scale=scale if scale > 1 else None, steps=n,
                                          alpha=alpha, prior=prior, noise_sigma=resolve(otmap_task).noise_sigma,
                                          solver="pnp-flow")
                    scores.append(api.quality(out, ref[:out.shape[0], :out.shape[1]])["psnr"])
                rows.append({"steps": n, "alpha": alpha, "psnr": round(sum(scores) / len(scores), 3)})
                print(f"{task:15s} N={n:4d} alpha={alpha:<5} {rows[-1]['psnr']:.2f} dB", flush=True)
        report[task] = sorted(rows, key=lambda r: -r["psnr"])
        print(f"best for {task}: {report[task][0]}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "restore_tuning.json").write_text(json.dumps({"images": [p.name for p in held_out],
                                                              "crop": args.crop, "grid": report}, indent=1))


if __name__ == "__main__":
    main()
