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
Display rotation is applied after the round trip (ffmpeg rotates before coding): a rotated
video's chroma subsampling then differs slightly.
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

    def encode(self, frame) -> bytes:
        """The JPEG file ffmpeg would write for ``frame`` at this point of the sequence."""
        fmt = _jpeg_format(frame.format.name)
        key = (frame.width, frame.height, fmt)
        if self.encoder is None or key != self.key:  # a size change re-creates the encoder, as ffmpeg does
            self.encoder, self.key = self._open(frame, fmt), key
        img = frame.reformat(format=fmt, interpolation="BICUBIC")
        img.pts = self.count
        img.time_base = Fraction(1, self.fps)
        self.count += 1
        return b"".join(bytes(p) for p in self.encoder.encode(img))

    def __call__(self, frame):
        import av
        from PIL import Image

        with Image.open(io.BytesIO(self.encode(frame))) as im:
            rgb = np.asarray(im.convert("RGB"))
        return av.VideoFrame.from_ndarray(rgb, format="rgb24")


__all__ = ["JpegRoundTrip", "DEFAULT_BIT_RATE"]
