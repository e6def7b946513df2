"""Colour transfer between images: sample pixels, fit the monotone map, apply it."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from otmap_cli.errors import InputError
from otmap_cli.io import Image
from otmap_cli.progress import Progress, or_silent
from otmap_cli.transport.colormap import ColourMap
from otmap_cli.transport.fit import FitResult, FitSettings, fit_monotone_map
from otmap_cli.transport.regions import DEFAULT_FEATHER, mask_region, region_weights

DEFAULT_SAMPLE_PIXELS = 50_000
# C-MGN width for colour maps: the fit's time is the product's speed, and a map of RGB needs little
# capacity (the trade-off measured is in docs/decisions.md)
COLOUR_MODEL_OPTIONS = {"cmgn": {"width": 48}}


def pixel_samples(images: Sequence[Image], n: int, seed: int = 0,
                  regions: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
    """Up to ``n`` random opaque pixels pooled evenly from ``images``, shape (n, 3).

    Fully transparent pixels carry no colour the user sees, so they are left out of the fit; so are
    the pixels outside each image's region (a bool (H, W) array, or None for the whole image).
    """
    rng = np.random.default_rng(seed)
    per_image = max(1, n // len(images))
    parts = []
    for image, region in zip(images, regions or [None] * len(images)):
        keep = None if region is None else region.reshape(-1)
        if image.alpha is not None and (image.alpha > 0).any():
            opaque = image.alpha.reshape(-1) > 0
            keep = opaque if keep is None else keep & opaque
        flat = image.rgb.reshape(-1, 3) if keep is None else image.rgb.reshape(-1, 3)[keep]
        if len(flat) == 0:
            raise InputError(f"{image.name}: the mask covers no opaque pixel; nothing to fit on")
        if len(flat) > 20 * per_image:  # large image: draws with replacement rarely repeat, and cost O(n)
            index = rng.integers(0, len(flat), size=per_image)
        else:
            index = rng.choice(len(flat), size=min(per_image, len(flat)), replace=False)
        parts.append(flat[np.sort(index)])
    return np.concatenate(parts).astype(np.float32)


def fit_colour_map(sources: Sequence[Image], style: Image, settings: FitSettings | None = None,
                   sample_pixels: int = DEFAULT_SAMPLE_PIXELS, progress: Progress | None = None,
                   strength: float = 1.0, *, masks: Sequence[np.ndarray] | None = None,
                   style_mask: np.ndarray | None = None,
                   preserve_luminance: bool = False) -> tuple[ColourMap, FitResult]:
    """Fit the Brenier map from the pooled colours of ``sources`` to those of ``style``.

    Several sources give one shared map (consistent colours across video frames). ``masks`` (one
    (H, W) array in [0, 1] per source) and ``style_mask`` restrict the fit to their regions (mask >
    0.5): the map is then the Brenier map between the two regions' colour distributions.
    ``strength`` and ``preserve_luminance`` are stored in the map, so a saved map later re-applies
    the transfer the user chose:

        >>> colour_map, report = fit_colour_map(frames, read_image("sunset.jpg"))  # doctest: +SKIP
        >>> colour_map.save("sunset.safetensors"); colour_map.write_cube("sunset.cube")  # doctest: +SKIP
    """
    settings = settings or FitSettings()
    settings = replace(settings, output_range=(0.0, 1.0),
                       model_options=settings.model_options or COLOUR_MODEL_OPTIONS.get(settings.model, {}))
    if masks is not None and len(masks) != len(sources):
        raise InputError(f"{len(masks)} masks for {len(sources)} sources; give one mask per source")
    regions = None if masks is None else [mask_region(m, image) for m, image in zip(masks, sources)]
    style_region = None if style_mask is None else [mask_region(style_mask, style, "the style mask")]
    src = pixel_samples(sources, sample_pixels, settings.seed, regions)
    sty = pixel_samples([style], sample_pixels, settings.seed + 1, style_region)
    result = fit_monotone_map(src, sty, settings, progress=progress)
    info = {"model": settings.model, "loss": settings.loss, "warm_start": settings.warm_method,
            "steps": settings.refine_steps, "seed": settings.seed,
            "sources": [s.name for s in sources], "style": style.name, "fell_back": result.fell_back,
            "fit_seconds": round(result.seconds, 3), "metrics": result.metrics, "strength": strength,
            "preserve_luminance": preserve_luminance, "masked": masks is not None,
            "style_masked": style_mask is not None}
    return ColourMap(net=result.net, info=info), result


def recolor(source: Image, style: Image, settings: FitSettings | None = None, strength: float = 1.0,
            exact: bool = False, progress: Progress | None = None, *, colour_map: ColourMap | None = None,
            in_place: bool = False, mask: np.ndarray | None = None, style_mask: np.ndarray | None = None,
            feather: float = DEFAULT_FEATHER, preserve_luminance: bool | None = None,
            ) -> tuple[Image, ColourMap, FitResult | None]:
    """Re-colour ``source`` with the palette of ``style``; alpha, ICC and bit depth are kept.

    Returns (image, the map, the fit's report). Pass ``colour_map`` to apply a map fitted before
    (then nothing is fitted and the report is None): one map shared by many frames is

        >>> shared, _ = fit_colour_map(frames, style)          # doctest: +SKIP
        >>> outputs = [recolor(f, style, colour_map=shared)[0] for f in frames]  # doctest: +SKIP

    ``mask`` (H, W in [0, 1], e.g. ``read_mask("sky.png")``): fit on, and re-colour only, where it is
    white, feathered over ``feather`` pixels; every other pixel is left as it was. ``style_mask``:
    take the palette from that region of the style. ``preserve_luminance``: keep each pixel's
    CIELAB L* and take only the colour (None: False for a new fit, else as the map was saved).
    ``in_place`` maps into ``source.rgb`` itself (bounded memory on huge images). ``progress`` sees
    the phases "fitting map · step k/N" (unless a map is given), then "applying".
    """
    weights = None if mask is None else region_weights(mask, source, feather)
    result = None
    report = or_silent(progress)
    if colour_map is None:
        colour_map, result = fit_colour_map([source], style, settings, progress=report, strength=strength,
                                            masks=None if mask is None else [mask], style_mask=style_mask,
                                            preserve_luminance=bool(preserve_luminance))
    report(0, 1, "applying")
    image = colour_map.apply_image(source, strength, exact, in_place=in_place, weights=weights,
                                   preserve_luminance=preserve_luminance)
    report(1, 1, "applying")
    return image, colour_map, result
