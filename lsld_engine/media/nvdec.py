"""Optional NVDEC decode path: PyAV ``HWAccel('cuda')`` + the device pixel step, per worker.

STATUS: written against PyAV 18.1's API (``av.codec.hwaccel.HWAccel``, ``VideoPlane.__dlpack__``
for CUDA frames, ``VideoFrame.sw_format``) and **not run on a GPU yet** (the development machine
has none). Only its fallback logic is tested (tests/test_pixels.py). ``bench/gpu_decode.py``
exercises it on a lent GPU machine.

How it works, per file, inside a decode worker (``decode_stream(..., decode_fn=decode_nvdec)``;
each worker is a fresh process (:mod:`lsld_engine.media.worker_process`), so it has its own CUDA context):

- one ``HWAccel("cuda", is_hw_owned=True)`` per worker process, reused for every file. With
  ``is_hw_owned`` PyAV creates the FFmpeg CUDA device on the device's *primary* context
  (``primary_ctx=1``), the one torch uses too, so no new CUDA context is made per file (the
  naive per-file context is what makes NVDEC slow);
- frames stay on the GPU: each chosen frame's NV12 planes are exported with DLPack into torch
  (``plane.__dlpack__()`` with no stream: PyAV 18 refuses one, which ``torch.from_dlpack(plane)``
  would pass) and copied at once (NVDEC's surface pool is small; holding frames stalls it);
- the device pixel step (:func:`lsld_engine.media.pixels.clip_input`, bit-exact LUT colour + PIL-exact
  resize) runs in the worker on the GPU, and only the ``(W, 80, 224, 224, 3)`` uint8 crops
  travel to the consumer through ``/dev/shm`` (150 KB per frame);
- audio is decoded on the CPU as in :mod:`lsld_engine.media`.

Fallback to CPU decoding, per file, with the reason in ``RawVideo.decoder``: no CUDA in torch or
no ``cuda`` device type in PyAV's FFmpeg, a codec without an NVDEC hardware config, an error
opening or decoding on the device, or a software format other than NV12 (e.g. 10-bit P010).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lsld_engine import media
from lsld_engine.contract import FRAMES_PER_WINDOW, IMAGE_SIZE
from lsld_engine.media.frame_rule import DEFAULT_FRAME_RULE

log = logging.getLogger(__name__)

_HWACCEL = None  # this process's HWAccel (one per worker, reused across files)
_UNAVAILABLE: str | None = None  # why NVDEC cannot run in this process (cached), "" when it can


class NvdecUnsupported(RuntimeError):
    """This file cannot be decoded with NVDEC (the CPU path takes it)."""


def nvdec_unavailable_reason() -> str:
    """``""`` when NVDEC can be tried in this process, else why not (cached per process)."""
    global _UNAVAILABLE
    if _UNAVAILABLE is None:
        _UNAVAILABLE = _probe()
    return _UNAVAILABLE


def _probe() -> str:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    try:
        from av.codec.hwaccel import hwdevices_available
    except ImportError:
        return "this PyAV has no hardware acceleration support"
    if "cuda" not in hwdevices_available():
        return f"PyAV's FFmpeg has no cuda hardware device (has: {hwdevices_available()})"
    return ""


def hwaccel():
    """This process's ``HWAccel('cuda', is_hw_owned=True)`` (created once, reused for all files)."""
    global _HWACCEL
    if _HWACCEL is None:
        import torch
        from av.codec.hwaccel import HWAccel

        dev = torch.cuda.current_device()
        torch.cuda.init()  # make the primary context current before FFmpeg retains it
        _HWACCEL = HWAccel("cuda", device=str(dev), allow_software_fallback=False, is_hw_owned=True)
    return _HWACCEL


