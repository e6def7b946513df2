"""The ``otmap`` command line: one module per command group, each command parse -> one library call -> print.

Exit codes: 0 success, 1 failure while working, 2 bad usage or bad input, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM).
Heavy libraries (torch, deepinv) are imported inside the commands, so ``otmap --help`` and input
errors answer at once. The plumbing every command shares is in :mod:`otmap_cli.cli.common`.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings

import typer

from otmap_cli.cli import colorize, colour, info, restore, sample, train
from otmap_cli.cli.common import STATE, GlobalFlagsGroup
from otmap_cli.errors import format_warning, install_signal_handlers, last_interrupt

app = typer.Typer(
    cls=GlobalFlagsGroup,
    help="Optimal transport and flows from the command line: colour transfer with monotone gradient networks "
         "(recolor, apply, toy), image restoration with PnP-Flow (restore, degrade), exemplar colourisation of "
         "grey photos (colorize), digits from a Brenier "
         "generator (sample), and training of the shipped models (train). --quiet/-q and --debug are accepted "
         "anywhere on the line.",
    no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False, rich_markup_mode=None)
train_app = typer.Typer(help="Train the models otmap ships (resumable; run in the background).", no_args_is_help=True)
app.add_typer(train_app, name="train")

GLOBAL_FLAGS = "Also accepted here: -q/--quiet (no progress or messages on stderr), --debug (tracebacks)."
for command in (colour.recolor, colour.apply, colour.toy, restore.restore, restore.degrade, colorize.colorize,
                sample.sample, info.info):
    app.command(epilog=GLOBAL_FLAGS)(command)
for command in (train.flow, train.brenier, train.classifier):
    train_app.command(command.__name__, epilog=GLOBAL_FLAGS)(command)


def _version(value: bool) -> None:
    if value:
        from otmap_cli import __version__

        print(f"otmap {__version__}")
        raise typer.Exit()


@app.callback()
def _global(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
            quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or messages on stderr "
                                       "(results asked for still print)."),
            version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                         help="Print the version and exit.")):
    """--debug and --quiet are declared here for --help; GlobalFlagsGroup has taken them off the line already."""


def _exit_interrupted(exc: BaseException | None) -> None:
    print("otmap: interrupted", file=sys.stderr)
    sys.exit(getattr(exc, "exit_code", 130))  # 130 for Ctrl-C, 143 for SIGTERM (errors.Interrupted)


def main() -> None:
    """Console entry point: usage errors, interrupts and unexpected failures as one line with their exit
    code (otmap's own errors are mapped by :class:`~otmap_cli.cli.common.GlobalFlagsGroup`); SIGTERM
    unwinds like Ctrl-C, so partial outputs are removed; library warnings print as one line."""
    install_signal_handlers()
    warnings.formatwarning = format_warning
    # otmap hands POT only NumPy arrays; without this POT imports torch for its backend list, which
    # doubled the CPU time of a whole 'otmap recolor' (docs/decisions.md). The process is ours, so
    # no other POT user can miss the torch backend.
    os.environ.setdefault("POT_BACKEND_DISABLE_PYTORCH", "1")
    try:
        code = app(standalone_mode=False)  # typer.Exit inside a command comes back as a return value here
        if code == 130:  # how the parser reports a KeyboardInterrupt (Ctrl-C, or SIGTERM via errors.Interrupted)
            _exit_interrupted(last_interrupt())
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Exit as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # typer turns Ctrl-C into a silent Exit(130)
            _exit_interrupted(exc.__cause__)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt) as exc:
        _exit_interrupted(exc if isinstance(exc, KeyboardInterrupt) else exc.__cause__)
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # the parser's usage errors
            exc.show(file=sys.stderr)
            sys.exit(2)
        if STATE["debug"]:  # a bug or an environment failure: one line, details with --debug
            traceback.print_exc()
        print(f"otmap: error: {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        sys.exit(1)
