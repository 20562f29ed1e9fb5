"""Comparing embeddings in tests with tolerances that still catch a wrong frame or window.

BLAS kernels (and so float32 results) differ across batch sizes and CPUs (AVX2 vs AVX-512), so
tests never demand bit-equal embeddings; they demand closeness to the right rows *and* a clear
distance from the wrong ones, so a shifted frame or a swapped window still fails.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

#: Default tolerance: float16 storage rounds values in [-1, 1] to ~5e-4; batch-size effects in
#: float32 are ~1e-6, so 2e-3 covers a rounding flip of the float16 cast with room to spare.
ATOL = 2e-3


def assert_embeddings_match(got: np.ndarray, want: np.ndarray, wrong: Sequence[np.ndarray] = (),
                            atol: float = ATOL) -> None:
    """``got`` equals ``want`` within ``atol`` (max abs difference), and differs from each array in
    ``wrong`` (the neighbouring frames / windows, other videos) by more than ``10 * atol``.

    The second check makes the test meaningful: it fails if ``wrong`` is as close as ``want``.
    """
    got = np.asarray(got, np.float32)
    want = np.asarray(want, np.float32)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    err = float(np.abs(got - want).max()) if got.size else 0.0
    assert err <= atol, f"embeddings differ by up to {err:.3g} (tolerance {atol:g})"
    for k, other in enumerate(wrong):
        if other is want:
            continue
        d = float(np.abs(got - np.asarray(other, np.float32)).max())
        assert d > 10 * atol, f"embeddings are as close to wrong candidate #{k} ({d:.3g}) as to the right one"


def distinct(want: np.ndarray, candidates: Sequence[np.ndarray], atol: float = ATOL) -> list[np.ndarray]:
    """The ``candidates`` that differ from ``want`` by more than ``10 * atol`` (e.g. other videos'
    embeddings, where two test clips share a picture); asserts there is at least one, so a check
    against them can fail."""
    out = [c for c in candidates if float(np.abs(np.asarray(c, np.float32) - want).max()) > 10 * atol]
    assert out, "no candidate differs from the expected embeddings: the test cannot catch a mix-up"
    return out
