"""Decode videos in worker processes and hand them to a consumer, never losing one.

``decode_stream(paths, workers=N)`` yields one result per input, a :class:`~lsld_engine.media.DecodedVideo`
or a :class:`DecodeFailure`, in completion order (or input order with ``ordered=True``).

- Workers are fresh Python processes that run only the engine's code
  (:mod:`lsld_engine.media.worker_process`: not *fork*, as the consumer may hold a GPU context, and
  not *spawn*, which re-runs the caller's script in every worker) and import only numpy / PyAV / PIL.
  A worker that cannot start (it dies or fails before it reports ready) raises
  :class:`~lsld_engine.errors.EngineError`: the engine's fault, not a video's.
- Backpressure: at most ``max_pending`` videos are dispatched and not yet consumed, so memory is
  bounded however slow the consumer is (each worker holds at most ``prefetch`` tasks, so it never
  waits on the parent between videos).
- Arrays travel through one shared-memory file per video (``/dev/shm``, unlinked by the consumer
  as soon as it is mapped; one copy in the worker, none in the consumer;
  :mod:`lsld_engine.media.shm_transport`) instead of being pickled through a pipe
  (``transport="pipe"``, for platforms without ``/dev/shm``).
- A worker that dies (segfault, OOM kill) or exceeds ``timeout`` seconds on one video fails that
  video with a :class:`DecodeFailure`, its other queued videos go to other workers, and a fresh
  worker replaces it. ``workers=0`` decodes in the calling process (tests, debugging).
- ``decode_fn(path, video_id, **decode_kwargs)`` is the per-video work (default
  :func:`lsld_engine.media.parts.decode_parts`); any top-level function returning a dataclass whose
  numpy fields are the bulk data can be used (e.g. a raw-plane decoder for GPU preprocessing).
- **Streaming decoders.** A ``decode_fn`` that takes an ``emit`` argument (``decode_parts``) hands
  out parts of a video (a few 10-s windows each) while it decodes; each is yielded as its own item
  (``final`` False), the returned last part closes the video. A worker runs at most
  ``parts_ahead`` parts ahead of the consumer (it waits for an acknowledgement of each part the
  consumer has taken), so neither the worker nor ``/dev/shm`` ever holds more than a few parts of
  a long video. ``timeout`` then bounds the time between two parts, not the whole video, and a
  worker that waits for the consumer (its parts not yet taken) is not timed out. A video
  that fails after some parts were yielded ends with a :class:`DecodeFailure` (the consumer drops
  what it had of it).
"""
from __future__ import annotations

import glob
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable, Iterable, Iterator

from lsld_engine import media
from lsld_engine.errors import EngineError
from lsld_engine.media import worker_process
# DecodeFailure is imported from here by the callers
from lsld_engine.media.pool_worker import DecodeFailure, Stop, decode_one, takes, worker_main  # noqa: F401
from lsld_engine.media.shm_transport import SHM_DIR, discard, unpack

#: Seconds a worker with work waiting may take to report ready (import PyAV, numpy, the decode
#: function) before the pool gives up on it: generous, a loaded machine starts Python slowly.
START_TIMEOUT_S = 300.0


def _items(paths: Iterable) -> Iterator[tuple[str, str]]:
    for p in paths:
        if isinstance(p, (tuple, list)):
            yield str(p[0]), str(p[1])
        else:
            yield str(p), media.video_id_of(p)


@dataclass(eq=False)
class _Worker:
    proc: Any
    conn: Any
    tasks: deque  # idx of tasks sent, oldest first (the oldest is the one being decoded)
    started: float = 0.0  # when the oldest task started (approximately), or last made progress
    unacked: int = 0  # parts of the current video received and not yet acknowledged
    ready: bool = False  # it reported that it started (imported its decode function)
    why: str | None = None  # why it could not start, as it reported
    launched: float = 0.0  # when it was started


