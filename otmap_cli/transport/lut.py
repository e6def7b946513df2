"""3-D colour look-up tables: sampling a colour map on a grid, trilinear application, .cube files.

A colour map is a function on the RGB cube only, so evaluating it once on an S^3 grid and
interpolating applies it to any number of pixels at the cost of a table look-up; it is also
exactly what ``.cube`` export needs. The .cube layout follows Adobe's "Cube LUT Specification 1.0"
(LUT_3D_SIZE, DOMAIN_MIN/MAX, one "R G B" line per entry, red index varying fastest), as read by
ffmpeg ``lut3d``, DaVinci Resolve and Photoshop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from otmap_cli.errors import InputError
from otmap_cli.io import atomic_output


def lut_grid(size: int) -> torch.Tensor:
    """All grid colours, shape (size^3, 3), ordered [b][g][r] (red fastest) as in a .cube file."""
    axis = torch.linspace(0.0, 1.0, size)
    b, g, r = torch.meshgrid(axis, axis, axis, indexing="ij")
    return torch.stack([r, g, b], dim=-1).reshape(-1, 3)


def sample_lut(colour_map: Callable[[torch.Tensor], torch.Tensor], size: int, chunk: int = 1 << 16) -> np.ndarray:
    """Table (size, size, size, 3) indexed [b, g, r] of the map on the grid, clipped to [0, 1]."""
    grid = lut_grid(size)
    with torch.no_grad():
        values = torch.cat([colour_map(part) for part in grid.split(chunk)])
    return values.clamp(0, 1).reshape(size, size, size, 3).numpy().astype(np.float32)


def apply_lut(table: np.ndarray, rgb: np.ndarray, chunk: int = 1 << 20, out: np.ndarray | None = None) -> np.ndarray:
    """Trilinear interpolation of ``table`` at every pixel of ``rgb`` (H, W, 3), in bounded-size chunks.

    ``out`` (float32, the shape of ``rgb``, may be ``rgb`` itself) receives the result: each chunk is
    read before it is written, so mapping in place saves a second full-size array on huge images.
    """
    volume = torch.from_numpy(np.ascontiguousarray(table)).permute(3, 0, 1, 2)[None]  # 1,3,B,G,R
    flat = rgb.reshape(-1, 3)
    out = np.empty(flat.shape, dtype=np.float32) if out is None else out.reshape(-1, 3)
    for start in range(0, len(flat), chunk):
        part = torch.from_numpy(np.ascontiguousarray(flat[start:start + chunk], dtype=np.float32))
        coords = (part.clamp(0, 1) * 2 - 1).view(1, -1, 1, 1, 3)  # grid_sample wants (x, y, z) = (r, g, b)
        sampled = torch.nn.functional.grid_sample(volume, coords, mode="bilinear", align_corners=True)
        out[start:start + chunk] = sampled.view(3, -1).T.numpy()
    return out.reshape(rgb.shape)


def write_cube(path: Path | str, table: np.ndarray, title: str = "otmap") -> None:
    size = table.shape[0]
    header = [f'TITLE "{title[:200]}"', f"LUT_3D_SIZE {size}", "DOMAIN_MIN 0.0 0.0 0.0", "DOMAIN_MAX 1.0 1.0 1.0"]
    body = "\n".join(f"{r:.6f} {g:.6f} {b:.6f}" for r, g, b in table.reshape(-1, 3))
    with atomic_output(Path(path)) as tmp:
        tmp.write_text("\n".join(header) + "\n" + body + "\n")


def read_cube(path: Path | str) -> np.ndarray:
    """Read a 3-D .cube file back into a (size, size, size, 3) table indexed [b, g, r]."""
    size = None
    rows: list[list[float]] = []
    domain_min, domain_max = [0.0] * 3, [1.0] * 3
    try:
        for line in Path(path).read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or line.startswith("TITLE"):
                continue
            key, *values = line.split()
            if key == "LUT_3D_SIZE":
                size = int(values[0])
            elif key == "DOMAIN_MIN":
                domain_min = [float(v) for v in values]
            elif key == "DOMAIN_MAX":
                domain_max = [float(v) for v in values]
            elif key == "LUT_1D_SIZE":
                raise InputError(f"{path}: 1-D LUTs are not supported")
            else:
                rows.append([float(key), *map(float, values)])
    except (OSError, ValueError, IndexError) as exc:
        raise InputError(f"{path}: not a readable .cube file ({exc})") from None
    if size is None or len(rows) != size**3 or any(len(r) != 3 for r in rows):
        raise InputError(f"{path}: malformed .cube file (size {size}, {len(rows)} entries)")
    if domain_min != [0.0] * 3 or domain_max != [1.0] * 3:
        raise InputError(f"{path}: only DOMAIN 0..1 is supported")
    return np.asarray(rows, dtype=np.float32).reshape(size, size, size, 3)
