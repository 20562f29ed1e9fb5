"""Media decoding: any video file -> 8-fps CLIP frames and 48 kHz mono audio in 10-second windows (one shot).

The data contract (sample rate, frame rate, window length, image size) is named once in
:mod:`lsld_engine.contract` and re-exported here.

Two steps, kept apart so that the device pixel path (:mod:`lsld_engine.media.pixels`) can replace the second one:

1. ``decode_media(path)`` — demux + decode only: picks the frames to show (still as decoded
   ``av.VideoFrame`` objects, no colour conversion) and the audio as ``(W, 10, 48000)`` float32.
2. ``clip_pixels(frames)`` (:mod:`lsld_engine.media.cpu_pixels`) — the reference CPU preprocessing
   for CLIP.

``decode_video(path)`` runs both and returns a :class:`DecodedVideo` holding the whole video;
:func:`lsld_engine.media.parts.decode_parts` streams it in parts with the same frame selection
(``_select_frames`` and ``_WindowSink`` below serve both). Both refuse a video over
:class:`MediaLimits` (duration, picture size; :mod:`lsld_engine.media.limits`) with a :class:`MediaError`.

Frame rule (:mod:`lsld_engine.media.frame_rule`, ``frame_rule=``): ``"official"`` (default) picks what
the official LSLD scripts pick (``ffmpeg -r 8`` images from the file's start time, then
``round(linspace(0, N - 1, 80))``), computed from the decoded frames' timestamps; ``"hold"``
shows at output frame ``k`` of window ``w`` the frame on screen at ``t = 10 w + k / 8`` s after the
first video frame (the last frame whose pts is ``<= t + 1e-4`` s; padding repeats the last frame).

Audio: :mod:`lsld_engine.media.audio`. Ids and window counts: :mod:`lsld_engine.media.windows`.
"""
from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path

import numpy as np

from lsld_engine.contract import (FPS, FRAMES_PER_WINDOW, IMAGE_SIZE, SAMPLE_RATE,  # noqa: F401 - the contract,
                                  SAMPLES_PER_SEGMENT, SEGMENTS_PER_WINDOW, WINDOW_SECONDS)  # re-exported
from lsld_engine.media.audio import _decode_audio
from lsld_engine.media.cpu_pixels import _clip_frame
from lsld_engine.media.frame_rule import DEFAULT_FRAME_RULE
from lsld_engine.media.limits import MediaError, MediaLimits, _check_declared, _checked, _declared_video_duration
from lsld_engine.media.windows import (WINDOW_TOLERANCE_SECONDS, DecodedMedia, DecodedVideo, num_windows_for,
                                       video_id_of)

#: Tolerance when comparing a frame's presentation time with a wanted time (s); far below any
#: real frame interval, above float rounding of pts * time_base.
TIME_EPS: float = 1e-4


