"""Peak memory of a running process and its descendants, read from ``/proc`` (Linux).

``ru_maxrss`` is no good for this: Linux carries it over ``fork`` + ``exec``, so a child started
from a large process (pytest with torch loaded) reports at least its parent's size. ``VmHWM`` in
``/proc/PID/status`` is the peak of the process's own address space, which ``exec`` starts afresh.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path


def _hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = Path(f"/proc/{p}/task").iterdir()
            kids = [int(c) for t in tasks for c in (t / "children").read_text().split()]
        except (OSError, ValueError):
            kids = []
        out += kids
        todo += kids
    return out


def watch_peaks(proc: subprocess.Popen, interval: float = 0.1, timeout: float = 600) -> dict[int, float]:
    """Wait for ``proc`` and return ``{pid: peak RSS in MB}`` of it and every descendant seen while
    it ran (polled every ``interval`` s; a descendant's peak is its last reading before it exits)."""
    peaks: dict[int, float] = {}
    t0 = time.monotonic()
    while True:
        done = proc.poll() is not None
        for pid in [proc.pid, *_descendants(proc.pid)]:
            mb = _hwm_mb(pid)
            if mb is not None:
                peaks[pid] = max(peaks.get(pid, 0.0), mb)
        if done:
            return peaks
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise TimeoutError(f"process {proc.pid} still running after {timeout} s")
        time.sleep(interval)
