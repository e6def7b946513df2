"""Benchmark of colour transfer methods (issue: otmap recolor).

For the demo pair and fixed CBSD68 pairs (files 2i -> 2i+1 of the sorted folder), every method maps
the source image's pixels; we report, per method, medians over pairs of

* W2 between output and style pixels (exact EMD, ``ot.emd2``, N random pixels, mean over seeds),
  next to the sampling floor W2(style, independent resample of style);
* displacement E|out - src|^2 divided by the exact OT cost W2^2(src, style) on the same samples
  (1.0 = optimal; the issue asks for within 10 %);
* roughness: 99th percentile of |T(x_i) - T(x_j)| / |x_i - x_j| over pixel pairs with
  0 < |x_i - x_j| < 0.02 (grain and banding show up here; the Gaussian map scores its matrix norm);
* clipped fraction (a channel at 0 or 255) against max(source's, style's), and structure (gradient
  correlation of luminance with the source), see ``recolor_metrics.py``;
* seconds per pair (fit + apply at the native ~0.15 MP).

Then (``--timing``) whole processes, PNG in and out, at 0.25 MP and 12 MP: ``otmap recolor`` against
the hm-mkl-hm process (``classical_process.py``) and IDT, CPU seconds and peak RSS; apply frames per
second on 1080p frames against ffmpeg ``lut3d``; and (``--lut``) how closely ffmpeg ``lut3d`` with the
exported .cube reproduces otmap's own output. A contact sheet of every pair (source / style / otmap /
IDT / hm-mkl-hm) goes to --out.

    python benchmarks/recolor.py --out bench_out/recolor --timing --lut     # full (long)
    python benchmarks/recolor.py --pairs 3 --seeds 1 --quick                # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import ot
import torch

from idt import idt_transfer
from recolor_metrics import references, score

from otmap_cli.io import Image, read_image, write_image
from otmap_cli.transport.fit import FitSettings
from otmap_cli.transport.gaussian import gaussian_brenier
from otmap_cli.transport.recolor import recolor

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# the two CBSD68 pairs of issue 11's report: crushed shadows (giraffes -> wolf in a dark forest), cyan fringes
FAILURE_CASES = [("253055", "167062"), ("14037", "12084")]


def pairs(n_pairs: int) -> list[tuple[str, Path, Path]]:
    files = sorted((SHARED / "cbsd68").glob("*.png"))
    chosen = [("demo", SHARED / "demo" / "beach.jpg", SHARED / "demo" / "coast.jpg")]
    for i in range(n_pairs):
        chosen.append((f"{files[2 * i].stem}->{files[2 * i + 1].stem}", files[2 * i], files[2 * i + 1]))
    for a, b in FAILURE_CASES:
        chosen.append((f"{a}->{b}", SHARED / "cbsd68" / f"{a}.png", SHARED / "cbsd68" / f"{b}.png"))
    return chosen


# ------------------------------------------------------------------------------------------ methods

def identity(src, sty):
    return src


def skimage_histogram(src, sty):
    from skimage.exposure import match_histograms

    return match_histograms(src, sty, channel_axis=-1)


def gaussian_mkl(src, sty):
    matrix, offset = gaussian_brenier(src.reshape(-1, 3), sty.reshape(-1, 3))
    return (src.reshape(-1, 3) @ matrix + offset).reshape(src.shape)


def color_matcher(method):
    def run(src, sty):
        from color_matcher import ColorMatcher

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ColorMatcher().transfer(src=src.astype(np.float64), ref=sty.astype(np.float64), method=method)
    run.__name__ = f"color-matcher {method}"
    return run


def pot_transport(kind):
    def run(src, sty):
        rng = np.random.default_rng(0)
        xs = src.reshape(-1, 3)[rng.choice(src.size // 3, 2000, replace=False)].astype(np.float64)
        xt = sty.reshape(-1, 3)[rng.choice(sty.size // 3, 2000, replace=False)].astype(np.float64)
        model = ot.da.EMDTransport() if kind == "emd" else ot.da.SinkhornTransport(reg_e=5e-2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(Xs=xs, Xt=xt)
            flat = src.reshape(-1, 3).astype(np.float64)
            return model.transform(Xs=flat, batch_size=len(flat)).reshape(src.shape)
    run.__name__ = f"POT {'EMDTransport' if kind == 'emd' else 'SinkhornTransport'} (2000 px)"
    return run


def pot_mapping(kernel: str, eta: float, n: int = 1000, chunk: int = 20_000):
    """Perrot et al. 2016 joint OT + smooth map estimation, fitted on n pixels.

    The kernel width is the median distance between source pixels (the usual median heuristic): POT's
    default sigma = 1 is wider than the whole RGB cube of [0, 1] colours, which makes the kernel
    matrix singular. ``eta`` weighs the map's regulariser: at POT's 1e-3 the linear kernel's system was
    singular too. The Gaussian kernel diverged on the demo pair at every eta tried (1e-3, 0.1, 1: W2
    25-35x the floor, all pixels clipped) and its system was singular on the next pair, so it is not a
    row (benchmarks/results/recolor_v22_mapping_gaussian_failed.log).
    The other parameters are POT's defaults."""
    def run(src, sty):
        rng = np.random.default_rng(0)
        xs = src.reshape(-1, 3)[rng.choice(src.size // 3, n, replace=False)].astype(np.float64)
        xt = sty.reshape(-1, 3)[rng.choice(sty.size // 3, n, replace=False)].astype(np.float64)
        sigma = float(np.median(ot.dist(xs, xs, metric="euclidean")))
        model = ot.da.MappingTransport(kernel=kernel, sigma=sigma, mu=1.0, eta=eta, bias=True, max_iter=10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(Xs=xs, Xt=xt)
            flat = src.reshape(-1, 3).astype(np.float64)
            return np.concatenate([model.transform(Xs=flat[i:i + chunk]) for i in range(0, len(flat), chunk)]
                                  ).reshape(src.shape)
    run.__name__ = f"POT MappingTransport ({kernel} kernel, eta {eta:g}, {n} px)"
    return run


def idt(src, sty):
    return idt_transfer(src, sty)


idt.__name__ = "Pitie IDT (20 rotations, all pixels)"


def mgn(model, loss, **overrides):
    def run(src, sty):
        settings = FitSettings(model=model, loss=loss, **overrides)
        out, _, result = recolor(Image(rgb=src), Image(rgb=sty), settings)
        run.fell_back = result.fell_back
        return out.rgb
    run.__name__ = f"{model.upper()} {loss}" + ("".join(f" {k}={v}" for k, v in overrides.items()))
    return run


def methods(quick: bool):
    classical = [identity, skimage_histogram, gaussian_mkl, color_matcher("hm-mkl-hm"), color_matcher("reinhard"),
                 idt, pot_mapping("linear", 0.1), pot_transport("emd")]
    ours = [mgn("cmgn", "sliced"), mgn("cmgn", "sliced", steps=150), mgn("cmgn", "sliced", summary_bins=24),
            mgn("cmgn", "sliced", warm_start="gradient"),  # the v2.4 default
            mgn("cmgn", "sliced", warm_start="gradient", edge_weight=1.0),
            mgn("cmgn", "sliced", warm_start="gradient", warm_steps=1200)]
    if quick:
        return classical[:4] + classical[5:6], ours
    classical.append(pot_transport("sinkhorn"))
    ours += [mgn("mmgn", "sliced"), mgn("cmgn", "mmd", batch=1024)]
    if not quick:
        ours += [mgn("cmgn", "sinkhorn", batch=1024), mgn("cmgn", "wgan"), mgn("cmgn", "gaussian"),
                 mgn("mmgn", "mmd", batch=1024), mgn("mmgn", "sinkhorn", batch=1024), mgn("mmgn", "wgan"),
                 mgn("mmgn", "gaussian"), mgn("cmgn", "sliced", warm_start="gradient", warm_steps=0)]
    return classical, ours


def timed(fn, src, sty):
    start = time.perf_counter()
    out = fn(src, sty)
    return out, time.perf_counter() - start


def resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image as PILImage

    pil = PILImage.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).resize(size, PILImage.Resampling.BICUBIC)
    return np.asarray(pil, dtype=np.float32) / 255.0


# ------------------------------------------------------------------------------------------ main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10, help="CBSD68 pairs besides the demo pair and issue 11's two")
    parser.add_argument("--only", type=str, default=None, help="comma-separated pair indices to run (0 = demo)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pixels", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="fewer methods")
    parser.add_argument("--methods", type=str, default=None,
                        help="comma-separated substrings: run only the methods whose name contains one of them "
                             "('=NAME' for exactly that name, e.g. '=CMGN sliced' for the default alone)")
    parser.add_argument("--no-quality", action="store_true", help="skip the quality table")
    parser.add_argument("--timing", action="store_true", help="whole-process timing table (0.25 MP, 12 MP, 1080p)")
    parser.add_argument("--frames", type=int, default=100, help="1080p frames for the apply fps row")
    parser.add_argument("--lut", action="store_true", help="LUT fidelity table (needs ffmpeg)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench_out/recolor"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = pairs(args.pairs)
    if args.only:
        chosen = [chosen[int(i)] for i in args.only.split(",")]
    if not args.no_quality:
        classical, ours = methods(args.quick)
        if args.methods:
            wanted = lambda fn: any(fn.__name__ == part[1:] if part.startswith("=") else part in fn.__name__  # noqa: E731
                                    for part in args.methods.split(","))
            classical, ours = [f for f in classical if wanted(f)], [f for f in ours if wanted(f)]
        rows, sheet = quality(chosen, classical, ours, args)
        (args.out / "quality.json").write_text(json.dumps(rows, indent=1))
        print_quality(rows)
        plot_quality(rows, args.out / "recolor_w2.png")
        contact_sheet(sheet, args.out / "recolor_contact_sheet.png")
    if args.lut:
        (args.out / "lut.json").write_text(json.dumps(lut_fidelity(chosen), indent=1))
    if args.timing:
        (args.out / "timing.json").write_text(json.dumps(process_timing(args.frames), indent=1))


def quality(chosen, classical, ours, args):
    rows: dict[str, list[dict]] = {}
    sheet = []
    for name, src_path, sty_path in chosen:
        src, sty = read_image(src_path).rgb, read_image(sty_path).rgb
        refs = references(src, sty, args.pixels, args.seeds)
        shown = {"source": src, "style": sty}
        for fn in classical + ours:
            out, seconds = timed(fn, src, sty)
            record = {"pair": name, "seconds": seconds, **score(src, sty, out, refs),
                      "fell_back": getattr(fn, "fell_back", False)}
            rows.setdefault(fn.__name__, []).append(record)
            if fn in (idt, *ours[:1]) or fn.__name__ == "color-matcher hm-mkl-hm":
                shown[fn.__name__] = np.clip(out, 0, 1)
            print(f"{name:>16}  {fn.__name__:<44} W2/floor {record['w2'] / record['floor']:.2f}  "
                  f"disp/OT {record['displacement'] / record['ot_cost']:.3f}  rough {record['roughness']:.2f}  "
                  f"clip {100 * record['clipped']:.1f}% (allowed {100 * record['clipped_allowed']:.1f})  "
                  f"struct {record['structure']:.3f}  {seconds:.2f}s", flush=True)
        sheet.append((name, shown))
    return rows, sheet


def print_quality(rows: dict[str, list[dict]]) -> None:
    floor = np.median([r["floor"] for r in next(iter(rows.values()))])
    print("\n| method | median W2 | W2 / floor | displacement / OT cost | roughness (p99) | max clipped excess (pp) "
          "| pairs structure >= hm-mkl-hm | median s |")
    print("|---|---|---|---|---|---|---|---|")
    reference = {r["pair"]: r["structure"] for r in rows.get("color-matcher hm-mkl-hm", [])}
    for name, records in rows.items():
        med = lambda key: np.median([r[key] for r in records])  # noqa: E731
        ratio = np.median([r["w2"] / r["floor"] for r in records])
        disp = np.median([r["displacement"] / r["ot_cost"] for r in records])
        excess = 100 * max(r["clipped"] - r["clipped_allowed"] for r in records)
        kept = sum(r["structure"] >= reference.get(r["pair"], -1) - 1e-3 for r in records)
        falls = sum(r["fell_back"] for r in records)
        note = f" ({falls} fell back)" if falls else ""
        print(f"| {name}{note} | {med('w2'):.4f} | {ratio:.2f} | {disp:.3f} | {med('roughness'):.2f} | {excess:+.1f} "
              f"| {kept}/{len(records)} | {med('seconds'):.2f} |")
    print(f"\nsampling floor (median): {floor:.4f}")


def plot_quality(rows: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in rows if n != "identity"]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(names) + 1.5))
    for k, name in enumerate(names):
        ratios = [r["w2"] / r["floor"] for r in rows[name]]
        ax.scatter(ratios, [k] * len(ratios), s=12, alpha=0.6)
        ax.scatter([np.median(ratios)], [k], marker="|", s=300, color="k")
    ax.axvline(1.6, color="r", ls="--", lw=1, label="target: 1.6x sampling floor")
    ax.axvline(1.0, color="gray", ls=":", lw=1, label="sampling floor")
    ax.set_yticks(range(len(names)), names)
    ax.set_xscale("log")
    ax.set_xlabel("W2(output, style) / W2(style, resample of style)  (per pair; bar = median)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def contact_sheet(sheet, path: Path, height: int = 120) -> None:
    """One row per pair: source, style, otmap, IDT, hm-mkl-hm, each scaled to ``height`` pixels."""
    from PIL import Image as PILImage, ImageDraw

    rows = []
    for name, shown in sheet:
        tiles = []
        for label, rgb in shown.items():
            pil = PILImage.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
            pil = pil.resize((max(1, round(pil.width * height / pil.height)), height))
            ImageDraw.Draw(pil).text((3, 2), f"{name}: {label}"[:40] if not tiles else label[:28], fill=(255, 0, 255))
            tiles.append(pil)
        row = PILImage.new("RGB", (sum(t.width for t in tiles) + 4 * len(tiles), height), "white")
        x = 0
        for tile in tiles:
            row.paste(tile, (x, 0))
            x += tile.width + 4
        rows.append(row)
    sheet_image = PILImage.new("RGB", (max(r.width for r in rows), (height + 4) * len(rows)), "white")
    for k, row in enumerate(rows):
        sheet_image.paste(row, (0, k * (height + 4)))
    sheet_image.save(path)


# ------------------------------------------------------------------------------------------ LUT fidelity

def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / max(np.mean((a - b) ** 2), 1e-12)))


def lut_fidelity(chosen) -> dict:
    """PSNR of ffmpeg lut3d (each interpolation) with the exported .cube against otmap's own PNG output."""
    if shutil.which("ffmpeg") is None:
        print("ffmpeg not installed: LUT fidelity table skipped")
        return {}
    table: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, src_path, sty_path in chosen:
            write_image(read_image(src_path), tmp / "src.png")
            run_otmap(["recolor", str(tmp / "src.png"), str(sty_path), "-o", str(tmp / "out.png"), "--force"])
            ours = read_image(tmp / "out.png").rgb
            for size in (33, 65):
                run_otmap(["recolor", str(tmp / "src.png"), str(sty_path), "-o", str(tmp / "again.png"), "--force",
                           "--lut", str(tmp / "map.cube"), "--lut-size", str(size)])
                for interp in ("tetrahedral", "trilinear"):
                    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(tmp / "src.png"), "-vf",
                                    f"lut3d=file={tmp / 'map.cube'}:interp={interp}", str(tmp / "ff.png")], check=True)
                    value = psnr(read_image(tmp / "ff.png").rgb, ours)
                    table.setdefault(f"{size}^3 {interp}", []).append(value)
                    print(f"{name:>16}  LUT {size}^3 {interp:<12} ffmpeg vs otmap {value:.1f} dB", flush=True)
    print("\n| LUT | min PSNR (dB) | median PSNR (dB) |\n|---|---|---|")
    for key, values in table.items():
        print(f"| {key} | {min(values):.1f} | {np.median(values):.1f} |")
    return table


