"""``otmap recolor``, ``otmap apply`` and ``otmap toy``: colour transfer by a fitted monotone map."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from otmap_cli.choices import LOSSES, LUT_SIZES, MONOTONE_MODELS, TOYS, choice_enum, one_of
from otmap_cli.cli.common import (DEVICE, Batch, check_output, grouped, plan_outputs, progress, require_files,
                                  run_batch, say, select_inputs, wrote)
from otmap_cli.errors import InputError

Model = choice_enum("Model", MONOTONE_MODELS)
Loss = choice_enum("Loss", LOSSES)
Toy = choice_enum("Toy", TOYS)


def _strength(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise InputError(f"--strength must be within 0..1, got {value}")
    return value


@grouped
def recolor(
    inputs: List[Path] = typer.Argument(..., metavar="SOURCE... STYLE",
                                        help="Image(s) or folders (with --out-dir) to re-colour, then the style "
                                        "image whose colours to take."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file ('-' = PNG on stdout). "
                                          "Default: <source>_recolored.png next to the source."),
    name: Optional[str] = typer.Option(None, "--name", help="Output name template ({stem} = the source's name "
                                       "without its extension). Default: {stem}_recolored.png; for images "
                                       "found in a folder, their own names."),
    model: Model = typer.Option(Model.cmgn, "--model", help="Monotone gradient network: cascaded or modular."),
    loss: Loss = typer.Option(Loss.sliced, "--loss",
                              help="Distribution loss (sliced was chosen by benchmark: docs/benchmarks.md)."),
    steps: int = typer.Option(150, "--steps", help="Distribution-loss steps after the OT warm start (at most "
                              "100000)."),
    warm_steps: int = typer.Option(300, "--warm-steps", help="Regression steps onto an exact discrete OT plan "
                                   "(0 = skip; at most 100000)."),
    batch_pixels: int = typer.Option(1024, "--batch-pixels", help="Pixels per optimisation step."),
    strength: float = typer.Option(1.0, "--strength", help="0..1: partial transfer along the Wasserstein "
                                   "geodesic, (1-s) x + s T(x)."),
    exact: bool = typer.Option(False, "--exact", help="Evaluate the network at every pixel instead of a 65^3 "
                               "table for images above 0.27 MP."),
    shared_map: bool = typer.Option(False, "--shared-map", help="Fit one map on all sources pooled (consistent "
                                    "colours across video frames)."),
    save_map: Optional[Path] = typer.Option(None, "--save-map", help="Save the fitted map (.safetensors) for "
                                            "'otmap apply'."),
    lut: Optional[Path] = typer.Option(None, "--lut", help="Export the map as a 3D LUT (.cube) for ffmpeg, "
                                       "Resolve, Photoshop."),
    lut_size: int = typer.Option(33, "--lut-size", help=f"LUT grid size: {', '.join(map(str, LUT_SIZES))}."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Save a figure (.png): images and colour "
                                        "distributions before/after."),
    seed: int = typer.Option(0, "--seed", help="Random seed (pixel sampling, initialisation)."),
    device=DEVICE,
    *, batch: Batch,
):
    """Re-colour SOURCE with the palette of STYLE by the optimal transport (Brenier) map, fitted as a
    monotone gradient network. Example: otmap recolor day.jpg sunset.jpg -o day_at_sunset.png"""
    if len(inputs) < 2:
        raise InputError("recolor needs at least one SOURCE and a STYLE image")
    *sources, style_path = inputs
    if not batch.keep_going:
        require_files(inputs)
    require_files([style_path])
    sources, roots = select_inputs(sources, batch)
    _strength(strength)
    if lut is not None:
        one_of(lut_size, LUT_SIZES, "--lut-size")
    from otmap_cli.transport.settings import FitSettings

    settings = FitSettings(model=model.value, loss=loss.value, steps=steps, warm_steps=warm_steps,
                           batch=batch_pixels, seed=seed)
    try:
        settings.validate()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    plan = plan_outputs(sources, output, name, "{stem}_recolored.png", [*inputs, *roots], batch, roots,
                        extras=((save_map, (".safetensors",)), (lut, (".cube",)), (plot, (".png",))))
    from otmap_cli.device import resolve_device
    from otmap_cli.io import read_image, write_image
    from otmap_cli.transport.recolor import fit_colour_map, recolor as recolor_image

    settings.device = resolve_device(device.value)
    style = read_image(style_path, batch.max_pixels)

    def fit(images):
        with progress("fitting colour map") as update:
            try:
                colour_map, fitted = fit_colour_map(images, style, settings, progress=update, strength=strength)
            except ValueError as exc:
                raise InputError(str(exc)) from None
        if fitted.fell_back:
            say("otmap: warning: the network fit did not beat the closed-form Gaussian map; using that map")
        return colour_map

    def export(colour_map, images):
        if save_map is not None:
            colour_map.save(save_map, overwrite=batch.force)
        if lut is not None:
            colour_map.write_cube(lut, lut_size, strength, title=f"otmap {images[0].name} -> {style.name}")
        if plot is not None:
            from otmap_cli.transport.plot import plot_transfer

            plot_transfer(images[0], style, colour_map.apply_image(images[0], strength, exact), plot)

    shared = None
    if shared_map:
        images = [read_image(s, batch.max_pixels) for s in sources if s not in plan.skipped]
        shared = fit(images)
        export(shared, images)

    def work(source: Path) -> dict:
        start = time.time()
        image = read_image(source, batch.max_pixels)
        colour_map = shared or fit([image])
        if shared is None:
            export(colour_map, [image])
        result, _, _ = recolor_image(image, style, strength=strength, exact=exact, colour_map=colour_map,
                                     in_place=True)  # in place: bounded memory
        write_image(result, plan.outputs[source], overwrite=plan.overwrite(source))
        wrote(plan.outputs[source])
        return {"output": str(plan.outputs[source]), "seconds": round(time.time() - start, 3),
                "fell_back": colour_map.info.get("fell_back"), "metrics": colour_map.info.get("metrics")}

    run_batch(sources, work, batch, plan)


@grouped
def apply(
    map_file: Path = typer.Argument(..., metavar="MAP", help="A map saved by 'recolor --save-map' (.safetensors) "
                                    "or a 3D LUT (.cube)."),
    inputs: List[Path] = typer.Argument(..., metavar="INPUT...", help="Images, or folders of images (with "
                                        "--out-dir), to map."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file (one input only; '-' = "
                                          "stdout)."),
    name: Optional[str] = typer.Option(None, "--name", help="Output name template ({stem} = the input's name "
                                       "without its extension). Default: {stem}_mapped.png; for images found "
                                       "in a folder, their own names."),
    strength: Optional[float] = typer.Option(None, "--strength", help="0..1 partial transfer (default: the "
                                             "strength saved in the map; 1 for a .cube)."),
    exact: bool = typer.Option(False, "--exact", help="Evaluate the network at every pixel."),
    *, batch: Batch,
):
    """Apply a fitted colour map (or a .cube LUT) to many images or video frames, identically.
    Example: otmap apply sunset.safetensors frames/ --out-dir graded/ --recursive -j 2 --skip-existing"""
    if strength is not None:
        _strength(strength)
    require_files([map_file] + ([] if batch.keep_going else inputs))
    all_inputs = [map_file, *inputs]
    inputs, roots = select_inputs(inputs, batch)
    plan = plan_outputs(inputs, output, name, "{stem}_mapped.png", [*all_inputs, *roots], batch, roots)
    from otmap_cli.io import read_image, write_image
    from otmap_cli.transport.colormap import load_map

    mapper = load_map(map_file, strength, exact)

    def work(source: Path) -> dict:
        start = time.time()
        image = read_image(source, batch.max_pixels)
        write_image(image.with_rgb(mapper(image.rgb)), plan.outputs[source], overwrite=plan.overwrite(source))
        wrote(plan.outputs[source])
        return {"output": str(plan.outputs[source]), "seconds": round(time.time() - start, 3)}

    run_batch(inputs, work, batch, plan)


def toy(
    case: Toy = typer.Argument(Toy.gaussian, help="gaussian: Gaussian->Gaussian (closed form known); gmm: 2 -> 3 "
                               "component mixture; banana: Gaussian -> banana."),
    output: Path = typer.Option(Path("toy.png"), "-o", "--output", help="Figure to write (.png)."),
    model: Model = typer.Option(Model.cmgn, "--model"),
    loss: Loss = typer.Option(Loss.sliced, "--loss"),
    steps: int = typer.Option(1000, "--steps", help="Distribution-loss steps (at most 100000)."),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="Replace an existing figure."),
):
    """2-D experiments for learning the method: fit a monotone gradient network between two point
    clouds and plot the learned transport."""
    from otmap_cli.transport.settings import FitSettings

    settings = FitSettings(model=model.value, loss=loss.value, steps=steps, seed=seed, batch=1024)
    try:
        settings.validate()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    check_output(output, [], force, (".png",))
    from otmap_cli.transport.toy import run_toy

    with progress(f"fitting {case.value}") as update:
        report = run_toy(case.value, settings, output, progress=update)
    for key, value in report.items():
        say(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    wrote(output)
