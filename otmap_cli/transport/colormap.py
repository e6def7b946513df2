"""A fitted colour map: the monotone network plus what it was fitted on, applicable to any image.

Applying: an image with more pixels than a 65^3 grid (0.27 MP) is mapped through the network
sampled on that grid and interpolated trilinearly (the same path as .cube export), so a 12 MP
photo costs a table look-up. Measured on the demo pair against the network at every pixel: mean
error 0.05/255, 99.9th percentile 1.9/255, max 3/255 (33^3: 0.19, 4.3, 6.2; 129^3: 0.013, 0.8, 1.4,
but 10x the evaluation time). Smaller images, or ``exact=True``, evaluate the network at every pixel. Both work in chunks, so
memory is bounded by the chunk size beyond the input and output arrays.
Partial transfer follows the Wasserstein geodesic (McCann's displacement interpolation, McCann
1997): x -> (1 - s) x + s T(x).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from otmap_cli.errors import InputError
from otmap_cli.nets.monotone import MonotoneGradientNet, build_monotone
from otmap_cli.transport.lut import apply_lut, sample_lut
from otmap_cli.weights import load_tensors, save_tensors

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

    def save(self, path: Path | str) -> None:
        save_tensors(path, self.net.state_dict(), MAP_KIND, {"config": self.net.config, **self.info})

    @classmethod
    def load(cls, path: Path | str) -> "ColourMap":
        tensors, meta = load_tensors(path, MAP_KIND)
        try:
            net = build_monotone(meta["config"])
            net.load_state_dict(tensors)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise InputError(f"{path}: corrupt colour map ({str(exc).splitlines()[0][:100]})") from None
        if not all(torch.isfinite(p).all() for p in net.parameters()):
            raise InputError(f"{path}: colour map holds non-finite weights")
        info = {k: v for k, v in meta.items() if k != "config"}
        return cls(net=net.eval(), info=info)
