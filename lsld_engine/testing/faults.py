"""Fault injection for tests of the decode workers and the scale-out engine: decoders that kill their
own process, or that keep a decode worker from starting."""
from __future__ import annotations

import os
import signal
from pathlib import Path

from lsld_engine.media import decode_video


class KillOnce:
    """A per-video decoder (``decode_fn``) that SIGKILLs its own process on its first call
    anywhere (claimed through the ``marker`` file, atomically), then decodes normally.

    Picklable, so Ray ships it to its decode tasks: the task's worker process dies mid-batch,
    and the test checks that Ray ran the task again and no video was lost.
    """

    def __init__(self, marker: str | os.PathLike):
        self.marker = str(marker)

    def __call__(self, path: str, video_id: str | None = None, **kwargs):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return decode_video(path, video_id, **kwargs)
        os.write(fd, f"{os.getpid()} {path}\n".encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


def killed(marker: str | os.PathLike) -> bool:
    """Whether a :class:`KillOnce` has fired."""
    return Path(marker).is_file()


class Gate:
    """A per-video decoder (``decode_fn``) that decodes the videos in ``free`` at once and makes
    every other one wait until the file ``release`` exists (polled; at most ``timeout`` s, then it
    fails): a test holds those videos in flight while it kills or adds nodes. Picklable."""

    def __init__(self, release: str | os.PathLike, free: set[str] | frozenset[str], timeout: float = 300.0):
        self.release, self.free, self.timeout = str(release), frozenset(free), timeout

    def __call__(self, path: str, video_id: str | None = None, **kwargs):
        import time

        if video_id not in self.free:
            t0 = time.monotonic()
            while not os.path.exists(self.release):
                if time.monotonic() - t0 > self.timeout:
                    raise RuntimeError(f"{path}: the test's gate {self.release} was not opened in {self.timeout:g} s")
                time.sleep(0.05)
        return decode_video(path, video_id, **kwargs)


def _refuse_to_load(exit_code: int | None):
    """Run where a :class:`FailsToStart` is unpickled, i.e. in a decode worker starting up."""
    if exit_code is not None:
        os._exit(exit_code)  # gone at once, before it can report anything
    raise RuntimeError("start-up fault injected by lsld_engine.testing.faults.FailsToStart")


class FailsToStart:
    """A per-video decoder (``decode_fn``) that keeps every decode worker from starting: loading it in
    the worker raises (or, with ``exit_code``, ends the worker's process with that status), so the
    worker never reports ready. Called in this process (``workers=0``) it decodes normally."""

    def __init__(self, exit_code: int | None = None):
        self.exit_code = exit_code

    def __call__(self, path: str, video_id: str | None = None, **kwargs):
        return decode_video(path, video_id, **kwargs)

    def __reduce__(self):
        return _refuse_to_load, (self.exit_code,)
