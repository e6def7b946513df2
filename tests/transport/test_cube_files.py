""".cube files as untrusted input: values checked, sizes capped, parsing in bounded memory, and
otmap's own reader reads what its writer writes whatever the title."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SAMPLES, run_cli
from otmap_cli.errors import InputError
from otmap_cli.transport.lut import MAX_CUBE_SIZE, read_cube, write_cube

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _cube_text(size=2, rows=None, header=None):
    grid = [f"{r / (size - 1)} {g / (size - 1)} {b / (size - 1)}" for b in range(size) for g in range(size)
            for r in range(size)] if rows is None else rows
    return "\n".join((header or [f"LUT_3D_SIZE {size}"]) + grid) + "\n"


@pytest.mark.parametrize("bad", ["nan nan nan", "inf 0 0", "0 -inf 0", "1e308 0 0", "0 0 100"])
def test_cube_values_must_be_finite_colours(tmp_path, bad):
    rows = _cube_text(3).splitlines()[1:]
    rows[5] = bad
    (tmp_path / "bad.cube").write_text(_cube_text(3, rows=rows, header=["LUT_3D_SIZE 3"]))
    with pytest.raises(InputError, match="not finite numbers within"):
        read_cube(tmp_path / "bad.cube")


def test_cube_with_nan_is_refused_by_apply(tmp_path):
    rows = _cube_text(2).splitlines()[1:]
    rows[0] = "nan nan nan"
    (tmp_path / "nan.cube").write_text(_cube_text(2, rows=rows))
    proc = run_cli("apply", str(tmp_path / "nan.cube"), str(SAMPLES / "day.jpg"), "-o", str(tmp_path / "out.png"))
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr, proc.stderr.decode()
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("size", [0, 1, -3, MAX_CUBE_SIZE + 1, 10**9])
def test_cube_sizes_outside_the_supported_range_are_refused(tmp_path, size):
    (tmp_path / "s.cube").write_text(f"LUT_3D_SIZE {size}\n0 0 0\n")
    with pytest.raises(InputError, match="not supported"):
        read_cube(tmp_path / "s.cube")


def test_cube_parsing_memory_is_about_twice_the_file(tmp_path):
    import tracemalloc

    table = np.random.default_rng(0).random((65, 65, 65, 3)).astype(np.float32)
    write_cube(tmp_path / "big.cube", table)
    size = (tmp_path / "big.cube").stat().st_size
    tracemalloc.start()
    try:
        back = read_cube(tmp_path / "big.cube")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(back, table, atol=1e-6)
    assert peak < 3 * size, f"peak {peak / size:.1f}x the file"  # a list of Python floats was ~20x


def test_cube_title_with_newline_and_quotes_reads_back(tmp_path):
    table = np.random.default_rng(1).random((2, 2, 2, 3)).astype(np.float32)
    write_cube(tmp_path / "t.cube", table, title='otmap evil\nLUT_3D_SIZE 9\r"x" -> style')
    first, second = (tmp_path / "t.cube").read_text().splitlines()[:2]
    assert first.startswith('TITLE "') and first.count('"') == 2 and second == "LUT_3D_SIZE 2"
    np.testing.assert_allclose(read_cube(tmp_path / "t.cube"), table, atol=1e-6)


def test_cube_comments_and_keywords_are_understood(tmp_path):
    header = ["# made by hand", 'TITLE "x"', "LUT_3D_SIZE 2", "LUT_3D_INPUT_RANGE 0 1"]
    rows = _cube_text(2).splitlines()[1:]
    rows.insert(3, "# a comment between entries")
    (tmp_path / "c.cube").write_text(_cube_text(2, rows=rows, header=header))
    assert read_cube(tmp_path / "c.cube")[1, 1, 1].tolist() == [1.0, 1.0, 1.0]


@FUZZ
@given(text=st.text(alphabet="0123456789.-+eE naif\n#", max_size=300), size=st.integers(-2, 4))
def test_fuzzed_cube_text_fails_cleanly(tmp_path, text, size):
    (tmp_path / "f.cube").write_text(f"LUT_3D_SIZE {size}\n{text}")
    try:
        table = read_cube(tmp_path / "f.cube")
    except InputError:
        return
    assert table.shape == (size, size, size, 3) and np.isfinite(table).all()
