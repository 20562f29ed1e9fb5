"""Progress bars: a live bar on a terminal, one plain log line at an interval otherwise.

A tqdm bar redraws itself with ``\r`` many times a second; written to a file or a pipe (``2> log``,
CI, ``nohup``) that is one line per update and floods the log. :func:`progress_bar` returns a
tqdm bar either way: on a terminal an ordinary one; when stderr is not a terminal one that
refreshes at most every :data:`LOG_INTERVAL_S` seconds (``LSLD_PROGRESS_INTERVAL`` overrides) and
writes each refresh as its own ``\n``-terminated line, with no cursor movement.
"""
from __future__ import annotations

import os
import sys
from typing import IO

#: Seconds between progress lines when stderr is not a terminal.
LOG_INTERVAL_S: float = 30.0


class _LineWriter:
    """File-like wrapper: each tqdm refresh (``\r...``) becomes one plain line; blank refreshes
    (clearing a bar with ``leave=False``) are dropped."""

    def __init__(self, file: IO[str]):
        self._file = file

    def write(self, text: str) -> int:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        if line:
            self._file.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._file.flush()


def is_terminal(file: IO[str]) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # closed or not a real file
        return False


def log_interval() -> float:
    """:data:`LOG_INTERVAL_S`, or ``$LSLD_PROGRESS_INTERVAL`` seconds when set to a positive number."""
    try:
        value = float(os.environ.get("LSLD_PROGRESS_INTERVAL", ""))
        return value if value > 0 else LOG_INTERVAL_S
    except ValueError:
        return LOG_INTERVAL_S


def progress_bar(file: IO[str] | None = None, **kwargs):
    """A ``tqdm`` bar on ``file`` (default stderr) with ``kwargs``; see the module docstring for
    what changes when ``file`` is not a terminal."""
    from tqdm import tqdm

    file = file if file is not None else sys.stderr
    if is_terminal(file) or kwargs.get("disable"):
        return tqdm(file=file, **kwargs)
    interval = log_interval()
    kwargs.update(mininterval=interval, maxinterval=max(interval, kwargs.get("maxinterval", 0)),
                  dynamic_ncols=False, smoothing=0.0,
                  bar_format="{desc}{desc_pad}{percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]")
    kwargs.pop("leave", None)  # a log keeps its lines
    kwargs.pop("ncols", None)
    if kwargs.get("desc"):
        kwargs["bar_format"] = kwargs["bar_format"].replace("{desc_pad}", ": ")
    kwargs["bar_format"] = kwargs["bar_format"].replace("{desc_pad}", "")
    return tqdm(file=_LineWriter(file), leave=True, **kwargs)
