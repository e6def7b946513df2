"""otmap_cli.batch: folder walking, Slurm array shards and the worker pool, as a library."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ROOT
from otmap_cli.batch import find_images, plan_folder, run_each, slurm_shard, take_shard
from otmap_cli.errors import InputError


def test_find_images_is_sorted_by_relative_path_and_skips_hidden_and_other_files(tmp_path):
    for name in ("b.PNG", "a10.jpg", "a2.tiff", "z/y.webp", "a/x.bmp", ".h.png", ".git/k.png", "n.txt", "a.png.part"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    names = [str(p.relative_to(tmp_path)) for p in find_images(tmp_path, recursive=True)]
    assert names == ["a/x.bmp", "a10.jpg", "a2.tiff", "b.PNG", "z/y.webp"]  # path parts compared in turn
    assert [p.name for p in find_images(tmp_path)] == ["a10.jpg", "a2.tiff", "b.PNG"]
    assert [str(o.relative_to(tmp_path / "out")) for _, o in plan_folder(tmp_path, tmp_path / "out", True,
                                                                          "{stem}.png")][-1] == "z/y.png"


@pytest.mark.parametrize("env, expected", [
    ({"ID": "3", "MIN": "1", "COUNT": "4", "MAX": "4"}, (3, 4)),   # --array=1-4
    ({"ID": "0", "MIN": "0", "MAX": "7"}, (1, 8)),                 # no COUNT: from MAX
    ({"ID": "4", "MIN": "0", "MAX": "14", "STEP": "2", "COUNT": "8"}, (3, 8)),  # --array=0-14:2
    ({"ID": "7", "COUNT": "8"}, (8, 8)),                           # no MIN: 0
])
def test_slurm_shard_from_the_array_variables(env, expected):
    assert slurm_shard({f"SLURM_ARRAY_TASK_{k}": v for k, v in env.items()}) == expected


@pytest.mark.parametrize("env, message", [
    ({}, "not a task of a Slurm job array"),
    ({"ID": "3"}, "neither SLURM_ARRAY_TASK_COUNT nor"),
    ({"ID": "5", "MIN": "1", "MAX": "7", "COUNT": "3"}, "plain range"),  # --array=1,5,7: not a range
    ({"ID": "x", "COUNT": "2"}, "not integers"),
])
def test_slurm_shard_refuses_what_it_cannot_split(env, message):
    with pytest.raises(InputError, match=message):
        slurm_shard({f"SLURM_ARRAY_TASK_{k}": v for k, v in env.items()})


def test_shards_partition_the_items():
    items = list(range(11))
    parts = [take_shard(items, i, 3) for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == items and parts[0] == [0, 3, 6, 9]


def test_run_each_keeps_order_and_yields_errors_in_place():
    def work(n):
        if n == 3:
            raise InputError("three is bad")
        return n * n

    for workers in (1, 2):
        outcomes = list(run_each(work, list(range(6)), workers))
        assert [o if isinstance(o, int) else str(o) for o in outcomes] == [0, 1, 4, "three is bad", 16, 25]
        assert isinstance(outcomes[3], InputError)


@pytest.mark.skipif(os.name != "posix", reason="signals and fork: POSIX")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_the_parent_stops_the_workers_and_leaves_no_partial_file(tmp_path, signum):
    """Two workers are inside an atomic write when only the parent gets the signal."""
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from otmap_cli.batch import run_each
        from otmap_cli.errors import install_signal_handlers
        from otmap_cli.io import atomic_output

        def work(n):
            with atomic_output(Path({str(tmp_path)!r}) / f"{{n}}.txt", overwrite=False) as tmp:
                tmp.write_text("half")
                Path({str(tmp_path)!r}, f"started{{n}}").touch()
                time.sleep(60)
            return n

        install_signal_handlers()
        for outcome in run_each(work, [0, 1, 2, 3], workers=2):
            print(outcome)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not ((tmp_path / "started0").exists() and (tmp_path / "started1").exists()):
        assert time.time() < deadline and proc.poll() is None, "the workers never started"
        time.sleep(0.05)
    start = time.time()
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    assert time.time() - start < 10
    assert proc.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["started0", "started1"]  # no .part, no .txt
    assert "ForkProcess" not in stderr  # the workers leave quietly (the parent's own traceback: no main() here)