class _GpuCollector:
    """``frame_fn``: copies each chosen CUDA frame's NV12 planes into torch tensors on the GPU."""

    def __init__(self):
        self.y: list = []
        self.uv: list = []
        self.key = None
        self.spec = None

    def __call__(self, frame, rotation: int) -> int:
        import torch

        from lsld_engine.media.pixels import frame_color_spec

        if frame.format.name != "cuda":
            raise NvdecUnsupported(f"decoder returned {frame.format.name} frames, not CUDA frames")
        sw = frame.sw_format.name if frame.sw_format is not None else "?"
        key = (sw, frame.width, frame.height, frame.colorspace, frame.color_range)
        if self.key is None:
            self.key, self.spec = key, frame_color_spec(frame)
            if sw != "nv12":
                raise NvdecUnsupported(f"NVDEC output format {sw} (only 8-bit nv12 is handled)")
            if frame.width % 2 or frame.height % 2:
                raise NvdecUnsupported(f"odd frame size {frame.width}x{frame.height}")
        elif key != self.key:
            raise NvdecUnsupported(f"frame format/size changed inside the stream ({self.key} -> {key})")
        # DLPack views of the decoder's surface; copy now, the surface goes back to NVDEC.
        # PyAV refuses a stream argument (torch.from_dlpack(plane) would pass one), so take the
        # capsule with stream=None after a sync: FFmpeg's copy into the surface may be in flight.
        torch.cuda.synchronize()
        self.y.append(torch.from_dlpack(frame.planes[0].__dlpack__()).clone())
        self.uv.append(torch.from_dlpack(frame.planes[1].__dlpack__()).clone())
        return len(self.y) - 1


def decode_nvdec(path: str | Path, video_id: str | None = None, *, max_windows: int | None = None,
                 audio: bool = True, threads: int = 0, skip_nonref: bool = False,
                 frame_rule: str = DEFAULT_FRAME_RULE, jpeg_roundtrip: bool = False, limits=None):
    """Decode with NVDEC and preprocess on the GPU -> :class:`lsld_engine.media.raw_planes.RawVideo` whose
    ``frames`` holds the finished ``(W, 80, 224, 224, 3)`` uint8 crops (``decoder="nvdec"``).

    Falls back to :func:`lsld_engine.media.raw_planes.decode_raw` (CPU decode, raw planes) for this file
    when NVDEC cannot take it; ``decoder`` then says ``"cpu (nvdec: <why>)"``. ``threads`` is
    used by the CPU fallback only. ``frame_rule``: as :func:`lsld_engine.media.decode_media` (the
    same selection code picks the frames); ``jpeg_roundtrip`` codes JPEG on the CPU, so it decodes
    on the CPU too.
    """
    from lsld_engine.media.raw_planes import decode_raw

    why = "--jpeg-roundtrip codes and decodes JPEG on the CPU" if jpeg_roundtrip else nvdec_unavailable_reason()
    if not why:
        try:
            return _decode_on_gpu(path, video_id, max_windows=max_windows, audio=audio, skip_nonref=skip_nonref,
                                  frame_rule=frame_rule, limits=limits)
        except media.MediaError as e:
            # a file broken for FFmpeg stays broken on the CPU; a device-side failure does not
            why = f"NVDEC decode failed: {e}"
        except (NvdecUnsupported, NotImplementedError, RuntimeError, ValueError, TypeError) as e:
            why = f"{type(e).__name__}: {e}"
        log.info("%s: NVDEC not used (%s); decoding on the CPU", path, why)
    r = decode_raw(path, video_id, max_windows=max_windows, audio=audio, threads=threads, skip_nonref=skip_nonref,
                   frame_rule=frame_rule, jpeg_roundtrip=jpeg_roundtrip, limits=limits)
    r.decoder = f"cpu (nvdec: {why})"
    return r


def _decode_on_gpu(path, video_id, *, max_windows, audio, skip_nonref, frame_rule, limits=None):
    import torch

    from lsld_engine.media.pixels import clip_input
    from lsld_engine.media.raw_planes import RawVideo

    col = _GpuCollector()
    m = media.decode_media(path, video_id, max_windows=max_windows, audio=audio, threads=1,
                           frame_fn=col, skip_nonref=skip_nonref, hwaccel=hwaccel(), frame_rule=frame_rule,
                           limits=limits)
    y, uv = torch.stack(col.y), torch.stack(col.uv)
    x = clip_input(y, uv=uv, spec=col.spec, rotation=m.rotation, device=y.device, dtype=torch.uint8)
    index = np.asarray(m.frames, np.int32)
    crops = x.permute(0, 2, 3, 1).cpu().numpy()[index].reshape(m.num_windows, FRAMES_PER_WINDOW, IMAGE_SIZE, IMAGE_SIZE, 3)
    empty = np.zeros((0, 0, 0), np.uint8)
    return RawVideo(m.path, m.video_id, m.duration, m.has_audio, m.num_windows, m.rotation, "nv12",
                    col.spec.matrix, col.spec.full_range, "", "nvdec", index, empty, empty, empty, crops, m.audio)


__all__ = ["decode_nvdec", "nvdec_unavailable_reason", "hwaccel", "NvdecUnsupported"]
