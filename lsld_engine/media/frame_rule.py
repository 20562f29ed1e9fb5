"""Frame rule: which decoded frames become the 80 CLIP frames of each 10-s window (``hold`` or ``official``).

Two rules, both pure functions of the decoded frames' timestamps (no pixels, no files), fed one
frame at a time so a decoder can stream windows and convert only the frames that are chosen:

``"official"`` (the default) — what the official LSLD scripts give, frame for frame:
``ffmpeg -i VIDEO -r 8 %06d.jpg`` writes ``N`` images (usually 81 or 82 for a 10-s clip), then
``np.round(np.linspace(0, N - 1, 80))`` picks 80 of them. :class:`CfrGrid` reproduces the first
step: FFmpeg's constant-frame-rate output timing (``-vsync cfr``, chosen by ``ffmpeg`` for the
``image2`` muxer) from the frames' pts, the file's start time and the frames' durations — which
input frame each output frame ``0, 1, 2, ...`` repeats. :func:`picks` does the second step per
window.

``"hold"`` — sample and hold: output frame ``k`` of window ``w`` shows the frame on screen at
``t = 10 w + k / 8`` s after the first video frame (the last frame with pts ``<= t + 1e-4`` s).
It is the rule of a player, exact in time; it is not what the official checkpoint was trained on.

Per window (videos longer than one window): the ``-r 8`` grid runs over the whole video from its
start time; window ``w`` owns grid frames ``80 w .. 80 w + 79`` and the last window owns everything
from ``80 w`` to the end (so a 10-s video is exactly the official pipeline's ``N`` images). Each
window takes ``round(linspace(0, n - 1, 80))`` of its ``n`` grid frames: the identity for a full
middle window, the official pick for the last one. A last window shorter than 10 s of a video with
more than one window is not stretched (its audio is zero-padded, so stretching the pictures would
put them at the wrong seconds): its missing frames repeat its last frame, as with ``hold``. A
video with one window, however short, is stretched exactly as the official scripts do.

Streaming windows: a decoder that hands out a long video window by window keeps one
:class:`CfrGrid` for the whole pass; a window that is not the last is final once the grid holds
``80 (w + 1)`` images and a frame more than the window tolerance past its end has been decoded
(:func:`window_positions`). A decoder that seeks to a window must first feed the grid the
timestamps of the frames before it (packet pts and durations from demuxing suffice; ``-r 8`` is
counted from the file's start, not from the window's).

Rates and window sizes are passed in (``lsld_engine.media`` names them once). See docs/media.md
for which rule is for what and how both were checked against FFmpeg 9.0.
"""
from __future__ import annotations

from fractions import Fraction
from math import floor, log2

import numpy as np

#: The rule names, default first (``--frame-rule``).
FRAME_RULES: tuple[str, ...] = ("official", "hold")
DEFAULT_FRAME_RULE: str = FRAME_RULES[0]

_US = Fraction(1, 1_000_000)  # FFmpeg's AV_TIME_BASE_Q


