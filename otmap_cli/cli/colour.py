"""``otmap recolor``, ``otmap apply`` and ``otmap toy``: colour transfer by a fitted monotone map."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from otmap_cli.choices import LOSSES, LUT_SIZES, MONOTONE_MODELS, TOYS, WARM_STARTS, choice_enum, one_of
from otmap_cli.cli.common import (Batch, Device, check_output, grouped, plan_outputs, progress, require_files,
                                  run_batch, say, select_inputs, wrote)
from otmap_cli.errors import InputError
from otmap_cli.transport.settings import GRADIENT_WARM_STEPS, FitSettings

Model = choice_enum("Model", MONOTONE_MODELS)
Loss = choice_enum("Loss", LOSSES)
Toy = choice_enum("Toy", TOYS)
WarmStart = choice_enum("WarmStart", WARM_STARTS)


def _strength(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise InputError(f"--strength must be within 0..1, got {value}")
    return value


MASK_HELP = ("Re-colour only where this image is white (above 50 %; its alpha if it has transparency, else its "
             "grey level), with a feathered edge; every other pixel is left as it was (bit for bit in a PNG or "
             "TIFF output). Same size as the image.")
FEATHER_HELP = ("Width in pixels of the --mask edge: the change fades out along a smoothstep of the distance "
                "to the white region, and is zero from this distance on (0 = hard edge). Default 8.")


def _feather(feather: Optional[float], mask: Optional[Path]) -> float:
    """The feather width, refusing one given without a mask (it would silently do nothing)."""
    from otmap_cli.transport.regions import DEFAULT_FEATHER, check_feather

    if feather is not None and mask is None:
        raise InputError("--feather shapes the edge of --mask; give --mask MASK.png too")
    try:
        return check_feather(DEFAULT_FEATHER if feather is None else feather)
    except InputError as exc:
        raise InputError(f"--{exc}") from None


FIT_DEVICE = typer.Option(Device.auto, "--device", help="Where the fit runs: auto (the CPU: a colour map is fitted "
                          "on a few thousand colours, where a GPU gains nothing), cpu or cuda.")


def _fit_device(name: str) -> str:
    """``auto`` is the CPU here, and then torch is never imported (``transport/fit.py``)."""
    if name == "auto":
        return "cpu"
    from otmap_cli.device import resolve_device

    return resolve_device(name)


def _read_mask(path: Optional[Path], max_pixels: int):
    from otmap_cli.transport.regions import read_mask

    return None if path is None else read_mask(path, max_pixels)


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
    steps: Optional[int] = typer.Option(None, "--steps", help="Distribution-loss (sliced W2) steps after the OT "
                                        "warm start, at most 100000. Default: 0 after the ridge warm start "
                                        "(they gained nothing measurable there), 150 after the gradient one."),
    warm_start: WarmStart = typer.Option(WarmStart.auto, "--warm-start", help="How the fit first lands on the "
                                         "exact discrete OT plan of the two colour histograms: ridge (one "
                                         "non-negative least-squares solve; C-MGN only), gradient (--warm-steps "
                                         "regression steps), auto (ridge for a C-MGN, else gradient)."),
    warm_steps: Optional[int] = typer.Option(None, "--warm-steps", help="With --warm-start gradient: regression "
                                             f"steps onto the plan (0 = skip; at most 100000). Default: "
                                             f"{GRADIENT_WARM_STEPS}."),
    batch_pixels: int = typer.Option(FitSettings.batch, "--batch-pixels", help="Pixels per optimisation step."),
    strength: float = typer.Option(1.0, "--strength", help="0..1: partial transfer along the Wasserstein "
                                   "geodesic, (1-s) x + s T(x)."),
    exact: bool = typer.Option(False, "--exact", help="Evaluate the network at every pixel instead of a 65^3 "
                               "table for images above 0.27 MP."),
    shared_map: bool = typer.Option(False, "--shared-map", help="Fit one map on all sources pooled (consistent "
                                    "colours across video frames)."),
    save_map: Optional[Path] = typer.Option(None, "--save-map", help="Save the fitted map (.safetensors) for "
                                            "'otmap apply'."),
    lut: Optional[Path] = typer.Option(None, "--lut", help="Export the map as a 3D LUT (.cube) for ffmpeg, "
                                       "Resolve, Photoshop; its values are fitted to the source's colours, so "
                                       "the LUT reproduces otmap's output (tetrahedral interpolation)."),
    lut_size: int = typer.Option(33, "--lut-size", help=f"LUT grid size: {', '.join(map(str, LUT_SIZES))}."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Save a figure (.png): images and colour "
                                        "distributions before/after."),
    mask: Optional[Path] = typer.Option(None, "--mask", help=MASK_HELP + " The map is fitted on the colours of "
                                        "that region only (a saved map or LUT is the colour map alone: give "
                                        "'otmap apply' the mask again)."),
    style_mask: Optional[Path] = typer.Option(None, "--style-mask", help="Take the palette only from where this "
                                              "image is white in STYLE (same rule and size as --mask)."),
    feather: Optional[float] = typer.Option(None, "--feather", help=FEATHER_HELP),
    preserve_luminance: bool = typer.Option(False, "--preserve-luminance", help="Colour only: keep each pixel's "
                                            "lightness (CIELAB L*) and take the map's colour (a*, b*); where that "
                                            "colour does not exist at that lightness, its saturation is reduced. "
                                            "--lut and --save-map keep this too."),
    seed: int = typer.Option(0, "--seed", help="Random seed (pixel sampling, initialisation)."),
    device=FIT_DEVICE,
    *, batch: Batch,
):
    """Re-colour SOURCE with the palette of STYLE by the optimal transport (Brenier) map, fitted as a
    monotone gradient network. Example: otmap recolor day.jpg sunset.jpg -o day_at_sunset.png"""
    if len(inputs) < 2:
        raise InputError("recolor needs at least one SOURCE and a STYLE image")
    *sources, style_path = inputs
    if not batch.keep_going:
        require_files(inputs)
    require_files([style_path, mask, style_mask])
    sources, roots = select_inputs(sources, batch)
    _strength(strength)
    feather = _feather(feather, mask)
    if lut is not None:
        one_of(lut_size, LUT_SIZES, "--lut-size")

    settings = FitSettings(model=model.value, loss=loss.value, steps=steps, warm_start=warm_start.value,
                           warm_steps=warm_steps, batch=batch_pixels, seed=seed)
    try:
        settings.validate()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    exports = {"--save-map": save_map, "--lut": lut, "--plot": plot}
    given = [flag for flag, path in exports.items() if path is not None]
    if given and len(sources) > 1 and not shared_map:
        raise InputError(f"{'/'.join(given)} saves one map, but {len(sources)} sources get a map each; add "
                         "--shared-map (one map for all) or run one source at a time")
    masks = [p for p in (mask, style_mask) if p is not None]
    plan = plan_outputs(sources, output, name, "{stem}_recolored.png", [*inputs, *masks, *roots], batch, roots,
                        extras=((save_map, (".safetensors",)), (lut, (".cube",)), (plot, (".png",))))
    with progress("recolor", "loading"):
        from otmap_cli.io import read_image, write_image
        from otmap_cli.transport.recolor import fit_colour_map
        from otmap_cli.transport.regions import feather_weights, mask_region

        settings.device = _fit_device(device.value)
        style = read_image(style_path, batch.max_pixels)
        source_mask = _read_mask(mask, batch.max_pixels)
        style_mask_pixels = _read_mask(style_mask, batch.max_pixels)
    if style_mask_pixels is not None:
        mask_region(style_mask_pixels, style, f"--style-mask {style_mask}", f"the style {style_path}")

    def region_for(image, path):
        return None if source_mask is None else mask_region(source_mask, image, f"--mask {mask}", str(path))

    def weights_for(image, path):
        region = region_for(image, path)
        return None if region is None else feather_weights(region, feather)

    def fit(images, update):
        try:
            colour_map, fitted = fit_colour_map(
                images, style, settings, progress=update, strength=strength, style_mask=style_mask_pixels,
                masks=None if source_mask is None else [source_mask] * len(images),
                preserve_luminance=preserve_luminance)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if fitted.fell_back:
            say("otmap: warning: the network fit did not beat the closed-form Gaussian map; using that map")
        return colour_map

    def export(colour_map, images, weights, update):
        if given:
            update(0, 1, "exporting " + ", ".join(given))
        if save_map is not None:
            colour_map.save(save_map, overwrite=batch.force)
        if lut is not None:
            colour_map.write_cube(lut, lut_size, strength, title=f"otmap {images[0].name} -> {style.name}",
                                  overwrite=batch.force, fit_to=[image.rgb for image in images])
        if plot is not None:
            from otmap_cli.transport.plot import plot_transfer

            plot_transfer(images[0], style, colour_map.apply_image(images[0], strength, exact, weights=weights),
                          plot, overwrite=batch.force)
        for path in (save_map, lut, plot):
            if path is not None:
                wrote(path)

    shared = None
    if shared_map:
        kept = [s for s in sources if s not in plan.skipped]
        with progress(f"recolor {len(kept)} sources", "loading") as update:
            images = [read_image(s, batch.max_pixels) for s in kept]
            for image, path in zip(images, kept):  # every mask size is checked before the fit
                region_for(image, path)
            shared = fit(images, update)
            export(shared, images, weights_for(images[0], kept[0]) if plot is not None else None, update)

    def work(source: Path) -> dict:
        start = time.time()
        with progress(f"recolor {source.name}", "loading") as update:
            image = read_image(source, batch.max_pixels)
            weights = weights_for(image, source)
            colour_map = shared or fit([image], update)
            if shared is None:
                export(colour_map, [image], weights, update)
            update(0, 1, "applying")
            result = colour_map.apply_image(image, strength, exact, in_place=True, weights=weights)  # bounded memory
            update(0, 1, "writing")
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
    mask: Optional[Path] = typer.Option(None, "--mask", help=MASK_HELP),
    feather: Optional[float] = typer.Option(None, "--feather", help=FEATHER_HELP),
    *, batch: Batch,
):
    """Apply a fitted colour map (or a .cube LUT) to many images or video frames, identically.
    Example: otmap apply sunset.safetensors frames/ --out-dir graded/ --recursive -j 2 --skip-existing"""
    if strength is not None:
        _strength(strength)
    feather = _feather(feather, mask)
    require_files([map_file, mask] + ([] if batch.keep_going else inputs))
    all_inputs = [map_file, *inputs] + ([mask] if mask else [])
    inputs, roots = select_inputs(inputs, batch)
    plan = plan_outputs(inputs, output, name, "{stem}_mapped.png", [*all_inputs, *roots], batch, roots)
    from otmap_cli.io import read_image, write_image
    from otmap_cli.transport.colormap import load_map
    from otmap_cli.transport.regions import map_region, region_weights

    mapper = load_map(map_file, strength, exact)
    region_mask = _read_mask(mask, batch.max_pixels)

    def work(source: Path) -> dict:
        start = time.time()
        image = read_image(source, batch.max_pixels)
        if region_mask is None:
            mapped = mapper(image.rgb)
        else:
            mapped = map_region(mapper, image.rgb, region_weights(region_mask, image, feather, f"--mask {mask}",
                                                                  str(source)), out=image.rgb)
        write_image(image.with_rgb(mapped), plan.outputs[source], overwrite=plan.overwrite(source))
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

    # the gradient warm start: the toys show a full-size MGN trained by the loss (docs/decisions.md)
    settings = FitSettings(model=model.value, loss=loss.value, steps=steps, seed=seed, batch=1024,
                           warm_start="gradient")
    try:
        settings.validate()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    check_output(output, [], force, (".png",))
    from otmap_cli.transport.toy import run_toy

    with progress(f"toy {case.value}", "loading") as update:
        report = run_toy(case.value, settings, output, progress=update, overwrite=force)
    for key, value in report.items():
        say(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    wrote(output)
