"""LSLD segment-level label denoising (paper Sec. 3.2-3.4): DeN for audio and visual, ReW for visual.

All functions work on in-memory arrays of the whole training set:

- ``audio``  (N, T, D)  CLAP segment embeddings, used as given;
- ``frames`` (N, 8*T, D) CLIP frame embeddings (8 fps); segment features are the mean of each 8
  consecutive frames, taken before normalization -> (N, T, D);
- ``weak``   (N, C) 0/1 video-level labels;
- prompt embeddings in a :class:`~lsld_engine.labels.prompts.PromptTable` (texts -> (M, D)).

DeN: per video and modality, the cosine of every prompt with every segment, softmax over the
prompts; a segment's label is 1 for the classes of its best prompt (first maximum on ties).
ReW (visual): per class ``c``, ``s`` = cosine of each segment with the class-name embedding;
"with" = segments whose DeN label for ``c`` is 1, "without" = all others; if both are non-empty and
``Max_wo > Min_w``, "with" segments with ``s < Max_wo`` get ``alpha*s`` and "without" segments with
``s > Min_w`` get ``beta*s`` -- each only where that value lies strictly inside (0, 1), as the
official ``getVisualCleanLabel`` does (elsewhere the DeN value stays: a "with" segment whose cosine
is <= 0 keeps 1). ``clamp=True`` writes ``clip(alpha*s, 0, 1)`` / ``clip(beta*s, 0, 1)`` instead.

Vectorization: videos are grouped by their label set (every video of a group has the same
``2**k`` prompts, so no padding); each group is one matmul + softmax + argmax over all its
segments, and the 8-frame averaging is one parallel Numba pass. The per-video reference of the same rules is in
:mod:`lsld_engine.labels._denoise_ref`; both produce identical labels.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from lsld_engine.contract import FRAMES_PER_SEGMENT
from lsld_engine.files import atomic_path
from lsld_engine.data.llp import CLASSES, NUM_CLASSES
from lsld_engine.labels.prompts import (DEFAULT_MAX_LABELS, PromptTable, check_label_set, membership,
                                 prompt_texts)

DEFAULT_ALPHA = 4.0
DEFAULT_BETA = 0.4


def segment_features(frames: np.ndarray) -> np.ndarray:
    """Mean of each 8 consecutive frames: ``(N, 8*T, D)`` float16/float32 -> ``(N, T, D)`` float32.

    Frames are summed in float32 in frame order and scaled by 1/8, so the result is the same
    (bit for bit) whatever the batch; a parallel Numba kernel does it in one pass (float16 bits are
    widened through an exact 65536-entry table).
    """
    n, f, d = frames.shape
    if f % FRAMES_PER_SEGMENT:
        raise ValueError(f"frames: {f} frames per video is not a multiple of {FRAMES_PER_SEGMENT}")
    out = np.empty((n, f // FRAMES_PER_SEGMENT, d), np.float32)
    if n == 0:
        return out
    from lsld_engine.labels import _denoise_kernels as k
    if frames.dtype == np.float16:
        k.segment_mean_f16(np.ascontiguousarray(frames).view(np.uint16), k.f16_table(), out)
    else:
        k.segment_mean_f32(np.ascontiguousarray(frames, np.float32), out)
    return out


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``(..., D)`` scaled to unit L2 norm (zero rows stay zero), float32."""
    x = np.asarray(x, np.float32)
    n = np.sqrt(np.einsum("...d,...d->...", x, x))
    return x / np.maximum(n, np.float32(1e-12))[..., None]


def softmax_argmax(sims: np.ndarray) -> np.ndarray:
    """Index of the best prompt after a softmax over the last axis (first maximum on ties)."""
    z = sims - sims.max(axis=-1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=-1, keepdims=True)
    return p.argmax(axis=-1)


def _group_label_sets(weak: np.ndarray, max_labels: int):
    """Unique label sets: ``(uniq (U, C), inverse (N,), sets list[tuple])``, checking the cap."""
    weak = np.asarray(weak)
    if weak.ndim != 2 or weak.shape[1] != NUM_CLASSES:
        raise ValueError(f"weak labels must be (N, {NUM_CLASSES}), got {weak.shape}")
    # One int64 code per row (bit c = class c) makes the grouping a plain 1-D unique.
    codes = (weak > 0).astype(np.int64) @ (np.int64(1) << np.arange(NUM_CLASSES, dtype=np.int64))
    ucodes, inverse = np.unique(codes, return_inverse=True)
    uniq = ((ucodes[:, None] >> np.arange(NUM_CLASSES)) & 1).astype(np.uint8)
    sets = [tuple(np.flatnonzero(r).tolist()) for r in uniq]
    for s in sets:
        check_label_set(s, max_labels)
    return uniq, inverse.reshape(-1), sets


