"""What every command shares: global flags, messages, progress, output planning and the batch runner.

Streams: what the user asked for (``--json``, ``--reference`` scores, convexity reports) goes to
stdout, unless stdout carries an image; progress and chatter go to stderr and ``-q`` hides them.
Outputs are planned for every input before any work (name, format, folder, collisions), so a
batch fails in a second, not after an hour, and ``--keep-going`` can skip what already exists.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import string
import sys
import traceback
import typing
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer
from typer.core import TyperGroup

from otmap_cli.choices import DEVICES, IMAGE_SUFFIXES, choice_enum
from otmap_cli.errors import InputError, OtmapError, OtmapWarning

STATE = {"debug": False, "quiet": False}
STDIO = "-"
GLOBAL_FLAGS = {"-q": "quiet", "--quiet": "quiet", "--debug": "debug"}

Device = choice_enum("Device", DEVICES)


class GlobalFlagsGroup(TyperGroup):
    """The root command: ``--quiet/-q`` and ``--debug`` anywhere on the line (before ``--``), and otmap's
    errors as one line on stderr with their exit code (so the same holds in-process, e.g. in tests)."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        STATE.update(debug=bool(os.environ.get("OTMAP_DEBUG")), quiet=False)
        kept, passthrough = [], False
        for arg in args:
            if not passthrough and arg in GLOBAL_FLAGS:
                STATE[GLOBAL_FLAGS[arg]] = True
                continue
            passthrough = passthrough or arg == "--"
            kept.append(arg)
        return super().parse_args(ctx, kept)

    def invoke(self, ctx: typer.Context):
        try:
            with warnings.catch_warnings():
                if STATE["quiet"]:
                    warnings.simplefilter("ignore", OtmapWarning)  # -q: nothing on stderr but errors
                return super().invoke(ctx)
        except OtmapError as exc:
            if STATE["debug"]:
                traceback.print_exc()
            print(f"otmap: error: {exc}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None


# Options shared by several commands: one definition, one wording.
DEVICE = typer.Option(Device.auto, "--device", help="auto (CUDA if available), cpu or cuda.")
FORCE = typer.Option(False, "--force", help="Replace existing outputs.")
JSON = typer.Option(False, "--json", help="Print machine-readable results on stdout.")
MAX_PIXELS = typer.Option(100_000_000, "--max-pixels", help="Refuse images larger than this.")
NAME_FIELDS = ("stem",)


@dataclass
class Batch:
    """The options of every command that maps many images (recolor, apply, restore)."""

    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Folder for the outputs of several inputs.")
    force: bool = FORCE
    keep_going: bool = typer.Option(False, "--keep-going", help="Go on past a bad input or an existing output "
                                    "(skipped and reported); fail at the end.")
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: process only every N-th input from the I-th.")
    max_pixels: int = MAX_PIXELS
    as_json: bool = JSON


def grouped(command: Callable) -> Callable:
    """Let a command take a dataclass of options (such as :class:`Batch`) as one parameter.

    Typer sees the dataclass's fields as ordinary options (their defaults are ``typer.Option``);
    the command receives them gathered into one instance.
    """
    hints = typing.get_type_hints(command)
    parameters, groups = [], {}
    for parameter in inspect.signature(command).parameters.values():
        kind = hints.get(parameter.name)
        if dataclasses.is_dataclass(kind):
            groups[parameter.name] = kind
            field_hints = typing.get_type_hints(kind)
            parameters += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                             annotation=field_hints[f.name]) for f in dataclasses.fields(kind)]
        else:
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY,
                                                annotation=kind or parameter.annotation))

    @functools.wraps(command)
    def run(**values):
        for name, kind in groups.items():
            values[name] = kind(**{f.name: values.pop(f.name) for f in dataclasses.fields(kind)})
        return command(**values)

    run.__signature__ = inspect.Signature(parameters)
    return run


