"""Formats as users meet them: 16 bits kept, ICC profiles of the right colour space, one format list,
warnings for what a format cannot hold, create-only writes, stale part files, SIGTERM/SIGINT."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from PIL import Image as PILImage

from conftest import ROOT, run_cli
from icc_profiles import cmyk_profile, gray_profile
from otmap_cli.errors import InputError, OtmapWarning
from otmap_cli.choices import IMAGE_FORMATS
from otmap_cli.io import Image, _profile_space, atomic_output, image_format, read_image, remove_stale_parts, write_image


def _identity_cube(path):
    from otmap_cli.transport.lut import lut_grid, write_cube

    write_cube(path, lut_grid(2).reshape(2, 2, 2, 3), title="identity")
    return path


def _tiff16(path, channels=3, seed=0):
    import tifffile

    arr = np.random.default_rng(seed).integers(0, 65536, size=(12, 10, channels), dtype=np.uint16)
    tifffile.imwrite(path, arr, photometric="rgb")
    return arr


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_apply_keeps_16_bits_from_a_tiff(tmp_path, suffix):
    import png
    import tifffile

    arr = _tiff16(tmp_path / "in.tif")
    out = tmp_path / f"out{suffix}"
    proc = run_cli("apply", str(_identity_cube(tmp_path / "id.cube")), str(tmp_path / "in.tif"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr.decode()
    if suffix == ".tif":
        back = tifffile.imread(out)
    else:
        width, height, rows, info = png.Reader(filename=str(out)).asDirect()
        assert info["bitdepth"] == 16
        back = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, 3)
    assert back.dtype == np.uint16
    assert np.abs(back.astype(int) - arr).max() <= 1  # identity table: values survive to the last bit


def test_degrade_and_restore_keep_16_bits_and_jpeg_output_warns(tmp_path):
    import tifffile

    _tiff16(tmp_path / "in.tif")
    proc = run_cli("degrade", str(tmp_path / "in.tif"), "--task", "denoise", "-o", str(tmp_path / "noisy.tif"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert tifffile.imread(tmp_path / "noisy.tif").dtype == np.uint16
    proc = run_cli("restore", str(tmp_path / "noisy.tif"), "--task", "denoise", "--noise-sigma", "0.1",
                   "--solver", "mmse", "-o", str(tmp_path / "restored.png"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert read_image(tmp_path / "restored.png").bit_depth == 16
    proc = run_cli("apply", str(_identity_cube(tmp_path / "id.cube")), str(tmp_path / "in.tif"),
                   "-o", str(tmp_path / "out.JPG"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"reduced to 8 bits" in proc.stderr and b"Traceback" not in proc.stderr
    assert PILImage.open(tmp_path / "out.JPG").format == "JPEG"


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_16_bit_tiff_grey_and_alpha_round_trip(tmp_path, channels):
    import tifffile

    arr = np.random.default_rng(1).integers(0, 65536, size=(6, 5, channels), dtype=np.uint16)
    extra = {"extrasamples": ("unassalpha",)} if channels in (2, 4) else {}
    tifffile.imwrite(tmp_path / "in.tif", arr, photometric="rgb" if channels == 4 else "minisblack", **extra)
    image = read_image(tmp_path / "in.tif")
    assert image.bit_depth == 16 and (image.alpha is not None) == (channels in (2, 4))
    np.testing.assert_allclose(image.rgb[..., 0] * 65535, arr[..., 0], atol=0.5)
    write_image(image, tmp_path / "out.tif")
    back = tifffile.imread(tmp_path / "out.tif")
    assert back.dtype == np.uint16 and back.shape[2] == (4 if channels in (2, 4) else 3)
    np.testing.assert_array_equal(back[..., -1] if channels in (2, 4) else back[..., 0], arr[..., -1])


def test_every_listed_format_is_written_in_any_letter_case(tmp_path):
    image = Image(rgb=np.random.default_rng(0).random((8, 6, 3), dtype=np.float32))
    for suffix, pil_format in IMAGE_FORMATS.items():
        path = tmp_path / f"x{suffix.upper()}"
        write_image(image, path)
        assert PILImage.open(path).format == pil_format


def test_unknown_extension_lists_every_format(tmp_path):
    with pytest.raises(InputError) as caught:
        image_format(tmp_path / "x.unknown")
    for suffix in IMAGE_FORMATS:
        assert suffix in str(caught.value)
    with pytest.raises(InputError):
        write_image(Image(rgb=np.zeros((2, 2, 3), np.float32)), tmp_path / "x.gif")


def test_format_list_needs_no_heavy_imports():
    code = "import sys, otmap_cli.choices; print(sorted({'numpy', 'PIL', 'torch'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT, timeout=60)
    assert proc.stdout.strip() == b"[]", proc.stderr


def test_sixteen_bit_png_keeps_its_profile(tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = Image(rgb=np.random.default_rng(0).random((5, 4, 3), dtype=np.float32), bit_depth=16, icc_profile=icc)
    for name in ("out.png", "out.tif"):
        write_image(image, tmp_path / name)
        back = read_image(tmp_path / name)
        assert back.bit_depth == 16 and back.icc_profile == icc
        assert PILImage.open(tmp_path / name).info.get("icc_profile") == icc


def test_grey_and_cmyk_profiles_are_converted_not_copied(tmp_path):
    PILImage.new("L", (4, 4), 128).save(tmp_path / "grey.png", icc_profile=gray_profile(gamma=1.0))
    PILImage.new("CMYK", (4, 4), (0, 0, 0, 128)).save(tmp_path / "cmyk.jpg", icc_profile=cmyk_profile())
    for name in ("grey.png", "cmyk.jpg"):
        image = read_image(tmp_path / name)
        assert _profile_space(image.icc_profile) == "RGB"
        for out in ("out.png", "out.jpg", "out.tif"):
            write_image(image, tmp_path / out)
            assert _profile_space(PILImage.open(tmp_path / out).info.get("icc_profile")) == "RGB"
    # converted through the profile, not reinterpreted: linear grey 128 is sRGB ~188, and the
    # hand-made CMYK profile puts K = 50 % at L* = 50, sRGB ~118 (plain conversion would give 127)
    assert abs(read_image(tmp_path / "grey.png").rgb[0, 0, 0] * 255 - 188) < 2
    assert abs(read_image(tmp_path / "cmyk.jpg").rgb[0, 0, 0] * 255 - 118) < 2


def test_alpha_dropped_on_jpeg_says_so(tmp_path):
    image = Image(rgb=np.zeros((4, 4, 3), np.float32), alpha=np.ones((4, 4), np.float32))
    with pytest.warns(OtmapWarning, match="alpha"):
        write_image(image, tmp_path / "x.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error", OtmapWarning)
        write_image(image, tmp_path / "x.png")  # PNG keeps it: no warning
    assert PILImage.open(tmp_path / "x.png").mode == "RGBA"


@pytest.mark.parametrize("suffix", [".gif", ".tif"])
def test_extra_frames_are_dropped_with_a_warning(tmp_path, suffix):
    frames = [PILImage.new("RGB", (4, 3), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp_path / f"anim{suffix}", save_all=True, append_images=frames[1:])
    with pytest.warns(OtmapWarning, match="2 frames"):
        image = read_image(tmp_path / f"anim{suffix}")
    assert image.size == (4, 3) and image.rgb[0, 0, 0] > 0.9  # the first frame


def test_sizes_in_messages_are_width_by_height(tmp_path):
    PILImage.new("RGB", (3000, 2)).save(tmp_path / "wide.png")
    with pytest.raises(InputError, match="3000x2 "):
        read_image(tmp_path / "wide.png", max_pixels=100)


def test_create_only_write_refuses_an_existing_file(tmp_path):
    image = Image(rgb=np.zeros((2, 2, 3), np.float32))
    target = tmp_path / "out.png"
    write_image(image, target, overwrite=False)
    target_bytes = target.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        write_image(Image(rgb=np.ones((2, 2, 3), np.float32)), target, overwrite=False)
    assert target.read_bytes() == target_bytes
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no part file left


def test_two_racing_writers_one_wins(tmp_path):
    """Both writers passed any existence check; the one that publishes second must fail, not replace."""
    target = tmp_path / "out.png"
    with pytest.raises(InputError, match="already exists"):
        with atomic_output(target, overwrite=False) as second:
            second.write_bytes(b"second")
            with atomic_output(target, overwrite=False) as first:
                first.write_bytes(b"first")
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_two_concurrent_runs_without_force_exactly_one_succeeds(tmp_path):
    import tifffile

    _tiff16(tmp_path / "in.tif")
    cube = _identity_cube(tmp_path / "id.cube")
    command = [sys.executable, "-m", "otmap_cli.cli", "apply", str(cube), str(tmp_path / "in.tif"),
               "-o", str(tmp_path / "same.tif")]
    runs = [subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE) for _ in range(2)]
    codes = sorted(run.wait(timeout=300) for run in runs)
    assert codes == [0, 2]
    assert tifffile.imread(tmp_path / "same.tif").dtype == np.uint16


def test_stale_part_files_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".out.png.{dead_pid}.abcd1234.part"
    alive = tmp_path / f".out.png.{os.getpid()}.efgh5678.part"
    ancient = tmp_path / ".out.png.k3j4h5g6.part"  # a name without pid, a day and more old
    unrelated = tmp_path / ".other.png.1.zz.part"
    for path in (stale, alive, ancient, unrelated):
        path.write_bytes(b"partial")
    os.utime(ancient, (time.time() - 2 * 86400,) * 2)
    write_image(Image(rgb=np.zeros((2, 2, 3), np.float32)), tmp_path / "out.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.png", alive.name, unrelated.name])
    assert remove_stale_parts(tmp_path / "out.png") == []


_SELF_SIGNAL = """
import os, signal, sys, time
from pathlib import Path
from otmap_cli import cli
from otmap_cli.io import atomic_output

@cli.app.command("selfsignal")
def selfsignal(target: str, name: str):
    with atomic_output(Path(target), overwrite=True) as tmp:
        tmp.write_bytes(b"partial")
        os.kill(os.getpid(), getattr(signal, name))
        time.sleep(30)

sys.argv = ["otmap", "selfsignal", *sys.argv[1:]]
cli.main()
"""


@pytest.mark.parametrize("name, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_signals_clean_up_and_say_interrupted(tmp_path, name, code):
    target = tmp_path / "out.png"
    proc = subprocess.run([sys.executable, "-c", _SELF_SIGNAL, str(target), name], capture_output=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == code, proc.stderr.decode()
    assert b"interrupted" in proc.stderr and b"Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # neither the output nor its part file


def test_blur_size_message_is_width_by_height():
    from otmap_cli.restoration.physics import make_physics

    with pytest.raises(InputError, match=r"a 2x2000 image"):
        make_physics("deblur", (2000, 2), blur_sigma=3.0)
