"""Straightforward per-video reference of the DeN and ReW rules (tests and bench only).

Written to read like the rules, one video / class / segment at a time; the vectorized
:mod:`lsld_engine.labels.denoise` must agree with it exactly.
"""
from __future__ import annotations

import numpy as np

from lsld_engine.labels.denoise import class_similarity, l2_normalize, segment_features, softmax_argmax
from lsld_engine.data.llp import NUM_CLASSES
from lsld_engine.labels.prompts import DEFAULT_MAX_LABELS, PromptTable, prompt_subsets, prompt_texts


def den_reference(seg: np.ndarray, weak: np.ndarray, table: PromptTable, modality: str,
                  max_labels: int = DEFAULT_MAX_LABELS) -> np.ndarray:
    """Per-video DeN: ``seg`` (N, T, D), ``weak`` (N, C) -> ``(N, T, C)`` float32."""
    n, t, _ = seg.shape
    out = np.zeros((n, t, NUM_CLASSES), np.float32)
    for i in range(n):
        label_set = np.flatnonzero(weak[i]).tolist()
        if not label_set:
            continue
        subsets = prompt_subsets(label_set, max_labels)
        emb = l2_normalize(table.lookup(prompt_texts(label_set, modality, max_labels)))  # (P, D)
        x = l2_normalize(seg[i])                                                      # (T, D)
        sims = np.einsum("td,pd->tp", x, emb)                                          # (T, P)
        best = softmax_argmax(sims)
        for j in range(t):
            for c in subsets[best[j]]:
                out[i, j, c] = 1.0
    return out


def _reweighted(old: float, value: np.float32, clamp: bool) -> float:
    """The official rule keeps ``old`` unless ``value`` is strictly inside (0, 1); clamp clips it."""
    if clamp:
        return min(max(value, 0.0), 1.0)
    return value if 0 < value < 1 else old


def rew_reference(den_visual: np.ndarray, sim: np.ndarray, alpha: float, beta: float,
                  clamp: bool = False) -> np.ndarray:
    """Per-class ReW over all segments, one segment at a time."""
    n, t, c_ = den_visual.shape
    out = den_visual.astype(np.float32, copy=True)
    for c in range(c_):
        with_s = [sim[i, j, c] for i in range(n) for j in range(t) if den_visual[i, j, c] == 1]
        wo_s = [sim[i, j, c] for i in range(n) for j in range(t) if den_visual[i, j, c] != 1]
        if not with_s or not wo_s:
            continue
        min_w, max_wo = min(with_s), max(wo_s)
        if not max_wo > min_w:
            continue
        for i in range(n):
            for j in range(t):
                s = sim[i, j, c]
                if den_visual[i, j, c] == 1:
                    if s < max_wo:
                        out[i, j, c] = _reweighted(out[i, j, c], np.float32(alpha) * s, clamp)
                elif s > min_w:
                    out[i, j, c] = _reweighted(out[i, j, c], np.float32(beta) * s, clamp)
    return out


def denoise_reference(audio, frames, weak, clap: PromptTable, clip: PromptTable, class_names,
                      alpha: float = 4.0, beta: float = 0.4, max_labels: int = DEFAULT_MAX_LABELS,
                      rew_clamp: bool = False):
    """``(audio, visual_den, visual)`` labels, each ``(N, T, C)`` float32, one video at a time."""
    seg_v = np.stack([segment_features(frames[i:i + 1])[0] for i in range(len(frames))])
    a = den_reference(audio, weak, clap, "audio", max_labels)
    v = den_reference(seg_v, weak, clip, "visual", max_labels)
    # ReW's s is one (N*T, C) matrix over the whole training set; it comes from the same function as
    # in the vectorized path, because a per-video BLAS product may round differently in the last
    # bit, and a Min_w / Max_wo threshold sitting inside the dense part of the s distribution
    # then flips a segment or two at LLP scale. The rule logic below is what this checks.
    sim = class_similarity(seg_v, class_names)
    return a, v, rew_reference(v, sim, alpha, beta, rew_clamp)