def _open(path: str, hwaccel=None):
    import av

    try:
        if hwaccel is not None:
            return av.open(path, metadata_errors="ignore", hwaccel=hwaccel)
        return av.open(path, metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise MediaError(f"{path}: cannot open as media ({type(e).__name__}: {e})") from e


def _select_frames(container, stream, path: str, max_windows: int | None, frame_fn, frame_rule: str,
                   roundtrip=None, conv=None):
    """Decode and pick the frame shown by each of the ``W * 80`` output frames (``frame_rule``).

    Returns ``(chosen, t0, duration, windows, rotation, grid)``; ``chosen`` holds ``frame_fn(frame,
    rotation)`` for all ``W * 80`` outputs (the same object repeated where one source frame fills
    several), ``grid`` the source frame numbers (decode order) of the rule's grid
    (:mod:`lsld_engine.media.frame_rule`). ``frame_fn`` runs once per distinct grid frame, as soon as the
    rule puts it on the grid, so decoded frames are not all kept in memory. ``roundtrip`` (a
    :class:`lsld_engine.media.jpeg_roundtrip.JpegRoundTrip`) re-codes every grid entry, in grid order,
    before ``frame_fn``. ``hold`` stops decoding once the last wanted time is resolved when the
    stream declares its duration; ``official`` decodes to the end (the last window's pick depends
    on how many grid frames the end adds) unless ``max_windows`` cuts the video short.
    """
    import av

    from lsld_engine.media import frame_rule as fr_rule

    declared = _declared_video_duration(stream)
    limit_w = None if declared is None else num_windows_for(declared)
    if max_windows is not None:
        limit_w = max_windows if limit_w is None else min(limit_w, max_windows)
    limit = (limit_w or 1 << 40) * FRAMES_PER_WINDOW
    rate = stream.average_rate or stream.guessed_rate
    step = 1 / float(rate) if rate else 1 / FPS
    tb = stream.time_base or Fraction(1, 90000)
    hold = fr_rule.check_rule(frame_rule) == "hold"
    flags = getattr(container.format, "flags", 0)  # the demuxer's AVFMT_* flags
    flags = flags if isinstance(flags, int) else 0
    if hold:
        grid_rule = fr_rule.HoldGrid(limit, TIME_EPS, FPS)
    else:
        grid_rule = fr_rule.CfrGrid(tb, fr_rule.grid_start_us(container.start_time, stream.start_time, tb, flags),
                                    len(container.streams) == 1, FPS)
    durations = fr_rule.FrameClock(tb, getattr(stream.codec_context, "framerate", None), stream.guessed_rate, flags)

    conv = [] if conv is None else conv  # converted object per grid entry (a _WindowSink streams them)
    grid: list[int] = []
    memo = (-1, None)  # (source number, converted) of the last converted source frame
    i = -1
    prev = fr = None  # previous and current decoded frame
    prev_t = 0.0  # previous frame's time relative to t0
    t0 = None
    last_end = 0.0
    rotation = 0
    stopped_early = False

    def put(sources):
        nonlocal memo
        for src in sources:
            frame = fr if src == i else prev
            if roundtrip is not None:  # each grid entry is its own JPEG (rate control sees them all)
                conv.append(frame_fn(roundtrip(frame, rotation), 0))  # turned before coding, as ffmpeg
            else:
                if memo[0] != src:
                    memo = (src, frame_fn(frame, rotation))
                conv.append(memo[1])
            grid.append(src)

    try:
        for fr in container.decode(stream):
            i += 1
            t = fr.time
            if t is None:  # no timestamps: assume the nominal rate
                t = 0.0 if t0 is None else t0 + prev_t + step
            if t0 is None:
                t0 = t
                if isinstance(conv, _WindowSink):  # a streamed part's audio starts at t0 (no second open)
                    conv.t0 = t0
                rotation = int(round((fr.rotation or 0) / 90.0)) * 90 % 360
            rel = t - t0
            if prev is not None and rel <= prev_t:  # non-increasing pts (broken stream): keep decode order
                rel = prev_t + 1e-6
            if hold:
                put(grid_rule.push(rel))
            else:
                put(grid_rule.push(*durations(fr.pts, fr.duration)))
            prev, prev_t = fr, rel
            last_end = rel + (float(fr.duration * fr.time_base) if fr.duration and fr.time_base else 0.0)
            if hold and len(grid) >= limit or not hold and max_windows is not None and \
                    len(grid) >= max_windows * FRAMES_PER_WINDOW and \
                    rel > max_windows * WINDOW_SECONDS + WINDOW_TOLERANCE_SECONDS:
                stopped_early = True
                break
    except av.error.FFmpegError as e:
        raise MediaError(f"{path}: video decoding failed ({type(e).__name__}: {e})") from e
    if prev is None:
        raise MediaError(f"{path}: the video stream has no decodable frames")
    if not stopped_early:
        fr = prev
        put(grid_rule.finish())
    if not grid:  # every frame dropped by the rate conversion (cannot happen with real pts)
        put([i])

    if stopped_early:  # the stream's end was not seen: trust its declared duration
        duration = declared
        if duration is None:  # only max_windows stopped us: the container's (includes audio)
            duration = container.duration / 1e6 if container.duration else last_end
    else:
        duration = last_end if last_end > prev_t else prev_t + step
    w_all = num_windows_for(duration)
    if stopped_early and not hold:  # only max_windows stops it early: the video has more windows
        w_all = max(w_all, max_windows + 1)
    w = w_all if max_windows is None else min(w_all, max_windows)
    # the picks of the video's own windows (the last window's differs), cut to the decoded ones
    positions = fr_rule.picks(frame_rule, len(grid), w_all, FRAMES_PER_WINDOW)[: w * FRAMES_PER_WINDOW]
    # a streaming sink has handed out its first windows already (middle windows: identity picks)
    chosen = [conv[p] for p in positions[getattr(conv, "offset", 0):]]
    return chosen, t0, float(duration), w, rotation, np.asarray(grid, np.int64)


class _WindowSink:
    """Where :func:`_select_frames` puts its grid entries (list-like: ``append``, ``len``, ``[i]``).

    Enforces the duration cap as entries come (a file whose timestamps jump an hour ahead stops
    here, after ``max_duration`` seconds of frames, not after filling memory), and with ``emit``
    hands out every ``per_part`` windows as soon as they are surely *middle* windows (a window and
    a second more of grid follow them, so the video goes on past them: a middle window's picks
    are its own 80 grid entries, for both frame rules; :func:`lsld_engine.media.frame_rule.
    window_positions`), keeping only the current part in memory. ``cap_windows``: never hand out
    a window at or past it (``max_windows``).
    """

    def __init__(self, path: str, limits: "MediaLimits", per_part: int = 0, emit=None,
                 cap_windows: int | None = None):
        self.path, self.limits, self.emit, self.cap = path, limits, emit, cap_windows
        self.per = max(1, per_part) * FRAMES_PER_WINDOW
        self.items: list = []
        self.offset = 0  # grid entries already handed out
        self.t0: float | None = None  # the first frame's time, set by _select_frames when decoded
        # the cap, plus one window of padding (a video just under the cap pads its last window)
        self.max_frames = int(limits.max_duration * FPS) + FRAMES_PER_WINDOW

    def __len__(self) -> int:
        return self.offset + len(self.items)

    def append(self, item) -> None:
        if self.offset + len(self.items) >= self.max_frames:
            self.limits.check_duration(self.path, len(self) / FPS + 1, "runs past")
        self.items.append(item)
        if self.emit is not None and len(self.items) > self.per + FRAMES_PER_WINDOW + FPS:
            first = self.offset // FRAMES_PER_WINDOW
            if self.cap is not None and first + self.per // FRAMES_PER_WINDOW > self.cap:
                return
            part, self.items = self.items[: self.per], self.items[self.per:]
            self.offset += len(part)
            self.emit(part, first)

    def __getitem__(self, i: int):
        if i < self.offset:  # cannot happen: the frame rule changed a window already handed out
            raise RuntimeError(f"{self.path}: frame {i} was picked after its window was streamed")
        return self.items[i - self.offset]


def _raw_frame(frame, rotation: int):
    return frame


@contextlib.contextmanager
def open_video(path: str, limits: MediaLimits, threads: int = 0, hwaccel=None, skip_nonref: bool = False):
    """``(container, video stream)`` of ``path``, opened with the checks every decode starts with:
    the file exists, has a video stream, and declares no size or duration over ``limits``; the
    stream is set up to decode with ``threads`` (0 = FFmpeg's choice) and ``skip_nonref``."""
    if not Path(path).is_file():
        raise MediaError(f"{path}: no such file")
    with (_open(path) if hwaccel is None else _open(path, hwaccel)) as c:
        if not c.streams.video:
            raise MediaError(f"{path}: no video stream (streams: {[s.type for s in c.streams]})")
        vs = c.streams.video[0]
        _check_declared(c, vs, path, limits)
        vs.thread_type = "AUTO"
        vs.thread_count = threads
        if skip_nonref:
            vs.codec_context.skip_frame = "NONREF"
        yield c, vs


def jpeg_roundtrip_for(enabled: bool):
    """The official scripts' JPEG round trip (:class:`lsld_engine.media.jpeg_roundtrip.JpegRoundTrip`) when ``enabled``."""
    if not enabled:
        return None
    from lsld_engine.media.jpeg_roundtrip import JpegRoundTrip

    return JpegRoundTrip(FPS)


def decode_media(path: str | Path, video_id: str | None = None, *, max_windows: int | None = None,
                 audio: bool = True, threads: int = 0, frame_fn=_raw_frame,
                 skip_nonref: bool = False, hwaccel=None, frame_rule: str = DEFAULT_FRAME_RULE,
                 jpeg_roundtrip: bool = False, limits: MediaLimits | None = None) -> DecodedMedia:
    """Decode step: choose the ``W * 80`` frames to show, and decode the audio.

    ``frame_rule``: ``"official"`` (the official LSLD scripts' ``ffmpeg -r 8`` + linspace pick)
    or ``"hold"`` (sample and hold at ``k / 8`` s), see :mod:`lsld_engine.media.frame_rule`.
    ``jpeg_roundtrip``: code every grid frame as the official scripts' JPEG file and decode it
    back before ``frame_fn`` (:mod:`lsld_engine.media.jpeg_roundtrip`; ``frame_fn`` then gets RGB frames).

    ``frame_fn(frame, rotation)`` is applied once per distinct grid frame (``av.VideoFrame``) as
    soon as the rule puts it on its grid (default: keep the decoded frame, pixels untouched in FFmpeg's format; a GPU
    path can copy raw planes here instead). ``max_windows`` caps the windows decoded (decoding
    stops early); ``threads`` is the decoder's thread count (0 = FFmpeg's choice).
    ``skip_nonref``: let the decoder drop non-reference frames (``skip_frame = "NONREF"``): less
    decoding, but a wanted time that falls on a dropped frame shows the previous decoded frame
    (see docs/pixels.md for the measured saving and timing error). Off by default.
    ``hwaccel``: an ``av.codec.hwaccel.HWAccel`` for the video (NVDEC, :mod:`lsld_engine.media.nvdec`).
    ``limits``: the duration and resolution caps (default :class:`MediaLimits`). The whole video is
    held (``W * 80`` chosen frames); :func:`lsld_engine.media.parts.decode_parts` streams it instead.
    Raises :class:`MediaError` naming the file.
    """
    path = str(path)
    video_id = video_id or video_id_of(path)
    limits = limits or MediaLimits()
    with open_video(path, limits, threads, hwaccel, skip_nonref) as (c, vs):
        roundtrip = jpeg_roundtrip_for(jpeg_roundtrip)
        frames, t0, duration, w, rotation, grid = _select_frames(c, vs, path, max_windows,
                                                                 _checked(frame_fn, path, limits), frame_rule,
                                                                 roundtrip, _WindowSink(path, limits))
    has_audio = False
    pcm = np.zeros((w, SEGMENTS_PER_WINDOW, SAMPLES_PER_SEGMENT), np.float32)
    if audio:
        with _open(path) as c:
            if c.streams.audio:
                has_audio = True
                pcm = _decode_audio(c, c.streams.audio[0], path, t0, w)
    return DecodedMedia(path, video_id, duration, has_audio, w, frames, pcm, rotation, grid)


def decode_video(path: str | Path, video_id: str | None = None, *, max_windows: int | None = None,
                 audio: bool = True, threads: int = 0, frame_rule: str = DEFAULT_FRAME_RULE,
                 jpeg_roundtrip: bool = False, limits: MediaLimits | None = None) -> DecodedVideo:
    """Decode a video file into CLIP frames ``(W, 80, 224, 224, 3)`` uint8 and audio ``(W, 10, 48000)``.

    Pixels are converted as frames are chosen (``decode_media`` with the reference pixel step),
    so memory stays at the size of the output. ``frame_rule`` / ``jpeg_roundtrip``: see
    :func:`decode_media`; ``limits``: the duration / resolution caps (default :class:`MediaLimits`).
    Raises :class:`MediaError` for missing, corrupt, video-less or over-limit files.
    """
    m = decode_media(path, video_id, max_windows=max_windows, audio=audio, threads=threads,
                     frame_fn=_clip_frame, frame_rule=frame_rule, jpeg_roundtrip=jpeg_roundtrip, limits=limits)
    frames = np.stack(m.frames).reshape(m.num_windows, FRAMES_PER_WINDOW, IMAGE_SIZE, IMAGE_SIZE, 3)
    return DecodedVideo(m.path, m.video_id, m.duration, m.has_audio, frames, m.audio)