def den(seg: np.ndarray, weak: np.ndarray, table: PromptTable, modality: str,
        max_labels: int = DEFAULT_MAX_LABELS, *, normalized: bool = False) -> np.ndarray:
    """DeN labels ``(N, T, C)`` float32 from segment features ``seg`` (N, T, D) and ``weak`` (N, C).

    ``table`` must hold every prompt of ``modality`` for the label sets in ``weak``;
    ``normalized=True`` says ``seg`` is already :func:`l2_normalize`-d.
    """
    n, t, d = seg.shape
    if len(weak) != n:
        raise ValueError(f"den: {n} videos of features but {len(weak)} weak-label rows")
    _, inverse, sets = _group_label_sets(weak, max_labels)
    if table.dim != d:
        raise ValueError(f"den: {modality} features have D={d} but prompt embeddings D={table.dim}")
    emb = l2_normalize(table.embeddings)
    segn = seg if normalized else l2_normalize(seg)
    out = np.zeros((n, t, NUM_CLASSES), np.float32)
    # Videos grouped by label set: one (n_u*T, D) @ (D, 2**k) matmul per distinct set (LLP train
    # has 117), so the Python loop runs over label sets, never over videos.
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(sets) + 1))
    for u, label_set in enumerate(sets):
        k = len(label_set)
        vids = order[bounds[u]:bounds[u + 1]]
        if k == 0 or len(vids) == 0:
            continue  # only "other": nothing to label
        prompts = emb[table.rows(prompt_texts(label_set, modality, max_labels))]  # (P, D)
        # numpy's own einsum, not BLAS: 117 small products would each wake BLAS threads.
        sims = np.einsum("nd,pd->np", segn[vids].reshape(-1, d), prompts)         # (n_u*T, P)
        best = softmax_argmax(sims).reshape(len(vids), t)                         # (n_u, T)
        on = membership(k)[best].astype(np.float32)                               # (n_u, T, k)
        out[vids[:, None, None], np.arange(t)[None, :, None], np.array(label_set)] = on
    return out


def class_similarity(seg: np.ndarray, names: np.ndarray, *, normalized: bool = False) -> np.ndarray:
    """Cosine of every segment ``(N, T, D)`` with every class-name embedding ``(C, D)`` -> ``(N, T, C)``."""
    n, t, d = seg.shape
    s = (seg if normalized else l2_normalize(seg)).reshape(n * t, d) @ l2_normalize(names).T
    return s.reshape(n, t, -1)