def say(message: str) -> None:
    """Chatter on stderr (hidden by -q)."""
    if not STATE["quiet"]:
        print(message, file=sys.stderr)


def result(message: str, image_on_stdout: bool = False) -> None:
    """A result the user asked for: stdout, or stderr when stdout carries an image; never hidden by -q."""
    print(message, file=sys.stderr if image_on_stdout else sys.stdout)


def emit_json(payload: dict) -> None:
    print(json.dumps(payload, indent=None, default=str))


def wrote(path: Path) -> None:
    if str(path) != STDIO:
        say(f"wrote {path}")


def console():
    from rich.console import Console

    return Console(stderr=True, quiet=STATE["quiet"])


@contextmanager
def progress(label: str, phase: str = "", total: int = 1) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr, drawn at once with its first ``phase`` and a known ``total``;
    yields ``update(done, total, phase="")``, the library's progress callback (:mod:`otmap_cli.progress`),
    whose phase follows the label: "recolor day.jpg · fitting map · step 120/450".

    Only on a terminal: in a pipe or a log file a live bar leaves stray blank lines and control codes."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    stderr = console()
    if not stderr.is_terminal:
        yield lambda done, total, phase="": None
        return

    def describe(phase: str) -> str:
        return f"{label} · {phase}" if phase else label

    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                  console=stderr, transient=True) as bar:
        task = bar.add_task(describe(phase), total=total)

        def update(done: int, total: int, phase: str = "") -> None:
            bar.update(task, completed=done, total=total, description=describe(phase))

        yield update


def require_files(paths: list[Optional[Path]]) -> None:
    """Fail fast on missing inputs, before the slow imports."""
    for path in paths:
        if path is not None and str(path) != STDIO and not path.exists():
            raise InputError(f"{path}: no such file")


def require_folder(path: Path) -> None:
    """Training data must be a folder; say so before the slow imports."""
    if not path.is_dir():
        raise InputError(f"{path}: not a folder (--data expects the training data folder)")


