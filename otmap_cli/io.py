"""Reading and writing images the way a photographer expects.

* EXIF orientation is applied on reading (so pixels are as displayed) and the tag reset on writing.
* Alpha is kept aside untouched and put back on writing; grayscale, palette and CMYK inputs become
  RGB for processing and remember their mode.
* 16-bit PNG/TIFF keep 16-bit precision in and out (Pillow truncates 16-bit RGB PNGs to 8 bits, so
  those go through pypng).
* The ICC profile of the input is written to the output.
* Every write is atomic: a temporary file in the destination folder, then a rename, so an
  interrupted run never leaves a truncated output.
* A header claiming more than ``max_pixels`` pixels is refused before any decoding (pixel bombs).
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from otmap_cli.errors import InputError

DEFAULT_MAX_PIXELS = 100_000_000
STDIO = "-"


@dataclass
class Image:
    """Float RGB pixels in [0, 1] (H x W x 3, float32) plus what must survive a round trip."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    icc_profile: bytes | None = None
    source_mode: str = "RGB"
    name: str = "image"

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]

    def with_rgb(self, rgb: np.ndarray) -> "Image":
        """Same metadata and alpha, new colours (alpha must match the new size)."""
        alpha = self.alpha if self.alpha is not None and self.alpha.shape[:2] == rgb.shape[:2] else None
        return replace(self, rgb=np.ascontiguousarray(rgb, dtype=np.float32), alpha=alpha)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs should be as readable as any new file
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _read_bytes(source: str | Path) -> tuple[bytes, str]:
    if str(source) == STDIO:
        data = sys.stdin.buffer.read()
        if not data:
            raise InputError("no image data on standard input")
        return data, "stdin"
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image")
    try:
        return path.read_bytes(), path.stem
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def _png_bit_depth(data: bytes) -> int | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return data[24]
    return None


def _read_png16(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    import png  # pypng: Pillow cannot hold 16-bit-per-channel colour

    reader = png.Reader(bytes=data)
    width, height, rows, info = reader.asDirect()
    planes = info["planes"]
    arr = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)
    arr = arr.astype(np.float32) / 65535.0
    alpha = arr[..., -1].copy() if info["alpha"] else None
    colour = arr[..., : planes - (1 if info["alpha"] else 0)]
    return colour, alpha


def read_image(source: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Decode an image file (or ``-`` for standard input) into an :class:`Image`."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    data, name = _read_bytes(source)
    label = "standard input" if name == "stdin" else str(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            previous = PILImage.MAX_IMAGE_PIXELS
            PILImage.MAX_IMAGE_PIXELS = None
            try:
                pil = PILImage.open(_io.BytesIO(data))
            finally:
                PILImage.MAX_IMAGE_PIXELS = previous
            width, height = pil.size
            if width * height > max_pixels:
                raise InputError(f"{label}: {width}x{height} = {width * height:,} pixels exceeds the limit of "
                                 f"{max_pixels:,} (raise it with --max-pixels if the image is genuine)")
            if width == 0 or height == 0:
                raise InputError(f"{label}: empty image")
            icc = pil.info.get("icc_profile")
            orientation = pil.getexif().get(0x0112, 1) if hasattr(pil, "getexif") else 1
            source_mode = pil.mode
            depth = _png_bit_depth(data)
            if depth == 16 and pil.mode not in ("I", "I;16", "I;16B", "L", "LA"):
                colour, alpha = _read_png16(data)
                bit_depth = 16
            else:
                pil.load()
                colour, alpha, bit_depth = _pil_to_float(pil)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{label}: not an image in a format otmap reads") from None
    except Exception as exc:  # decoders raise many types on corrupt data; all mean "bad input"
        if isinstance(exc, MemoryError):
            raise
        reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        raise InputError(f"{label}: not a readable image ({reason})") from None
    if colour.ndim == 2:
        colour = colour[..., None]
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    if orientation and orientation != 1:
        colour, alpha = _apply_orientation(colour, alpha, orientation)
    return Image(rgb=np.ascontiguousarray(colour, dtype=np.float32), alpha=alpha, bit_depth=bit_depth,
                 icc_profile=icc, source_mode=source_mode, name=name)


def _pil_to_float(pil) -> tuple[np.ndarray, np.ndarray | None, int]:
    mode = pil.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(pil, dtype=np.float32)
        scale = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        return np.clip(arr / scale, 0, 1), None, 16 if scale > 255 else 8
    if mode == "F":
        return np.clip(np.asarray(pil, dtype=np.float32), 0, 1), None, 16
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in pil.info)
    if mode == "CMYK":
        pil = pil.convert("RGB")
    rgba = pil.convert("RGBA") if has_alpha else pil.convert("RGB")
    arr = np.array(rgba, dtype=np.float32)
    arr *= np.float32(1 / 255)  # in place: a 50 MP image would otherwise hold two float copies
    if has_alpha:
        return arr[..., :3], arr[..., 3].copy(), 8
    return arr, None, 8


def _apply_orientation(colour, alpha, orientation):
    """Apply EXIF orientation (tag 0x0112, values 2-8) to pixel arrays."""
    def turn(a):
        if a is None:
            return None
        ops = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
               5: lambda x: np.swapaxes(x, 0, 1), 6: lambda x: np.swapaxes(x, 0, 1)[:, ::-1],
               7: lambda x: np.swapaxes(x, 0, 1)[::-1, ::-1], 8: lambda x: np.swapaxes(x, 0, 1)[::-1]}
        op = ops.get(orientation)
        return np.ascontiguousarray(op(a)) if op else a
    return turn(colour), turn(alpha)


