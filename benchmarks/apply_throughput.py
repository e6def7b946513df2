"""Frames per second of ``otmap apply`` on a folder of 1080p frames, with 1 and 2 worker processes,
against ffmpeg ``lut3d`` with the map exported as a .cube (issue 15).

The frames are photo-like: train_natural photos (or, without them, ``samples/``) resized to cover
1920 x 1080 and centre-cropped, written as PNG into a temporary folder (not kept). One map is fitted
on the first frame with a demo style (``otmap recolor --save-map --lut``), then each row runs one
whole command in a fresh process (start-up, map load, decode, map, PNG encode), as a user would.
Also measured in-process on one frame: where the seconds of one ``apply`` go (decode, map, encode).
The load average before each row is in the table: a background training shares the machine.

    python benchmarks/apply_throughput.py --frames 200 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
WIDTH, HEIGHT = 1920, 1080


def photos() -> list[Path]:
    folder = SHARED / "train_natural"
    found = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    return found or sorted((ROOT / "samples").glob("*.jpg"))


def style_image() -> Path:
    demo = SHARED / "demo" / "coast.jpg"
    return demo if demo.is_file() else ROOT / "samples" / "sunset.jpg"


def make_frames(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    sources = photos()
    for index in range(count):
        photo = Image.open(sources[index % len(sources)]).convert("RGB")
        scale = max(WIDTH / photo.width, HEIGHT / photo.height)
        photo = photo.resize((max(WIDTH, round(photo.width * scale)), max(HEIGHT, round(photo.height * scale))),
                             Image.Resampling.BICUBIC)
        left, top = (photo.width - WIDTH) // 2, (photo.height - HEIGHT) // 2
        photo.crop((left, top, left + WIDTH, top + HEIGHT)).save(folder / f"{index + 1:04d}.png")


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:16]


def stages(frame: Path, map_file: Path, repeats: int = 3) -> dict[str, float]:
    """Median seconds of decode, map and encode of one frame, in this process, one torch thread."""
    import torch

    from otmap_cli.io import read_image, write_image
    from otmap_cli.transport.colormap import load_map

    torch.set_num_threads(1)
    start = time.perf_counter()
    mapper = load_map(map_file)
    image = read_image(frame)
    mapper(image.rgb)  # the first call samples the map on its 65^3 table, once
    first = time.perf_counter() - start
    times = {"decode": [], "map": [], "encode": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            t0 = time.perf_counter()
            image = read_image(frame)
            t1 = time.perf_counter()
            rgb = mapper(image.rgb)
            t2 = time.perf_counter()
            write_image(image.with_rgb(rgb), Path(tmp) / "out.png")
            t3 = time.perf_counter()
            for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                times[key].append(value)
    return {"load + table (once)": first, **{k: float(np.median(v)) for k, v in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--workers", default="1,2", help="comma-separated -j values")
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    otmap = [sys.executable, "-m", "otmap_cli", "--quiet"]
    ffmpeg = shutil.which("ffmpeg")
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames = work / "frames"
        start = time.perf_counter()
        make_frames(frames, args.frames)
        print(f"made {args.frames} frames of {WIDTH}x{HEIGHT} in {time.perf_counter() - start:.0f} s", flush=True)
        map_file, cube = work / "map.safetensors", work / "map.cube"
        subprocess.run([*otmap, "recolor", str(frames / "0001.png"), str(style_image()), "-o", str(work / "fit.png"),
                        "--save-map", str(map_file), "--lut", str(cube)], check=True, env=env)
        breakdown = stages(frames / "0001.png", map_file)
        digests = {}
        for workers in map(int, args.workers.split(",")):
            out = work / f"j{workers}"
            load = os.getloadavg()[0]
            seconds = timed([*otmap, "apply", str(map_file), str(frames), "--out-dir", str(out), "-j", str(workers)],
                            env)
            digests[workers] = digest(out)
            rows.append((f"otmap apply map.safetensors -j {workers}", seconds, load))
            print(f"{rows[-1][0]}: {args.frames / seconds:.2f} images/s ({seconds:.1f} s, load {load:.2f})", flush=True)
        if len(set(digests.values())) == 1 and len(digests) > 1:
            notes.append(f"the outputs of -j {', '.join(map(str, digests))} are byte-identical")
        elif len(digests) > 1:
            notes.append(f"the outputs of different -j DIFFER: {digests}")
        if ffmpeg:
            out = work / "ffmpeg"
            out.mkdir()
            load = os.getloadavg()[0]
            seconds = timed([ffmpeg, "-loglevel", "error", "-i", str(frames / "%04d.png"), "-vf",
                             f"lut3d=file={cube}", "-start_number", "1", str(out / "%04d.png")], env)
            rows.append(("ffmpeg -vf lut3d=file=map.cube (33^3, threads: auto)", seconds, load))
            print(f"{rows[-1][0]}: {args.frames / seconds:.2f} images/s ({seconds:.1f} s, load {load:.2f})", flush=True)
            ours = np.asarray(Image.open(work / "j1" / "0001.png"), dtype=np.int16)
            theirs = np.asarray(Image.open(out / "0001.png"), dtype=np.int16)
            gap = np.abs(ours - theirs)
            notes.append(f"otmap (network on a 65^3 table) vs ffmpeg (exported 33^3 .cube), frame 1: mean "
                         f"{gap.mean():.2f}, max {gap.max()} of 255 levels")
        else:
            notes.append("ffmpeg not found: no ffmpeg row")
    lines = [f"# apply throughput: {args.frames} frames of {WIDTH}x{HEIGHT} PNG", "",
             f"Machine: {os.cpu_count()} CPU cores, shared with a background training (load average before "
             "each row below); OMP_NUM_THREADS=1, every row a whole command in a fresh process.", "",
             "| command | seconds | images/s | load before |", "|---|---:|---:|---:|"]
    lines += [f"| `{name}` | {seconds:.1f} | {args.frames / seconds:.2f} | {load:.2f} |"
              for name, seconds, load in rows]
    lines += ["", "One frame, in-process, one thread (median of 3):", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {stage} | {seconds:.3f} |" for stage, seconds in breakdown.items()]
    lines += [""] + [f"- {note}" for note in notes]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "apply_throughput.md").write_text(text)


if __name__ == "__main__":
    main()
