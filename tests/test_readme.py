"""The README's commands: the two set-up commands match what CI runs, and every otmap command line in it
names a real command with real options (so the how-tos cannot drift from the CLI)."""

from __future__ import annotations

import re
import shlex

import pytest

from conftest import ROOT, invoke

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```bash\n(.*?)```", README, re.S)


def _setup_commands() -> list[str]:
    setup = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", setup, re.S)]


def test_setup_commands_are_what_ci_runs():
    main_job, tests = _setup_commands()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci.replace(" --quiet", "") == tests
    assert main_job.startswith("python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/otmap recolor ")
    for word in shlex.split(main_job):
        if word.startswith("samples/"):
            assert (ROOT / word).is_file(), word


def _otmap_lines() -> list[list[str]]:
    lines = []
    for block in BLOCKS:
        for line in block.splitlines():
            line = line.split(" # ", 1)[0].strip()
            if "otmap " in line and not line.startswith("python3"):
                words = shlex.split(line[line.index("otmap "):].split(" | ")[0].split(" > ")[0])
                lines.append(words[1:])
    return lines


@pytest.mark.parametrize("words", _otmap_lines(), ids=lambda words: " ".join(words[:3]))
def test_every_readme_command_uses_real_options(words):
    command = words[:2] if words[0] == "train" else words[:1]
    shown = invoke(*command, "--help")
    assert shown.exit_code == 0, f"otmap {' '.join(command)}: {shown.output}"
    for word in words[len(command):]:
        if word.startswith("-") and word != "-":
            assert re.search(rf"(^|[\s,]){re.escape(word)}([\s,=]|$)", shown.output, re.M), \
                f"otmap {' '.join(command)} has no option {word}"
    for word in words:
        if word.startswith("samples/"):
            assert (ROOT / word).is_file(), word
