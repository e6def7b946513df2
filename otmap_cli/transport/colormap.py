"""A fitted colour map: the monotone network plus what it was fitted on, applicable to any image.

Applying: an image with more pixels than a 65^3 grid (0.27 MP) is mapped through the network
sampled on that grid and interpolated trilinearly (the same path as .cube export), so a 12 MP
photo costs a table look-up. (The error of the table: docs/decisions.md.)
Smaller images, or ``exact=True``, evaluate the network at every pixel. Both work in chunks, so
memory is bounded by the chunk size beyond the input and output arrays.
Partial transfer follows the Wasserstein geodesic (McCann's displacement interpolation, McCann
1997): x -> (1 - s) x + s T(x).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from otmap_cli.choices import LUT_SIZES, one_of
from otmap_cli.errors import InputError
from otmap_cli.io import Image
from otmap_cli.nets.monotone import MonotoneGradientNet, build_monotone, monotone_config_fields, monotone_shapes
from otmap_cli.transport.lut import apply_lut, read_cube, sample_lut, write_cube
from otmap_cli.weights import Number, load_model, save_tensors

MAP_KIND = "colour-map"
APPLY_LUT_SIZE = 65


@dataclass
class ColourMap:
    net: MonotoneGradientNet
    info: dict = field(default_factory=dict)

    def transform(self, colours: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """Displacement interpolation (1 - s) x + s T(x) of an (N, 3) tensor."""
        with torch.no_grad():
            return colours + strength * (self.net(colours) - colours)

    def lut(self, size: int, strength: float = 1.0) -> np.ndarray:
        return sample_lut(lambda c: self.transform(c, strength), size)

    def apply(self, rgb: np.ndarray, strength: float = 1.0, exact: bool = False,
              chunk: int = 1 << 20, out: np.ndarray | None = None) -> np.ndarray:
        """Map every pixel of an (H, W, 3) array in [0, 1]; result clipped to [0, 1].

        ``out`` may be ``rgb`` itself (float32, contiguous) to map in place, chunk by chunk.
        """
        if not 0.0 <= strength <= 1.0:
            raise InputError(f"strength must be within 0..1, got {strength}")
        if not exact and rgb.size // 3 > APPLY_LUT_SIZE**3:
            return apply_lut(self.lut(APPLY_LUT_SIZE, strength), rgb, chunk, out)
        flat = rgb.reshape(-1, 3)
        out = np.empty(flat.shape, dtype=np.float32) if out is None else out.reshape(-1, 3)
        for start in range(0, len(flat), chunk):
            part = torch.from_numpy(np.ascontiguousarray(flat[start:start + chunk], dtype=np.float32))
            out[start:start + chunk] = self.transform(part, strength).clamp(0, 1).numpy()
        return out.reshape(rgb.shape)

    def apply_image(self, image: Image, strength: float = 1.0, exact: bool = False, in_place: bool = False) -> Image:
        """:meth:`apply` on an :class:`~otmap_cli.io.Image`, keeping its alpha, ICC profile and bit depth."""
        return image.with_rgb(self.apply(image.rgb, strength, exact, out=image.rgb if in_place else None))

    def write_cube(self, path: Path | str, size: int = 33, strength: float = 1.0, title: str = "otmap") -> None:
        """Export as a 3D LUT (.cube) for ffmpeg, Resolve or Photoshop."""
        one_of(size, LUT_SIZES, "LUT size")
        write_cube(path, self.lut(size, strength), title=title)

    def save(self, path: Path | str, overwrite: bool = True) -> None:
        save_tensors(path, self.net.state_dict(), MAP_KIND, {"config": self.net.config, **self.info}, overwrite)

    @classmethod
    def load(cls, path: Path | str) -> "ColourMap":
        """A map written by :meth:`save`; any other or crafted file is an InputError (bounded memory)."""
        def fields(config: dict) -> dict:
            return {**monotone_config_fields(config), "dim": Number(int, 3, 3)}  # colours are RGB

        net, meta = load_model(path, MAP_KIND, fields, build_monotone, monotone_shapes)
        info = {k: v for k, v in meta.items() if k != "config"}
        return cls(net=net.eval(), info=info)


def load_map(path: Path | str, strength: float = 1.0, exact: bool = False):
    """A function ``rgb -> rgb`` (in place) from a saved map (.safetensors) or a 3D LUT (.cube)."""
    if Path(path).suffix.lower() == ".cube":
        if strength != 1.0:
            raise InputError("a partial strength applies to saved maps, not to .cube files")
        table = read_cube(path)
        return lambda rgb: apply_lut(table, rgb, out=rgb)
    if not 0.0 <= strength <= 1.0:
        raise InputError(f"strength must be within 0..1, got {strength}")
    colour_map = ColourMap.load(path)
    return lambda rgb: colour_map.apply(rgb, strength, exact, out=rgb)


def apply_map(colour_map: ColourMap | Path | str, image: Image, strength: float = 1.0, exact: bool = False) -> Image:
    """What ``otmap apply`` does to one image: map it by a fitted map or a .cube file (a copy is returned).

        >>> out = apply_map("sunset.safetensors", read_image("frame_0001.png"))  # doctest: +SKIP
    """
    if isinstance(colour_map, ColourMap):
        return colour_map.apply_image(image, strength, exact)
    mapper = load_map(colour_map, strength, exact)
    return image.with_rgb(mapper(image.rgb.copy()))
