"""Hostile media for tests and benchmarks: files that are tiny on disk and huge when decoded."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def write_long_claim(path: str | Path, seconds: float, size: tuple[int, int] = (64, 48)) -> Path:
    """A tiny MP4 (three frames, ~1.6 KB) whose last frame sits ``seconds`` in: it declares, and
    decoded lasts, that long. A decoder that holds whole videos needs ``seconds / 10`` windows of
    80 crops (150 KB each) for it: ~4.3 GB per hour, ~43 GB for ten."""
    import av

    w, h = size
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.time_base = Fraction(1, 25)
        for k, pts in enumerate([0, 1, int(seconds * 25)]):
            f = av.VideoFrame.from_ndarray(np.full((h, w, 3), 60 * k, np.uint8), format="rgb24")
            f.pts = pts
            for pk in vs.encode(f):
                c.mux(pk)
        for pk in vs.encode():
            c.mux(pk)
    return Path(path)
