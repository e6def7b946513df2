"""``otmap sample``: digits from the shipped Brenier generator, and its convexity check."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from otmap_cli.cli.common import DEVICE, FORCE, JSON, STDIO, check_output, emit_json, progress, require_files, \
    result, say, wrote
from otmap_cli.errors import InputError

MAX_SAMPLES = 100_000  # with --out-dir: 100 000 files of 28 x 28 px, written in batches
MAX_GRID = 10_000  # in one grid PNG: 100 x 100 digits, 3 000 x 3 000 px
BATCH = 1_000


def sample(
    n: int = typer.Option(64, "-n", "--count", help=f"How many digits to draw (at most {MAX_GRID:,} in one grid, "
                          f"{MAX_SAMPLES:,} with --out-dir)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="One PNG grid of all samples ('-' = "
                                          "stdout; default digits.png unless --out-dir)."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Write individual 28x28 PNGs "
                                           "sample_00000.png ... here."),
    interpolate: int = typer.Option(0, "--interpolate", help="Instead of samples: a walk of this many images "
                                    "between two noise draws."),
    check_convexity: bool = typer.Option(False, "--check-convexity", help="Certify the potential: smallest "
                                         "Hessian eigenvalue (Lanczos) and monotonicity over random pairs."),
    points: int = typer.Option(1000, "--points", min=1, max=MAX_SAMPLES, help="Points for --check-convexity."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Generator (.safetensors); default: shipped."),
    seed: int = typer.Option(0, "--seed", help="Noise seed: same seed, same digits."),
    device=DEVICE,
    force: bool = FORCE,
    as_json: bool = JSON,
):
    """Draw MNIST digits from the shipped Brenier generator G = grad(phi), phi a learned convex
    convolutional potential (Drygala et al. 2025)."""
    count = interpolate or n
    if n < 1 or interpolate < 0:
        raise InputError(f"-n must be >= 1, got {n}")
    if interpolate == 1:
        raise InputError("--interpolate needs at least 2 images")
    if not check_convexity and out_dir is None and output is None:
        output = Path("walk.png" if interpolate else "digits.png")
    if output is not None and count > MAX_GRID:
        raise InputError(f"{count:,} digits do not fit one grid (at most {MAX_GRID:,}); use --out-dir for more")
    if out_dir is not None and count > MAX_SAMPLES:
        raise InputError(f"-n {count:,}: at most {MAX_SAMPLES:,} digits per call (use several --seed values)")
    if output is not None and str(output) == STDIO and as_json:
        raise InputError("--json and an image on stdout cannot share stdout; give -o FILE")
    require_files([weights])
    if output is not None:
        check_output(output, [], force, (".png",))
    paths = []
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(f"--out-dir {out_dir}: is a file, not a folder")
        paths = [out_dir / f"sample_{i:05d}.png" for i in range(count)]
        existing = next((p for p in paths if p.exists()), None)
        if existing is not None and not force:
            raise InputError(f"{existing}: already exists (use --force to replace)")
    with progress("sample", "loading model"):  # the first import of torch takes seconds
        from otmap_cli.device import resolve_device
        from otmap_cli.generate import sampling
        from otmap_cli.generate.mnist import image_grid, save_png

        dev = resolve_device(device.value)
        generator = sampling.default_generator(dev) if weights is None else _load(weights, dev)
    record: dict = {}
    to_stdout = output is not None and str(output) == STDIO
    if check_convexity:
        from otmap_cli.generate.convexity import check_convexity as certify

        with progress("checking convexity", f"point 0/{points}", points) as update:
            report = certify(generator, n_points=points, seed=seed, device=dev, progress=update)
        record["convexity"] = {**vars(report), "convex": report.convex}
        if not as_json:
            for line in (f"smallest Hessian eigenvalue over {report.n_points} points: {report.min_eigenvalue:.5f} "
                         f"(1st percentile {report.eigenvalue_p01:.5f}, median {report.eigenvalue_median:.5f}, "
                         f"{report.negative_points} negative)",
                         f"monotonicity <G(x)-G(y), x-y>/|x-y|^2 over {report.n_pairs} pairs: far min "
                         f"{report.min_far_pair:.5f}, near min {report.min_near_pair:.5f}, "
                         f"{report.violated_pairs} violated",
                         "convex: yes" if report.convex else "convex: NO"):
                result(line, image_on_stdout=to_stdout)
        if output is None and out_dir is None:
            if as_json:
                emit_json(record)
            if not report.convex:
                raise typer.Exit(1)
            return
    start = time.time()
    if interpolate:
        batches = [sampling.interpolate(generator, interpolate, seed, dev).numpy()]
    else:
        batches = (b.numpy() for b in sampling.sample_batches(generator, n, seed, dev, BATCH))
    grid_parts = []
    written = 0
    for images in batches:
        if output is not None:
            grid_parts.append(images)
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            for image in images:
                save_png(image, paths[written], overwrite=force)
                written += 1
    record["seconds"] = round(time.time() - start, 3)
    if output is not None:
        import numpy as np

        images = np.concatenate(grid_parts)
        save_png(image_grid(images, columns=len(images) if interpolate else None), output, overwrite=force)
        record["output"] = str(output)
        wrote(output)
    if out_dir is not None:
        record["out_dir"] = str(out_dir)
        say(f"wrote {len(paths)} images to {out_dir}")
    if as_json:
        emit_json(record)


def _load(weights: Path, device: str):
    from otmap_cli.generate.models import load_generator

    return load_generator(weights, device)
