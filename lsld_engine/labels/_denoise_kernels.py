"""Numba kernels of :mod:`lsld_engine.labels.denoise` (imported lazily: compiling takes a moment, cached)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit, prange

_GROUP = 8  # frames per segment (8 fps)


@lru_cache(maxsize=1)
def f16_table() -> np.ndarray:
    """``(65536,)`` float32 value of every float16 bit pattern (exact widening)."""
    return np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)


@njit(parallel=True, cache=True)
def segment_mean_f16(bits, table, out):  # pragma: no cover - compiled
    """``bits`` (N, 8*T, D) uint16 float16 patterns -> ``out`` (N, T, D) float32 means."""
    n, t, d = out.shape
    scale = np.float32(1.0 / _GROUP)
    for i in prange(n):
        for s in range(t):
            for k in range(d):
                out[i, s, k] = table[bits[i, s * _GROUP, k]]
            for j in range(1, _GROUP):
                for k in range(d):
                    out[i, s, k] += table[bits[i, s * _GROUP + j, k]]
            for k in range(d):
                out[i, s, k] *= scale


@njit(parallel=True, cache=True)
def segment_mean_f32(frames, out):  # pragma: no cover - compiled
    """``frames`` (N, 8*T, D) float32 -> ``out`` (N, T, D) float32 means (frame order, then * 1/8)."""
    n, t, d = out.shape
    scale = np.float32(1.0 / _GROUP)
    for i in prange(n):
        for s in range(t):
            for k in range(d):
                out[i, s, k] = frames[i, s * _GROUP, k]
            for j in range(1, _GROUP):
                for k in range(d):
                    out[i, s, k] += frames[i, s * _GROUP + j, k]
            for k in range(d):
                out[i, s, k] *= scale
