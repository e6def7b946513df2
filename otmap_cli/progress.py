"""The library's progress protocol: long calls take an optional ``progress(done, total, phase)``.

A call reports each phase as it starts (``done`` 0, ``total`` already known) and again as it
advances, so a caller can name what is happening at once ("fitting map · step 120/450",
"point 37/1000"); ``done`` never decreases within a phase. The library draws nothing itself:
the command line shows the calls as a bar on a terminal only (``cli/common.py``).
"""

from __future__ import annotations

from typing import Callable, Optional

Progress = Callable[[int, int, str], None]


def no_progress(done: int, total: int, phase: str = "") -> None:
    """The callback of a caller that wants none."""


def or_silent(progress: Optional[Progress]) -> Progress:
    return progress if progress is not None else no_progress
