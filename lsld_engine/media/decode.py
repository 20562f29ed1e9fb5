"""Media decoding: any video file -> 8-fps CLIP frames and 48 kHz mono audio in 10-second windows.

The data contract (sample rate, frame rate, window length, image size) is named once in
:mod:`lsld_engine.contract` and re-exported here.

Two steps, kept apart so that the device pixel path (:mod:`lsld_engine.media.pixels`) can replace the second one:

1. ``decode_media(path)`` — demux + decode only: picks the frames to show (still as decoded
   ``av.VideoFrame`` objects, no colour conversion) and the audio as ``(W, 10, 48000)`` float32.
2. ``clip_pixels(frames)`` — the reference CPU preprocessing for CLIP: RGB (FFmpeg swscale),
   display rotation, shortest side to 224 with PIL bicubic, centre crop 224, ``uint8``.
   CLIP's mean/std normalisation is *not* done here: it is the image encoder's job.

``decode_video(path)`` runs both and returns a :class:`DecodedVideo`. ``decode_parts(path, emit=...)``
does the same as a stream: every few complete windows go out as a :class:`DecodedPart` as soon as
they are chosen, so memory does not grow with the video's length (what ``parse`` and ``extract``
use). Both refuse a video over :class:`MediaLimits` (duration, picture size) with a :class:`MediaError`.

Frame rule (:mod:`lsld_engine.media.frame_rule`, ``frame_rule=``): ``"official"`` (default) picks what
the official LSLD scripts pick (``ffmpeg -r 8`` images from the file's start time, then
``round(linspace(0, N - 1, 80))``), computed from the decoded frames' timestamps; ``"hold"``
shows at output frame ``k`` of window ``w`` the frame on screen at ``t = 10 w + k / 8`` s after the
first video frame (the last frame whose pts is ``<= t + 1e-4`` s; padding repeats the last frame).

Audio: resampled by FFmpeg (``AudioResampler``, fltp, 48 kHz, channel layout kept), then the
channels are *averaged* here (FFmpeg's own downmix to mono is a sum scaled by 1/sqrt(2)). It is
aligned to the video's time origin by the pts of its first frame, then trimmed / zero-padded to
exactly ``W * 10 * 48000`` samples (AAC priming and trailing padding make audio a little longer).

Ids: ``video_id`` is the file stem. A video of ``W`` windows yields ``window_ids(video_id, W)``:
the plain stem when ``W == 1`` (so LLP's 10-s clips keep LLP's ``filename``), otherwise
``<stem>@<start_s>`` with ``start_s`` = 0, 10, 20, ...
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from lsld_engine.contract import (FPS, FRAMES_PER_WINDOW, IMAGE_SIZE, SAMPLE_RATE,  # noqa: F401 - the contract,
                                  SAMPLES_PER_SEGMENT, SEGMENTS_PER_WINDOW, WINDOW_SECONDS)  # re-exported
from lsld_engine.errors import LsldError
from lsld_engine.media.frame_rule import DEFAULT_FRAME_RULE

#: Tolerance when comparing a frame's presentation time with a wanted time (s); far below any
#: real frame interval, above float rounding of pts * time_base.
TIME_EPS: float = 1e-4


class MediaError(LsldError, RuntimeError):
    """A video that cannot be decoded; the message names the file and the problem."""


#: Default cap on a video's length (s): longer videos (or files that claim to be) are refused with
#: a :class:`MediaError` before any decoding. Memory does not grow with length (windows stream,
#: :func:`decode_parts`); the cap bounds the time one file can take. ``--max-duration`` changes it.
MAX_DURATION_S: float = 4 * 3600.0
#: Default cap on the picture size (``W x H``, either orientation): one decoded 8K frame is ~100 MB
#: as RGB. ``--max-resolution`` changes it.
MAX_RESOLUTION: tuple[int, int] = (7680, 4320)
#: Windows per part when a video is decoded as a stream of parts (:func:`decode_parts`): 3 windows
#: of frames are ~36 MB of ``uint8`` crops, whatever the video's length.
WINDOWS_PER_PART: int = 3


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


@dataclass
class DecodedMedia:
    """Output of the decode step (no pixel work done yet).

    ``frames``: ``W * 80`` items in window order, ``frame_fn(av.VideoFrame, rotation)`` of each
    chosen frame (by default the decoded frame itself); the same object repeats where one source
    frame covers several wanted times, and for padding.
    ``audio``: ``(W, 10, 48000)`` float32 mono.
    ``rotation``: counter-clockwise degrees (multiple of 90) to apply for display.
    ``grid``: ``(N,)`` int64 source frame numbers (decode order) of the frame rule's grid, e.g. the
    ``N`` images of ``ffmpeg -r 8`` for ``official`` (:mod:`lsld_engine.media.frame_rule`).
    """

    path: str
    video_id: str
    duration: float
    has_audio: bool
    num_windows: int
    frames: list
    audio: np.ndarray
    rotation: int = 0
    grid: np.ndarray | None = None


class Windowed:
    """Shared by per-video results whose ``frames`` array leads with the window axis ``W``."""

    video_id: str
    frames: np.ndarray

    @property
    def num_windows(self) -> int:
        return int(self.frames.shape[0])

    @property
    def window_ids(self) -> list[str]:
        """Entry ids of these windows (a part of a streamed video: :func:`part_window_ids`)."""
        return part_window_ids(self.video_id, getattr(self, "first_window", 0), self.num_windows,
                               getattr(self, "final", True))


@dataclass
class DecodedVideo(Windowed):
    """A decoded video ready for the encoders.

    ``frames``: ``(W, 80, 224, 224, 3)`` uint8 RGB, not normalised.
    ``audio``: ``(W, 10, 48000)`` float32 mono in [-1, 1] (zeros when ``has_audio`` is False).
    ``duration``: true length of the video stream in seconds (before padding).
    """

    path: str
    video_id: str
    duration: float
    has_audio: bool
    frames: np.ndarray
    audio: np.ndarray


@dataclass
class DecodedPart(DecodedVideo):
    """A run of consecutive windows of a video decoded as a stream (:func:`decode_parts`).

    ``frames`` / ``audio`` as in :class:`DecodedVideo` for this part's windows only;
    ``first_window``: index of its first window in the video; ``final``: the video's last part,
    the only one whose ``duration`` is the true length (earlier parts carry the time decoded so far).
    """

    first_window: int = 0
    final: bool = True


def part_window_ids(video_id: str, first_window: int, num_windows: int, final: bool) -> list[str]:
    """Entry ids of windows ``first_window ..`` of a video: :func:`window_ids` when the part is the
    whole video, else always ``video_id@<start_s>`` (a video with several parts has several windows)."""
    if first_window == 0 and final:
        return window_ids(video_id, num_windows)
    return [f"{video_id}@{(first_window + w) * WINDOW_SECONDS}" for w in range(num_windows)]


def video_id_of(path: str | Path) -> str:
    """The id of a video file: its stem (LLP's ``filename`` for ``<filename>.mp4``)."""
    return Path(path).stem


def window_ids(video_id: str, num_windows: int) -> list[str]:
    """Entry ids of a video's windows: ``[video_id]`` for one window, else ``video_id@0``, ``@10``, ..."""
    if num_windows == 1:
        return [video_id]
    return [f"{video_id}@{w * WINDOW_SECONDS}" for w in range(num_windows)]


#: A trailing part shorter than this does not open a window of its own: clips cut from longer
#: videos often run a frame or two past 10 s, and a second, all-padding window would cost a HAN
#: pass and give stray events.
WINDOW_TOLERANCE_SECONDS = 0.1


def num_windows_for(duration: float) -> int:
    """Windows covering ``duration`` seconds (at least one; a partial last window counts when it is
    longer than :data:`WINDOW_TOLERANCE_SECONDS`)."""
    return max(1, math.ceil((duration - WINDOW_TOLERANCE_SECONDS) / WINDOW_SECONDS))


def _open(path: str, hwaccel=None):
    import av

    try:
        if hwaccel is not None:
            return av.open(path, metadata_errors="ignore", hwaccel=hwaccel)
        return av.open(path, metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise MediaError(f"{path}: cannot open as media ({type(e).__name__}: {e})") from e


def _declared_video_duration(stream) -> float | None:
    """The video stream's own declared duration (s), or None. Container durations are not used:
    they include the (often longer) audio."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


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


def _decode_audio(container, stream, path: str, t0: float, num_windows: int) -> np.ndarray:
    """``(num_windows, 10, 48000)`` float32 mono, aligned to the video time origin ``t0``."""
    need = num_windows * WINDOW_SECONDS * SAMPLE_RATE
    return _AudioReader(container, stream, path, t0).take(need).reshape(
        num_windows, SEGMENTS_PER_WINDOW, SAMPLES_PER_SEGMENT)


class _AudioReader:
    """A video's audio decoded on demand: :meth:`take` ``(n)`` gives the next ``n`` mono samples.

    Resampled by FFmpeg to 48 kHz (channel layout kept), channels averaged, aligned to the video's
    time origin ``t0`` (leading silence added or early samples dropped), zero-padded past the end.
    Only what has been decoded and not yet taken is held, so a stream of parts of a long video
    never holds its whole audio.
    """

    def __init__(self, container, stream, path: str, t0: float):
        self.container, self.stream, self.path, self.t0 = container, stream, path, t0
        self._frames = None  # the decode iterator, started on the first take
        self._resampler = None
        self._drop = 0  # samples before the video's time origin still to discard
        self._chunks: list[np.ndarray] = []
        self._have = 0
        self._ended = False

    def _push(self, x: np.ndarray) -> None:
        if self._drop:
            cut = min(self._drop, x.size)
            x, self._drop = x[cut:], self._drop - cut
        if x.size:
            self._chunks.append(x)
            self._have += x.size

    def _fill(self, n: int) -> None:
        import av

        if self._frames is None:
            self._frames = iter(self.container.decode(self.stream))
        try:
            while self._have < n and not self._ended:
                fr = next(self._frames, None)
                if fr is None:
                    self._ended = True
                    if self._resampler is not None:
                        for out in self._resampler.resample(None):
                            if out.samples:
                                self._chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
                                self._have += out.samples
                    break
                if self._resampler is None:
                    start = fr.time if fr.time is not None else self.t0
                    # keep the channel layout: averaging is done here (FFmpeg's downmix is not a mean)
                    self._resampler = av.AudioResampler(format="fltp", layout=fr.layout.name, rate=SAMPLE_RATE)
                    skip = int(round((start - self.t0) * SAMPLE_RATE))
                    if skip > 0:  # audio starts after the first video frame: lead with silence
                        self._push(np.zeros(skip, np.float32))
                    self._drop = max(0, -skip)
                for out in self._resampler.resample(fr):
                    if out.samples:
                        self._push(out.to_ndarray().mean(axis=0, dtype=np.float32))
        except av.error.FFmpegError as e:
            raise MediaError(f"{self.path}: audio decoding failed ({type(e).__name__}: {e})") from e

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` samples ``(n,)`` float32 (zeros past the end of the stream)."""
        self._fill(n)
        out = np.zeros(n, np.float32)
        got = 0
        while self._chunks and got < n:
            c = self._chunks[0]
            k = min(c.size, n - got)
            out[got:got + k] = c[:k]
            got += k
            if k == c.size:
                self._chunks.pop(0)
            else:
                self._chunks[0] = c[k:]
        self._have -= got
        return out


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
    held (``W * 80`` chosen frames); :func:`decode_parts` streams it instead.
    Raises :class:`MediaError` naming the file.
    """
    path = str(path)
    video_id = video_id or video_id_of(path)
    if not Path(path).is_file():
        raise MediaError(f"{path}: no such file")
    with (_open(path) if hwaccel is None else _open(path, hwaccel)) as c:
        if not c.streams.video:
            raise MediaError(f"{path}: no video stream (streams: {[s.type for s in c.streams]})")
        vs = c.streams.video[0]
        limits = limits or MediaLimits()
        _check_declared(c, vs, path, limits)
        vs.thread_type = "AUTO"
        vs.thread_count = threads
        if skip_nonref:
            vs.codec_context.skip_frame = "NONREF"
        roundtrip = None
        if jpeg_roundtrip:
            from lsld_engine.media.jpeg_roundtrip import JpegRoundTrip

            roundtrip = JpegRoundTrip(FPS)
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


def clip_size(width: int, height: int, size: int = IMAGE_SIZE) -> tuple[int, int]:
    """``(new_w, new_h)`` of torchvision's ``Resize(size)`` (shortest side to ``size``, long side
    truncated), which open_clip's ViT-B-16 transform uses."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def rgb_frame(frame, rotation: int = 0) -> np.ndarray:
    """One decoded frame as ``(H, W, 3)`` uint8 RGB, display rotation applied (counter-clockwise)."""
    img = frame.to_ndarray(format="rgb24")
    if rotation:
        img = np.rot90(img, k=rotation // 90)
    return img


def clip_crop(img: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(size, size, 3)``: PIL bicubic shortest side, centre crop (as open_clip)."""
    from PIL import Image

    h, w = img.shape[:2]
    nw, nh = clip_size(w, h, size)
    pil = Image.fromarray(np.ascontiguousarray(img))
    if (nw, nh) != (w, h):
        pil = pil.resize((nw, nh), Image.BICUBIC)
    out = np.asarray(pil)
    # torchvision CenterCrop rounding (Python's round, half to even)
    top = int(round((nh - size) / 2.0))
    left = int(round((nw - size) / 2.0))
    return out[top: top + size, left: left + size]


def clip_pixels(frames: Sequence, rotation: int = 0, size: int = IMAGE_SIZE,
                out: np.ndarray | None = None) -> np.ndarray:
    """Pixel step (CPU reference): ``N`` decoded frames -> ``(N, size, size, 3)`` uint8 RGB.

    A frame object repeated in ``frames`` is converted once. ``out`` may be a preallocated array
    (e.g. in shared memory) to write into.
    """
    if out is None:
        out = np.empty((len(frames), size, size, 3), np.uint8)
    done: dict[int, int] = {}
    for i, fr in enumerate(frames):
        j = done.get(id(fr))
        if j is not None:
            out[i] = out[j]
            continue
        out[i] = clip_crop(rgb_frame(fr, rotation), size)
        done[id(fr)] = i
    return out


def _clip_frame(frame, rotation: int) -> np.ndarray:
    return clip_crop(rgb_frame(frame, rotation))


def decode_video(path: str | Path, video_id: str | None = None, *, max_windows: int | None = None,
                 audio: bool = True, threads: int = 0, frame_rule: str = DEFAULT_FRAME_RULE,
                 jpeg_roundtrip: bool = False) -> DecodedVideo:
    """Decode a video file into CLIP frames ``(W, 80, 224, 224, 3)`` uint8 and audio ``(W, 10, 48000)``.

    Pixels are converted as frames are chosen (``decode_media`` with the reference pixel step),
    so memory stays at the size of the output. ``frame_rule`` / ``jpeg_roundtrip``: see
    :func:`decode_media`. Raises :class:`MediaError` for missing, corrupt or video-less files.
    """
    m = decode_media(path, video_id, max_windows=max_windows, audio=audio, threads=threads,
                     frame_fn=_clip_frame, frame_rule=frame_rule, jpeg_roundtrip=jpeg_roundtrip)
    frames = np.stack(m.frames).reshape(m.num_windows, FRAMES_PER_WINDOW, IMAGE_SIZE, IMAGE_SIZE, 3)
    return DecodedVideo(m.path, m.video_id, m.duration, m.has_audio, frames, m.audio)


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


def _first_frame_time(path: str) -> float:
    """The time of a file's first decoded video frame (the video time origin ``t0``; 0 without pts)."""
    with _open(path) as c:
        for fr in c.decode(c.streams.video[0]):
            return fr.time if fr.time is not None else 0.0
    return 0.0


def decode_parts(path: str | Path, video_id: str | None = None, *, emit=None,
                 windows_per_part: int = WINDOWS_PER_PART, max_windows: int | None = None, audio: bool = True,
                 threads: int = 0, limits: MediaLimits | None = None, frame_rule: str = DEFAULT_FRAME_RULE,
                 jpeg_roundtrip: bool = False) -> DecodedPart:
    """:func:`decode_video` as a stream: memory does not grow with the video's length.

    Every ``windows_per_part`` complete windows become a :class:`DecodedPart` (frames ``(K, 80,
    224, 224, 3)`` uint8, audio ``(K, 10, 48000)`` float32, its own audio decoded alongside) handed
    to ``emit(part)`` as soon as they are chosen; the last part (with the true duration, ``final``)
    is returned. Frames and audio are exactly those of :func:`decode_video`. ``emit=None``: one
    part holding the whole video. ``limits``: duration and resolution caps (:class:`MediaLimits`);
    ``frame_rule`` / ``jpeg_roundtrip``: see :func:`decode_media`. Raises :class:`MediaError` naming the file (also after some parts were emitted).
    """
    path = str(path)
    video_id = video_id or video_id_of(path)
    limits = limits or MediaLimits()
    if not Path(path).is_file():
        raise MediaError(f"{path}: no such file")
    state: dict = {"t0": None, "reader": None}

    with _open(path) as c, (_open(path) if audio else contextlib.nullcontext()) as ca:
        if not c.streams.video:
            raise MediaError(f"{path}: no video stream (streams: {[s.type for s in c.streams]})")
        vs = c.streams.video[0]
        _check_declared(c, vs, path, limits)
        vs.thread_type = "AUTO"
        vs.thread_count = threads
        has_audio = bool(audio and ca.streams.audio)

        def audio_for(num_windows: int) -> np.ndarray:
            if not has_audio:
                return np.zeros((num_windows, SEGMENTS_PER_WINDOW, SAMPLES_PER_SEGMENT), np.float32)
            if state["reader"] is None:
                if state["t0"] is None:  # a part goes out before the decode returns its t0
                    state["t0"] = _first_frame_time(path)
                state["reader"] = _AudioReader(ca, ca.streams.audio[0], path, state["t0"])
            pcm = state["reader"].take(num_windows * WINDOW_SECONDS * SAMPLE_RATE)
            return pcm.reshape(num_windows, SEGMENTS_PER_WINDOW, SAMPLES_PER_SEGMENT)

        def part(frames: list, first: int, duration: float, final: bool) -> DecodedPart:
            w = len(frames) // FRAMES_PER_WINDOW
            pix = np.stack(frames).reshape(w, FRAMES_PER_WINDOW, IMAGE_SIZE, IMAGE_SIZE, 3)
            return DecodedPart(path, video_id, duration, has_audio, pix, audio_for(w), first, final)

        def on_part(frames: list, first: int) -> None:
            emit(part(frames, first, (first + len(frames) // FRAMES_PER_WINDOW) * WINDOW_SECONDS, False))

        roundtrip = None
        if jpeg_roundtrip:
            from lsld_engine.media.jpeg_roundtrip import JpegRoundTrip

            roundtrip = JpegRoundTrip(FPS)
        sink = _WindowSink(path, limits, windows_per_part, on_part if emit is not None else None, max_windows)
        frames, t0, duration, w, _, _ = _select_frames(c, vs, path, max_windows, _checked(_clip_frame, path, limits),
                                                       frame_rule, roundtrip, sink)
        state["t0"] = t0 if state["t0"] is None else state["t0"]
        first = sink.offset // FRAMES_PER_WINDOW
        if not frames:  # the video ended on a part boundary: an empty last part carries the duration
            return DecodedPart(path, video_id, float(duration), has_audio,
                               np.zeros((0, FRAMES_PER_WINDOW, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8),
                               np.zeros((0, SEGMENTS_PER_WINDOW, SAMPLES_PER_SEGMENT), np.float32), first, True)
        return part(frames, first, float(duration), True)

