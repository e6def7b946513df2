"""Bad usage and bad input: one line on stderr and exit code 2, as users see it (subprocesses)."""

from __future__ import annotations

from conftest import SAMPLES, invoke


def test_cli_bad_inputs_give_one_line_and_exit_2(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    cases = [
        ("recolor", str(tmp_path / "missing.jpg"), str(SAMPLES / "sunset.jpg")),
        ("recolor", str(tmp_path / "text.png"), str(SAMPLES / "sunset.jpg"), "-o", str(tmp_path / "o.png")),
        ("recolor", str(SAMPLES / "day.jpg"), str(SAMPLES / "sunset.jpg"), "--strength", "1.5"),
        ("apply", str(tmp_path / "text.png"), str(SAMPLES / "day.jpg"), "-o", str(tmp_path / "o2.png")),
        ("restore", str(SAMPLES / "day.jpg"), "--task", "inpaint", "-o", str(tmp_path / "o3.png")),
        ("restore", str(SAMPLES / "day.jpg"), "--task", "sharpen"),
        ("restore", str(SAMPLES / "day.jpg"), "--task", "denoise", "--noise-sigma", "-1"),
        ("restore", str(SAMPLES / "day.jpg"), "--task", "superres", "--scale", "0"),
        ("restore", str(SAMPLES / "day.jpg"), "--task", "denoise", "--steps", "0"),
        ("restore", str(SAMPLES / "day.jpg"), "--task", "deblur", "--solver", "mmse"),
        ("recolor", str(SAMPLES / "day.jpg"), str(SAMPLES / "sunset.jpg"), "--steps", "-1"),
    ]
    for args in cases:
        proc = invoke(*args)
        err = proc.stderr
        assert proc.exit_code == 2, (args, err)
        assert "Traceback" not in err and err.strip(), args
