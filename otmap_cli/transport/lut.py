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

from otmap_cli.errors import InputError
from otmap_cli.io import atomic_output


def lut_grid(size: int) -> np.ndarray:
    """All grid colours, float32 (size^3, 3), ordered [b][g][r] (red fastest) as in a .cube file."""
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    b, g, r = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([r, g, b], axis=-1).reshape(-1, 3)


def sample_lut(colour_map: Callable[[np.ndarray], np.ndarray], size: int, chunk: int = 1 << 16) -> np.ndarray:
    """Table (size, size, size, 3) indexed [b, g, r] of the map on the grid, clipped to [0, 1]."""
    grid = lut_grid(size)
    values = np.concatenate([colour_map(grid[i:i + chunk]) for i in range(0, len(grid), chunk)])
    return np.clip(values, 0, 1).reshape(size, size, size, 3).astype(np.float32)


def _codes_of(levels: np.ndarray) -> np.ndarray:
    """24-bit codes r<<16 | g<<8 | b of (N, 3) int32 8-bit levels."""
    return (levels[:, 0] << 16) | (levels[:, 1] << 8) | levels[:, 2]


def _colours_of(codes: np.ndarray) -> np.ndarray:
    """(N, 3) float32 colours in [0, 1] of 24-bit codes (the inverse of ``_codes_of``)."""
    return np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=1).astype(np.float32) / 255


