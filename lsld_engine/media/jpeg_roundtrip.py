"""JPEG round trip: re-code frames as the official scripts' ``%06d.jpg`` files and decode them back.

The official LSLD features were made from JPEG files written by ``ffmpeg -r 8 %06d.jpg`` and
opened with PIL by CLIP's ``preprocess``. :class:`JpegRoundTrip` does the same in memory, with
the MJPEG encoder bundled in PyAV set up as ``ffmpeg`` sets it up for ``image2`` output:

- full-range 4:2:0 (``yuvj420p``; ``yuvj422p`` / ``yuvj444p`` for 4:2:2 / 4:4:4 sources), the
  range conversion done by swscale with bicubic flags, as ffmpeg's auto-inserted scale filter;
- the encoder's defaults: rate control at 200 kbit/s over a 1/8-s time base (so the quantiser
  changes from image to image and depends on the images before: every grid image must be coded,
  in order, duplicates included), optimal Huffman tables, one slice (a single thread: slice
  threads would add restart markers and switch to the standard Huffman tables);
- decoding with PIL (libjpeg), RGB, as ``Image.open(path).convert("RGB")``.

Checked against the real ffmpeg 9.0.2 (tests/test_frame_rule.py): the decoded pixels are
identical; the files differ only in the encoder version string of the comment marker.
A rotated video is turned before coding, plane by plane, as ffmpeg's autorotation does.
"""
from __future__ import annotations

import io
from fractions import Fraction

import numpy as np

#: ``ffmpeg``'s default video bit rate (``-b:v``), which drives the MJPEG rate control.
DEFAULT_BIT_RATE: int = 200_000


def _jpeg_format(name: str) -> str:
    """The full-range format ffmpeg picks for the MJPEG encoder from the decoded format ``name``."""
    if "444" in name:
        return "yuvj444p"
    if "422" in name:
        return "yuvj422p"
    return "yuvj420p"


class JpegRoundTrip:
    """Callable: one decoded ``av.VideoFrame`` -> the frame as the official JPEG file decodes, an RGB
    ``av.VideoFrame`` (``rgb24``, same size). Call it on every grid frame in order."""

    def __init__(self, fps: int, bit_rate: int = DEFAULT_BIT_RATE):
        self.fps, self.bit_rate = fps, bit_rate
        self.encoder = None
        self.key = None
        self.count = 0

    def _open(self, frame, fmt: str):
        import av

        cc = av.CodecContext.create("mjpeg", "w")
        cc.width, cc.height = frame.width, frame.height
        cc.pix_fmt = fmt
        cc.time_base = Fraction(1, self.fps)
        cc.framerate = Fraction(self.fps)
        cc.bit_rate = self.bit_rate
        cc.thread_count = 1  # one slice: optimal Huffman tables, no restart markers (as ffmpeg's output)
        cc.open()
        return cc

    def encode(self, frame, rotation: int = 0) -> bytes:
        """The JPEG file ffmpeg would write for ``frame`` at this point of the sequence, the display
        rotation (counter-clockwise degrees) applied first as ffmpeg's autorotation does."""
        fmt = _jpeg_format(frame.format.name)
        img = frame.reformat(format=fmt, interpolation="BICUBIC")
        if rotation % 360:
            img = _rotate(img, rotation)
        key = (img.width, img.height, fmt)
        if self.encoder is None or key != self.key:  # a size change re-creates the encoder, as ffmpeg does
            self.encoder, self.key = self._open(img, fmt), key
        img.pts = self.count
        img.time_base = Fraction(1, self.fps)
        self.count += 1
        return b"".join(bytes(p) for p in self.encoder.encode(img))

    def __call__(self, frame, rotation: int = 0):
        import av
        from PIL import Image

        with Image.open(io.BytesIO(self.encode(frame, rotation))) as im:
            rgb = np.asarray(im.convert("RGB"))
        return av.VideoFrame.from_ndarray(rgb, format="rgb24")


def _plane(frame, i: int) -> np.ndarray:
    p = frame.planes[i]
    return np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[: p.height, : p.width]


def _rotate(frame, rotation: int):
    """``frame`` (planar 8-bit YUV) turned ``rotation`` degrees counter-clockwise, plane by plane:
    what ffmpeg's transpose / flip filters do, so chroma is not resampled."""
    import av

    k = (rotation // 90) % 4
    planes = [np.ascontiguousarray(np.rot90(_plane(frame, i), k)) for i in range(3)]
    h, w = planes[0].shape
    out = av.VideoFrame(w, h, frame.format.name)
    for i, pl in enumerate(planes):
        dst = out.planes[i]
        buf = np.zeros((dst.height, dst.line_size), np.uint8)
        buf[: pl.shape[0], : pl.shape[1]] = pl
        dst.update(buf.tobytes())
    return out


__all__ = ["JpegRoundTrip", "DEFAULT_BIT_RATE"]
