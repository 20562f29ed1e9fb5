"""Device-side pixel step: raw decoded YUV 4:2:0 planes -> CLIP input, batched, in torch.

Replaces the CPU reference pixel step of :mod:`lsld_engine.media` (swscale RGB, PIL bicubic
shortest side 224, centre crop) with the same arithmetic on the device (CUDA when available,
else CPU), for many frames at once::

    Y (N, H, W), U/V (N, H/2, W/2) uint8   (yuv420p / yuvj420p; or NV12: UV (N, H/2, W/2, 2))
      -> RGB at full resolution with the stream's own matrix (BT.601 / 709 / 2020 / SMPTE 240M /
         FCC) and range (limited / full), chroma replicated over its 2x2 luma block (what
         swscale's unscaled yuv420p -> rgb24 converter does). Default ``color="lut"``: a gather
         from swscale's own mapping tabulated once per colour setup (every (Y, U, V), 48 MiB,
         ~1.5 s to build) -> bit-exact with the reference. ``"formula"``: the exact real matrix
         in float (swscale's fixed-point tables truncate: within 3 levels, mean bias ~1 level).
         On a CPU device ``"swscale"`` calls FFmpeg itself (fastest there, bit-exact).
      -> display rotation (multiples of 90 degrees)
      -> shortest side to 224 with PIL's bicubic (Keys a = -0.5, support scaled when
         downscaling), horizontal pass first, rounded and clipped to 0..255 between passes as
         PIL does, then centre crop 224 with torchvision's rounding. ``resize="matmul"``: PIL's
         own weights as two matrix products restricted to the crop (resize + crop fused; GPU
         default); ``"interpolate"``: ``F.interpolate(bicubic, antialias=True)`` per axis (same
         kernel); ``"uint8"``: torch's uint8 channels-last antialiased kernel (CPU default).
      -> float (N, 3, 224, 224) in [0, 1] (``normalize=True``: CLIP mean/std), or uint8.

Defaults when the stream does not say (FFmpeg/swscale's defaults, which the reference follows):
BT.601, limited range; ``yuvj*`` pixel formats are full range whatever their tag says.

Tolerance against the reference ``media.clip_pixels`` (tests/test_pixels.py): colour ``lut`` /
``swscale`` bit-exact, ``formula`` <= 3 levels; after resize + crop, per pixel and channel
<= 1 level (``matmul`` / ``interpolate``: float weights vs PIL's 22-bit fixed point) or <= 2
levels (``uint8``), mean < 0.05 level (measured: 0.0001-0.006); CLIP ViT-B/16 embeddings of
both paths agree to cosine >= 0.999 (measured >= 0.99999).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lsld_engine.contract import IMAGE_SIZE
from lsld_engine.media.colorspace import (CLIP_MEAN, CLIP_STD, DEFAULT_MATRIX, MATRICES, RAW_FORMATS,  # noqa: F401
                                          ColorSpec, color_spec, frame_color_spec, raw_frame,
                                          yuv_to_rgb_affine)
from lsld_engine.media.cpu_pixels import clip_size


def pil_bicubic_weights(in_size: int, out_size: int, start: int = 0, count: int | None = None) -> np.ndarray:
    """PIL's ``Image.resize(..., BICUBIC)`` as a matrix: ``(count, in_size)`` float64 rows for output
    pixels ``start .. start + count`` (PIL's Resample.c: Keys a = -0.5, support 2 * max(scale, 1),
    normalised rows). ``start``/``count`` select a crop, so crop and resize are one product."""
    count = out_size if count is None else count
    scale = in_size / out_size
    fscale = max(scale, 1.0)
    support = 2.0 * fscale
    w = np.zeros((count, in_size))
    for j, xx in enumerate(range(start, start + count)):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        x = (np.arange(xmin, xmax) - center + 0.5) / fscale
        k = _cubic(x)
        w[j, xmin:xmax] = k / k.sum()
    return w


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def crop_box(width: int, height: int, size: int = IMAGE_SIZE) -> tuple[int, int, int, int]:
    """``(new_w, new_h, left, top)``: the resize of open_clip's transform and its centre crop
    (torchvision's ``Resize(size)`` + ``CenterCrop(size)`` rounding)."""
    nw, nh = clip_size(width, height, size)
    return nw, nh, int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _upsample_chroma(c: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``(N, h2, w2)`` -> ``(N, h, w)``: each chroma sample repeated over its 2x2 luma block (what
    swscale's unscaled yuv420p -> rgb24 converter does)."""
    return c.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)[..., :h, :w]


def yuv_to_rgb_formula(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, spec: ColorSpec) -> torch.Tensor:
    """``(N, H, W)`` Y, ``(N, H/2, W/2)`` U, V uint8 -> ``(N, 3, H, W)`` uint8 by the exact-real
    matrix (float32, rounded). Within 3 levels of swscale, which uses fixed-point tables that
    truncate (mean bias about -1 level); :func:`yuv_to_rgb_lut` is bit-exact instead."""
    n, h, w = y.shape
    m, b = yuv_to_rgb_affine(spec)
    yf = y.float()
    uf = _upsample_chroma(u.float(), h, w)
    vf = _upsample_chroma(v.float(), h, w)
    out = torch.empty((n, 3, h, w), dtype=torch.float32, device=y.device)
    for c in range(3):  # Y + a U + b V + bias, in place
        o = out[:, c]
        torch.mul(yf, float(m[c, 0]), out=o)
        if m[c, 1]:
            o.add_(uf, alpha=float(m[c, 1]))
        if m[c, 2]:
            o.add_(vf, alpha=float(m[c, 2]))
        o.add_(float(b[c]) + 0.5)
    return out.floor_().clamp_(0, 255).to(torch.uint8)


_LUTS: dict = {}


def swscale_lut(spec: ColorSpec) -> np.ndarray:
    """swscale's own yuv420p -> rgb24 mapping for ``spec`` as a table ``(3, 256**3)`` uint8 indexed by
    ``Y << 16 | U << 8 | V``: one 4096x4096 frame holding every (Y, U, V) combination (4 luma
    values per 2x2 chroma block) converted once by FFmpeg (~1.5 s, cached per process)."""
    key = (spec.matrix, spec.full_range)
    got = _LUTS.get(key)
    if got is not None:
        return got
    import av

    cu, cv = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    u, v = np.tile(cu, (8, 8)), np.tile(cv, (8, 8))  # (2048, 2048): every (U, V) in 64 groups
    group = np.arange(64, dtype=np.uint8).reshape(8, 8).repeat(256, 0).repeat(256, 1)
    y = np.empty((4096, 4096), np.uint8)
    for dy in range(2):
        for dx in range(2):
            y[dy::2, dx::2] = group * 4 + dy * 2 + dx
    rgb = raw_frame("yuv420p", (y, u, v), spec).to_ndarray(format="rgb24")
    uf, vf = u.repeat(2, 0).repeat(2, 1), v.repeat(2, 0).repeat(2, 1)
    idx = (y.astype(np.int64) << 16) | (uf.astype(np.int64) << 8) | vf
    lut = np.empty((3, 1 << 24), np.uint8)
    lut[:, idx.ravel()] = rgb.reshape(-1, 3).T
    _LUTS[key] = lut
    return lut


def yuv_to_rgb_lut(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, spec: ColorSpec) -> torch.Tensor:
    """Bit-exact swscale colour conversion on any device: a gather from :func:`swscale_lut`."""
    n, h, w = y.shape
    lut = _device_lut(spec, y.device)
    h2, w2 = u.shape[-2:]
    cidx = (u.long() << 8) | v.long()  # (N, h2, w2)
    ypad = y
    if (h, w) != (2 * h2, 2 * w2):  # odd size: pad luma to whole chroma blocks, cut after
        ypad = F.pad(y, (0, 2 * w2 - w, 0, 2 * h2 - h))
    idx = (ypad.long().view(n, h2, 2, w2, 2) << 16) | cidx[:, :, None, :, None]
    idx = idx.view(n, 2 * h2, 2 * w2)[:, :h, :w]
    out = torch.empty((n, 3, h, w), dtype=torch.uint8, device=y.device)
    for c in range(3):
        out[:, c] = torch.take(lut[c], idx)
    return out


_DEVICE_LUTS: dict = {}


def _device_lut(spec: ColorSpec, device: torch.device) -> torch.Tensor:
    key = (spec, str(device))
    t = _DEVICE_LUTS.get(key)
    if t is None:
        t = _DEVICE_LUTS[key] = torch.from_numpy(swscale_lut(spec)).to(device)
    return t


def yuv_to_rgb_swscale(y: np.ndarray, u: np.ndarray, v: np.ndarray, spec: ColorSpec) -> torch.Tensor:
    """swscale itself (CPU, SIMD, bit-exact reference), frame by frame -> ``(N, H, W, 3)`` uint8
    (channels last: what the uint8 resize wants)."""
    n, h, w = y.shape
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        out[i] = raw_frame("yuv420p", (y[i], u[i], v[i]), spec).to_ndarray(format="rgb24")
    return torch.from_numpy(out)


def nv12_split(uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """NV12's interleaved chroma ``(N, H/2, W/2, 2)`` -> U, V ``(N, H/2, W/2)`` views."""
    return uv[..., 0], uv[..., 1]


def _q(x: torch.Tensor) -> torch.Tensor:
    """PIL's rounding between and after its passes: floor(x + 0.5), clipped to 0..255."""
    return x.add_(0.5).floor_().clamp_(0, 255)


def resize_crop(rgb: torch.Tensor, size: int = IMAGE_SIZE, method: str = "auto") -> torch.Tensor:
    """``(N, 3, H, W)`` RGB (uint8 or float 0..255) -> ``(N, 3, size, size)`` integer-valued 0..255
    (uint8 for ``method="uint8"``, else float): shortest side to ``size`` with PIL's bicubic,
    centre crop.

    Like PIL, the horizontal pass runs first and its result is rounded and clipped to 0..255
    before the vertical pass. ``method``: ``"uint8"`` (torch's uint8 channels-last antialiased
    bicubic, PIL-style fixed point: within 1-2 levels of PIL, the fastest on CPU),
    ``"interpolate"`` (float ``F.interpolate(bicubic, antialias=True)`` per axis, then crop),
    ``"matmul"`` (PIL's weights as two matrix products limited to the crop: resize and crop fused,
    tensor cores on GPU); ``"auto"``: matmul on CUDA (interpolate when TF32 matmuls are enabled),
    uint8 on CPU.
    """
    n, _, h, w = rgb.shape
    nw, nh, left, top = crop_box(w, h, size)
    if method == "auto":
        # TF32 matmuls (if someone enabled them) round the weights to 10 bits: use the elementwise path
        exact_mm = not torch.backends.cuda.matmul.allow_tf32 and torch.get_float32_matmul_precision() == "highest"
        method = ("matmul" if exact_mm else "interpolate") if rgb.is_cuda else "uint8"
    if method == "uint8":
        x = rgb if rgb.dtype == torch.uint8 else _q(rgb.float()).to(torch.uint8)
        x = x.contiguous(memory_format=torch.channels_last)
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
        return x[:, :, top:top + size, left:left + size]
    x = rgb.float()
    if method == "interpolate":
        if nw != w:
            x = _q(F.interpolate(x, size=(h, nw), mode="bicubic", antialias=True, align_corners=False))
        if nh != h:
            x = _q(F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False))
        return x[:, :, top:top + size, left:left + size].contiguous()
    if method == "matmul":
        wh, ww = _weights(h, nh, top, size, w, nw, left, x.device, x.dtype)
        return _q(torch.matmul(wh, _q(torch.matmul(x, ww.T))))
    raise ValueError(f"resize method must be 'auto', 'uint8', 'interpolate' or 'matmul', not {method!r}")


_WEIGHT_CACHE: dict = {}


def _weights(h, nh, top, size, w, nw, left, device, dtype):
    key = (h, nh, top, size, w, nw, left, str(device), dtype)
    got = _WEIGHT_CACHE.get(key)
    if got is None:
        wh = np.eye(h)[top:top + size] if nh == h else pil_bicubic_weights(h, nh, top, size)
        ww = np.eye(w)[left:left + size] if nw == w else pil_bicubic_weights(w, nw, left, size)
        got = (torch.as_tensor(wh, dtype=dtype, device=device), torch.as_tensor(ww, dtype=dtype, device=device))
        if len(_WEIGHT_CACHE) > 64:
            _WEIGHT_CACHE.clear()
        _WEIGHT_CACHE[key] = got
    return got


def normalize_clip(x01: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` in [0, 1] -> CLIP-normalised (mean/std of open_clip's OpenAI preset)."""
    mean = torch.tensor(CLIP_MEAN, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
    return (x01 - mean) / std


def clip_input(y: torch.Tensor | np.ndarray, u: torch.Tensor | np.ndarray | None = None,
               v: torch.Tensor | np.ndarray | None = None, *, uv: torch.Tensor | np.ndarray | None = None,
               spec: ColorSpec = ColorSpec(), rotation: int = 0, size: int = IMAGE_SIZE,
               device: torch.device | str | None = None, normalize: bool = False, color: str = "auto",
               resize: str = "auto", dtype: torch.dtype = torch.float32, chunk: int = 32) -> torch.Tensor:
    """Raw YUV 4:2:0 frames of one geometry -> CLIP input ``(N, 3, size, size)`` on ``device``.

    ``y``: ``(N, H, W)`` uint8; chroma either ``u``, ``v`` ``(N, ceil(H/2), ceil(W/2))`` (yuv420p)
    or ``uv`` ``(N, H/2, W/2, 2)`` (NV12). Numpy inputs are copied to ``device`` (default: CUDA
    when available); tensors already there are used in place (NVDEC frames). ``rotation``:
    counter-clockwise display rotation (multiple of 90), applied before the resize.
    ``color``: ``"lut"`` (bit-exact swscale table, any device), ``"swscale"`` (FFmpeg itself; CPU),
    ``"formula"`` (float matrix, within 3 levels); ``"auto"``: swscale for numpy input on a CPU
    device, else lut. ``resize``: see :func:`resize_crop`.

    ``dtype=float32``: values in [0, 1] (what :class:`~lsld_engine.encoders.clip.ClipImageEncoder`
    takes), or CLIP-normalised with ``normalize``. ``dtype=uint8``: the reference's integers; the
    tensor is laid out channels-last, so ``x.permute(0, 2, 3, 1)`` is a contiguous ``(N, size,
    size, 3)`` array (the format every backend takes). Works in chunks of ``chunk`` frames to bound
    the full-resolution intermediates, writing into one preallocated output.
    """
    dev = torch.device(device) if device is not None else default_device()
    if uv is not None:
        if isinstance(uv, np.ndarray):
            u, v = np.ascontiguousarray(uv[..., 0]), np.ascontiguousarray(uv[..., 1])
        else:
            u, v = nv12_split(uv)
    elif u is None or v is None:
        raise ValueError("clip_input needs u and v (yuv420p) or uv (nv12)")
    if color == "auto":
        color = "swscale" if dev.type == "cpu" else "lut"
    if color == "swscale" and not isinstance(y, np.ndarray):
        y, u, v = (t.cpu().numpy() for t in (y, u, v))
    k = (rotation // 90) % 4
    n = y.shape[0]
    out = torch.empty((n, size, size, 3), dtype=dtype, device=dev).permute(0, 3, 1, 2)
    for s in range(0, n, chunk):
        ys, us, vs = y[s:s + chunk], u[s:s + chunk], v[s:s + chunk]
        if color == "swscale":
            rgb = yuv_to_rgb_swscale(ys, us, vs, spec).to(dev).permute(0, 3, 1, 2)
        elif color in ("lut", "formula"):
            ys, us, vs = _as_tensor(ys, dev), _as_tensor(us, dev), _as_tensor(vs, dev)
            rgb = (yuv_to_rgb_lut if color == "lut" else yuv_to_rgb_formula)(ys, us, vs, spec)
        else:
            raise ValueError(f"color must be 'auto', 'lut', 'swscale' or 'formula', not {color!r}")
        if k:
            rgb = torch.rot90(rgb, k=k, dims=(2, 3))
        out[s:s + chunk].copy_(resize_crop(rgb, size, resize))
    if dtype == torch.uint8:
        return out
    out.mul_(1.0 / 255.0)
    return normalize_clip(out) if normalize else out


def _as_tensor(a, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a
    if t.device != device:
        t = t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)
    return t


def to_uint8_hwc(x01: torch.Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` float in [0, 1] -> ``(N, H, W, 3)`` uint8 numpy (the reference format)."""
    return x01.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


__all__ = ["MATRICES", "DEFAULT_MATRIX", "RAW_FORMATS", "ColorSpec", "color_spec", "frame_color_spec",
           "yuv_to_rgb_affine", "yuv_to_rgb_formula", "yuv_to_rgb_lut", "yuv_to_rgb_swscale", "swscale_lut",
           "raw_frame", "pil_bicubic_weights", "crop_box", "resize_crop", "clip_input",
           "normalize_clip", "to_uint8_hwc", "default_device", "CLIP_MEAN", "CLIP_STD"]