class _Pool:
    def __init__(self, workers: int, decode_fn: Callable, kwargs: dict, transport: str, timeout: float | None,
                 parts_ahead: int = 2):
        self.decode_fn, self.kwargs, self.timeout = decode_fn, kwargs, timeout
        self.parts_ahead = parts_ahead
        use_shm = transport == "shm" and os.path.isdir(SHM_DIR)
        if transport not in ("shm", "pipe"):
            raise ValueError(f"transport must be 'shm' or 'pipe', not {transport!r}")
        self.shm_prefix = f"lsld-decode-{os.getpid()}-{uuid.uuid4().hex[:8]}" if use_shm else None
        self.workers: list[_Worker] = [self._start() for _ in range(workers)]

    def _start(self) -> _Worker:
        try:
            proc, conn = worker_process.start(worker_main, (self.decode_fn, self.kwargs, self.shm_prefix,
                                                             self.parts_ahead))
        except worker_process.StartError as e:
            raise EngineError(f"cannot start a decoder worker: {e}") from None
        return _Worker(proc, conn, deque(), launched=time.monotonic())

    def send(self, w: _Worker, idx: int, path: str, video_id: str) -> None:
        if not w.tasks:
            w.started = time.monotonic()
        w.tasks.append(idx)
        try:
            w.conn.send((idx, path, video_id))
        except OSError:
            pass  # the worker has died: its end-of-file comes and its tasks are failed / resent

    def ack(self, idx: int) -> None:
        """Tell the worker decoding ``idx`` that the consumer took one of its parts."""
        for w in self.workers:
            if w.tasks and w.tasks[0] == idx:
                w.unacked = max(0, w.unacked - 1)
                w.started = time.monotonic()  # the time it waited for us does not count as its own
                try:
                    w.conn.send(("ack", idx))
                except OSError:
                    pass  # it died: its end-of-file comes and the video fails
                return

    def replace(self, w: _Worker) -> list[int]:
        """Kill ``w`` and start a fresh worker in its place; returns the tasks it still held."""
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join(5)
        w.conn.close()
        held = list(w.tasks)
        self.workers[self.workers.index(w)] = self._start()
        return held

    def start_failure(self, w: _Worker) -> EngineError:
        """The error for ``w``, which died or hung before it reported ready (no video is to blame)."""
        w.proc.join(5)  # its exit status, once it has gone (end-of-file comes first)
        code = w.proc.exitcode
        cause = w.why or (f"its process exited with code {code}" if code is not None
                          else f"it did not report ready within {START_TIMEOUT_S:g} s")
        return EngineError(f"decoder worker could not start: {cause} (no video was decoded by it; "
                           "set workers=0 to decode in this process)")

    def close(self) -> None:
        """Stop the workers: idle ones exit on a None task, busy ones (the consumer stopped early)
        are killed, as their work would be thrown away."""
        for w in self.workers:
            if w.tasks:
                w.proc.kill()
            else:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        deadline = time.monotonic() + 5
        for w in self.workers:
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(5)
            w.conn.close()
        if self.shm_prefix:  # results decoded but never consumed
            for f in glob.glob(os.path.join(SHM_DIR, self.shm_prefix + "-*")):
                try:
                    os.unlink(f)
                except FileNotFoundError:
                    pass