def write_image(image: Image, destination: str | Path, bit_depth: int | None = None) -> None:
    """Encode ``image`` to ``destination`` (format from the suffix; ``-`` writes PNG to stdout)."""
    from PIL import Image as PILImage

    depth = bit_depth or image.bit_depth
    alpha = image.alpha
    dest = str(destination)
    suffix = ".png" if dest == STDIO else Path(dest).suffix.lower()
    if suffix not in {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}:
        raise InputError(f"{dest}: unsupported output format {suffix or '(none)'}; use .png, .jpg, .tif or .webp")
    if depth == 16 and suffix in {".png", ".tif", ".tiff"}:
        arr = _quantise(image.rgb, alpha, np.uint16)
        payload = _encode_png16(arr) if suffix == ".png" else _encode_tiff16(arr)
    else:
        keep_alpha = alpha is not None and suffix in {".png", ".tif", ".tiff", ".webp"}
        pil = PILImage.fromarray(_quantise(image.rgb, alpha if keep_alpha else None, np.uint8))
        buffer = _io.BytesIO()
        options = {"icc_profile": image.icc_profile} if image.icc_profile else {}
        if suffix in {".jpg", ".jpeg"}:
            options.update(quality=95, subsampling=0)
        pil.save(buffer, format={".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
                                 ".bmp": "BMP"}.get(suffix, "PNG"), **options)
        payload = buffer.getvalue()
    if dest == STDIO:
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
        return
    with atomic_output(Path(dest)) as tmp:
        tmp.write_bytes(payload)


def _quantise(rgb: np.ndarray, alpha: np.ndarray | None, dtype, rows: int = 256) -> np.ndarray:
    """Clip (NaN -> 0) and round float pixels to ``dtype``, RGB or RGBA, a band of rows at a time, so that
    no full-size float temporary is made (a 50 MP image is 600 MB per float copy)."""
    scale = np.iinfo(dtype).max
    height, width = rgb.shape[:2]
    out = np.empty((height, width, 3 if alpha is None else 4), dtype=dtype)
    for top in range(0, height, rows):
        band = np.nan_to_num(rgb[top:top + rows], nan=0.0)
        np.clip(band, 0.0, 1.0, out=band)
        out[top:top + rows, :, :3] = np.round(band * scale)
        if alpha is not None:
            out[top:top + rows, :, 3] = np.round(np.clip(alpha[top:top + rows], 0, 1) * scale)
    return out


def _encode_png16(arr: np.ndarray) -> bytes:
    import png

    height, width, channels = arr.shape
    writer = png.Writer(width, height, greyscale=False, alpha=channels == 4, bitdepth=16)
    buffer = _io.BytesIO()
    writer.write(buffer, arr.reshape(height, width * channels))
    return buffer.getvalue()


def _encode_tiff16(arr: np.ndarray) -> bytes:
    import tifffile

    buffer = _io.BytesIO()
    tifffile.imwrite(buffer, arr, photometric="rgb")
    return buffer.getvalue()


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name (for training data)."""
    suffixes = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in suffixes)
