"""Which per-video decode function a run uses (``--decoder``, ``--pixels``, ``--frame-rule``, ...).

One choice for every caller: the CLI commands, :mod:`lsld_engine.api` and the ``--ray`` decode tasks.
"""
from __future__ import annotations

from functools import partial

from lsld_engine.media.frame_rule import DEFAULT_FRAME_RULE
from lsld_engine.media.limits import MAX_DURATION_S, MAX_RESOLUTION, MediaLimits


def media_limits(max_duration: float | None = None, max_resolution: tuple[int, int] | None = None) -> MediaLimits:
    """The caps of ``--max-duration`` / ``--max-resolution`` (None: the defaults)."""
    return MediaLimits(max_duration or MAX_DURATION_S, max_resolution or MAX_RESOLUTION)


def decode_function(*, decoder: str = "cpu", pixels: str = "cpu", frame_rule: str = DEFAULT_FRAME_RULE,
                    jpeg_roundtrip: bool = False, whole: bool = False, limits: MediaLimits | None = None) -> partial:
    """The decode workers' per-video function, with ``frame_rule`` and ``jpeg_roundtrip`` bound (a
    picklable ``functools.partial``): ``decoder="nvdec"`` -> :func:`lsld_engine.media.nvdec.decode_nvdec`;
    ``pixels="device"`` -> :func:`lsld_engine.media.raw_planes.decode_raw`; else the reference path,
    streamed in parts (:func:`lsld_engine.media.decode_parts`: memory does not grow with the length)
    unless ``whole`` (:func:`lsld_engine.media.decode_video`: one result per video, as the ``--ray``
    decode tasks need; they call it directly, so ``limits`` is bound too — one machine's pool passes
    the caps itself)."""
    if decoder == "nvdec":
        from lsld_engine.media.nvdec import decode_nvdec as fn
    elif pixels == "device":
        from lsld_engine.media.raw_planes import decode_raw as fn
    elif whole:
        from lsld_engine.media.decode import decode_video as fn
    else:
        from lsld_engine.media.parts import decode_parts as fn
    bound = {"frame_rule": frame_rule, "jpeg_roundtrip": jpeg_roundtrip}
    if whole:
        bound["limits"] = limits if limits is not None else media_limits()
    return partial(fn, **bound)