def decode_stream(paths: Iterable, *, workers: int = 2, ordered: bool = False, max_pending: int | None = None,
                  prefetch: int = 2, timeout: float | None = None, transport: str = "shm",
                  decode_fn: Callable | None = None, parts_ahead: int = 2, **decode_kwargs) -> Iterator[Any]:
    """Decode ``paths`` (paths, or ``(path, video_id)`` pairs; consumed lazily) in ``workers`` processes.

    Yields, per input, its parts (streaming ``decode_fn``: ``DecodedPart`` items, the last with
    ``final``) or one ``DecodedVideo`` (or ``decode_fn``'s result), or a :class:`DecodeFailure`
    (possibly after some parts). ``max_pending`` (default ``workers * prefetch + 2``) bounds the
    videos in flight, ``parts_ahead`` the parts a worker decodes ahead of the consumer;
    ``timeout`` (s) fails a video that makes no progress for that long; ``decode_kwargs`` go to
    ``decode_fn`` (e.g. ``max_windows``, ``limits``, ``threads``; with workers, ``threads``
    defaults to CPUs // workers).
    """
    decode_fn = decode_fn or media.decode_parts
    items = _items(paths)
    if workers <= 0:
        for path, vid in items:
            yield from _decode_here(decode_fn, path, vid, decode_kwargs, parts_ahead)
        return
    if decode_fn in (media.decode_video, media.decode_parts) or takes(decode_fn, "threads"):
        # the processes share the CPUs; FFmpeg threads only fill cores the processes leave idle
        decode_kwargs.setdefault("threads", max(1, (os.cpu_count() or 1) // workers))
    max_pending = max_pending or workers * prefetch + 2
    pool = _Pool(workers, decode_fn, decode_kwargs, transport, timeout, parts_ahead)
    info: dict[int, tuple[str, str]] = {}  # idx -> (path, video_id), dispatched and not yet closed
    retry: deque = deque()  # idx of tasks to resend (their worker died before starting them)
    ready: dict[int, deque] = {}  # idx -> results received, waiting for their turn (ordered) or to be yielded
    done_order: deque = deque()  # unordered: one idx per result received, in arrival order
    next_idx = 0  # ordered: the next index to yield
    n_in = 0
    exhausted = False
    try:
        while True:
            # dispatch while there is room
            while len(info) < max_pending or retry:
                w = min(pool.workers, key=lambda w: len(w.tasks))
                if len(w.tasks) >= prefetch:
                    break
                if retry:
                    idx = retry.popleft()
                else:
                    if exhausted:
                        break
                    try:
                        path, vid = next(items)
                    except StopIteration:
                        exhausted = True
                        break
                    idx, n_in = n_in, n_in + 1
                    info[idx] = (path, vid)
                pool.send(w, idx, *info[idx])
            # yield what may be yielded
            while True:
                if ordered:
                    q = ready.get(next_idx)
                    if not q:
                        break
                    idx = next_idx
                else:
                    if not done_order:
                        break
                    idx = done_order.popleft()
                    q = ready[idx]
                res = q.popleft()
                if closes_video(res):
                    del ready[idx], info[idx]
                    if ordered:
                        next_idx += 1
                    yield res
                else:
                    yield res
                    pool.ack(idx)  # the consumer has taken the part: the worker may decode one more
            if exhausted and not info:
                return
            if not any(w.tasks for w in pool.workers):
                continue  # everything dispatched has been yielded; dispatch more
            _collect(pool, info, ready, done_order, retry)
    finally:
        pool.close()


def closes_video(result: Any) -> bool:
    """Whether ``result`` closes its video (a failure, a whole video, or a ``final`` part)."""
    return getattr(result, "final", True)


def _decode_here(decode_fn: Callable, path: str, video_id: str, kwargs: dict, parts_ahead: int) -> Iterator[Any]:
    """``workers=0``: decode in this process; a streaming ``decode_fn`` runs in a thread that stays
    at most ``parts_ahead`` parts ahead of the consumer."""
    if not takes(decode_fn, "emit"):
        yield decode_one(decode_fn, path, video_id, kwargs)
        return
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=max(1, parts_ahead))
    stop = threading.Event()

    def put(item) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise Stop()

    def run() -> None:
        try:
            put(decode_one(decode_fn, path, video_id, {**kwargs, "emit": put}))
        except Stop:
            pass

    t = threading.Thread(target=run, name="lsld-decode-parts", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            yield item
            if closes_video(item):
                return
    finally:
        stop.set()
        t.join(timeout=30)


def _finish(idx: int, result: Any, info: dict, ready: dict, done_order: deque) -> None:
    ready.setdefault(idx, deque()).append(result)
    done_order.append(idx)


def _collect(pool: _Pool, info: dict, ready: dict, done_order: deque, retry: deque) -> None:
    """Wait (briefly) for results, worker deaths and timeouts, and record them."""
    busy = [w for w in pool.workers if w.tasks]
    by_conn = {w.conn: w for w in busy}
    wait_s = 0.5
    if pool.timeout:
        now = time.monotonic()
        wait_s = max(0.01, min([wait_s] + [w.started + pool.timeout - now for w in busy]))
    # a worker's death is end-of-file on its connection (worker_process: the child alone holds its end)
    for obj in wait(list(by_conn), timeout=wait_s):
        w = by_conn[obj]
        if w not in pool.workers:
            continue  # already replaced in this round
        dead = False
        # read everything the worker managed to send (also when it has died since)
        try:
            while w.conn.poll():
                m = w.conn.recv()
                if worker_process.is_control(m):  # start-up: ready, or why it cannot start
                    w.ready, w.why = m[0] == "ready", (m[1] if m[0] == "failed" else None)
                    w.started = time.monotonic()  # the decode timeout counts from here
                    continue
                idx, msg, last = m
                w.started = time.monotonic()  # progress: the timeout counts from here
                w.unacked = 0 if last else w.unacked + 1
                if last:
                    w.tasks.remove(idx)
                if idx in info and not _closed(idx, ready):
                    _finish(idx, unpack(msg), info, ready, done_order)
                else:
                    discard(msg)
        except (EOFError, OSError):
            dead = True
        if dead or not w.proc.is_alive():
            if not w.ready:
                raise pool.start_failure(w)
            w.proc.join(5)  # end-of-file comes just before the exit status
            code = w.proc.exitcode
            held = pool.replace(w)
            if held:
                path, vid = info[held[0]]
                _finish(held[0], DecodeFailure(path, vid, f"{path}: decoder worker died (exit code {code}) "
                                               f"while decoding this file"), info, ready, done_order)
                retry.extend(held[1:])
    if pool.timeout:
        now = time.monotonic()
        for w in list(pool.workers):
            # a worker more than parts_ahead parts ahead waits for the consumer, not for its decoder
            if w.tasks and w.ready and now - w.started > pool.timeout and w.unacked <= pool.parts_ahead:
                held = pool.replace(w)
                path, vid = info[held[0]]
                _finish(held[0], DecodeFailure(path, vid, f"{path}: decoding made no progress for {pool.timeout:g} s; "
                                               f"worker stopped"), info, ready, done_order)
                retry.extend(held[1:])


    now = time.monotonic()
    for w in pool.workers:
        if w.tasks and not w.ready and now - w.launched > START_TIMEOUT_S:
            raise pool.start_failure(w)


def _closed(idx: int, ready: dict) -> bool:
    """Whether the results waiting for ``idx`` already end with its last one."""
    q = ready.get(idx)
    return bool(q) and closes_video(q[-1])
