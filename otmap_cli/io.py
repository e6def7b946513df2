"""Reading and writing images the way a photographer expects.

* EXIF orientation is applied on reading (so pixels are as displayed) and the tag reset on writing.
* Alpha is kept aside untouched and put back on writing (a warning says so when the format has no
  alpha); grayscale, palette and CMYK inputs become RGB for processing and remember their mode.
* 16-bit PNG/TIFF keep 16-bit precision in and out (Pillow truncates 16-bit colour PNGs and TIFFs
  to 8 bits, so those go through pypng and tifffile); writing 16 bits to an 8-bit format warns.
* The ICC profile of an RGB input is written to the output. A grey or CMYK profile describes other
  channels than the RGB output has, so such pixels are converted through their profile to sRGB
  (ImageCms, i.e. LittleCMS) and the output is tagged sRGB: never a profile of another colour space.
* Every write is atomic: a temporary ``.NAME.<pid>.<random>.part`` file in the destination folder,
  then a rename, so an interrupted run never leaves a truncated output; with ``overwrite=False``
  the final step is a hard link, which fails if another writer created the file meanwhile. Part
  files of writers that died (SIGKILL) are removed by the next write of the same output.
* A header claiming more than ``max_pixels`` pixels is refused before any decoding (pixel bombs).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import io as _io
import os
import sys
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from otmap_cli.errors import InputError, OtmapWarning
from otmap_cli.choices import ALPHA_FORMATS, IMAGE_FORMATS, IMAGE_SUFFIXES, SIXTEEN_BIT_FORMATS

DEFAULT_MAX_PIXELS = 100_000_000
STDIO = "-"
PART_SUFFIX = ".part"
STALE_PART_AGE_S = 24 * 3600  # a part file this old is abandoned whatever its name says


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only (POSIX)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def remove_stale_parts(path: Path) -> list[Path]:
    """Delete the part files of ``path`` that no live writer owns; return them.

    Only our own pattern ``.NAME.*.part`` beside ``path``, and only when the pid in its name is no
    longer running on this machine, or when it is older than a day (names of other versions, other
    machines on a shared disk).
    """
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    for part in path.parent.glob(glob.escape(prefix) + "*" + PART_SUFFIX):
        pid = part.name[len(prefix):].split(".", 1)[0]
        try:
            old = time.time() - part.lstat().st_mtime > STALE_PART_AGE_S
            dead = pid.isdigit() and os.name == "posix" and not _pid_alive(int(pid))
            if (old or dead) and part.is_file():
                part.unlink()
                removed.append(part)
        except OSError:  # removed by someone else meanwhile, or not ours to remove
            continue
    return removed


def _link_new(tmp: Path, path: Path) -> None:
    """Publish ``tmp`` as ``path`` only if ``path`` does not exist, atomically (two racing writers:
    exactly one wins)."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise InputError(f"{path}: already exists (use --force to replace it)") from None
    except OSError:  # no hard links on this file system: reserve the name exclusively, then fill it
        pass
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        raise InputError(f"{path}: already exists (use --force to replace it)") from None
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_output(path: Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    Every file otmap writes goes through here, so an interrupted write leaves no partial file and
    never destroys an existing one. ``overwrite`` has no default: each writer says whether it may
    replace (``--force``, a checkpoint) or must create (``overwrite=False`` fails with InputError if
    ``path`` exists by then, also when another writer created it meanwhile).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=PART_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs should be as readable as any new file
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def _split_alpha(arr: np.ndarray, has_alpha: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(colour, alpha) of an H x W x C array in [0, 1] whose last channel is alpha if ``has_alpha``."""
    if not has_alpha:
        return arr, None
    return arr[..., :-1], arr[..., -1].copy()


def _read_png16(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    import png  # pypng: Pillow cannot hold 16-bit-per-channel colour

    reader = png.Reader(bytes=data)
    width, height, rows, info = reader.asDirect()
    planes = info["planes"]
    arr = np.empty((height, width * planes), dtype=np.float32)
    for index, row in enumerate(rows):  # row by row: no list of Python ints for the whole image
        arr[index] = np.asarray(row, dtype=np.uint16)
    arr *= np.float32(1 / 65535)
    return _split_alpha(arr.reshape(height, width, planes), info["alpha"])


def _is_tiff16(pil) -> bool:
    """16-bit unsigned grey or RGB (with or without alpha): what :func:`_read_tiff16` reads."""
    tags = pil.tag_v2
    bits = tags.get(258, (8,))  # BitsPerSample
    bits = bits if isinstance(bits, tuple) else (bits,)
    unsigned = tags.get(339, 1) in (1, (1,) * len(bits))  # SampleFormat
    return all(b == 16 for b in bits) and unsigned and tags.get(262) in (1, 2)  # Photometric: grey, RGB


def _read_tiff16(data: bytes, max_pixels: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Via tifffile: Pillow reads 16-bit RGB TIFF as 8-bit RGB, and grey + alpha not at all."""
    import tifffile

    with tifffile.TiffFile(_io.BytesIO(data)) as tif:
        page = tif.pages[0]
        if page.imagewidth * page.imagelength > max_pixels:
            raise InputError(f"{page.imagewidth}x{page.imagelength} pixels exceeds the limit of {max_pixels:,}")
        arr, axes = page.asarray(), page.axes
    if axes.startswith("S"):  # planar configuration: samples first
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.dtype != np.uint16 or arr.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"unsupported 16-bit TIFF layout (axes {axes})")
    arr = arr.astype(np.float32)
    arr *= np.float32(1 / 65535)
    return _split_alpha(arr, arr.shape[2] in (2, 4))


@functools.lru_cache(maxsize=1)
def srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _profile_space(icc: bytes | None) -> str | None:
    """Colour space of an ICC profile ("RGB", "GRAY", "CMYK", ...), None if absent or unreadable."""
    if not icc:
        return None
    from PIL import ImageCms

    try:
        return ImageCms.getOpenProfile(_io.BytesIO(icc)).profile.xcolor_space.strip()
    except (OSError, ImageCms.PyCMSError, ValueError, TypeError):
        return None


def _through_profile(pil, icc: bytes):
    """The colour channels of ``pil`` (L or CMYK) converted through their profile to sRGB, or None if
    LittleCMS cannot (the caller then falls back to Pillow's plain conversion)."""
    from PIL import ImageCms

    colour = pil.convert("L") if pil.mode in ("LA", "La") else pil
    if colour.mode not in ("L", "CMYK"):
        return None
    try:
        return ImageCms.profileToProfile(colour, ImageCms.ImageCmsProfile(_io.BytesIO(icc)),
                                         ImageCms.ImageCmsProfile(_io.BytesIO(srgb_profile())), outputMode="RGB")
    except (OSError, ImageCms.PyCMSError, ValueError):
        return None


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
            frames = getattr(pil, "n_frames", 1)
            if frames > 1:
                warnings.warn(f"{label}: has {frames} frames; only the first is used", OtmapWarning, stacklevel=2)
            icc = pil.info.get("icc_profile")
            orientation = pil.getexif().get(0x0112, 1) if hasattr(pil, "getexif") else 1
            source_mode = pil.mode
            if pil.format == "PNG" and _png_bit_depth(data) == 16:
                colour, alpha = _read_png16(data)
                bit_depth = 16
            elif pil.format == "TIFF" and _is_tiff16(pil):
                colour, alpha = _read_tiff16(data, max_pixels)
                bit_depth = 16
            else:
                pil.load()
                converted = _through_profile(pil, icc) if _profile_space(icc) in ("GRAY", "CMYK") else None
                colour, alpha, bit_depth = _pil_to_float(pil, converted)
    except InputError as exc:
        if str(exc).startswith(label):
            raise
        raise InputError(f"{label}: {exc}") from None
    except UnidentifiedImageError:
        if data[:4] not in (b"II*\0", b"MM\0*"):
            raise InputError(f"{label}: not an image in a format otmap reads") from None
        return _read_unusual_tiff(data, max_pixels, label, name)
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
                 icc_profile=_rgb_profile(icc), source_mode=source_mode, name=name)