def select_shard(inputs: list[Path], shard: Optional[str]) -> list[Path]:
    if not shard:
        return inputs
    try:
        index, count = (int(v) for v in shard.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like I/N (e.g. 2/8), got {shard!r}") from None
    if count < 1 or not 1 <= index <= count:
        raise InputError(f"--shard {shard}: need 1 <= I <= N")
    return inputs[index - 1::count]


def check_name_template(template: str) -> str:
    """An ``--name`` template may use only the fields of :data:`NAME_FIELDS`, plain, and must name a file."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError:
        raise InputError(f"bad --name template {template!r}; use {{stem}}, e.g. '{{stem}}_out.png'") from None
    for name, spec, conversion in fields:
        if name not in NAME_FIELDS or spec or conversion:
            raise InputError(f"bad --name template {template!r}: only {', '.join('{' + f + '}' for f in NAME_FIELDS)} "
                             "may appear, without format specs")
    if "/" in template or "\\" in template or template in (".", "..") or not template.strip():
        raise InputError(f"bad --name template {template!r}: it must name a file inside --out-dir")
    return template


@dataclass
class OutputPlan:
    """Where each input's result goes, and which inputs are skipped because their output exists."""

    outputs: dict[Path, Path] = field(default_factory=dict)
    skipped: dict[Path, str] = field(default_factory=dict)

    @property
    def to_stdout(self) -> bool:
        return any(str(p) == STDIO for p in self.outputs.values())


def _writable_folder(path: Path) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    while not folder.exists():  # the folder will be created: check the nearest existing one
        if folder == folder.parent:
            break
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write into {folder} (permission denied)")


def check_output(out: Path, inputs: list[Path], force: bool, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> Path:
    """Refuse an output that would overwrite an input, exists (without --force), is a folder, has an
    unknown format or cannot be written."""
    if str(out) == STDIO:
        return out
    if suffixes and out.suffix.lower() not in suffixes:
        raise InputError(f"{out}: unknown output format {out.suffix or '(none)'}; use one of {', '.join(suffixes)}")
    resolved = out.resolve()
    for source in inputs:
        if str(source) != STDIO and source.exists() and resolved == source.resolve():
            raise InputError(f"{out}: output would overwrite an input; choose another name")
    if out.is_dir():
        raise InputError(f"{out}: is a folder; give a file name")
    if out.exists() and not force:
        raise InputError(f"{out}: already exists (use --force to replace it)")
    _writable_folder(out)
    return out


def plan_outputs(sources: list[Path], output: Optional[Path], template: str, all_inputs: list[Path], batch: Batch,
                 extras: tuple[tuple[Optional[Path], tuple[str, ...]], ...] = ()) -> OutputPlan:
    """Every input's output (``-o``, else ``--out-dir``/template, else next to the input; ``-`` in, stdout out),
    checked before any work. ``extras`` are further files (``--save-map``, ``--lut``, ...) with their suffixes."""
    out_dir, force, keep_going = batch.out_dir, batch.force, batch.keep_going
    if output is not None and len(sources) > 1:
        raise InputError("-o/--output takes one input; use --out-dir for several")
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out-dir {out_dir}: is a file, not a folder")
    check_name_template(template)
    plan = OutputPlan()
    claimed: dict[Path, str] = {}

    def claim(path: Path, what: str) -> None:
        if str(path) == STDIO:
            return
        key = path.resolve()
        if key in claimed:
            raise InputError(f"{path}: both {claimed[key]} and {what} would be written there; choose other names")
        claimed[key] = what

    for source in sources:
        if output is not None:
            target = output
        elif str(source) == STDIO and out_dir is None:
            target = Path(STDIO)
        else:
            stem = "stdin" if str(source) == STDIO else source.stem
            folder = out_dir if out_dir is not None else (Path.cwd() if str(source) == STDIO else source.parent)
            target = folder / template.format(stem=stem)
        claim(target, f"the output of {source}")
        try:
            plan.outputs[source] = check_output(target, all_inputs, force)
        except InputError as exc:
            if not (keep_going and target.exists() and not target.is_dir() and len(sources) > 1):
                raise
            plan.skipped[source] = str(exc)
    for extra, suffixes in extras:
        if extra is not None:
            claim(extra, str(extra))
            check_output(extra, all_inputs, force, suffixes)
    if plan.to_stdout and batch.as_json:
        raise InputError("--json and an image on stdout ('-o -' or '-' as input) cannot share stdout; "
                         "give -o FILE")
    return plan


def run_batch(inputs: list[Path], work: Callable[[Path], dict], batch: Batch, plan: OutputPlan) -> None:
    """Run ``work`` on each input; with --keep-going, go past failures and exit non-zero at the end.

    With --json a summary goes to stdout in every case, also when the batch stops at a failure.
    """
    results, exit_codes = [], []
    skipped = plan.skipped

    def summary() -> None:
        if batch.as_json:
            emit_json({"results": results, "failed": len(exit_codes), "skipped": len(skipped)})

    for source in inputs:
        if source in skipped:
            results.append({"input": str(source), "ok": False, "skipped": True, "error": skipped[source]})
            say(f"otmap: skipped {source}: {skipped[source]}")
            continue
        try:
            results.append({"input": str(source), "ok": True, **work(source)})
        except OtmapError as exc:
            exit_codes.append(exc.exit_code)
            results.append({"input": str(source), "ok": False, "error": str(exc)})
            if not batch.keep_going or len(inputs) == 1:
                summary()
                raise
            say(f"otmap: error: {exc} (continuing)")
    summary()
    if skipped:
        say(f"otmap: {len(skipped)} of {len(inputs)} inputs skipped (output exists; --force replaces)")
    if exit_codes:
        say(f"otmap: {len(exit_codes)} of {len(inputs)} inputs failed")
        raise typer.Exit(1 if 1 in exit_codes else 2)

