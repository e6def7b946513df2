"""Where users wait: whole-process seconds of ``otmap restore`` with default settings (issue 12).

Each case runs the real command line in a fresh process (imports, model load, noise estimate,
restoration, PNG write), as a user would: 1 MP denoise, 1 MP deblur, x2 super-resolution to 1 MP,
and 256 x 256 inpainting (random 70 % and a centred box). The inputs are made with ``otmap degrade``
from a held-out train_natural photo resized bicubically. Reports wall seconds, CPU seconds (user +
system of the child) and the load average before the run, so a loaded machine shows in the table.

    python benchmarks/restore_speed.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from otmap_cli.io import read_image
from otmap_cli.restoration.api import quality

from restore import SHARED

ROOT = Path(__file__).resolve().parents[1]
CASES = {  # name -> (restore task, degrade options, clean side, extra restore options)
    "denoise 1 MP": ("denoise", [], 1000, []),
    "deblur 1 MP": ("deblur", [], 1000, []),
    "superres x2 to 1 MP": ("superres", ["--scale", "2"], 1000, ["--scale", "2"]),
    "inpaint random 70 % 256^2": ("inpaint", ["--mask-ratio", "0.7"], 256, []),
    "inpaint box 256^2": ("inpaint", ["--box", "96,96,64,64"], 256, []),
}


def otmap(*args: str, threads: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "otmap_cli.cli", *args], capture_output=True, env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--out", type=Path, default=Path("bench_out/restore"))
    args = parser.parse_args()
    photo = sorted((SHARED / "train_natural").iterdir())[-1]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.cases.split(","):
            task, degrade_options, side, restore_options = CASES[name]
            clean = work / f"clean{side}.png"
            Image.open(photo).convert("RGB").resize((side, side), Image.Resampling.BICUBIC).save(clean)
            degraded, mask, out = work / "degraded.png", work / "mask.png", work / "out.png"
            mask_option = ["--mask", str(mask)] if task == "inpaint" else []
            otmap("degrade", str(clean), "--task", task, "-o", str(degraded), "--force", *degrade_options,
                  *(["--mask-out", str(mask)] if mask_option else []), threads=args.threads)
            load = os.getloadavg()[0]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = otmap("restore", str(degraded), "--task", task, "-o", str(out), "--force", "--json",
                         *mask_option, *restore_options, threads=args.threads)  # no --reference: it imports deepinv
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            record = json.loads(proc.stdout)["results"][0]
            record["psnr"] = quality(read_image(out), read_image(clean))["psnr"]
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            rows.append({"case": name, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load_before": load,
                         "psnr": round(record["psnr"], 2), "noise_sigma": record["noise_sigma"],
                         "noise_sigma_source": record["noise_sigma_source"],
                         "pixels": int(np.prod(Image.open(out).size))})
            print(f"{name:28s} wall {wall:6.1f} s  cpu {cpu:6.1f} s  (load {load:.1f})  PSNR {record['psnr']:.2f}",
                  flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "restore_speed.json").write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
