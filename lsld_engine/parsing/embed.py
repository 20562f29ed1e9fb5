"""The encode stage shared by ``extract`` and ``parse``: decoded videos -> CLIP and CLAP embeddings.

``embed_groups(decoded, backend)`` consumes a stream of :class:`~lsld_engine.media.DecodedVideo` /
:class:`~lsld_engine.media.pool.DecodeFailure` (e.g. :func:`~lsld_engine.media.pool.decode_stream`)
and yields lists of :class:`EmbeddedVideo` / ``DecodeFailure`` in input order within the stream.

How the encoder is kept busy:

- A feeder thread drains the decode stream into a bounded queue, so the decode workers are fed
  and their results collected while the encoder computes (PyTorch and ONNX Runtime release the GIL).
- Each round takes *every* decoded video that is ready (at least one, blocking only when none
  is), up to ``max_frames`` CLIP frames, and embeds all their frames and audio segments together
  in device-sized batches (``backend.embed_images`` / ``embed_audio``). So batches span videos
  when decoding is ahead, and the encoder never waits for a particular video.

:func:`clip_batches` is the one place where decoded frames become the CLIP input batch (the device
pixel step of :mod:`lsld_engine.media.pixels` plugs in there).
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from lsld_engine.media.pool import DecodeFailure
from lsld_engine.media import FRAMES_PER_WINDOW, SAMPLES_PER_SEGMENT, SEGMENTS_PER_WINDOW, Windowed

log = logging.getLogger(__name__)


@dataclass
class EmbeddedVideo(Windowed):
    """A video's embeddings, one row per 10-s window.

    ``frames``: ``(W, 80, D)`` float32 CLIP embeddings; ``audio``: ``(W, 10, D)`` float32 CLAP
    embeddings; ``duration``: true length (s) before padding. A part of a streamed video
    (:class:`lsld_engine.media.DecodedPart`) keeps its ``first_window`` and ``final``.
    """


def clip_batches(videos: Sequence[Any], batch: int) -> Iterator[np.ndarray]:
    """CLIP input batches ``(<= batch, 224, 224, 3)`` uint8 over all frames of ``videos`` in order.

    The single hand-over point from decoded frames to the image encoder's input (the device
    pixel step plugs in here). Batches span videos; a long video is sliced, never copied whole.
    Raw-plane videos (:class:`lsld_engine.media.raw_planes.RawVideo`, ``--pixels device``) get the device
    pixel step here (:func:`lsld_engine.media.raw_planes.raw_to_clip`, CUDA when available).
    """
    if any(hasattr(v, "index") for v in videos):
        from lsld_engine.media.raw_planes import raw_to_clip

        return _row_chunks([raw_to_clip(videos, out="uint8")], batch)
    return _row_chunks([v.frames.reshape(-1, *v.frames.shape[2:]) for v in videos], batch)


def audio_batches(videos: Sequence[Any], batch: int) -> Iterator[np.ndarray]:
    """CLAP input batches ``(<= batch, 48000)`` float32 over all 1-s segments of ``videos`` in order."""
    return _row_chunks([v.audio.reshape(-1, SAMPLES_PER_SEGMENT) for v in videos], batch)


def _row_chunks(arrays: list[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """Consecutive chunks of ``n`` rows over ``arrays`` laid end to end (a view when inside one array)."""
    parts: list[np.ndarray] = []
    have = 0
    for a in arrays:
        s = 0
        while s < a.shape[0]:
            take = min(n - have, a.shape[0] - s)
            parts.append(a[s:s + take])
            have, s = have + take, s + take
            if have == n:
                yield parts[0] if len(parts) == 1 else np.concatenate(parts)
                parts, have = [], 0
    if parts:
        yield parts[0] if len(parts) == 1 else np.concatenate(parts)


def embed_videos(videos: Sequence[Any], backend, max_batch: int = 1024) -> list[EmbeddedVideo]:
    """Embed decoded ``videos`` together: their frames and segments go to the backend in calls of at
    most ``max_batch`` rows spanning videos (the backend splits further into device batches)."""
    if not videos:
        return []
    full = [v for v in videos if v.num_windows]  # (an empty last part of a streamed video has none)
    img = [backend.embed_images(b) for b in clip_batches(full, max_batch)]
    aud = [backend.embed_audio(b) for b in audio_batches(full, max_batch)]
    img = np.concatenate(img) if img else np.zeros((0, 0), np.float32)
    aud = np.concatenate(aud) if aud else np.zeros((0, 0), np.float32)
    out, fi, ai = [], 0, 0
    for v in videos:
        w = v.num_windows
        nf, na = w * FRAMES_PER_WINDOW, w * SEGMENTS_PER_WINDOW
        out.append(EmbeddedVideo(v.path, v.video_id, float(v.duration), bool(v.has_audio),
                                 img[fi:fi + nf].reshape(w, FRAMES_PER_WINDOW, img.shape[-1]),
                                 aud[ai:ai + na].reshape(w, SEGMENTS_PER_WINDOW, aud.shape[-1]),
                                 # (RawVideo, the device-pixel path, is always a whole video)
                                 getattr(v, "first_window", 0), getattr(v, "final", True)))
        fi, ai = fi + nf, ai + na
    return out


class Prefetcher:
    """Iterate ``source`` in a daemon thread into a bounded queue (``maxsize`` items ahead).

    ``get(block)`` returns the next item, or raises ``queue.Empty`` (non-blocking) / ``StopIteration``
    at the end; an exception raised by ``source`` is re-raised in the consumer. ``close()`` stops the
    thread and closes ``source`` (e.g. stops decode workers) from the thread that runs it.
    """

    def __init__(self, source: Iterable, maxsize: int = 8):
        self._source = source
        self._q: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self._stop = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="lsld-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        it = iter(self._source)
        try:
            for item in it:
                if not self._put(("item", item)):
                    return
            self._put(("end", None))
        except BaseException as e:  # hand it to the consumer
            self._put(("error", e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def _put(self, msg) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(msg, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self, block: bool = True):
        if self._ended:
            raise StopIteration
        kind, val = self._q.get(block=block)
        if kind == "item":
            return val
        self._ended = True
        if kind == "error":
            raise val
        raise StopIteration

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a feeder waiting on a full queue
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=30)


def default_max_frames(backend) -> int:
    """CLIP frames per encode round: 4 image batches of the backend, at least one 10-s window."""
    return max(FRAMES_PER_WINDOW, 4 * getattr(backend, "batch_sizes", {}).get("images", 64))


def embed_groups(decoded: Iterable[Any], backend, *, max_frames: int | None = None,
                 prefetch: int = 8) -> Iterator[list]:
    """Yield lists of :class:`EmbeddedVideo` (or the stream's ``DecodeFailure`` items, passed through),
    keeping the stream's order.

    ``max_frames``: most CLIP frames embedded in one round (default: 4 image batches of the backend,
    at least one 10-s window); ``prefetch``: decoded videos buffered ahead of the encoder.
    """
    if max_frames is None:
        max_frames = default_max_frames(backend)
    feeder = Prefetcher(decoded, prefetch)
    try:
        ended = False
        while not ended:
            group, ended = take_ready(feeder.get, max_frames)
            if group:
                yield _embed_group(group, backend, max_frames)
    finally:
        feeder.close()


def take_ready(get, max_frames: int) -> tuple[list, bool]:
    """One encode round: block for the first item, then take the items already waiting (``get(block=
    False)`` raising ``queue.Empty`` = none ready) until ``max_frames`` CLIP frames are gathered.
    Returns ``(items, ended)``; ``ended`` when ``get`` raised ``StopIteration``."""
    group: list = []
    frames = 0
    try:
        group.append(get(block=True))
        frames += _frames_of(group[-1])
        while frames < max_frames:
            group.append(get(block=False))
            frames += _frames_of(group[-1])
    except queue.Empty:
        pass
    except StopIteration:
        return group, True
    return group, False


def _frames_of(item) -> int:
    return 0 if isinstance(item, DecodeFailure) else int(item.num_windows) * FRAMES_PER_WINDOW


def _embed_group(group: list, backend, max_batch: int) -> list:
    ok = [g for g in group if not isinstance(g, DecodeFailure)]
    done = iter(embed_videos(ok, backend, max_batch))
    return [g if isinstance(g, DecodeFailure) else next(done) for g in group]


def embed_stream(decoded: Iterable[Any], backend, **kwargs) -> Iterator[Any]:
    """:func:`embed_groups`, flattened: one ``EmbeddedVideo`` or ``DecodeFailure`` per input."""
    for group in embed_groups(decoded, backend, **kwargs):
        yield from group
