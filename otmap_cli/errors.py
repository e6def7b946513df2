"""The kinds of failure the command line distinguishes (exit codes are documented in the README),
the warning category it shows as one line, and its handling of termination signals."""

from __future__ import annotations

import signal
import threading
import warnings


class OtmapError(Exception):
    """Base class: the message is shown to the user as one line, without a traceback."""

    exit_code = 1


class InputError(OtmapError):
    """Bad usage or bad input (missing file, corrupt image, invalid number): exit code 2."""

    exit_code = 2


class OtmapWarning(UserWarning):
    """Something the user should know about the result (e.g. precision or alpha lost on writing)."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: unwinds like Ctrl-C (so partial outputs are removed) and exits 128 + signal."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


_RECEIVED: list[Interrupted] = []


def _raise_interrupted(signum, _frame) -> None:
    _RECEIVED.append(Interrupted(signum))
    raise _RECEIVED[-1]


def last_interrupt() -> Interrupted | None:
    """The last signal the handlers turned into :class:`Interrupted` (the parser swallows the exception
    itself and returns its own exit code 130, so the command line asks here which signal it was)."""
    return _RECEIVED[-1] if _RECEIVED else None


def install_signal_handlers() -> None:
    """Make SIGTERM (what ``kill``, timeouts and service managers send) behave like Ctrl-C.

    Python's default for SIGTERM is to die on the spot, leaving temporary files behind and exiting
    -15; raising instead runs every ``finally`` on the way out. Only the main thread may install
    handlers; elsewhere (an embedding application's worker thread) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)


def format_warning(message, category, filename, lineno, line=None) -> str:
    """``warnings.formatwarning`` for the command line: ours as ``otmap: warning: ...``, others unchanged."""
    if issubclass(category, OtmapWarning):
        return f"otmap: warning: {message}\n"
    return _PYTHON_FORMAT(message, category, filename, lineno, line)


_PYTHON_FORMAT = warnings.formatwarning