def distinct_colours(images: list[np.ndarray], chunk: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """The distinct colours of (..., 3) images on the 8-bit lattice (others rounded to it), (n, 3) float32,
    and how many pixels have each."""
    codes = []
    for rgb in images:
        flat = rgb.reshape(-1, 3)
        for start in range(0, len(flat), chunk):
            levels = np.rint(np.clip(flat[start:start + chunk], 0, 1) * 255).astype(np.int32)
            codes.append(_codes_of(levels))
    counts = np.bincount(np.concatenate(codes), minlength=1 << 24)
    present = np.flatnonzero(counts)
    colours = _colours_of(present)
    return colours, counts[present]


# Weight of the sampled map in ``fit_lut``, against the fraction of the image's pixels near a node: a node
# that no colour of the image reaches keeps the map's value, one that many reach follows the image
FIT_PRIOR_WEIGHT = 1e-4


def fit_lut(colour_map: Callable[[np.ndarray], np.ndarray], size: int, colours: np.ndarray,
            counts: np.ndarray) -> np.ndarray:
    """A size^3 table whose tetrahedral interpolation is closest to ``colour_map`` on the given colours.

    Tetrahedral interpolation is linear in the table, so the table minimising sum_i n_i |interp(c_i) -
    T(c_i)|^2 + FIT_PRIOR_WEIGHT |table - samples|^2 (n_i the colours' pixel fractions) solves one sparse
    symmetric system, the same for the three channels. Sampling the map at the nodes instead leaves the
    interpolation error of a curved map inside every cell (docs/decisions.md measures both in ffmpeg).
    """
    import scipy.sparse as sparse
    from scipy.sparse.linalg import factorized

    base = sample_lut(colour_map, size).reshape(-1, 3).astype(np.float64)
    index, weights = tetrahedral_weights(colours, size)
    rows = np.repeat(np.arange(len(colours)), 4)
    interp = sparse.csr_matrix((weights.ravel().astype(np.float64), (rows, index.ravel())),
                               shape=(len(colours), size**3))
    share = counts / counts.sum()
    system = (interp.T @ sparse.diags(share) @ interp + FIT_PRIOR_WEIGHT * sparse.identity(size**3)).tocsc()
    rhs = interp.T @ (share[:, None] * np.clip(colour_map(colours), 0, 1)) + FIT_PRIOR_WEIGHT * base
    solve = factorized(system)
    table = np.stack([solve(rhs[:, channel]) for channel in range(3)], axis=1)
    return np.clip(table, 0, 1).reshape(size, size, size, 3).astype(np.float32)


def tetrahedral_weights(rgb: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat table indices (N, 4) and weights (N, 4) of tetrahedral interpolation at (N, 3) colours.

    The cell's cube is cut into 6 tetrahedra along its main diagonal; the one holding the point is
    found by sorting the fractional coordinates f_1 >= f_2 >= f_3, and the vertices are walked from
    the cell's corner one axis at a time in that order, with weights 1 - f_1, f_1 - f_2, f_2 - f_3, f_3
    (Kasson, Nin, Plouffe, Hafner, "Performing color space conversions with three-dimensional linear
    interpolation", J. Electronic Imaging 1995) -- the rule of ffmpeg's ``lut3d`` default
    ``interp=tetrahedral``, so a table applied here and there gives the same picture.
    """
    scaled = np.clip(np.asarray(rgb, dtype=np.float32).T, 0.0, 1.0) * np.float32(size - 1)  # (3, N): fast columns
    corner = np.minimum(scaled.astype(np.int32), size - 2)
    r, g, b = scaled - corner
    high, low = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    middle = r + g + b - high - low
    stride_g, stride_b = size, size * size  # red fastest, as in a .cube file
    base = corner[0] + corner[1] * stride_g + corner[2] * stride_b
    step_high = np.where(r >= np.maximum(g, b), 1, np.where(g >= b, stride_g, stride_b))  # largest axis
    step_low = np.where(b <= np.minimum(r, g), stride_b, np.where(g <= r, stride_g, 1))  # smallest axis
    # vertices: corner, + the largest axis, + all but the smallest axis, + all axes (ties: zero weight)
    last = base + 1 + stride_g + stride_b
    index = np.stack([base, base + step_high, last - step_low, last], axis=1)
    weights = np.stack([1 - high, high - middle, middle - low, low], axis=1)
    return index, weights


def _eight_bit_codes(flat: np.ndarray, chunk: int) -> np.ndarray | None:
    """24-bit codes r<<16 | g<<8 | b of (N, 3) colours that all lie on the 8-bit lattice, else None."""
    codes = np.empty(len(flat), dtype=np.int32)
    for start in range(0, len(flat), chunk):
        part = flat[start:start + chunk]
        levels = np.rint(part * 255.0)
        if np.abs(levels - part * 255.0).max(initial=0.0) > 1e-3:
            return None
        levels = levels.astype(np.int32)
        codes[start:start + chunk] = _codes_of(levels)
    return codes


def map_colours(colour_fn: Callable[[np.ndarray], np.ndarray], rgb: np.ndarray, chunk: int = 1 << 20,
                out: np.ndarray | None = None) -> np.ndarray:
    """``colour_fn`` (an (n, 3) -> (n, 3) colour map) at every pixel of ``rgb`` (..., 3), clipped to [0, 1].

    An 8-bit image holds far fewer distinct colours than pixels (a 12 MP photo: a few 10^5), so
    those are mapped once each and gathered back; other images are mapped chunk by chunk. ``out``
    (float32, the shape of ``rgb``, may be ``rgb`` itself) receives the result: each chunk is read
    before it is written, so mapping in place saves a second full-size array on huge images.
    """
    flat = rgb.reshape(-1, 3)
    out = np.empty(flat.shape, dtype=np.float32) if out is None else out.reshape(-1, 3)
    codes = _eight_bit_codes(flat, chunk) if len(flat) > 1 << 16 else None
    if codes is None:
        for start in range(0, len(flat), chunk):
            part = np.ascontiguousarray(flat[start:start + chunk], dtype=np.float32)
            out[start:start + chunk] = np.clip(colour_fn(part), 0, 1)
        return out.reshape(rgb.shape)
    if len(codes) < 1 << 18:  # sorting is cheaper than the 2^24 tables below ~0.3 MP (benchmarks/distinct_colours.py)
        present, slot_of_pixel = np.unique(codes, return_inverse=True)
    else:  # a presence flag per 24-bit colour, then each present colour's slot (only those entries are read)
        seen = np.zeros(1 << 24, dtype=bool)
        seen[codes] = True
        present = np.flatnonzero(seen).astype(np.int32)
        slot = np.empty(1 << 24, dtype=np.int32)
        slot[present] = np.arange(len(present), dtype=np.int32)
        slot_of_pixel = None
    colours = _colours_of(present)
    mapped = np.concatenate([np.clip(colour_fn(colours[i:i + chunk]), 0, 1) for i in range(0, len(colours), chunk)])
    for start in range(0, len(flat), chunk):
        part = slot_of_pixel[start:start + chunk] if slot_of_pixel is not None else slot[codes[start:start + chunk]]
        out[start:start + chunk] = mapped[part]
    return out.reshape(rgb.shape)


def interpolate_lut(table: np.ndarray, colours: np.ndarray, interpolation: str = "tetrahedral") -> np.ndarray:
    """``table`` (S, S, S, 3), indexed [b, g, r], interpolated at (n, 3) colours.

    "tetrahedral" is ffmpeg ``lut3d``'s default and otmap's; "trilinear" is kept for comparison.
    """
    size = table.shape[0]
    flat_table = np.ascontiguousarray(table, dtype=np.float32).reshape(-1, 3)
    if interpolation == "tetrahedral":
        index, weights = tetrahedral_weights(colours, size)
        values = flat_table[index[:, 0]] * weights[:, :1]
        for k in range(1, 4):
            values += flat_table[index[:, k]] * weights[:, k:k + 1]
        return values
    if interpolation == "trilinear":
        import torch

        volume = torch.from_numpy(flat_table.reshape(size, size, size, 3)).permute(3, 0, 1, 2)[None]  # 1,3,B,G,R
        coords = torch.from_numpy(np.asarray(colours, dtype=np.float32)).clamp(0, 1).mul(2).sub(1)
        sampled = torch.nn.functional.grid_sample(volume, coords.view(1, -1, 1, 1, 3), mode="bilinear",
                                                  align_corners=True)  # grid (x, y, z) = (r, g, b)
        return sampled.view(3, -1).T.numpy()
    raise ValueError(f"unknown interpolation {interpolation!r}")


def apply_lut(table: np.ndarray, rgb: np.ndarray, chunk: int = 1 << 20, out: np.ndarray | None = None,
              interpolation: str = "tetrahedral") -> np.ndarray:
    """Interpolate ``table`` at every pixel of ``rgb`` (H, W, 3); see ``map_colours`` for ``out``."""
    return map_colours(lambda colours: interpolate_lut(table, colours, interpolation), rgb, chunk, out)


def blend_with_identity(table: np.ndarray, strength: float) -> np.ndarray:
    """(1 - s) x + s T(x) at every node: the partial transfer of a map known only as a table."""
    identity = lut_grid(table.shape[0]).reshape(table.shape)
    return ((1 - strength) * identity + strength * table).astype(np.float32)


def cube_title(text: str) -> str:
    """``text`` as one TITLE line: newlines and other control characters would end the line early
    and a double quote the string, and either makes the file unreadable to every reader."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split()).replace('"', "'")[:200]


def write_cube(path: Path | str, table: np.ndarray, title: str = "otmap", overwrite: bool = True) -> None:
    size = table.shape[0]
    header = [f'TITLE "{cube_title(title)}"', f"LUT_3D_SIZE {size}", "DOMAIN_MIN 0.0 0.0 0.0",
              "DOMAIN_MAX 1.0 1.0 1.0"]
    body = "\n".join(f"{r:.6f} {g:.6f} {b:.6f}" for r, g, b in table.reshape(-1, 3))
    with atomic_output(Path(path), overwrite=overwrite) as tmp:
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
