"""The parse pipeline: video files -> audio / visual / audio-visual events, one JSONL line per video.

Read it top to bottom (:func:`parse_videos`)::

    decode (worker processes)  -> DecodedVideo (W, 80, 224, 224, 3) frames, (W, 10, 48000) audio
    embed  (batched across videos, a feeder thread keeps decoding ahead)
                               -> EmbeddedVideo (W, 80, 512) CLIP, (W, 10, 512) CLAP
    HAN    (windows of many videos in one call)
                               -> seg_prob (W, 10, 2, C), a_prob / v_prob (W, C)
    events (inference rule of events.predict_masks, windows laid end to end, absolute times)
    writer (one flushed line per video; error lines for videos that failed)

Memory does not grow with a video's length: a long video arrives as parts of a few windows
(:func:`lsld_engine.media.parts.decode_parts`), each part is embedded and run through the HAN as
it comes, and only its small HAN outputs are kept until the video's last part closes its record.

Long videos are parsed as consecutive 10-s windows (each window is one HAN input, like an LLP
clip); their segment masks are laid end to end, so an event crossing a window boundary stays one
event, and times are absolute (see :mod:`lsld_engine.records.events`). Events past the true duration
(padding of the last window) are dropped or clipped.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from lsld_engine.parsing.embed import EmbeddedVideo
from lsld_engine.records.events import predict_masks, track_events
from lsld_engine.data.llp import T
from lsld_engine.media.pool import DecodeFailure
from lsld_engine.parsing.pipeline import Summary, embedded_groups
from lsld_engine.parsing.video_inputs import VideoInput
from lsld_engine.records.events import DEFAULT_THRESHOLD, check_threshold
from lsld_engine.records.writers import error_record, ok_record

#: Decimals kept for ``--save-probs`` probabilities (keeps lines short; far below model noise).
PROB_DECIMALS = 4


@dataclass
class Thresholds:
    """The inference rule: a segment is positive when its probability ``>= segment`` and the
    modality's (window-level) video probability ``>= video``; each a probability in [0, 1]
    (:func:`lsld_engine.records.events.check_threshold`)."""

    segment: float = DEFAULT_THRESHOLD
    video: float = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        self.segment = check_threshold("seg_threshold", self.segment)
        self.video = check_threshold("video_threshold", self.video)


def run_han(backend, videos: list[EmbeddedVideo]) -> list[dict[str, np.ndarray]]:
    """HAN outputs per video (``seg_prob (W, 10, 2, C)``, ``a_prob``/``v_prob`` ``(W, C)``), all
    windows of all ``videos`` in one backend call."""
    if not videos:
        return []
    out = backend.parse(np.concatenate([v.audio for v in videos]), np.concatenate([v.frames for v in videos]))
    bounds = np.cumsum([0] + [v.num_windows for v in videos])
    return [{k: out[k][s:e] for k in ("seg_prob", "a_prob", "v_prob")} for s, e in zip(bounds[:-1], bounds[1:])]


def video_record(video: EmbeddedVideo, probs: dict[str, np.ndarray], thresholds: Thresholds = Thresholds(),
                 save_probs: bool = False) -> dict:
    """The JSONL record of one parsed video (format: docs/formats.md).

    ``probs``: this video's HAN outputs, ``seg_prob (W, 10, 2, C)``, ``a_prob``/``v_prob`` ``(W, C)``
    (all ``W`` windows; ``video`` gives id, path, duration and ``has_audio``: for a streamed video,
    its last part).
    """
    seg = probs["seg_prob"]
    mask_a, mask_v = predict_masks(seg, probs["a_prob"], probs["v_prob"], thresholds.segment, thresholds.video)
    events = track_events(mask_a, mask_v, seg[:, :, 0], seg[:, :, 1], duration=video.duration)
    rec = ok_record(video.video_id, events, video.duration, seg.shape[0] * T)
    rec["path"] = video.path
    rec["has_audio"] = video.has_audio
    if save_probs:
        c = seg.shape[-1]
        rec["probs"] = {"audio": _rounded(seg[:, :, 0].reshape(-1, c)), "visual": _rounded(seg[:, :, 1].reshape(-1, c))}
        rec["window_probs"] = {"audio": _rounded(probs["a_prob"]), "visual": _rounded(probs["v_prob"])}
    return rec


def failure_record(failure: DecodeFailure) -> dict:
    """The error line of a video that could not be decoded."""
    rec = error_record(failure.video_id, failure.error)
    rec["path"] = failure.path
    return rec


def _rounded(x: np.ndarray) -> list:
    return np.round(x.astype(np.float64), PROB_DECIMALS).tolist()


def records_of(backend, items: list, thresholds: Thresholds = Thresholds(), save_probs: bool = False,
               max_batch: int | None = None) -> list[dict]:
    """The records of whole decoded videos already in memory, in order: ``items`` are
    :class:`~lsld_engine.media.DecodedVideo` (frames ``(W, 80, 224, 224, 3)`` uint8, audio
    ``(W, 10, 48000)`` float32) or :class:`DecodeFailure` (its error record). All frames and
    segments are embedded together, then the HAN runs on all windows at once (the ``--ray``
    encoder actors and :meth:`lsld_engine.api.Engine.events`)."""
    from lsld_engine.parsing.embed import default_max_frames, embed_videos

    decoded = [it for it in items if not isinstance(it, DecodeFailure)]
    max_batch = max_batch or default_max_frames(backend)  # as embed_groups on one machine
    embedded = embed_videos(decoded, backend, max_batch)
    probs, done = iter(run_han(backend, embedded)), iter(embedded)
    return [failure_record(it) if isinstance(it, DecodeFailure)
            else video_record(next(done), next(probs), thresholds, save_probs) for it in items]


def parse_records(inputs: Iterable[VideoInput], backend, *, workers: int = 2, ordered: bool = False,
                  thresholds: Thresholds = Thresholds(), save_probs: bool = False, progress: bool = True,
                  total: int | None = None, max_frames: int | None = None, decode_timeout: float | None = None,
                  summary: Summary | None = None, decode_fn=None, limits=None) -> Iterator[dict]:
    """Parse ``inputs`` with ``backend``; yield one record per video as each completes (the ok
    record, or the error record of a video that failed). A video is counted into ``summary`` when
    the consumer asks for the next record (after it handled this one).

    ``workers``, ``ordered``, ``max_frames``, ``decode_timeout``, ``decode_fn``, ``limits``: see
    :func:`lsld_engine.parsing.pipeline.embedded_groups`. A long video's parts go through the HAN as they
    come; its record is made when its last part arrives.
    """
    summary = summary if summary is not None else Summary()
    with contextlib.closing(embedded_groups(inputs, backend, summary, workers=workers, ordered=ordered,
                                            progress=progress, total=total, max_frames=max_frames,
                                            decode_timeout=decode_timeout, decode_fn=decode_fn,
                                            limits=limits)) as groups:
        partial: dict[str, list[dict[str, np.ndarray]]] = {}  # HAN outputs of the parts of open videos
        for group in groups:
            outputs = iter(run_han(backend, [v for v in group if isinstance(v, EmbeddedVideo)]))
            for item in group:
                if isinstance(item, DecodeFailure):
                    partial.pop(item.video_id, None)  # parts of a video that failed later
                    yield failure_record(item)
                    summary.count(item)
                    continue
                parts = partial.setdefault(item.video_id, [])
                parts.append(next(outputs))
                if not item.final:
                    continue  # more parts of this video to come
                del partial[item.video_id]
                probs = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
                yield video_record(item, probs, thresholds, save_probs)
                summary.count(item, windows=probs["seg_prob"].shape[0])


def parse_videos(inputs: Iterable[VideoInput], backend, writer, *, summary: Summary | None = None,
                 **options) -> Summary:
    """Parse ``inputs`` with ``backend`` and ``writer.write`` one record per video as each completes
    (:func:`parse_records`; ``options`` are its keywords). Returns (and fills ``summary``) the
    run's counts."""
    summary = summary if summary is not None else Summary()
    records = parse_records(inputs, backend, summary=summary, **options)
    with contextlib.closing(records):
        for record in records:
            writer.write(record)
    return summary
