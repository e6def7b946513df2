"""3-D colour look-up tables: sampling a colour map on a grid, trilinear application, .cube files.

A colour map is a function on the RGB cube only, so evaluating it once on an S^3 grid and
interpolating applies it to any number of pixels at the cost of a table look-up; it is also
exactly what ``.cube`` export needs. The .cube layout follows Adobe's "Cube LUT Specification 1.0"
(LUT_3D_SIZE, DOMAIN_MIN/MAX, one "R G B" line per entry, red index varying fastest), as read by
ffmpeg ``lut3d``, DaVinci Resolve and Photoshop.
"""

from __future__ import annotations

import re
import warnings
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


def cube_title(text: str) -> str:
    """``text`` as one TITLE line: newlines and other control characters would end the line early
    and a double quote the string, and either makes the file unreadable to every reader."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split()).replace('"', "'")[:200]


def write_cube(path: Path | str, table: np.ndarray, title: str = "otmap") -> None:
    size = table.shape[0]
    header = [f'TITLE "{cube_title(title)}"', f"LUT_3D_SIZE {size}", "DOMAIN_MIN 0.0 0.0 0.0",
              "DOMAIN_MAX 1.0 1.0 1.0"]
    body = "\n".join(f"{r:.6f} {g:.6f} {b:.6f}" for r, g, b in table.reshape(-1, 3))
    with atomic_output(Path(path)) as tmp:
        tmp.write_text("\n".join(header) + "\n" + body + "\n")


MAX_CUBE_SIZE = 129  # the largest table otmap writes; a 129^3 file is ~58 MB of text
CUBE_VALUE_LIMIT = 64.0  # |entry| above this is no colour (scene-linear outputs of log LUTs stay far below)
_BYTES_PER_ENTRY = 64  # generous: "-0.123456789 -0.123456789 -0.123456789" plus slack


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_cube(path: Path | str) -> np.ndarray:
    """Read a 3-D .cube file back into a (size, size, size, 3) float32 table indexed [b, g, r].

    The header is read line by line, the entries in one pass by numpy (memory about twice the
    file); sizes above ``MAX_CUBE_SIZE``, non-finite entries and entries beyond
    ``CUBE_VALUE_LIMIT`` are refused, as they would turn pixels black or into garbage.
    """
    path = Path(path)
    size = None
    domain_min, domain_max = [0.0] * 3, [1.0] * 3
    try:
        with open(path, "rb") as handle:
            while True:
                start = handle.tell()
                raw = handle.readline(4096)
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").strip()
                if not line or line.startswith("#") or line.startswith("TITLE"):
                    continue
                key, *values = line.split()
                if _is_number(key):  # first table entry: the header is over
                    handle.seek(start)
                    break
                if key == "LUT_3D_SIZE":
                    size = int(values[0])
                    if not 2 <= size <= MAX_CUBE_SIZE:
                        raise InputError(f"{path}: LUT_3D_SIZE {size} is not supported (2..{MAX_CUBE_SIZE})")
                    limit = handle.tell() + size**3 * _BYTES_PER_ENTRY + (1 << 20)
                    if path.stat().st_size > limit:
                        raise InputError(f"{path}: far larger than a {size}^3 table; not a .cube file")
                elif key == "DOMAIN_MIN":
                    domain_min = [float(v) for v in values]
                elif key == "DOMAIN_MAX":
                    domain_max = [float(v) for v in values]
                elif key == "LUT_1D_SIZE":
                    raise InputError(f"{path}: 1-D LUTs are not supported")
                # other keywords (LUT_IN_VIDEO_RANGE ...) do not change a 0..1 3-D table
            if size is None:
                raise InputError(f"{path}: malformed .cube file (no LUT_3D_SIZE before the table)")
            body = handle.read()
    except (OSError, ValueError, IndexError) as exc:
        raise InputError(f"{path}: not a readable .cube file ({str(exc).splitlines()[0][:100]})") from None
    if domain_min != [0.0] * 3 or domain_max != [1.0] * 3:
        raise InputError(f"{path}: only DOMAIN 0..1 is supported")
    if b"#" in body:
        body = re.sub(rb"#[^\n]*", b"", body)
    lines = body.count(b"\n") + 1 - len(re.findall(rb"(?m)^[ \t\r]*$", body))  # non-blank lines
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # older numpy stops at text it cannot parse
            values = np.fromstring(body, dtype=np.float64, sep=" ")
    except ValueError:  # newer numpy raises instead
        values = np.empty(0)
    del body
    if len(values) != 3 * size**3 or lines != size**3:
        raise InputError(f"{path}: malformed .cube file (LUT_3D_SIZE {size} needs {size**3} lines of 3 values; "
                         f"found {lines} lines, {len(values)} values)")
    if not np.isfinite(values).all() or np.abs(values).max() > CUBE_VALUE_LIMIT:
        bad = int((~np.isfinite(values) | (np.abs(np.nan_to_num(values, nan=np.inf)) > CUBE_VALUE_LIMIT)).sum())
        raise InputError(f"{path}: {bad} table value(s) are not finite numbers within "
                         f"-{CUBE_VALUE_LIMIT:g}..{CUBE_VALUE_LIMIT:g}")
    return values.astype(np.float32).reshape(size, size, size, 3)
