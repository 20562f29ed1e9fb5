"""The decode worker's side of :mod:`lsld_engine.media.pool`: take tasks, decode, hand results over.

:func:`worker_main` runs in each worker process (started by :mod:`lsld_engine.media.worker_process`):
it receives ``(idx, path, video_id)`` tasks, ``("ack", idx)`` acknowledgements and ``None`` (stop)
on its connection and answers ``(idx, message, last)`` per part / result (a
:mod:`~lsld_engine.media.shm_transport` message), staying at most ``parts_ahead`` parts ahead of
the consumer. :func:`decode_one` turns any decode error into a :class:`DecodeFailure`; the pool's
in-process mode (``workers=0``) uses it too.
"""
from __future__ import annotations

import inspect
import logging
import signal
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from lsld_engine import media
from lsld_engine.media.shm_transport import pack

log = logging.getLogger(__name__)


@dataclass
class DecodeFailure:
    """A video that could not be decoded; ``error`` says why (for the summary / error entry)."""

    path: str
    video_id: str
    error: str


class Stop(BaseException):
    """The parent closed the pool while a streaming decode waited for it (not an error)."""


def decode_one(decode_fn: Callable, path: str, video_id: str, kwargs: dict) -> Any:
    """``decode_fn(path, video_id, **kwargs)``, or a :class:`DecodeFailure` saying why it failed."""
    try:
        return decode_fn(path, video_id, **kwargs)
    except Stop:
        raise
    except media.MediaError as e:
        return DecodeFailure(path, video_id, str(e))
    except Exception as e:  # a bug or an FFmpeg surprise: report it, keep the run going
        log.debug("decode of %s failed:\n%s", path, traceback.format_exc())
        return DecodeFailure(path, video_id, f"{path}: {type(e).__name__}: {e}")


def worker_main(conn, decode_fn: Callable, kwargs: dict, shm_prefix: str | None, parts_ahead: int = 2) -> None:
    """Serve tasks on ``conn`` until ``None`` or end-of-file; results' arrays go to shm files named
    ``{shm_prefix}-{idx}-{part}`` (None: pickled through ``conn``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    inbox: deque = deque()  # tasks received while waiting for acknowledgements
    streaming = takes(decode_fn, "emit")

    def receive():
        if inbox:
            return inbox.popleft()
        try:
            return conn.recv()
        except EOFError:
            return None

    while True:
        task = receive()
        if task is None or task[0] == "ack":
            if task is None:
                return
            continue  # a late acknowledgement of a finished video
        idx, path, video_id = task
        sent = [0]  # parts sent for this video
        acked = [0]

        def emit(part, idx=idx, path=path, video_id=video_id, sent=sent, acked=acked) -> None:
            msg = pack(part, f"{shm_prefix}-{idx}-{sent[0]}" if shm_prefix else None)
            conn.send((idx, msg, False))
            sent[0] += 1
            while sent[0] - acked[0] > parts_ahead:  # backpressure: wait for the consumer
                try:
                    m = conn.recv()
                except EOFError:
                    raise Stop() from None
                if m is None:
                    raise Stop()
                if m[0] == "ack":
                    acked[0] += m[1] == idx
                else:
                    inbox.append(m)

        try:
            result = decode_one(decode_fn, path, video_id, {**kwargs, "emit": emit} if streaming else kwargs)
        except Stop:
            return
        try:
            msg = pack(result, f"{shm_prefix}-{idx}-{sent[0]}" if shm_prefix else None)
        except Exception as e:
            msg = ("obj", DecodeFailure(path, video_id, f"{path}: cannot hand over result: {e}"))
        conn.send((idx, msg, True))


def takes(fn: Callable, name: str) -> bool:
    """Whether ``fn`` has a parameter ``name``."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins and other callables without a signature
        return False