def _read_unusual_tiff(data: bytes, max_pixels: int, label: str, name: str) -> Image:
    """A TIFF that Pillow does not identify (e.g. 16-bit grey + alpha), through tifffile."""
    try:
        colour, alpha = _read_tiff16(data, max_pixels)
    except InputError as exc:
        raise InputError(f"{label}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types on corrupt data
        if isinstance(exc, MemoryError):
            raise
        raise InputError(f"{label}: not a readable TIFF ({str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__})") from None
    return Image(rgb=np.ascontiguousarray(np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour),
                 alpha=alpha, bit_depth=16, source_mode="TIFF16", name=name)


def _rgb_profile(icc: bytes | None) -> bytes | None:
    """The profile to write on the RGB output: the input's own if it is an RGB profile, sRGB if it
    described grey or CMYK channels (converted through it, or taken as sRGB values), else none."""
    space = _profile_space(icc)
    if space == "RGB":
        return icc
    return srgb_profile() if space is not None else None


def _pil_to_float(pil, converted=None) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(colour, alpha, bit depth) of an 8-bit-path Pillow image; ``converted`` replaces its colour
    channels when they went through a colour profile."""
    mode = pil.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(pil, dtype=np.float32)
        scale = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        return np.clip(arr / scale, 0, 1), None, 16 if scale > 255 else 8
    if mode == "F":
        return np.clip(np.asarray(pil, dtype=np.float32), 0, 1), None, 16
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in pil.info)
    alpha = None
    if has_alpha:
        alpha = np.asarray(pil.convert("RGBA").getchannel("A"), dtype=np.float32) * np.float32(1 / 255)
    rgb = converted if converted is not None else pil.convert("RGB")
    arr = np.array(rgb, dtype=np.float32)
    arr *= np.float32(1 / 255)  # in place: a 50 MP image would otherwise hold two float copies
    return arr, alpha, 8


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


def image_format(destination: str | Path) -> str:
    """Pillow format name for an output path (``-``, standard output, is PNG); InputError if unknown."""
    if str(destination) == STDIO:
        return "PNG"
    suffix = Path(destination).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise InputError(f"{destination}: unknown output format {suffix or '(none)'}; "
                         f"use one of {', '.join(IMAGE_SUFFIXES)}")
    return IMAGE_FORMATS[suffix]


# zlib level of 8-bit PNGs: 3 encoded a 1080p frame in 0.26 s against 0.79 s at PIL's default 6, for a
# file 10 % larger (still half of ffmpeg's); encoding had been most of 'otmap apply' per frame (docs/decisions.md)
PNG_COMPRESS_LEVEL = 3


def write_image(image: Image, destination: str | Path, bit_depth: int | None = None, overwrite: bool = True) -> None:
    """Encode ``image`` to ``destination`` (format from the suffix, any letter case; ``-`` writes PNG to
    stdout). ``overwrite=False`` fails with InputError if the file exists when it is created."""
    from PIL import Image as PILImage

    dest = str(destination)
    fmt = image_format(dest)
    depth = bit_depth or image.bit_depth
    alpha = image.alpha
    label = "standard output" if dest == STDIO else dest
    if depth == 16 and fmt not in SIXTEEN_BIT_FORMATS:
        warnings.warn(f"{label}: {fmt} holds 8 bits per channel, so the 16-bit image is reduced to 8 bits "
                      "(write .png or .tif to keep 16)", OtmapWarning, stacklevel=2)
    if alpha is not None and fmt not in ALPHA_FORMATS:
        warnings.warn(f"{label}: {fmt} has no transparency, so the alpha channel is dropped "
                      "(write .png, .tif or .webp to keep it)", OtmapWarning, stacklevel=2)
        alpha = None
    if depth == 16 and fmt in SIXTEEN_BIT_FORMATS:
        arr = _quantise(image.rgb, alpha, np.uint16)
        payload = (_encode_png16(arr, image.icc_profile) if fmt == "PNG" else _encode_tiff16(arr, image.icc_profile))
    else:
        pil = PILImage.fromarray(_quantise(image.rgb, alpha, np.uint8))
        buffer = _io.BytesIO()
        options = {"icc_profile": image.icc_profile} if image.icc_profile else {}
        if fmt == "JPEG":
            options.update(quality=95, subsampling=0)
        elif fmt == "PNG":
            options.update(compress_level=PNG_COMPRESS_LEVEL)
        pil.save(buffer, format=fmt, **options)
        payload = buffer.getvalue()
    if dest == STDIO:
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
        return
    with atomic_output(Path(dest), overwrite=overwrite) as tmp:
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


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _encode_png16(arr: np.ndarray, icc_profile: bytes | None = None) -> bytes:
    import png  # pypng writes no iCCP chunk itself; it goes right after IHDR (PNG spec, 11.3.3.3)

    height, width, channels = arr.shape
    writer = png.Writer(width, height, greyscale=False, alpha=channels == 4, bitdepth=16)
    buffer = _io.BytesIO()
    writer.write(buffer, arr.reshape(height, width * channels))
    payload = buffer.getvalue()
    if not icc_profile:
        return payload
    ihdr_end = 8 + 4 + 4 + 13 + 4
    iccp = _png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile))
    return payload[:ihdr_end] + iccp + payload[ihdr_end:]


def _encode_tiff16(arr: np.ndarray, icc_profile: bytes | None = None) -> bytes:
    import tifffile

    buffer = _io.BytesIO()
    extras = {"extrasamples": ("unassalpha",)} if arr.shape[2] == 4 else {}
    tifffile.imwrite(buffer, arr, photometric="rgb", iccprofile=icc_profile, **extras)
    return buffer.getvalue()


def is_grey(rgb: np.ndarray) -> bool:
    """Whether an (h, w, 3) image has three equal channels (a grey file is read that way)."""
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name (for training data)."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_FORMATS)


def is_complete_image(path: str | Path) -> bool:
    """Whether ``path`` decodes to the end as an image (``--skip-existing``): a file cut short, e.g. by a
    tool killed while writing it or a full disk, is not complete and gets redone."""
    try:
        read_image(path, max_pixels=2**62)
    except InputError:
        return False
    return True
