"""Media audio: a video's audio decoded to 48 kHz mono, aligned to the video's time origin, in windows.

Resampled by FFmpeg (``AudioResampler``, fltp, 48 kHz, channel layout kept), then the channels are
*averaged* here (FFmpeg's own downmix to mono is a sum scaled by 1/sqrt(2)). It is aligned to the
video's time origin by the pts of its first frame, then trimmed / zero-padded to exactly
``W * 10 * 48000`` samples (AAC priming and trailing padding make audio a little longer).
"""
from __future__ import annotations

import numpy as np

from lsld_engine.contract import SAMPLE_RATE, SAMPLES_PER_SEGMENT, SEGMENTS_PER_WINDOW, WINDOW_SECONDS
from lsld_engine.media.limits import MediaError


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
                            if out.samples:  # through _push: a pending lead-in cut applies here too
                                self._push(out.to_ndarray().mean(axis=0, dtype=np.float32))
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
