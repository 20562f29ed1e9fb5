"""The parse pipeline: video files -> audio / visual / audio-visual events, one JSONL line per video.

Read it top to bottom (:func:`parse_videos`)::

    decode (worker processes)  -> DecodedVideo (W, 80, 224, 224, 3) frames, (W, 10, 48000) audio
    embed  (batched across videos, a feeder thread keeps decoding ahead)
                               -> EmbeddedVideo (W, 80, 512) CLIP, (W, 10, 512) CLAP
    HAN    (windows of many videos in one call)
                               -> seg_prob (W, 10, 2, C), a_prob / v_prob (W, C)
    events (inference rule of training.predict_masks, windows laid end to end, absolute times)
    writer (one flushed line per video; error lines for videos that failed)

Memory does not grow with a video's length: a long video arrives as parts of a few windows
(:func:`lsld_engine.media.decode_parts`), each part is embedded and run through the HAN as it
comes, and only its small HAN outputs are kept until the video's last part closes its record.

Long videos are parsed as consecutive 10-s windows (each window is one HAN input, like an LLP
clip); their segment masks are laid end to end, so an event crossing a window boundary stays one
event, and times are absolute (see :mod:`lsld_engine.events`). Events past the true duration
(padding of the last window) are dropped or clipped.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from lsld_engine.decode_pool import DecodeFailure, decode_stream
from lsld_engine.embed import EmbeddedVideo, embed_groups
from lsld_engine.events import track_events
from lsld_engine.inputs import Skipped, VideoInput
from lsld_engine.llp import T
from lsld_engine.training import predict_masks
from lsld_engine.writers import error_record, ok_record

log = logging.getLogger(__name__)

#: Decimals kept for ``--save-probs`` probabilities (keeps lines short; far below model noise).
PROB_DECIMALS = 4


@dataclass
class Thresholds:
    """The inference rule: a segment is positive when its probability ``>= segment`` and the
    modality's (window-level) video probability ``>= video``."""

    segment: float = 0.5
    video: float = 0.5


@dataclass
class Summary:
    """What a run did: ``done`` ok videos (``windows`` 10-s windows), ``failed`` ``(video_id, error)``."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    windows: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    walk: Skipped | None = None  # what folder walks left out

    @property
    def videos_per_second(self) -> float:
        n = self.done + len(self.failed)
        return n / self.seconds if self.seconds > 0 else 0.0

    def format(self, what: str = "parsed", verbose: bool = False) -> str:
        """The run's summary lines; ``verbose`` also lists each odd entry a folder walk skipped."""
        lines = [f"{what} {self.done} videos ({self.windows} windows), failed {len(self.failed)}, "
                 f"skipped {self.skipped} already done, of {self.total} inputs, in {self.seconds:.1f} s "
                 f"({self.videos_per_second:.2f} videos/s)"]
        if self.walk is not None and self.walk.total:
            hint = "" if verbose or not self.walk.odd else " (--verbose lists them)"
            lines.append(self.walk.format() + hint)
            if verbose:
                lines += [f"  skipped: {path} ({reason})" for path, reason in self.walk.odd]
        for vid, err in self.failed[:20]:
            lines.append(f"  failed: {vid}: {err}")
        if len(self.failed) > 20:
            lines.append(f"  ... and {len(self.failed) - 20} more failures (see the error lines)")
        return "\n".join(lines)


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


def media_options(limits) -> dict:
    """``decode_stream`` keyword arguments for the duration / resolution caps (none: defaults)."""
    return {} if limits is None else {"limits": limits}


def _rounded(x: np.ndarray) -> list:
    return np.round(x.astype(np.float64), PROB_DECIMALS).tolist()


def parse_videos(inputs: Iterable[VideoInput], backend, writer, *, workers: int = 2, ordered: bool = False,
                 thresholds: Thresholds = Thresholds(), save_probs: bool = False, progress: bool = True,
                 total: int | None = None, max_frames: int | None = None, decode_timeout: float | None = None,
                 summary: Summary | None = None, decode_fn=None, limits=None) -> Summary:
    """Parse ``inputs`` with ``backend`` and ``writer.write`` one record per video as each completes.

    ``limits``: :class:`lsld_engine.media.MediaLimits` (duration / resolution caps; default caps
    when None). ``ordered``: records in input order (else completion order). ``workers``: decode processes
    (0 = in a thread of this process). ``max_frames``: CLIP frames per encode round (see
    :func:`lsld_engine.embed.embed_groups`). ``decode_fn``: the per-video decoder of the workers
    (default :func:`lsld_engine.media.decode_video`; :func:`lsld_engine.raw_media.decode_raw` /
    :func:`lsld_engine.nvdec.decode_nvdec` for device pixels, see docs/pixels.md). Returns (and fills ``summary``) the run's counts.
    """
    from lsld_engine.progress import progress_bar

    summary = summary or Summary()
    inputs = list(inputs)
    t0 = time.perf_counter()
    decoded = decode_stream(((i.path, i.video_id) for i in inputs), workers=workers, ordered=ordered,
                            timeout=decode_timeout, decode_fn=decode_fn, **media_options(limits))
    bar = progress_bar(total=total if total is not None else len(inputs), unit="video",
                       disable=not progress, dynamic_ncols=True, smoothing=0.1)
    partial: dict[str, list[dict[str, np.ndarray]]] = {}  # HAN outputs of the parts of open videos
    try:
        for group in embed_groups(decoded, backend, max_frames=max_frames):
            ok = [v for v in group if isinstance(v, EmbeddedVideo)]
            outputs = iter(run_han(backend, ok))
            for item in group:
                if isinstance(item, DecodeFailure):
                    partial.pop(item.video_id, None)  # parts of a video that failed later
                    log.warning("failed: %s", item.error)
                    writer.write(failure_record(item))
                    summary.failed.append((item.video_id, item.error))
                else:
                    parts = partial.setdefault(item.video_id, [])
                    parts.append(next(outputs))
                    if not item.final:
                        continue  # more parts of this video to come
                    del partial[item.video_id]
                    probs = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts])
                                                              for k in parts[0]}
                    writer.write(video_record(item, probs, thresholds, save_probs))
                    summary.done += 1
                    summary.windows += probs["seg_prob"].shape[0]
                bar.update(1)
            if summary.failed:
                bar.set_postfix(failed=len(summary.failed), refresh=False)
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - t0
    return summary
