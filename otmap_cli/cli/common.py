"""What every command shares: global flags, messages, progress, output planning and the batch runner.

Streams: what the user asked for (``--json``, ``--reference`` scores, convexity reports) goes to
stdout, unless stdout carries an image; progress and chatter go to stderr and ``-q`` hides them.
Outputs are planned for every input before any work (name, format, folder, collisions), so a
batch fails in a second, not after an hour, and ``--keep-going`` or ``--skip-existing`` can skip what
already exists. Folder walking, shards and the worker pool are library code (:mod:`otmap_cli.batch`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import multiprocessing
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

    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Folder for the outputs of several inputs; "
                                           "needed for folder inputs, whose outputs keep their relative paths.")
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Folder inputs: take the images of "
                                   "subfolders too (outputs in the same subfolders of --out-dir).")
    force: bool = FORCE
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip inputs whose output exists and "
                                       "decodes completely (rerun a killed job as is); a cut-short one is redone.")
    keep_going: bool = typer.Option(False, "--keep-going", help="Go on past a bad input or an existing output "
                                    "(skipped and reported); fail at the end.")
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: process only every N-th input from the I-th; "
                                        "auto: I and N of this Slurm array task (SLURM_ARRAY_TASK_*).")
    workers: int = typer.Option(1, "-j", "--workers", min=1, help="Processes working on the inputs at once, one "
                                "thread each (CPU).")
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
    if not stderr.is_terminal or multiprocessing.parent_process() is not None:  # -j workers: no bars
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


def select_inputs(inputs: list[Path], batch: Batch) -> tuple[list[Path], dict[Path, Path]]:
    """The inputs this run works on: folders replaced by their images (sorted), then ``--shard``; and for
    every image found in a folder (this shard's or not: none may be overwritten), that folder (its
    output mirrors its path under ``--out-dir``)."""
    from otmap_cli.batch import expand_inputs, parse_shard, take_shard

    if batch.force and batch.skip_existing:
        raise InputError("--force replaces existing outputs and --skip-existing keeps them; give one")
    folders = [p for p in inputs if p.is_dir()]
    if folders and batch.out_dir is None:
        raise InputError(f"{folders[0]}: is a folder; give --out-dir OUT for its outputs (they keep their paths "
                         "relative to it, and nothing is written inside it)")
    expanded = expand_inputs(inputs, batch.recursive, exclude=[batch.out_dir] if batch.out_dir else [])
    roots = {path: root for path, root in expanded if root is not None}
    if batch.shard:
        expanded = take_shard(expanded, *parse_shard(batch.shard))
    return [path for path, _ in expanded], roots


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
    """Where each input's result goes; which inputs are skipped because their output exists (with
    --keep-going: reported as not done; with --skip-existing: done before); which outputs may be replaced."""

    outputs: dict[Path, Path] = field(default_factory=dict)
    skipped: dict[Path, str] = field(default_factory=dict)
    done: dict[Path, Path] = field(default_factory=dict)
    replace: set[Path] = field(default_factory=set)

    @property
    def to_stdout(self) -> bool:
        return any(str(p) == STDIO for p in self.outputs.values())

    def overwrite(self, source: Path) -> bool:
        """May the output of ``source`` replace an existing file (--force, or an incomplete one to redo)?"""
        return source in self.replace


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


def plan_outputs(sources: list[Path], output: Optional[Path], name: Optional[str], default_name: str,
                 all_inputs: list[Path], batch: Batch, roots: Optional[dict[Path, Path]] = None,
                 extras: tuple[tuple[Optional[Path], tuple[str, ...]], ...] = ()) -> OutputPlan:
    """Every input's output, checked before any work: ``-o``; else for an image found in a folder (``roots``)
    its path relative to that folder under ``--out-dir`` (renamed by ``--name`` if given); else
    ``--out-dir``/name, else next to the input (``name`` or ``default_name``); ``-`` in, stdout out.
    ``extras`` are further files (``--save-map``, ``--lut``, ...) with their suffixes."""
    from otmap_cli.batch import mirrored_output, run_each
    from otmap_cli.io import is_complete_image

    out_dir, force, keep_going = batch.out_dir, batch.force, batch.keep_going
    roots = roots or {}
    if output is not None and (len(sources) > 1 or roots):
        raise InputError("-o/--output takes one input file; use --out-dir for several or for a folder")
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out-dir {out_dir}: is a file, not a folder")
    template = check_name_template(name or default_name)
    plan = OutputPlan()
    claimed: dict[Path, str] = {}

    def claim(path: Path, what: str) -> None:
        if str(path) == STDIO:
            return
        key = path.resolve()
        if key in claimed:
            raise InputError(f"{path}: both {claimed[key]} and {what} would be written there; choose other names")
        claimed[key] = what

    targets = {}
    for source in sources:
        if output is not None:
            target = output
        elif source in roots:
            target = mirrored_output(source, roots[source], out_dir, name)
        elif str(source) == STDIO and out_dir is None:
            target = Path(STDIO)
        else:
            stem = "stdin" if str(source) == STDIO else source.stem
            folder = out_dir if out_dir is not None else (Path.cwd() if str(source) == STDIO else source.parent)
            target = folder / template.format(stem=stem)
        claim(target, f"the output of {source}")
        targets[source] = target
    existing = {source for source, target in targets.items() if str(target) != STDIO and target.is_file()}
    if batch.skip_existing:  # decoding every existing output: on -j workers too
        checked = [source for source in sources if source in existing]
        complete = list(run_each(is_complete_image, [targets[source] for source in checked], batch.workers))
        for source, whole in zip(checked, complete):
            if whole is True:
                plan.done[source] = targets[source]
            else:
                plan.replace.add(source)  # cut short (a killed writer, a full disk): redo it
    for source, target in targets.items():
        if source in plan.done:
            continue
        if force:
            plan.replace.add(source)
        try:
            plan.outputs[source] = check_output(target, all_inputs, source in plan.replace)
        except InputError as exc:
            if not (keep_going and source in existing and len(sources) > 1):
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
    """Run ``work`` on each input (``-j`` of them at once); with --keep-going, go past failures and exit
    non-zero at the end.

    With --json a summary goes to stdout in every case, also when the batch stops at a failure: one
    result per input in input order, and the lists of the inputs skipped and failed.
    """
    from otmap_cli.batch import run_each

    results, failed, exit_codes = [], [], []
    skipped, done = plan.skipped, plan.done

    def summary() -> None:
        if batch.as_json:
            emit_json({"results": results, "failed": len(exit_codes), "skipped": len(skipped) + len(done),
                       "skipped_inputs": [r["input"] for r in results if r.get("skipped")],
                       "failed_inputs": failed})

    todo = [source for source in inputs if source not in skipped and source not in done]
    outcomes = run_each(work, todo, batch.workers)
    try:
        for source in inputs:
            if source in done:
                results.append({"input": str(source), "ok": True, "skipped": True, "output": str(done[source]),
                                "reason": "output exists and is complete (--skip-existing)"})
                continue
            if source in skipped:
                results.append({"input": str(source), "ok": False, "skipped": True, "error": skipped[source]})
                say(f"otmap: skipped {source}: {skipped[source]}")
                continue
            outcome = next(outcomes)
            if not isinstance(outcome, OtmapError):
                results.append({"input": str(source), "ok": True, **outcome})
                continue
            exit_codes.append(outcome.exit_code)
            failed.append(str(source))
            results.append({"input": str(source), "ok": False, "error": str(outcome)})
            if not batch.keep_going or len(inputs) == 1:
                summary()
                raise outcome
            say(f"otmap: error: {outcome} (continuing)")
    finally:
        outcomes.close()  # stops the workers if the loop ended early
    summary()
    if done:
        say(f"otmap: {len(done)} of {len(inputs)} inputs skipped (output exists and is complete)")
    if skipped:
        say(f"otmap: {len(skipped)} of {len(inputs)} inputs skipped (output exists; --force replaces)")
    if exit_codes:
        say(f"otmap: {len(exit_codes)} of {len(inputs)} inputs failed")
        raise typer.Exit(1 if 1 in exit_codes else 2)