def rew(den_visual: np.ndarray, sim: np.ndarray, alpha: float = DEFAULT_ALPHA,
        beta: float = DEFAULT_BETA, *, clamp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """ReW of DeN visual labels ``(N, T, C)`` given class similarities ``sim`` (N, T, C).

    Official rule (default): a selected segment takes ``alpha*s`` / ``beta*s`` only where that lies
    strictly inside (0, 1), else keeps its DeN value; ``clamp=True`` writes the value clipped to
    [0, 1] instead. Returns ``(labels (N, T, C) float32, changed (N, T, C) bool)``; ``changed`` marks
    values that differ from DeN.
    """
    with_ = den_visual > 0.5
    s = sim.astype(np.float32)
    c = s.shape[-1]
    flat_w, flat_s = with_.reshape(-1, c), s.reshape(-1, c)
    has_w, has_wo = flat_w.any(0), (~flat_w).any(0)
    min_w = np.where(flat_w, flat_s, np.inf).min(0)        # (C,)
    max_wo = np.where(~flat_w, flat_s, -np.inf).max(0)     # (C,)
    active = has_w & has_wo & (max_wo > min_w)
    down = active & with_ & (s < max_wo)
    up = active & ~with_ & (s > min_w)
    out = den_visual.astype(np.float32, copy=True)
    for sel, weight in ((down, alpha), (up, beta)):
        v = np.float32(weight) * s[sel]
        if clamp:
            out[sel] = np.clip(v, 0, 1)
        else:  # official: replace only values strictly inside (0, 1)
            inside = (v > 0) & (v < 1)
            idx = tuple(i[inside] for i in np.nonzero(sel))
            out[idx] = v[inside]
    # "Re-weighted" counts values that moved (a rule that yields 1 for a "with" segment is no change).
    return out, out != den_visual


@dataclass
class DenoiseResult:
    """Denoised labels, each ``(N, T, C)`` float32, plus per-class counts ``(C,)``."""

    audio: np.ndarray
    visual_den: np.ndarray
    visual: np.ndarray
    removed_audio: np.ndarray      # (C,) weak (video, segment) labels that DeN set to 0, audio
    removed_visual: np.ndarray     # (C,) same, visual
    reweighted: np.ndarray         # (C,) visual segments whose value ReW changed (DeN+ReW != DeN)

    def summary(self) -> str:
        """A short per-class table of removed labels and re-weighted segments."""
        lines = [f"{'class':24s} {'removed_a':>9s} {'removed_v':>9s} {'reweighted':>10s}"]
        for i, name in enumerate(CLASSES):
            lines.append(f"{name:24s} {self.removed_audio[i]:9d} {self.removed_visual[i]:9d} {self.reweighted[i]:10d}")
        lines.append(f"{'total':24s} {self.removed_audio.sum():9d} {self.removed_visual.sum():9d} "
                     f"{self.reweighted.sum():10d}")
        return "\n".join(lines)


def save_labels(path: str | os.PathLike, video_ids: Sequence[str], result: DenoiseResult) -> Path:
    """Write ``labels.npz``: ``video_ids`` (N,) str, ``audio`` / ``visual_den`` / ``visual`` (N, T, C)
    float32 aligned with ``video_ids`` (``AVVP_train.csv`` order), the per-class counts and ``classes``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        np.savez(tmp, video_ids=np.array(list(video_ids), dtype=str), audio=result.audio,
                 visual_den=result.visual_den, visual=result.visual, removed_audio=result.removed_audio,
                 removed_visual=result.removed_visual, reweighted=result.reweighted,
                 classes=np.array(CLASSES, dtype=str))
    return path


def load_labels(path: str | os.PathLike) -> tuple[list[str], dict[str, np.ndarray]]:
    """``(video_ids, arrays)`` of a ``labels.npz`` written by :func:`save_labels` (no pickles);
    ``arrays`` holds every entry of the file, ``video_ids`` included. A file that is not such an
    archive (object arrays, another format, ``video_ids`` that are not strings) raises
    :class:`lsld_engine.records.untrusted.InputFileError` naming it."""
    from lsld_engine.records.untrusted import InputFileError, load_npz

    arrays = load_npz(path, required=("video_ids",))
    ids = arrays["video_ids"]
    if ids.ndim != 1 or ids.dtype.kind not in "US":
        raise InputFileError(f"{path}: video_ids must be a 1-D array of strings, got {ids.dtype} {ids.shape}")
    return [str(v) for v in ids], arrays


def removed_counts(weak: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per class, weak labels broadcast to segments that ``labels`` (N, T, C) turned off -> ``(C,)``."""
    t = labels.shape[1]
    return (weak.astype(np.int64).sum(0) * t - (labels > 0.5).sum((0, 1))).astype(np.int64)


def denoise_labels(audio: np.ndarray, frames: np.ndarray, weak: np.ndarray, clap: PromptTable,
                   clip: PromptTable, class_names: np.ndarray, *, alpha: float = DEFAULT_ALPHA,
                   beta: float = DEFAULT_BETA, max_labels: int = DEFAULT_MAX_LABELS,
                   visual_segments: np.ndarray | None = None, rew_clamp: bool = False) -> DenoiseResult:
    """DeN (audio, visual) and ReW (visual) for the whole training set.

    ``audio`` (N, T, D_a), ``frames`` (N, 8*T, D_v) (or ``visual_segments`` (N, T, D_v) already
    averaged), ``weak`` (N, C), ``clap`` / ``clip`` prompt tables, ``class_names`` (C, D_v) CLIP
    embeddings of the class names; ``rew_clamp``: ReW's clamped variant (see :func:`rew`).
    """
    seg_v = l2_normalize(segment_features(frames) if visual_segments is None else visual_segments)
    a = den(audio, weak, clap, "audio", max_labels)
    v = den(seg_v, weak, clip, "visual", max_labels, normalized=True)
    vr, changed = rew(v, class_similarity(seg_v, class_names, normalized=True), alpha, beta, clamp=rew_clamp)
    return DenoiseResult(a, v, vr, removed_counts(weak, a), removed_counts(weak, v),
                         changed.sum((0, 1)).astype(np.int64))