def _rescale(a: int, b: Fraction, c: Fraction) -> int:
    """``av_rescale_q(a, b, c)``: ``a * b / c`` rounded to nearest, halves away from zero."""
    num, den = b.numerator * c.denominator, b.denominator * c.numerator
    if a < 0:
        return -((-a * num + den // 2) // den)
    return (a * num + den // 2) // den


def _rint_f32(x: float) -> int:
    """``llrintf(x)``: to single precision first, then to nearest (halves to even)."""
    return int(np.rint(np.float32(x)))


class CfrGrid:
    """FFmpeg's constant-frame-rate output timing (``ffmpeg -r 8``), one input frame at a time.

    Feed every decoded frame in presentation order with :meth:`push` (its pts and duration in the
    stream's time base); each call returns the input-frame numbers (0-based, in push order) of the
    output frames it completes, in output order; :meth:`finish` returns those of the end of stream.
    Output frame ``j`` stands for time ``j / 8`` s after the file's start time.

    What FFmpeg does (fftools, ``video_sync_process``), restated:

    - input times are shifted by the *file's* start time (the earliest stream, e.g. audio that
      starts before the video; for MPEG-TS the video's own, see :func:`grid_start_us`), then put on the ``1/8`` s grid with 16 extra bits of precision
      (``sync``, nudged by ``2^-17`` off exact halves);
    - ``delta0 = sync - next`` (how far the frame lies past the next output slot), ``delta = delta0
      + duration``; a frame overlapping the slot (``delta0 < 0 < delta``) counts from the slot;
    - the frame is written ``round(delta)`` times if ``delta > 1.1``, never if ``delta < -1.1``,
      else once; when it starts more than 1.1 slots late (``delta0 > 1.1``), the first
      ``round(delta0 - 0.6)`` of those show the *previous* frame (a gap is filled by holding);
    - at the end, the last frame is written the median of the last three such previous-frame
      counts (0 for sources of 8 fps or more);
    - a file with a single stream uses ``vscfr``: a first frame late by half a slot or more starts
      the grid there instead of being duplicated back to the start.

    ``start_time_us``: the file's start time in microseconds (``container.start_time``; None = 0).
    """

    def __init__(self, time_base: Fraction, start_time_us: int | None, single_stream: bool, fps: int):
        self.tb = Fraction(time_base)
        self.tb_out = Fraction(1, fps)
        # the demuxer's shift of every pts (ffmpeg's ts_offset: minus the file's start time)
        self.shift = _rescale(-(start_time_us or 0), _US, self.tb)
        self.vscfr = single_stream
        extra = min(max(29 - floor(log2(self.tb_out.denominator)), 0), 16)
        self.fine = Fraction(self.tb_out.numerator, self.tb_out.denominator << extra)
        self.extra = 1 << extra
        self.next_pts = 0  # the next output slot
        self.written = 0  # output frames so far
        self.count = 0  # input frames so far
        self.hist = [0, 0, 0]  # previous-frame counts of the last three inputs

    def sync_time(self, pts: int) -> float:
        """Input ``pts`` on the output grid (slots after the file's start time), as FFmpeg computes it."""
        pts = pts + self.shift
        x = _rescale(pts, self.tb, self.fine) / self.extra
        if x != round(x):  # exact integers stay; anything else moves off a possible exact half
            x += (1 if x > 0 else -1) / (1 << 17)
        return x

    def push(self, pts: int, duration: int) -> list[int]:
        """Input frame ``pts``, ``duration`` (stream time base) -> input numbers of the new outputs."""
        sync = self.sync_time(pts)
        dur = duration * (self.tb.numerator / self.tb.denominator) / (self.tb_out.numerator / self.tb_out.denominator)
        delta0 = sync - self.next_pts
        delta = delta0 + dur
        nb, nb_prev = 1, 0
        if delta0 < 0 < delta:  # overlaps the slot: counted from it
            delta0 = 0.0
        if self.vscfr and self.written == 0 and delta0 >= 0.5:  # no initial duplication
            delta, delta0 = dur, 0.0
            self.next_pts = int(round(sync))
        if delta < -1.1:
            nb = 0
        elif delta > 1.1:
            nb = _rint_f32(delta)
            if delta0 > 1.1:
                nb_prev = _rint_f32(delta0 - 0.6)
        self.hist = [nb_prev] + self.hist[:2]
        i = self.count
        self.count += 1
        # the previous frame only exists after the first input
        out = [i - 1 if (k < nb_prev and i > 0) else i for k in range(nb)]
        self.next_pts += nb
        self.written += nb
        return out

    def finish(self) -> list[int]:
        """Input numbers of the outputs written at the end of the stream (repeats of the last frame)."""
        if self.count == 0:
            return []
        nb = sorted(self.hist)[1]
        self.next_pts += nb
        self.written += nb
        return [self.count - 1] * nb


def estimate_duration(duration: int, ts_diff: int, codec_duration: int, guessed_duration: int, last: int,
                      ts_unreliable: bool = False) -> int:
    """A decoded frame's duration (stream time base) as FFmpeg's command line estimates it (to place
    a following frame that has no timestamp).

    ``duration``: the frame's own (from its packet; 0 when unknown); ``ts_diff``: its pts minus the
    previous frame's (-1 for the first); ``codec_duration``: one frame at the codec's frame rate
    (0 when unknown); ``guessed_duration``: one frame at the stream's guessed rate (0 when unknown);
    ``last``: the previous estimate; ``ts_unreliable``: the container has no timestamps
    (``AVFMT_NOTIMESTAMPS``, raw streams). Containers that store durations give ``duration`` itself.
    """
    # a duration of 1 tick next to a much longer pts step was made up by the demuxer
    unreliable = duration == 1 and ts_diff > 2
    if duration > 0 and not ts_unreliable and not unreliable:
        return duration
    if codec_duration > 0 and ts_unreliable:
        return codec_duration
    if ts_diff > 0:
        return ts_diff
    for d in (duration, codec_duration, guessed_duration):
        if d > 0:
            return d
    return max(last, 1)


#: libavformat's ``AVFMT_NOTIMESTAMPS`` / ``AVFMT_TS_DISCONT`` demuxer flags (``container.format.flags``).
AVFMT_NOTIMESTAMPS = 0x0080
AVFMT_TS_DISCONT = 0x0200


def grid_start_us(file_start_us: int | None, video_start: int | None, time_base: Fraction, flags: int) -> int:
    """The start time (µs) ``ffmpeg`` measures the ``-r`` grid from, for the official command.

    The file's start time (the earliest stream), except for containers with timestamp
    discontinuities (MPEG-TS: ``AVFMT_TS_DISCONT``), where ``ffmpeg`` recomputes it over the streams
    the output uses ("Correcting start time of Input #0"): for ``%06d.jpg`` only the video.
    """
    if flags & AVFMT_TS_DISCONT and file_start_us is not None and video_start is not None:
        return _rescale(video_start, Fraction(time_base), _US)
    return file_start_us or 0


class FrameClock:
    """Each decoded frame's ``(pts, duration)`` in stream ticks as ``ffmpeg``'s ``-r`` sees them.

    Call it with the frame's ``pts`` (None when missing) and stored ``duration`` (0 / None when
    unknown), frames in presentation order. The duration is the frame's own (from its packet;
    demuxers make one up when the container stores none); ``ffmpeg``'s estimate
    (:func:`estimate_duration`) only places a frame that has no pts after the previous one.

    ``codec_rate`` / ``guessed_rate``: the codec's and the stream's guessed frame rates (Fractions or
    None); ``flags``: the demuxer's ``AVFMT_*`` flags (``AVFMT_NOTIMESTAMPS``: raw streams, whose
    timestamps ``ffmpeg`` does not trust).
    """

    def __init__(self, time_base: Fraction, codec_rate=None, guessed_rate=None, flags: int = 0):
        self.tb = Fraction(time_base)
        self.codec, self.guessed = self._ticks(codec_rate), self._ticks(guessed_rate)
        self.ts_unreliable = bool(flags & AVFMT_NOTIMESTAMPS)
        self.last_pts: int | None = None
        self.last = 0

    def _ticks(self, rate) -> int:
        """One frame at ``rate`` in stream ticks, rounded as ``av_rescale_q`` (0 when unknown)."""
        if not rate or not rate.numerator or not rate.denominator:
            return 0
        return _rescale(1, 1 / Fraction(rate), self.tb)

    def __call__(self, pts: int | None, duration: int | None) -> tuple[int, int]:
        duration = int(duration or 0)
        if pts is None:  # no timestamp: right after the previous frame
            pts = 0 if self.last_pts is None else self.last_pts + self.last
        diff = pts - self.last_pts if self.last_pts is not None else -1
        self.last = estimate_duration(duration, diff, self.codec, self.guessed, self.last, self.ts_unreliable)
        self.last_pts = int(pts)
        return int(pts), duration


def cfr_grid(pts, durations, time_base: Fraction, start_time_us: int | None, single_stream: bool,
             fps: int) -> np.ndarray:
    """The whole ``-r 8`` grid at once: ``(N,)`` int64 input-frame numbers of the output images.

    ``pts``, ``durations``: ``(F,)`` ints in ``time_base``, in presentation order.
    """
    g = CfrGrid(time_base, start_time_us, single_stream, fps)
    out: list[int] = []
    for p, d in zip(pts, durations):
        out += g.push(int(p), int(d))
    out += g.finish()
    return np.asarray(out, np.int64)


def linspace_pick(n: int, k: int) -> np.ndarray:
    """The official scripts' ``np.round(np.linspace(0, n - 1, k))``: ``(k,)`` int64 indices into ``n`` images."""
    return np.round(np.linspace(0, n - 1, k)).astype(np.int64)


def window_positions(rule: str, grid_len: int, w: int, num_windows: int, per_window: int) -> np.ndarray:
    """Grid positions shown by window ``w`` of ``num_windows``, ``(per_window,)`` int64.

    For a decoder that streams windows: a window that is not the last needs only the grid up to
    position ``per_window * (w + 1)``, and it is known not to be the last once a frame past the
    window tolerance after its end has been decoded; the last window needs the grid to the end.
    """
    k = per_window
    if check_rule(rule) == "hold":
        return np.minimum(np.arange(w * k, (w + 1) * k), grid_len - 1)
    lo = min(w * k, grid_len - 1)
    n = (grid_len if w == num_windows - 1 else min(grid_len, lo + k)) - lo
    if num_windows > 1 and n < k:  # short last window: pad, do not stretch
        return lo + np.minimum(np.arange(k), n - 1)
    return lo + linspace_pick(n, k)


def picks(rule: str, grid_len: int, num_windows: int, per_window: int) -> np.ndarray:
    """Grid positions shown by the ``num_windows * per_window`` output frames, ``(W * 80,)`` int64.

    ``"official"``: window ``w`` owns grid positions ``80 w ..`` (the last window: to the end) and
    takes :func:`linspace_pick` of them; a short last window of a multi-window video is padded
    with its last frame. ``"hold"``: the grid is already one entry per wanted time (see
    :class:`HoldGrid`), positions past its end show its last entry.
    """
    if grid_len <= 0:
        raise ValueError("no frames to pick from")
    return np.concatenate([window_positions(rule, grid_len, w, num_windows, per_window)
                           for w in range(num_windows)])


class HoldGrid:
    """Sample and hold, one input frame at a time (the ``"hold"`` rule).

    Grid entry ``j`` is the frame on screen ``j / 8`` s after the first frame: pushing a frame at
    ``t`` s (relative to the first frame, increasing) completes every entry before ``t - eps``
    with the previous frame. At most ``limit`` entries are made; :meth:`finish` adds one entry of
    the last frame, which :func:`picks` repeats for the times after it.
    """

    def __init__(self, limit: int, eps: float, fps: int):
        self.limit, self.eps, self.fps = limit, eps, fps
        self.written = 0
        self.count = 0

    def push(self, t: float) -> list[int]:
        i = self.count
        self.count += 1
        if i == 0:
            return []
        # every wanted time before this frame's time shows the previous frame
        n = 0
        while self.written + n < self.limit and (self.written + n) / self.fps < t - self.eps:
            n += 1
        self.written += n
        return [i - 1] * n

    def finish(self) -> list[int]:
        if self.count == 0 or self.written >= self.limit:
            return []
        self.written += 1
        return [self.count - 1]


def hold_indices(times, num_windows: int, eps: float, fps: int, per_window: int) -> np.ndarray:
    """Sample and hold over a whole stream: ``(W * 80,)`` frame numbers shown at ``k / 8`` s.

    ``times``: ``(F,)`` increasing presentation times (s) relative to the first frame.
    """
    t = np.arange(num_windows * per_window) / fps
    return np.maximum(np.searchsorted(np.asarray(times, np.float64), t + eps, side="right") - 1, 0)


def check_rule(rule: str) -> str:
    """``rule`` if it is a known frame rule, else ValueError naming the choices."""
    if rule not in FRAME_RULES:
        raise ValueError(f"unknown frame rule {rule!r} (choose from {', '.join(FRAME_RULES)})")
    return rule


__all__ = ["FRAME_RULES", "DEFAULT_FRAME_RULE", "CfrGrid", "estimate_duration", "FrameClock", "grid_start_us",
           "cfr_grid", "linspace_pick", "window_positions", "picks", "HoldGrid", "hold_indices", "check_rule"]
