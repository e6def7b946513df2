"""A fitted colour map: the monotone network plus what it was fitted on, applicable to any image.

Applying: an image with more pixels than a 65^3 grid (0.27 MP) is mapped through the network
sampled on that grid and interpolated tetrahedrally (the same table and rule as .cube export and
ffmpeg ``lut3d``), so a 12 MP photo costs a table look-up; smaller images, or ``exact=True``,
evaluate the network. Either way an 8-bit image's distinct colours are mapped once each
(``lut.map_colours``), in chunks, so memory is bounded by the chunk size beyond the input and
output arrays. The interpolation error is measured in benchmarks/recolor.py.
Partial transfer follows the Wasserstein geodesic (McCann's displacement interpolation, McCann
1997): x -> (1 - s) x + s T(x). ``preserve_luminance`` then keeps the input's L* (``luminance.py``);
both are functions of the input colour, so the table, the .cube and a saved map reproduce them.
A region (``regions.py``) is not: it is given at each application (``weights``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from otmap_cli.choices import LUT_SIZES, one_of
from otmap_cli.errors import InputError
from otmap_cli.io import Image
from otmap_cli.nets.monotone_numpy import NumpyCMGN, monotone_config_fields, monotone_shapes
from otmap_cli.transport.lut import (apply_lut, blend_with_identity, distinct_colours, fit_lut, map_colours, read_cube,
                                    sample_lut, write_cube)
from otmap_cli.transport.regions import DEFAULT_FEATHER, map_region, region_weights
from otmap_cli.weights import Number, load_arrays, save_tensors

MAP_KIND = "colour-map"
APPLY_LUT_SIZE = 65


@dataclass
class ColourMap:
    """``net``: a ``NumpyCMGN`` (any C-MGN map: no torch needed) or a ``nets.monotone.TorchMonotoneMap``."""

    net: Any
    info: dict = field(default_factory=dict)
    _tables: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # (size, strength) -> lut

    @property
    def strength(self) -> float:
        """The strength the map was saved with (``recolor --strength``): what ``apply`` uses by default."""
        return float(self.info.get("strength", 1.0))

    @property
    def preserve_luminance(self) -> bool:
        """Whether the map was saved with ``recolor --preserve-luminance`` (then ``apply`` keeps L* too)."""
        return bool(self.info.get("preserve_luminance", False))

    def transform(self, colours: np.ndarray, strength: float | None = None,
                  preserve_luminance: bool | None = None) -> np.ndarray:
        """Displacement interpolation (1 - s) x + s T(x) of (N, 3) colours, at the input's L* if
        ``preserve_luminance`` (None: as saved)."""
        strength = self.strength if strength is None else strength
        colours = np.ascontiguousarray(colours, dtype=np.float32)
        mapped = colours + np.float32(strength) * (self.net(colours) - colours)
        if not (self.preserve_luminance if preserve_luminance is None else preserve_luminance):
            return mapped
        from otmap_cli.transport.luminance import keep_luminance

        return keep_luminance(colours, np.clip(mapped, 0, 1))

    def lut(self, size: int, strength: float | None = None, preserve_luminance: bool | None = None) -> np.ndarray:
        """The map sampled on a size^3 grid, computed once per (size, strength, luminance): ``apply`` on a
        folder of frames would otherwise spend most of each frame re-evaluating the network on 65^3 colours."""
        key = (size, self.strength if strength is None else float(strength),
               self.preserve_luminance if preserve_luminance is None else bool(preserve_luminance))
        if key not in self._tables:
            self._tables[key] = sample_lut(lambda c: self.transform(c, strength, preserve_luminance), size)
        return self._tables[key]

    def apply(self, rgb: np.ndarray, strength: float | None = None, exact: bool = False,
              chunk: int = 1 << 20, out: np.ndarray | None = None,
              preserve_luminance: bool | None = None) -> np.ndarray:
        """Map every pixel of an (H, W, 3) array in [0, 1]; result clipped to [0, 1].

        ``out`` may be ``rgb`` itself (float32, contiguous) to map in place, chunk by chunk.
        """
        strength = self.strength if strength is None else strength
        if not 0.0 <= strength <= 1.0:
            raise InputError(f"strength must be within 0..1, got {strength}")
        if not exact and rgb.size // 3 > APPLY_LUT_SIZE**3:
            return apply_lut(self.lut(APPLY_LUT_SIZE, strength, preserve_luminance), rgb, chunk, out)

        return map_colours(lambda colours: self.transform(colours, strength, preserve_luminance), rgb, chunk, out)

    def apply_image(self, image: Image, strength: float | None = None, exact: bool = False,
                    in_place: bool = False, weights: np.ndarray | None = None,
                    preserve_luminance: bool | None = None) -> Image:
        """:meth:`apply` on an :class:`~otmap_cli.io.Image`, keeping its alpha, ICC profile and bit depth.

        ``weights`` (H, W), from ``regions.region_weights``, limits the change to a feathered region.
        """
        out = image.rgb if in_place else None

        def mapper(rgb: np.ndarray, out: np.ndarray | None) -> np.ndarray:
            return self.apply(rgb, strength, exact, out=out, preserve_luminance=preserve_luminance)

        if weights is None:
            return image.with_rgb(mapper(image.rgb, out))
        return image.with_rgb(map_region(lambda rgb: mapper(rgb, rgb), image.rgb, weights, out))

    def write_cube(self, path: Path | str, size: int = 33, strength: float | None = None, title: str = "otmap",
                   overwrite: bool = True, fit_to: list[np.ndarray] | None = None) -> None:
        """Export as a 3D LUT (.cube) for ffmpeg, Resolve or Photoshop.

        ``fit_to`` (images, (..., 3)): choose the table values that make its tetrahedral interpolation
        closest to the map on those images' colours (``lut.fit_lut``) instead of the map at the nodes.
        """
        one_of(size, LUT_SIZES, "LUT size")
        if fit_to is None:
            table = self.lut(size, strength)
        else:
            table = fit_lut(lambda c: self.transform(c, strength), size, *distinct_colours(fit_to))
        write_cube(path, table, title=title, overwrite=overwrite)

    def save(self, path: Path | str, overwrite: bool = True) -> None:
        save_tensors(path, self.net.state_dict(), MAP_KIND, {"config": self.net.config, **self.info}, overwrite)

    @classmethod
    def load(cls, path: Path | str) -> "ColourMap":
        """A map written by :meth:`save`; any other or crafted file is an InputError (bounded memory)."""
        def fields(config: dict) -> dict:
            return {**monotone_config_fields(config), "dim": Number(int, 3, 3)}  # colours are RGB

        arrays, meta = load_arrays(path, MAP_KIND, fields, monotone_shapes)
        options = {k: v for k, v in meta["config"].items() if k != "model"}
        if meta["config"]["model"] == "cmgn":
            net = NumpyCMGN(**options, params=arrays)
        else:
            import torch

            from otmap_cli.nets.monotone import TorchMonotoneMap, build_monotone

            module = build_monotone(meta["config"])
            module.load_state_dict({name: torch.from_numpy(value) for name, value in arrays.items()})
            net = TorchMonotoneMap(module)
        info = {k: v for k, v in meta.items() if k != "config"}
        return cls(net=net, info=info)


def load_map(path: Path | str, strength: float | None = None, exact: bool = False):
    """A function ``rgb -> rgb`` (in place) from a saved map (.safetensors) or a 3D LUT (.cube).

    ``strength`` None means the strength saved in the map (1 for a .cube); a .cube with a strength
    is blended with the identity table.
    """
    if strength is not None and not 0.0 <= strength <= 1.0:
        raise InputError(f"strength must be within 0..1, got {strength}")
    if Path(path).suffix.lower() == ".cube":
        table = read_cube(path)
        if strength is not None:
            table = blend_with_identity(table, strength)
        return lambda rgb: apply_lut(table, rgb, out=rgb)
    colour_map = ColourMap.load(path)
    return lambda rgb: colour_map.apply(rgb, strength, exact, out=rgb)


def apply_map(colour_map: ColourMap | Path | str, image: Image, strength: float | None = None,
              exact: bool = False, *, mask: np.ndarray | None = None, feather: float = DEFAULT_FEATHER) -> Image:
    """What ``otmap apply`` does to one image: map it by a fitted map or a .cube file (a copy is returned);
    with ``mask`` (H, W in [0, 1], e.g. ``read_mask``) only its region, feathered over ``feather`` pixels.

        >>> out = apply_map("sunset.safetensors", read_image("frame_0001.png"))  # doctest: +SKIP
    """
    weights = None if mask is None else region_weights(mask, image, feather)
    if isinstance(colour_map, ColourMap):
        return colour_map.apply_image(image, strength, exact, weights=weights)
    mapper = load_map(colour_map, strength, exact)
    if weights is None:
        return image.with_rgb(mapper(image.rgb.copy()))
    return image.with_rgb(map_region(mapper, image.rgb, weights))