# ------------------------------------------------------------------------------------------ timing

OTMAP_MAIN = "import sys; from otmap_cli.cli import main; sys.argv[0] = 'otmap'; main()"


def run_otmap(arguments: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", OTMAP_MAIN, "--quiet", *arguments], check=True, env=env)


def measured(command: list[str], env: dict | None = None) -> dict:
    """Wall seconds, CPU seconds (user + sys) and peak RSS of one whole process (GNU time)."""
    with tempfile.NamedTemporaryFile(suffix=".txt") as report:
        start = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", report.name, *command], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        user, system, rss_kb = Path(report.name).read_text().split()[-3:]
    return {"wall": wall, "cpu": float(user) + float(system), "rss_mb": int(rss_kb) / 1024}


def process_timing(frames: int) -> dict:
    """Whole processes, PNG in and out: otmap recolor vs hm-mkl-hm vs IDT at 0.25 MP and 12 MP; apply fps."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    otmap = [sys.executable, "-c", OTMAP_MAIN, "--quiet"]
    src, sty = read_image(SHARED / "demo" / "beach.jpg").rgb, read_image(SHARED / "demo" / "coast.jpg").rgb
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_image(Image(rgb=resized(sty, (500, 500))), tmp / "style.png")
        for label, size in (("0.25 MP", (500, 500)), ("12 MP", (4000, 3000))):
            write_image(Image(rgb=resized(src, size)), tmp / "src.png")
            contenders = {
                "hm-mkl-hm process": [sys.executable, str(HERE / "classical_process.py"), "hm-mkl-hm",
                                      str(tmp / "src.png"), str(tmp / "style.png"), str(tmp / "hm.png")],
                "otmap recolor": otmap + ["recolor", str(tmp / "src.png"), str(tmp / "style.png"), "-o",
                                          str(tmp / "ot.png"), "--force"],
                "IDT process": [sys.executable, str(HERE / "classical_process.py"), "idt", str(tmp / "src.png"),
                                str(tmp / "style.png"), str(tmp / "idt.png")],
            }
            results[label] = {name: measured(command, env) for name, command in contenders.items()}
        # apply: one saved map (and its .cube) on 1080p frames
        run_otmap(["recolor", str(tmp / "src.png"), str(tmp / "style.png"), "-o", str(tmp / "ot.png"), "--force",
                   "--save-map", str(tmp / "map.safetensors"), "--lut", str(tmp / "map.cube")])
        frame = resized(src, (1920, 1080))
        (tmp / "frames").mkdir()
        for k in range(frames):
            write_image(Image(rgb=np.roll(frame, 7 * k, axis=1)), tmp / "frames" / f"f{k:04d}.png")
        listed = sorted(str(p) for p in (tmp / "frames").glob("*.png"))
        (tmp / "mapped").mkdir()
        results["1080p apply"] = {}
        for workers in (1, 2):
            run = measured(otmap + ["apply", str(tmp / "map.safetensors"), *listed, "--out-dir", str(tmp / "mapped"),
                                    "--force", "-j", str(workers)], env)
            results["1080p apply"][f"otmap apply -j {workers}"] = {**run, "fps": frames / run["wall"]}
        if shutil.which("ffmpeg"):
            ff = measured(["ffmpeg", "-loglevel", "error", "-y", "-threads", "1", "-i",
                           str(tmp / "frames" / "f%04d.png"), "-vf", f"lut3d=file={tmp / 'map.cube'}",
                           str(tmp / "mapped" / "ff%04d.png")])
            results["1080p apply"]["ffmpeg lut3d"] = {**ff, "fps": frames / ff["wall"]}
    print("\n| case | process | wall s | CPU s | CPU / hm-mkl-hm | peak RSS MB |\n|---|---|---|---|---|---|")
    for label, rows in results.items():
        base = rows.get("hm-mkl-hm process", {}).get("cpu")
        for name, row in rows.items():
            ratio = f"{row['cpu'] / base:.2f}x" if base else (f"{row['fps']:.1f} fps" if "fps" in row else "")
            print(f"| {label} | {name} | {row['wall']:.2f} | {row['cpu']:.2f} | {ratio} | {row['rss_mb']:.0f} |")
    return results


if __name__ == "__main__":
    main()
