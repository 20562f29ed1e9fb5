"""The one decode -> embed loop that ``parse`` and ``extract`` share, and the run :class:`Summary`.

::

    inputs -> decode (worker processes, lsld_engine.media.pool) -> embed (batched across videos,
    lsld_engine.parsing.embed) -> groups of EmbeddedVideo / DecodeFailure, in stream order -> the caller

The caller handles each group (runs the HAN and writes records, or writes feature files); this
loop counts what was done, logs failures and drives the progress bar.

Memory does not grow with a video's length: the default decoder streams a long video as parts of
a few windows (:func:`lsld_engine.media.parts.decode_parts`), so a group holds parts
(``first_window``, ``final``) of long videos; the caller keeps what it needs of a video's parts
(``parse``: its HAN outputs; ``extract``: its window ids) until the part with ``final`` closes it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from lsld_engine.parsing.embed import EmbeddedVideo, embed_groups
from lsld_engine.media.pool import DecodeFailure, closes_video, decode_stream
from lsld_engine.progress import progress_bar
from lsld_engine.parsing.video_inputs import Skipped, VideoInput

log = logging.getLogger(__name__)


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

    def count(self, item: EmbeddedVideo | DecodeFailure, windows: int | None = None) -> None:
        """Count one handled video (call it after the video's results are written); ``windows``:
        all of its windows (default ``item``'s, which for a streamed video is its last part only)."""
        if isinstance(item, DecodeFailure):
            self.failed.append((item.video_id, item.error))
        else:
            self.done += 1
            self.windows += item.num_windows if windows is None else windows

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


def embedded_groups(inputs: Iterable[VideoInput], backend, summary: Summary, *, workers: int = 2,
                    ordered: bool = False, progress: bool = True, total: int | None = None,
                    max_frames: int | None = None, decode_timeout: float | None = None,
                    decode_fn: Callable | None = None, limits=None) -> Iterator[list[EmbeddedVideo | DecodeFailure]]:
    """Decode ``inputs`` and embed them with ``backend``; yield groups of :class:`EmbeddedVideo` (frames
    ``(W, 80, D)``, audio ``(W, 10, D)``) and :class:`DecodeFailure`: one item per input, or, for a
    long video, one per part (the last with ``final``; a failure after some parts ends it).

    The caller counts each video into ``summary`` (:meth:`Summary.count`) once its results are written;
    this loop logs failures, drives the progress bar and sets ``summary.seconds`` when it ends (use it
    in ``contextlib.closing`` so that happens on an exception too).

    ``ordered``: groups in input order (else completion order); ``workers``: decode processes (0 = a
    thread of this process); ``max_frames``: CLIP frames per encode round
    (:func:`lsld_engine.parsing.embed.embed_groups`); ``decode_fn``: the workers' per-video decoder (default
    :func:`lsld_engine.media.parts.decode_parts`, streamed; :func:`lsld_engine.media.raw_planes.decode_raw` /
    :func:`lsld_engine.media.nvdec.decode_nvdec` for device pixels, see docs/pixels.md); ``limits``:
    :class:`lsld_engine.media.limits.MediaLimits` (duration / resolution caps; None: the defaults).
    """
    inputs = list(inputs)
    t0 = time.perf_counter()
    decoded = decode_stream(((i.path, i.video_id) for i in inputs), workers=workers, ordered=ordered,
                            timeout=decode_timeout, decode_fn=decode_fn,
                            **({} if limits is None else {"limits": limits}))
    bar = progress_bar(total=total if total is not None else len(inputs), unit="video",
                       disable=not progress, dynamic_ncols=True, smoothing=0.1)
    try:
        for group in embed_groups(decoded, backend, max_frames=max_frames):
            for item in group:
                if isinstance(item, DecodeFailure):
                    log.warning("failed: %s", item.error)
            yield group
            bar.update(sum(closes_video(item) for item in group))
            if summary.failed:
                bar.set_postfix(failed=len(summary.failed), refresh=False)
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - t0
