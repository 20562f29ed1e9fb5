"""CPU pixel step (the reference): decoded frames -> CLIP input crops ``(N, 224, 224, 3)`` uint8 RGB.

RGB by FFmpeg swscale, display rotation, shortest side to 224 with PIL bicubic, centre crop 224 (as
open_clip's ViT-B-16 transform). CLIP's mean/std normalisation is *not* done here: it is the image
encoder's job. The device pixel step (:mod:`lsld_engine.media.pixels`) reproduces this one.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from lsld_engine.contract import IMAGE_SIZE


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
