"""Plain-Python, per-video reference of the official LLP metrics (the oracle for tests and bench).

Deliberately written like the official evaluation (lists of event vectors, one video at a time,
no Numba) so it can be read against the definition; it is slow by design. Use
:func:`lsld_engine.evaluation.metrics.evaluate` for real work.
"""
from __future__ import annotations

from lsld_engine.evaluation.metrics import METRIC_KEYS


def _events(seq: list[int]) -> list[set[int]]:
    """Maximal runs of ones of a 0/1 sequence, each as the set of its segment indices."""
    events, current = [], None
    for t, x in enumerate(seq):
        if x:
            if current is None:
                current = set()
                events.append(current)
            current.add(t)
        else:
            current = None
    return events


def _iou_ok(e1: set[int], e2: set[int]) -> bool:
    return len(e1 & e2) >= 0.5 * len(e1 | e2)


def _event_counts(pred: list[int], gt: list[int]) -> tuple[int, int, int]:
    ep, eg = _events(pred), _events(gt)
    tp = sum(1 for p in ep if any(_iou_ok(p, g) for g in eg))
    fp = len(ep) - tp
    fn = sum(1 for g in eg if not any(_iou_ok(g, p) for p in ep))
    return tp, fp, fn


def _segment_counts(pred: list[int], gt: list[int]) -> tuple[int, int, int]:
    tp = sum(1 for p, g in zip(pred, gt) if p and g)
    fp = sum(1 for p, g in zip(pred, gt) if p and not g)
    fn = sum(1 for p, g in zip(pred, gt) if not p and g)
    return tp, fp, fn


def _video_f(counts: list[tuple[int, int, int]]) -> float:
    scores = [2 * tp / (2 * tp + fp + fn) for tp, fp, fn in counts if tp + fp != 0 or tp + fn != 0]
    return sum(scores) / len(scores) if scores else 1.0


def video_scores(pa, pv, ga, gv) -> list[float]:
    """Ten fractions for one video; inputs are ``[class][segment]`` nested lists of 0/1."""
    pav = [[a * v for a, v in zip(ra, rv)] for ra, rv in zip(pa, pv)]
    gav = [[a * v for a, v in zip(ra, rv)] for ra, rv in zip(ga, gv)]
    out = []
    for counter in (_segment_counts, _event_counts):
        ca = [counter(p, g) for p, g in zip(pa, ga)]
        cv = [counter(p, g) for p, g in zip(pv, gv)]
        cav = [counter(p, g) for p, g in zip(pav, gav)]
        both = [tuple(x + y for x, y in zip(a, v)) for a, v in zip(ca, cv)]
        fa, fv, fav = _video_f(ca), _video_f(cv), _video_f(cav)
        out += [fa, fv, fav, (fa + fv + fav) / 3, _video_f(both)]
    return out


def evaluate_reference(pred_a, pred_v, gt_a, gt_v) -> dict[str, float]:
    """Same contract as :func:`lsld_engine.evaluation.metrics.evaluate` over ``(N, T, C)`` arrays, in plain Python."""
    per = []
    for i in range(len(pred_a)):
        # (T, C) -> [class][segment] lists, as the official code transposes per video.
        tr = [[[int(x) for x in row] for row in zip(*arr[i].tolist())] for arr in (pred_a, pred_v, gt_a, gt_v)]
        per.append(video_scores(*tr))
    n = len(per)
    return {k: 100.0 * sum(v[j] for v in per) / n for j, k in enumerate(METRIC_KEYS)}
