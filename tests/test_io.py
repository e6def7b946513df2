"""Image reading/writing: odd but valid images work, bad ones fail cleanly, writes are atomic."""

from __future__ import annotations

import io as _io

import numpy as np
import pytest
from PIL import Image as PILImage

from conftest import SAMPLES, run_cli
from otmap_cli.errors import InputError
from otmap_cli.io import Image, atomic_output, read_image, write_image


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :10] = 255  # a white band on the left of the stored pixels
    exif = PILImage.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    PILImage.fromarray(arr).save(tmp_path / "rot.jpg", exif=exif, quality=100)
    image = read_image(tmp_path / "rot.jpg")
    assert image.rgb.shape == (40, 20, 3)  # displayed upright: portrait
    assert image.rgb[:10].mean() > 0.9 and image.rgb[-10:].mean() < 0.1  # the band is now on top


def test_sixteen_bit_png_round_trip(tmp_path):
    import png

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 65536, size=(12, 9, 3), dtype=np.uint16)
    png.Writer(9, 12, greyscale=False, bitdepth=16).write(open(tmp_path / "in.png", "wb"), arr.reshape(12, 27))
    image = read_image(tmp_path / "in.png")
    assert image.bit_depth == 16
    np.testing.assert_allclose(image.rgb * 65535, arr, atol=0.5)
    write_image(image, tmp_path / "out.png")
    back = read_image(tmp_path / "out.png")
    assert back.bit_depth == 16
    np.testing.assert_array_equal(np.round(back.rgb * 65535), arr)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "LA", "I;16"])
def test_other_modes_become_rgb(tmp_path, mode):
    base = PILImage.fromarray((np.indices((16, 24)).sum(0) * 5 % 256).astype(np.uint8)).convert("RGB")
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = tmp_path / f"x{suffix}"
    (base.convert("I;16") if mode == "I;16" else base.convert(mode)).save(path)
    image = read_image(path)
    assert image.rgb.shape == (16, 24, 3) and image.rgb.dtype == np.float32
    assert 0 <= image.rgb.min() and image.rgb.max() <= 1
    assert (image.alpha is not None) == (mode == "LA")


def test_icc_profile_is_kept(tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    PILImage.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "icc.png", icc_profile=icc)
    image = read_image(tmp_path / "icc.png")
    write_image(image, tmp_path / "out.jpg")
    assert PILImage.open(tmp_path / "out.jpg").info.get("icc_profile") == icc


def test_pixel_bomb_refused_before_decoding(tmp_path):
    import struct
    import time
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                     + chunk(b"IEND", b""))
    start = time.time()
    with pytest.raises(InputError, match="exceeds the limit"):
        read_image(bomb)
    assert time.time() - start < 1.0
    proc = run_cli("recolor", str(bomb), str(SAMPLES / "sunset.jpg"), "-o", str(tmp_path / "o.png"))
    assert proc.returncode == 2 and b"--max-pixels" in proc.stderr and b"Traceback" not in proc.stderr
    # raising the limit lets the header through; the truncated data then fails as a corrupt file, cleanly
    proc = run_cli("recolor", str(bomb), str(SAMPLES / "sunset.jpg"), "-o", str(tmp_path / "o.png"),
                   "--max-pixels", "4000000000")
    assert proc.returncode == 2 and b"exceeds the limit" not in proc.stderr and b"Traceback" not in proc.stderr


@pytest.mark.parametrize("content", [b"hello, I am text", b"", b"\x89PNG\r\n\x1a\n garbage"])
def test_corrupt_files_fail_cleanly(tmp_path, content):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(InputError):
        read_image(tmp_path / "bad.png")


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(target, overwrite=True) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


_SLOW_WRITER = """
import sys
import numpy as np
from otmap_cli.io import Image, write_image
noise = np.random.default_rng(0).random((3000, 3000, 3), dtype=np.float32)  # incompressible: a slow encode
write_image(Image(rgb=noise, bit_depth=16), sys.argv[1])
"""


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGKILL"])
def test_a_write_killed_midway_leaves_the_old_output_whole(tmp_path, signal_name):
    """A real process killed while writing its output: the destination is never left truncated."""
    import signal
    import subprocess
    import sys
    import time

    target = tmp_path / "out.png"
    target.write_bytes(b"old output")
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)])
    deadline = time.time() + 60
    while not any(p.stat().st_size > 0 for p in tmp_path.glob(".out.png.*.part")):
        assert proc.poll() is None and time.time() < deadline, "the writer never started writing"
        time.sleep(0.01)
    proc.send_signal(getattr(signal, signal_name))
    proc.wait(timeout=30)
    # the destination holds either its old bytes or the whole new image (if the rename won the race),
    # never a truncated file
    if target.read_bytes() != b"old output":
        assert read_image(target).size == (3000, 3000)
    if signal_name == "SIGINT":  # a catchable interrupt also removes its temporary file
        assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_write_refuses_unknown_suffix(tmp_path):
    with pytest.raises(InputError):
        write_image(Image(rgb=np.zeros((2, 2, 3), np.float32)), tmp_path / "x.xyz")


def _writers():
    """Every library writer of a file, as f(path, overwrite)."""
    from otmap_cli.generate.mnist import save_png
    from otmap_cli.nets.monotone_numpy import NumpyCMGN
    from otmap_cli.transport.colormap import ColourMap
    from otmap_cli.transport.lut import lut_grid, write_cube
    from otmap_cli.transport.plot import plot_transfer

    tiny = Image(rgb=np.random.default_rng(0).random((6, 6, 3), dtype=np.float32))
    return {
        "image": lambda path, overwrite: write_image(tiny, path, overwrite=overwrite),
        "cube": lambda path, overwrite: write_cube(path, lut_grid(3).reshape(3, 3, 3, 3), overwrite=overwrite),
        "map": lambda path, overwrite: ColourMap(net=NumpyCMGN(width=4, layers=1)).save(path, overwrite=overwrite),
        "plot": lambda path, overwrite: plot_transfer(tiny, tiny, tiny, path, overwrite=overwrite),
        "grid": lambda path, overwrite: save_png(np.zeros((4, 4), np.uint8), path, overwrite=overwrite),
    }


@pytest.mark.parametrize("kind", ["image", "cube", "map", "plot", "grid"])
def test_every_writer_creates_without_replacing_and_leaves_no_part_file(tmp_path, kind):
    write = _writers()[kind]
    target = tmp_path / {"cube": "out.cube", "map": "out.safetensors"}.get(kind, "out.png")
    target.write_bytes(b"old")
    with pytest.raises(InputError, match="already exists"):
        write(target, False)
    assert target.read_bytes() == b"old"
    write(target, True)
    assert target.read_bytes() != b"old"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
