"""The inference rule as a test oracle: records' events recomputed from their saved probabilities.

Imported by name from test_parse.py and test_ray.py (pytest puts ``tests/`` on ``sys.path``); not
collected itself. Used to check that ``--seg-threshold`` / ``--video-threshold`` reach the rule the
right way round: thresholds are picked from the observed probabilities so that swapping them
changes the events.
"""
from __future__ import annotations

import numpy as np

from lsld_engine.records.events import predict_masks, track_events
from lsld_engine.data.llp import T

#: Saved probabilities are rounded to 4 decimals (lsld_engine.parsing.parse.PROB_DECIMALS) and runs on
#: other processes agree to ~2e-4: thresholds are kept this far from every observed value so
#: neither can move a comparison.
MARGIN = 5e-4


def saved_probs(rec: dict) -> dict[str, np.ndarray]:
    """A record's ``--save-probs`` fields -> ``seg_prob (W, 10, 2, C)``, ``a_prob``/``v_prob`` ``(W, C)``."""
    a, v = np.asarray(rec["probs"]["audio"]), np.asarray(rec["probs"]["visual"])
    w = a.shape[0] // T
    seg = np.stack([a.reshape(w, T, -1), v.reshape(w, T, -1)], axis=2)
    return {"seg_prob": seg, "a_prob": np.asarray(rec["window_probs"]["audio"]),
            "v_prob": np.asarray(rec["window_probs"]["visual"])}


def rule_events(rec: dict, seg_threshold: float, video_threshold: float) -> dict[str, list[dict]]:
    """The events the inference rule gives on ``rec``'s saved probabilities with these thresholds."""
    p = saved_probs(rec)
    seg = p["seg_prob"]
    mask_a, mask_v = predict_masks(seg, p["a_prob"], p["v_prob"], seg_threshold, video_threshold)
    return track_events(mask_a, mask_v, seg[:, :, 0], seg[:, :, 1], duration=rec["duration"])


def event_keys(events: dict[str, list[dict]]) -> dict[str, list[tuple]]:
    """``track -> [(label, onset, offset)]`` (scores compared separately, to a tolerance)."""
    return {track: [(e["label"], e["onset"], e["offset"]) for e in evs] for track, evs in events.items()}


def assert_events_follow_rule(records: dict[str, dict], seg_threshold: float, video_threshold: float) -> None:
    """Every ok record's events are the rule applied to its saved probabilities (scores to 1e-3:
    they are means of probabilities the record rounds to 4 decimals)."""
    ok = [r for r in records.values() if r["status"] == "ok"]
    assert ok
    for rec in ok:
        want = rule_events(rec, seg_threshold, video_threshold)
        assert event_keys(rec["events"]) == event_keys(want), rec["video_id"]
        for track, evs in want.items():
            np.testing.assert_allclose([e["score"] for e in rec["events"][track]], [e["score"] for e in evs],
                                       atol=1e-3, err_msg=f"{rec['video_id']} {track}")


def _safe(x: float, values: np.ndarray) -> bool:
    return bool(np.min(np.abs(values - x)) > MARGIN)


def swap_sensitive_thresholds(records: dict[str, dict]) -> tuple[float, float]:
    """``(seg_threshold, video_threshold)`` taken from the records' probabilities such that the
    rule's events differ when the two are swapped, and both ways give some events.

    Candidates are midpoints between observed probabilities (away from every value by ``MARGIN``);
    the pair that changes the most events under a swap wins (ties: the first found).
    """
    ok = [r for r in records.values() if r["status"] == "ok"]
    vals = np.unique(np.concatenate([np.ravel(x) for r in ok for x in saved_probs(r).values()]))
    mids = ((vals[:-1] + vals[1:]) / 2)[np.diff(vals) > 2 * MARGIN]
    assert mids.size, "the probabilities leave no gap to put a threshold in"
    # spread over the data: for each quantile of the probabilities, the nearest gap
    targets = np.quantile(vals, np.linspace(0.05, 0.95, 19))
    cand = [float(round(mids[np.argmin(np.abs(mids - t))], 4)) for t in targets]
    cand = sorted({c for c in cand if _safe(c, vals)})

    def events(s, v):
        return [event_keys(rule_events(r, s, v)) for r in ok]

    def count(evs):
        return sum(len(x) for e in evs for x in e.values())

    best, best_diff = None, 0
    for s in cand:
        for v in cand:
            if s == v:
                continue
            one, other = events(s, v), events(v, s)
            if count(one) == 0 or count(other) == 0:
                continue
            diff = sum(len(set(a[t]) ^ set(b[t])) for a, b in zip(one, other) for t in a)
            if diff > best_diff:
                best, best_diff = (s, v), diff
    assert best is not None, f"no threshold pair among {cand} changes the events when swapped"
    return best
