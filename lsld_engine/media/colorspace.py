"""Colour setup of YUV video (torch-free, so decode workers can use it): which matrix and range a
stream uses, the matching YUV -> RGB affine map, and raw planes wrapped as an ``av.VideoFrame``.

Defaults when the stream does not say are FFmpeg/swscale's: BT.601, limited range (``yuvj*``
pixel formats: full range, whatever the tag says).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsld_engine.contract import CLIP_MEAN, CLIP_STD  # noqa: F401 - re-exported for the pixel step

#: ``(Kr, Kb)`` of the YCbCr matrices FFmpeg knows (luma weights of R and B).
MATRICES: dict[str, tuple[float, float]] = {
    "bt601": (0.299, 0.114),
    "bt709": (0.2126, 0.0722),
    "bt2020": (0.2627, 0.0593),
    "smpte240m": (0.212, 0.087),
    "fcc": (0.30, 0.11),
}
#: FFmpeg ``AVColorSpace`` codes -> matrix name (2 = unspecified and unknown codes: BT.601).
_AVCOL_SPC = {1: "bt709", 4: "fcc", 5: "bt601", 6: "bt601", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}
DEFAULT_MATRIX = "bt601"


#: Pixel formats the device path converts; anything else falls back to the reference path.
RAW_FORMATS = ("yuv420p", "yuvj420p", "nv12")


@dataclass(frozen=True)
class ColorSpec:
    """How a stream's YUV maps to RGB: ``matrix`` (a key of :data:`MATRICES`) and ``full_range``."""

    matrix: str = DEFAULT_MATRIX
    full_range: bool = False


def color_spec(colorspace: int | None, color_range: int | None, pix_fmt: str = "yuv420p") -> ColorSpec:
    """The :class:`ColorSpec` of a frame from FFmpeg's codes (``VideoFrame.colorspace`` /
    ``color_range``: 1 = limited "MPEG", 2 = full "JPEG", 0 = unspecified). Unspecified: BT.601,
    limited range unless the pixel format is a full-range ``yuvj*`` one (swscale's defaults)."""
    matrix = _AVCOL_SPC.get(int(colorspace or 2), DEFAULT_MATRIX)
    if pix_fmt.startswith("yuvj"):  # swscale: full range whatever the tag says
        full = True
    else:
        full = color_range is not None and int(color_range) == 2
    return ColorSpec(matrix, full)


def frame_color_spec(frame) -> ColorSpec:
    """:func:`color_spec` of an ``av.VideoFrame`` (hardware frames: their software format)."""
    fmt = frame.format.name
    if fmt == "cuda" and getattr(frame, "sw_format", None) is not None:
        fmt = frame.sw_format.name
    return color_spec(frame.colorspace, frame.color_range, fmt)


def yuv_to_rgb_affine(spec: ColorSpec) -> tuple[np.ndarray, np.ndarray]:
    """``(M (3, 3), b (3,))`` with ``rgb = M @ [Y, U, V] + b`` in 0..255 units (float64)."""
    kr, kb = MATRICES[spec.matrix]
    kg = 1.0 - kr - kb
    if spec.full_range:
        sy, sc, y0 = 1.0, 1.0, 0.0
    else:
        sy, sc, y0 = 255.0 / 219.0, 255.0 / 224.0, 16.0
    # columns: contribution of Y, Cb, Cr (centred) to R, G, B
    m = np.array([[1.0, 0.0, 2 * (1 - kr)],
                  [1.0, -2 * kb * (1 - kb) / kg, -2 * kr * (1 - kr) / kg],
                  [1.0, 2 * (1 - kb), 0.0]])
    m = m * np.array([sy, sc, sc])
    b = -m @ np.array([y0, 128.0, 128.0])
    return m, b


_SPC_CODE = {"bt601": 5, "bt709": 1, "bt2020": 9, "smpte240m": 7, "fcc": 4}


def raw_frame(pix_fmt: str, planes, spec: ColorSpec):
    """An ``av.VideoFrame`` holding raw planes (``(Y, U, V)`` or NV12 ``(Y, UV)``), tagged with ``spec``."""
    import av

    h, w = planes[0].shape[:2]
    fr = av.VideoFrame(w, h, pix_fmt)
    for p, a in zip(fr.planes, planes):
        a = a.reshape(a.shape[0], -1)
        np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[: a.shape[0], : a.shape[1]] = a
    fr.colorspace = _SPC_CODE[spec.matrix]
    fr.color_range = 2 if spec.full_range else 1
    return fr
