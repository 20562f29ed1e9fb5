"""Per-class LLP scores and a confusion view, as pure functions over ``(N, T, C)`` 0/1 arrays.

The official metrics (:mod:`lsld_engine.evaluation.metrics`) average F over the classes of each video, then
over videos. Here the same per-(video, class) counts are kept apart:

- :func:`class_counts` gives segment- and event-level (TP, FP, FN) per video, class and track
  (audio, visual, audio-visual), with the event matching of the official kernels (IoU >= 0.5,
  :func:`lsld_engine.evaluation.metrics._event_counts`, not a second implementation);
- :func:`overall_from_counts` folds them back into the ten official numbers (a check that the
  counts are the official ones: it equals :func:`lsld_engine.evaluation.metrics.evaluate`);
- :func:`per_class_f1` pools each class's counts over all videos: F1 = 2TP / (2TP + FP + FN);
- :func:`confusion` counts, per true class, the segments where it was missed and which classes
  were predicted there instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from lsld_engine.evaluation.metrics import METRIC_KEYS, _as_binary, _event_counts

#: Tracks, in the order of the ``track`` axis of :class:`ClassCounts`.
TRACK_KEYS: tuple[str, ...] = ("a", "v", "av")
#: Per-class score keys: ``seg_a`` ... ``evt_av`` (level x track).
CLASS_KEYS: tuple[str, ...] = tuple(f"{lvl}_{t}" for lvl in ("seg", "evt") for t in TRACK_KEYS)


@dataclass(frozen=True)
class ClassCounts:
    """Counts ``(N, C, 3, 3)`` int64: videos x classes x track (a, v, av) x (TP, FP, FN)."""

    seg: np.ndarray
    evt: np.ndarray

    def level(self, name: str) -> np.ndarray:
        """``seg`` or ``evt`` counts by name."""
        return {"seg": self.seg, "evt": self.evt}[name]


def class_counts(pred_a, pred_v, gt_a, gt_v) -> ClassCounts:
    """Segment- and event-level (TP, FP, FN) of every video, class and track.

    ``pred_a``, ``pred_v``, ``gt_a``, ``gt_v``: ``(N, T, C)`` 0/1 arrays (integer or bool), checked
    as :func:`lsld_engine.evaluation.metrics.evaluate` checks them.
    """
    pa, pv, ga, gv = (_as_binary(x, n) for x, n in
                      ((pred_a, "pred_a"), (pred_v, "pred_v"), (gt_a, "gt_a"), (gt_v, "gt_v")))
    if len({pa.shape, pv.shape, ga.shape, gv.shape}) != 1:
        raise ValueError(f"pred_a, pred_v, gt_a, gt_v must have the same (N, T, C) shape, got "
                         f"{pa.shape}, {pv.shape}, {ga.shape}, {gv.shape}")
    p = np.stack([pa, pv, pa & pv], axis=-1)   # (N, T, C, 3)
    g = np.stack([ga, gv, ga & gv], axis=-1)
    p64, g64 = p.astype(np.int64), g.astype(np.int64)
    seg = np.stack([(p64 * g64).sum(1), (p64 * (1 - g64)).sum(1), ((1 - p64) * g64).sum(1)], axis=-1)
    evt = _event_kernel(np.ascontiguousarray(p.transpose(0, 2, 3, 1)), np.ascontiguousarray(g.transpose(0, 2, 3, 1)))
    return ClassCounts(seg=seg, evt=evt)


@njit(cache=True)
def _event_kernel(p, g):
    """Event (TP, FP, FN) of every track: ``p``, ``g`` ``(N, C, 3, T)`` uint8 -> ``(N, C, 3, 3)`` int64."""
    n, c, k, t_len = p.shape
    half = (t_len + 1) // 2 + 1
    ps = np.empty(half, np.int64)
    pe = np.empty(half, np.int64)
    gs = np.empty(half, np.int64)
    ge = np.empty(half, np.int64)
    hit = np.empty(half, np.bool_)
    out = np.zeros((n, c, k, 3), np.int64)
    for i in range(n):
        for j in range(c):
            for m in range(k):
                if p[i, j, m].any() or g[i, j, m].any():
                    tp, fp, fn = _event_counts(p[i, j, m], g[i, j, m], ps, pe, gs, ge, hit)
                    out[i, j, m, 0] = tp
                    out[i, j, m, 1] = fp
                    out[i, j, m, 2] = fn
    return out


def _f(counts: np.ndarray) -> np.ndarray:
    """F1 of ``(..., 3)`` (TP, FP, FN) counts; NaN where TP + FP + FN = 0 (the class does not qualify)."""
    tp, fp, fn = (counts[..., i].astype(np.float64) for i in range(3))
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), np.nan)


def overall_from_counts(counts: ClassCounts) -> dict[str, float]:
    """The ten official numbers (percent) recomputed from per-class counts.

    Per video: F = mean over qualifying classes (1.0 when none), Type@AV = mean(A, V, AV),
    Event@AV from the audio + visual counts summed per class; then the mean over videos.
    """
    out = {}
    for lvl in ("seg", "evt"):
        c = counts.level(lvl)
        cols = [_f(c[:, :, k]) for k in range(3)] + [_f(c[:, :, 0] + c[:, :, 1])]   # each (N, C)
        per_video = []
        for f in cols:
            ok = ~np.isnan(f)
            n_ok = ok.sum(1)
            per_video.append(np.where(n_ok > 0, np.where(ok, f, 0.0).sum(1) / np.maximum(n_ok, 1), 1.0))
        a, v, av, event = per_video
        for key, val in zip(("a", "v", "av", "type", "event"), (a, v, av, (a + v + av) / 3, event)):
            out[f"{lvl}_{key}"] = float(100.0 * val.mean())
    return {k: out[k] for k in METRIC_KEYS}


def per_class_f1(counts: ClassCounts) -> dict[str, np.ndarray]:
    """Per-class F1 in percent, each class's counts pooled over all videos: ``{key: (C,)}`` for
    :data:`CLASS_KEYS`; NaN for a class neither predicted nor present on that track."""
    out = {}
    for lvl in ("seg", "evt"):
        pooled = counts.level(lvl).sum(0)     # (C, 3, 3)
        for k, t in enumerate(TRACK_KEYS):
            out[f"{lvl}_{t}"] = 100.0 * _f(pooled[:, k])
    return out


def class_support(counts: ClassCounts) -> dict[str, np.ndarray]:
    """True segments / events per class and track: ``{key: (C,)}`` int64 (TP + FN, pooled)."""
    out = {}
    for lvl in ("seg", "evt"):
        pooled = counts.level(lvl).sum(0)
        for k, t in enumerate(TRACK_KEYS):
            out[f"{lvl}_{t}"] = pooled[:, k, 0] + pooled[:, k, 2]
    return out


def confusion(pred, gt) -> np.ndarray:
    """Which classes are missed, and what is predicted in their place: ``(C, C + 1)`` int64.

    ``pred``, ``gt``: ``(N, T, C)`` 0/1 of one track. Row ``c`` counts the segments where class
    ``c`` is true but not predicted (false negatives); column ``d < C`` counts those of them where
    class ``d`` is predicted but not true on the same segment (a confusion ``c -> d``; one missed
    segment can count for several ``d``), the last column those where nothing false is predicted
    (a plain miss).
    """
    p, g = _as_binary(pred, "pred").astype(bool), _as_binary(gt, "gt").astype(bool)
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} differ in shape")
    fn = (g & ~p).reshape(-1, p.shape[-1]).astype(np.int64)       # (N*T, C)
    fp = (p & ~g).reshape(-1, p.shape[-1]).astype(np.int64)
    mixed = fn.T @ fp                                              # (C, C): missed c while d is a false positive
    alone = fn.T @ (fp.sum(1) == 0).astype(np.int64)               # (C,): missed c, no false positive there
    return np.concatenate([mixed, alone[:, None]], axis=1)


def format_per_class(scores: dict[str, np.ndarray], support: dict[str, np.ndarray] | None = None,
                     classes: tuple[str, ...] | None = None, digits: int = 1) -> str:
    """A text table: one row per class, columns :data:`CLASS_KEYS` (``-`` for NaN) and, with
    ``support``, the true audio / visual events per class."""
    from lsld_engine.data.llp import CLASSES

    classes = classes or CLASSES
    heads = ["Seg A", "Seg V", "Seg AV", "Evt A", "Evt V", "Evt AV"] + (["#evt A", "#evt V"] if support else [])
    width = max(len(c) for c in classes) + 2
    lines = ["F1 per class, %".ljust(width) + "".join(h.rjust(8) for h in heads)]
    for i, name in enumerate(classes):
        cells = ["-" if np.isnan(scores[k][i]) else f"{scores[k][i]:.{digits}f}" for k in CLASS_KEYS]
        if support:
            cells += [str(int(support["evt_a"][i])), str(int(support["evt_v"][i]))]
        lines.append(name.ljust(width) + "".join(c.rjust(8) for c in cells))
    return "\n".join(lines)
