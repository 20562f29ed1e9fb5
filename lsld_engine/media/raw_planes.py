"""Raw-plane decode mode: workers only decode; pixels are done on the device.

``decode_raw(path)`` runs the decode step of :mod:`lsld_engine.media` (same frame choice, same
audio) and keeps each *distinct* chosen frame as its YUV 4:2:0 planes, as decoded (no RGB, no
resize), plus ``index`` saying which distinct frame each of the ``W * 80`` output frames shows.
It is a dataclass of numpy arrays, so :func:`lsld_engine.media.pool.decode_stream` (``decode_fn=
decode_raw``) ships it through ``/dev/shm`` unchanged.

Files whose frames the device path cannot take (pixel format other than yuv420p / yuvj420p, odd
width or height, a size or format change inside the stream) are converted here with the CPU
reference path instead, and ``fallback`` says why (empty when the planes are raw).

``raw_to_clip(videos)`` turns a list of them into the CLIP input of all their frames, batched by
geometry on the device (:func:`lsld_engine.media.pixels.clip_input`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsld_engine import media
from lsld_engine.contract import FRAMES_PER_WINDOW, IMAGE_SIZE
from lsld_engine.media.cpu_pixels import _clip_frame
from lsld_engine.media.frame_rule import DEFAULT_FRAME_RULE
from lsld_engine.media.windows import window_ids

log = logging.getLogger(__name__)

#: Pixel formats shipped as raw planes by the CPU decoder.
RAW_CPU_FORMATS = ("yuv420p", "yuvj420p")

_EMPTY_PLANE = np.zeros((0, 0, 0), np.uint8)


@dataclass
class RawVideo:
    """A decoded video whose frames are still raw planes (or reference crops, see ``fallback``).

    ``index``: ``(W * 80,)`` int32, the distinct frame shown by each output frame.
    ``y``: ``(N, H, W)`` uint8; ``u``, ``v``: ``(N, H/2, W/2)`` uint8 (N distinct frames).
    ``frames``: ``(W, 80, 224, 224, 3)`` uint8 reference crops when ``fallback`` is set, else empty.
    ``audio``: ``(W, 10, 48000)`` float32. ``decoder``: ``"cpu"``, ``"nvdec"``, or ``"cpu (nvdec: <why
    not>)"`` when the NVDEC path fell back for this file. ``matrix`` / ``full_range``: the stream's colour setup
    (:class:`lsld_engine.media.pixels.ColorSpec`); ``rotation``: counter-clockwise degrees.
    """

    path: str
    video_id: str
    duration: float
    has_audio: bool
    num_windows: int
    rotation: int
    pix_fmt: str
    matrix: str
    full_range: bool
    fallback: str
    decoder: str
    index: np.ndarray
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    frames: np.ndarray
    audio: np.ndarray

    @property
    def window_ids(self) -> list[str]:
        return window_ids(self.video_id, self.num_windows)

    @property
    def is_raw(self) -> bool:
        """True when ``y``/``u``/``v`` hold the frames (else ``frames`` holds finished crops)."""
        return self.y.shape[0] > 0


class _Collector:
    """``frame_fn`` for :func:`media.decode_media`: keeps raw planes while it can, switches the
    file to the reference path (converting what it kept) when a frame cannot be shipped raw."""

    def __init__(self):
        self.planes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.crops: list[np.ndarray] = []
        self.key = None  # (format, width, height, colorspace, color_range) of the first frame
        self.fallback = ""
        self.spec = None

    def __call__(self, frame, rotation: int) -> int:
        from lsld_engine.media.colorspace import frame_color_spec

        key = (frame.format.name, frame.width, frame.height, frame.colorspace, frame.color_range)
        if self.key is None:
            self.key, self.spec = key, frame_color_spec(frame)
            if key[0] not in RAW_CPU_FORMATS:
                self._fall_back(f"pixel format {key[0]} is not yuv420p", rotation)
            elif frame.width % 2 or frame.height % 2:
                self._fall_back(f"odd frame size {frame.width}x{frame.height}", rotation)
        elif key != self.key and not self.fallback:
            self._fall_back(f"frame format/size/colour changed inside the stream ({self.key} -> {key})", rotation)
        if self.fallback:
            self.crops.append(_clip_frame(frame, rotation))
            return len(self.crops) - 1
        self.planes.append(tuple(_plane(frame, i) for i in range(3)))
        return len(self.planes) - 1

    def _fall_back(self, why: str, rotation: int) -> None:
        from lsld_engine.media.colorspace import raw_frame

        self.fallback = why
        for y, u, v in self.planes:  # frames kept raw so far: same swscale conversion as the reference
            fr = raw_frame("yuv420p", (y, u, v), self.spec)
            self.crops.append(media.clip_crop(media.rgb_frame(fr, rotation)))
        self.planes = []


def _plane(frame, i: int) -> np.ndarray:
    """Plane ``i`` of a software frame as a compact ``(h, w)`` uint8 copy (line padding dropped)."""
    p = frame.planes[i]
    return np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[: p.height, : p.width].copy()


def decode_raw(path: str | Path, video_id: str | None = None, *, max_windows: int | None = None,
               audio: bool = True, threads: int = 0, skip_nonref: bool = False,
               frame_rule: str = DEFAULT_FRAME_RULE, jpeg_roundtrip: bool = False,
               limits: media.MediaLimits | None = None) -> RawVideo:
    """Decode step only: the ``W * 80`` chosen frames as raw YUV planes, and the audio.

    Same frame choice, audio, errors (:class:`lsld_engine.media.MediaError`), caps (``limits``) and options as
    :func:`lsld_engine.media.decode_video`; ``skip_nonref`` see :func:`media.decode_media`.
    With ``jpeg_roundtrip`` the frames are decoded JPEG images (RGB): the file takes the reference path.
    Not streamed: the distinct frames of the whole video are held (bounded by ``limits``).
    """
    col = _Collector()
    m = media.decode_media(path, video_id, max_windows=max_windows, audio=audio, threads=threads,
                           frame_fn=col, skip_nonref=skip_nonref, frame_rule=frame_rule,
                           jpeg_roundtrip=jpeg_roundtrip, limits=limits)
    index = np.asarray(m.frames, np.int32)
    if jpeg_roundtrip:
        col.fallback = "JPEG round trip (frames are decoded JPEG images)"
    # grid frames the rule did not pick (official: the N - 80 left out) are not shipped
    used, index = np.unique(index, return_inverse=True)
    index = index.astype(np.int32)
    if col.fallback:
        col.crops = [col.crops[k] for k in used]
    else:
        col.planes = [col.planes[k] for k in used]
    spec = col.spec
    if col.fallback:
        frames = np.stack(col.crops)[index].reshape(m.num_windows, FRAMES_PER_WINDOW, IMAGE_SIZE, IMAGE_SIZE, 3)
        y = u = v = _EMPTY_PLANE
    else:
        frames = np.zeros((0, FRAMES_PER_WINDOW, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        y, u, v = (np.stack([p[i] for p in col.planes]) for i in range(3))
    return RawVideo(m.path, m.video_id, m.duration, m.has_audio, m.num_windows, m.rotation, col.key[0],
                    spec.matrix, spec.full_range, col.fallback, "cpu", index, y, u, v, frames, m.audio)


def raw_to_clip(videos, *, device=None, out: str = "uint8", **pixel_kwargs):
    """CLIP input for all frames of ``videos`` (``RawVideo`` list), in order: ``(sum W*80, 224, 224,
    3)`` uint8 numpy (``out="uint8"``, the reference format every backend takes) or ``(sum W*80, 3,
    224, 224)`` float32 in [0, 1] on ``device`` (``out="float"``, for a torch encoder on the GPU).

    Frames of one geometry and colour setup are converted together (one batch across videos);
    fallback / NVDEC videos contribute their finished crops. Each distinct frame is converted once
    and repeated by ``index``.
    """
    import torch

    from lsld_engine.media.pixels import ColorSpec, clip_input, default_device

    if out not in ("uint8", "float"):
        raise ValueError(f"out must be 'uint8' or 'float', not {out!r}")
    dev = torch.device(device) if device is not None else default_device()
    dtype = torch.uint8 if out == "uint8" else torch.float32
    sizes = [v.num_windows * FRAMES_PER_WINDOW for v in videos]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    if out == "uint8":
        res = np.empty((int(starts[-1]), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    else:
        res = torch.empty((int(starts[-1]), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=dtype, device=dev)
    groups: dict = {}
    for i, v in enumerate(videos):
        if v.fallback or v.decoder.startswith("cpu ("):
            log.info("%s: %s", v.path, describe(v))
        if v.is_raw:
            groups.setdefault((v.y.shape[1:], v.u.shape[1:], v.matrix, v.full_range, v.rotation), []).append(i)
        elif out == "uint8":
            res[starts[i]:starts[i + 1]] = v.frames.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3)
        else:
            crops = torch.from_numpy(np.ascontiguousarray(v.frames.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3)))
            res[starts[i]:starts[i + 1]] = crops.to(dev).permute(0, 3, 1, 2).float().div_(255.0)
    for (_, _, matrix, full, rot), members in groups.items():
        cat = (lambda f: np.concatenate([getattr(videos[i], f) for i in members])) if len(members) > 1 \
            else (lambda f: getattr(videos[members[0]], f))
        x = clip_input(cat("y"), cat("u"), cat("v"), spec=ColorSpec(matrix, full), rotation=rot, device=dev,
                       dtype=dtype, **pixel_kwargs)
        if out == "uint8":
            x = x.permute(0, 2, 3, 1).cpu().numpy()  # channels-last: a contiguous (N, 224, 224, 3)
        s = 0
        for i in members:
            n = videos[i].y.shape[0]
            idx = videos[i].index if out == "uint8" else torch.as_tensor(videos[i].index, device=dev, dtype=torch.long)
            res[starts[i]:starts[i + 1]] = x[s:s + n][idx]
            s += n
    return res


def describe(v: RawVideo) -> str:
    """How a video's frames were made, in words (for logs and summaries)."""
    dec = v.decoder
    if v.fallback:
        return f"decoder {dec}; reference CPU pixel path ({v.fallback})"
    if v.is_raw:
        return f"decoder {dec}; device pixels ({v.pix_fmt}, {v.matrix}, {'full' if v.full_range else 'limited'} range)"
    return f"decoder {dec}; pixels made on the GPU in the decoder ({v.matrix})"


__all__ = ["RawVideo", "decode_raw", "raw_to_clip", "describe", "RAW_CPU_FORMATS"]
