"""Peak memory (RSS) and wall time of otmap on large images, measured with ``/usr/bin/time -v`` (issue 5).

* ``recolor`` and ``apply`` on a synthetic 50-megapixel JPEG (8 660 x 5 774): the fit reads a fixed
  number of pixels, and the map is applied in chunks, so beyond the decoded input and output
  arrays memory should not grow with the image (target: peak RSS <= 2 GB);
* ``restore`` (PnP-Flow, 2 steps: memory does not depend on the number of steps) on 1 and 4
  megapixels: overlapping 512 x 512 tiles keep the network's activations bounded.

    python benchmarks/memory.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
STYLE = REPO / "samples" / "sunset.jpg"


def synthetic_photo(path: Path, width: int, height: int) -> None:
    """Smooth colour gradients with texture: compresses like a photo, decodes to ``width x height``."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.empty((height, width, 3), np.uint8)
    for c, (fx, fy) in enumerate([(1.0, 0.5), (0.3, 1.2), (0.7, 0.9)]):
        wave = 0.5 + 0.35 * np.sin(fx * x / width * 6 + c) * np.cos(fy * y / height * 5)
        image[..., c] = np.clip(255 * wave + rng.normal(0, 6, (height, width)), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(path, quality=90)


def measured(command: list[str]) -> dict:
    """Run ``command`` under /usr/bin/time -v; return peak RSS (MB), wall seconds and the exit code."""
    proc = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", proc.stderr)
    seconds = sum(float(part) * 60 ** i for i, part in enumerate(reversed(wall.group(1).split(":")))) if wall else None
    if proc.returncode:
        print(proc.stderr[-2000:], file=sys.stderr)
    return {"peak_rss_mb": round(int(rss.group(1)) / 1024) if rss else None, "seconds": seconds,
            "exit": proc.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=None, help="flow prior for restore (default: shipped)")
    parser.add_argument("--out", type=Path, default=Path("bench_out/memory"))
    args = parser.parse_args()
    otmap = [str(Path(sys.executable).with_name("otmap"))] if shutil.which("otmap") is None else ["otmap"]
    weights = ["--weights", str(args.weights)] if args.weights else []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        big = tmp / "big50mp.jpg"
        synthetic_photo(big, 8660, 5774)
        cases = [("recolor 50 MP", [*otmap, "--quiet", "recolor", str(big), str(STYLE), "-o", str(tmp / "r.jpg"),
                                     "--save-map", str(tmp / "map.safetensors")]),
                 ("apply 50 MP", [*otmap, "--quiet", "apply", str(tmp / "map.safetensors"), str(big),
                                  "-o", str(tmp / "a.jpg")])]
        for side in (1024, 2048):
            path = tmp / f"restore{side}.png"
            synthetic_photo(path, side, side)
            cases.append((f"restore {side}x{side} (PnP-Flow, 2 steps)",
                          [*otmap, "--quiet", "restore", str(path), "--task", "denoise", "--solver", "pnp-flow",
                           "--steps", "2", *weights,
                           "-o", str(tmp / f"d{side}.png")]))
        for name, command in cases:
            row = {"case": name, **measured(command)}
            rows.append(row)
            print(f"{name:38s} peak RSS {row['peak_rss_mb']} MB, {row['seconds']} s, exit {row['exit']}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps(rows, indent=1))
    print("\n| case | peak RSS (MB) | wall (s) |\n|---|---|---|")
    for row in rows:
        print(f"| {row['case']} | {row['peak_rss_mb']} | {row['seconds']} |")


if __name__ == "__main__":
    main()
