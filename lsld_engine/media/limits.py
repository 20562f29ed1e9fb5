"""Media limits: :class:`MediaError` and the duration / picture-size caps a video file is checked against.

The caps (``--max-duration``, ``--max-resolution``) are checked on what a file declares before any
decoding (:func:`_check_declared`) and on every frame as it is decoded (:func:`_checked`); the
duration cap on the decoded timeline is enforced by :class:`lsld_engine.media.decode._WindowSink`.
"""
from __future__ import annotations

from dataclasses import dataclass

from lsld_engine.errors import LsldError


class MediaError(LsldError, RuntimeError):
    """A video that cannot be decoded; the message names the file and the problem."""


#: Default cap on a video's length (s): longer videos (or files that claim to be) are refused with
#: a :class:`MediaError` before any decoding. Memory does not grow with length (windows stream,
#: :func:`lsld_engine.media.decode_parts`); the cap bounds the time one file can take. ``--max-duration`` changes it.
MAX_DURATION_S: float = 4 * 3600.0
#: Default cap on the picture size (``W x H``, either orientation): one decoded 8K frame is ~100 MB
#: as RGB. ``--max-resolution`` changes it.
MAX_RESOLUTION: tuple[int, int] = (7680, 4320)


@dataclass(frozen=True)
class MediaLimits:
    """Caps checked while decoding: ``max_duration`` seconds, ``max_resolution`` ``(W, H)`` (a frame
    may be landscape or portrait: its long side is compared with the long cap, its short side with
    the short one)."""

    max_duration: float = MAX_DURATION_S
    max_resolution: tuple[int, int] = MAX_RESOLUTION

    def check_size(self, path: str, width: int, height: int) -> None:
        cap_long, cap_short = max(self.max_resolution), min(self.max_resolution)
        if max(width, height) > cap_long or min(width, height) > cap_short:
            raise MediaError(f"{path}: picture {width}x{height} is larger than the maximum resolution "
                             f"{self.max_resolution[0]}x{self.max_resolution[1]} (--max-resolution)")

    def check_duration(self, path: str, seconds: float, what: str = "lasts") -> None:
        if seconds > self.max_duration:
            raise MediaError(f"{path}: the video {what} {seconds:.0f} s, more than the maximum duration "
                             f"{self.max_duration:g} s (--max-duration)")


def parse_resolution(text: str) -> tuple[int, int]:
    """``"7680x4320"`` -> ``(7680, 4320)``; raises ``ValueError`` for anything else."""
    w, sep, h = text.lower().partition("x")
    if not sep or not w.strip().isdigit() or not h.strip().isdigit() or int(w) < 1 or int(h) < 1:
        raise ValueError(f"expected WIDTHxHEIGHT (e.g. 7680x4320), got {text!r}")
    return int(w), int(h)


def _declared_video_duration(stream) -> float | None:
    """The video stream's own declared duration (s), or None. Container durations are not used:
    they include the (often longer) audio."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _check_declared(container, stream, path: str, limits: MediaLimits) -> None:
    """Refuse a file whose declared picture size or duration is over ``limits``, before decoding."""
    cc = stream.codec_context
    if cc.width and cc.height:
        limits.check_size(path, cc.width, cc.height)
    declared = _declared_video_duration(stream)
    if declared is not None:
        limits.check_duration(path, declared, "declares")


def _checked(frame_fn, path: str, limits: MediaLimits):
    """``frame_fn`` that first checks each frame's size (a stream may change size mid-way)."""
    def fn(frame, rotation: int):
        w, h = getattr(frame, "width", None), getattr(frame, "height", None)
        if w is None and hasattr(frame, "shape"):  # an image array (e.g. after the JPEG round trip)
            h, w = frame.shape[:2]
        if w and h:
            limits.check_size(path, w, h)
        return frame_fn(frame, rotation)
    return fn
