"""Numba kernels of the CPU training engine (:mod:`lsld_engine.han.packed_train`): dropout masks and Adam.

Why hand-written: on a 2-core CPU, ``torch.bernoulli_`` costs ~8 ns per element (a third of a
bf16 training step goes to drawing ~6 M dropout bits), and an optimizer over a flat parameter
buffer that reads bf16 gradients and writes the bf16 weight copy in the same pass moves 28 bytes
per parameter instead of ~40 for torch's cast -> fused Adam -> cast. Both kernels are
memory-bound loops that LLVM vectorises.

Bit-level helpers work on integer views of the float buffers (numba has no bfloat16):
bf16 is the upper half of a float32, rounded to nearest even.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Elements per parallel chunk of the Adam kernels (a multiple of any SIMD width).
_CHUNK = 16384


@njit(inline="always")
def _hash32(x):
    # "lowbias32" (C. Wellons): a 32-bit integer hash with good avalanche; 32-bit multiplies
    # vectorise, unlike 64-bit ones. Numba widens uint32 arithmetic to 64 bits, hence the casts.
    x = np.uint32(x ^ (x >> np.uint32(16)))
    x = np.uint32(x * np.uint32(0x7FEB352D))
    x = np.uint32(x ^ (x >> np.uint32(15)))
    x = np.uint32(x * np.uint32(0x846CA68B))
    return np.uint32(x ^ (x >> np.uint32(16)))


@njit(parallel=True, cache=True)
def keep_mask_bits(out, starts, keys, thresholds, ones):
    """Dropout keep-masks for several segments of one flat buffer, in one call.

    ``out`` (N,) uint16 (bf16 bit patterns) or uint32 (float32 bit patterns); segment ``s`` covers
    ``out[starts[s]:starts[s + 1]]``. Element ``i`` of segment ``s`` is ``ones[s]`` (the bit
    pattern of the kept value, e.g. 1.0) when its 32-bit uniform ``u`` is ``>= thresholds[s]``
    (= round(p * 2**32)), else 0. ``u = hash(hash(i + lo) ^ hi)`` with ``(lo, hi)`` the halves of
    ``keys[s]`` (uint64): counter-based, so reproducible and independent of the thread count.
    """
    for s in range(keys.shape[0]):
        base = starts[s]
        n = starts[s + 1] - base
        lo = np.uint32(keys[s] & np.uint64(0xFFFFFFFF))
        hi = np.uint32(keys[s] >> np.uint64(32))
        th = thresholds[s]
        one = ones[s]
        zero = one - one
        seg = out[base:base + n]
        for i in prange(n):
            u = _hash32(np.uint32(_hash32(np.uint32(np.uint32(i) + lo)) ^ hi))
            seg[i] = one if u >= th else zero


@njit(inline="always")
def _adam_update(g, p, m, v, step, beta1, beta2, eps, bias_correction2_sqrt):
    """torch.optim.Adam's update of one chunk, in place: ``m = lerp(m, g, 1 - b1)``,
    ``v = b2 v + (1 - b2) g^2``, ``p -= step * m / (sqrt(v) / sqrt(bc2) + eps)`` (step = lr / bc1)."""
    w1 = np.float32(1) - beta1
    w2 = np.float32(1) - beta2
    for i in range(p.shape[0]):
        gi = g[i]
        mi = m[i] + w1 * (gi - m[i])
        vi = v[i] * beta2 + w2 * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = p[i] - step * (mi / (np.sqrt(vi) / bias_correction2_sqrt + eps))


@njit(parallel=True, cache=True)
def adam_f32(grad, param, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, bias_correction1, bias_correction2_sqrt):
    """One Adam step in place, float32 everywhere, with torch.optim.Adam's formula and operation
    order (:func:`_adam_update`). All arrays (N,)."""
    n = param.shape[0]
    step = np.float32(lr / bias_correction1)
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        s = c * _CHUNK
        e = min(n, s + _CHUNK)
        _adam_update(grad[s:e], param[s:e], exp_avg[s:e], exp_avg_sq[s:e], step, beta1, beta2, eps,
                     bias_correction2_sqrt)


@njit(parallel=True, cache=True)
def adam_bf16(grad_bits, param, exp_avg, exp_avg_sq, weight_bits, lr, beta1, beta2, eps,
              bias_correction1, bias_correction2_sqrt):
    """:func:`adam_f32` for bf16 gradients (``grad_bits`` (N,) uint16) that also writes the updated
    float32 master ``param`` rounded to bf16 into ``weight_bits`` (N,) uint16 (round to nearest
    even), so the next forward pass reads fresh bf16 weights without a separate cast."""
    n = param.shape[0]
    step = np.float32(lr / bias_correction1)
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        s = c * _CHUNK
        e = min(n, s + _CHUNK)
        k = e - s
        gu = np.empty(k, np.uint32)
        gb = grad_bits[s:e]
        for i in range(k):
            gu[i] = np.uint32(gb[i]) << np.uint32(16)
        p = param[s:e]
        _adam_update(gu.view(np.float32), p, exp_avg[s:e], exp_avg_sq[s:e], step, beta1, beta2, eps,
                     bias_correction2_sqrt)
        pu = p.view(np.uint32)
        wb = weight_bits[s:e]
        for i in range(k):
            b = pu[i]
            wb[i] = np.uint16((b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))


__all__ = ["adam_bf16", "adam_f32", "keep_mask_bits"]
