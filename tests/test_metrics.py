"""The Numba LLP metrics against plain-Python oracles, hand-worked cases and the real test truth."""
import numpy as np
import pytest

from lsld_engine.evaluation._reference_metrics import evaluate_reference
from lsld_engine.data.llp import CLASSES, load_split
from lsld_engine.evaluation.metrics import METRIC_KEYS, evaluate, format_table, per_video


# --- an oracle written independently of lsld_engine.evaluation._reference_metrics --------------------------
# Events from the edges of the zero-padded sequence, IoU as a float division, F per the definition.
def _oracle_events(seq):
    edges = np.diff(np.concatenate([[0], seq, [0]]).astype(int))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _iou(a, b):
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def _oracle_counts(pred, gt, level):
    if level == "seg":
        return (int(np.sum(pred & gt)), int(np.sum(pred & (1 - gt))), int(np.sum((1 - pred) & gt)))
    ep, eg = _oracle_events(pred), _oracle_events(gt)
    tp = sum(any(_iou(p, g) >= 0.5 for g in eg) for p in ep)
    fn = sum(not any(_iou(p, g) >= 0.5 for p in ep) for g in eg)
    return tp, len(ep) - tp, fn


def _oracle_f(counts):
    fs = [2 * tp / (2 * tp + fp + fn) for tp, fp, fn in counts if tp + fp > 0 or tp + fn > 0]
    return float(np.mean(fs)) if fs else 1.0


def oracle(pa, pv, ga, gv):
    pa, pv, ga, gv = (np.asarray(x, dtype=np.int64) for x in (pa, pv, ga, gv))
    rows = []
    for i in range(pa.shape[0]):
        row = []
        for level in ("seg", "evt"):
            per = {}
            for name, p, g in (("a", pa[i], ga[i]), ("v", pv[i], gv[i]), ("av", pa[i] * pv[i], ga[i] * gv[i])):
                per[name] = [_oracle_counts(p[:, c], g[:, c], level) for c in range(p.shape[1])]
            both = [tuple(np.add(x, y)) for x, y in zip(per["a"], per["v"])]
            fa, fv, fav = _oracle_f(per["a"]), _oracle_f(per["v"]), _oracle_f(per["av"])
            row += [fa, fv, fav, (fa + fv + fav) / 3, _oracle_f(both)]
        rows.append(row)
    means = 100 * np.mean(rows, axis=0)
    return {k: float(means[j]) for j, k in enumerate(METRIC_KEYS)}


def _close(a, b, tol=1e-9):
    assert set(a) == set(b) == set(METRIC_KEYS)
    bad = {k: (a[k], b[k]) for k in METRIC_KEYS if abs(a[k] - b[k]) > tol}
    assert not bad, bad


def _random(rng, n, t, c, density):
    return [(rng.random((n, t, c)) < d).astype(np.uint8) for d in density]


def _clustered(rng, n, t, c, p_on, p_stay):
    """Markov-chain tracks: realistic runs instead of salt-and-pepper."""
    x = np.zeros((n, t, c), np.uint8)
    state = rng.random((n, c)) < p_on
    for s in range(t):
        x[:, s] = state
        flip = rng.random((n, c)) > p_stay
        state = np.where(flip, ~state, state)
    return x


# --- agreement ------------------------------------------------------------------------------------
@pytest.mark.parametrize("density", [0.0, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 1.0])
def test_agrees_with_both_oracles_on_random_inputs(density):
    rng = np.random.default_rng(int(density * 1000))
    x = _random(rng, 70, 10, 25, [density, density, max(density, 0.02), density])
    got = evaluate(*x)
    _close(got, oracle(*x))
    _close(got, evaluate_reference(*x))
    # The threaded kernel (70 videos = 3 chunks, the last one partial) gives the same per-video rows.
    np.testing.assert_array_equal(per_video(*x, parallel=True), per_video(*x, parallel=False))


@pytest.mark.parametrize("seed", range(6))
def test_agrees_on_mixed_density_and_clustered_inputs(seed):
    rng = np.random.default_rng(100 + seed)
    d = rng.random(4)
    x = _random(rng, 40, 10, 25, d)
    _close(evaluate(*x), oracle(*x))
    y = [_clustered(rng, 40, 10, 25, p_on=rng.uniform(0.05, 0.6), p_stay=rng.uniform(0.5, 0.95)) for _ in range(4)]
    _close(evaluate(*y), oracle(*y))
    _close(evaluate_reference(*y), oracle(*y))


@pytest.mark.parametrize("t,c", [(1, 25), (2, 3), (7, 25), (33, 5), (62, 4), (63, 4), (90, 3)])
def test_agrees_for_other_segment_and_class_counts(t, c):
    rng = np.random.default_rng(t * 7 + c)
    x = _random(rng, 30, t, c, [0.3, 0.4, 0.35, 0.5])
    _close(evaluate(*x), oracle(*x))


def test_per_video_matches_oracle_video_by_video():
    rng = np.random.default_rng(5)
    x = [_clustered(rng, 25, 10, 25, 0.2, 0.8) for _ in range(4)]
    got = per_video(*x)
    assert got.shape == (25, 10)
    for i in range(25):
        want = oracle(*(a[i:i + 1] for a in x))
        np.testing.assert_allclose(got[i], [want[k] for k in METRIC_KEYS], atol=1e-9)


def test_all_zero_and_all_one_videos():
    z = np.zeros((3, 10, 25), np.uint8)
    o = np.ones((3, 10, 25), np.uint8)
    # Nothing predicted, nothing true: every class is a true negative -> 100 everywhere.
    assert evaluate(z, z, z, z) == {k: 100.0 for k in METRIC_KEYS}
    assert evaluate(o, o, o, o) == {k: 100.0 for k in METRIC_KEYS}
    assert evaluate(o, o, z, z) == {k: 0.0 for k in METRIC_KEYS}
    assert evaluate(z, z, o, o) == {k: 0.0 for k in METRIC_KEYS}
    for combo in [(o, z, o, z), (z, o, o, z), (o, o, o, z)]:
        _close(evaluate(*combo), oracle(*combo))
        _close(evaluate(*combo), evaluate_reference(*combo))


def test_real_test_annotations_vs_perturbed_predictions(llp_dir):
    s = load_split(llp_dir, "test")
    rng = np.random.default_rng(0)
    ga, gv = s.gt_audio, s.gt_visual
    assert evaluate(ga, gv, ga, gv) == {k: 100.0 for k in METRIC_KEYS}
    # Perturb: drop/extend segments near the truth and add a few spurious classes.
    pa = ga ^ (rng.random(ga.shape) < 0.02).astype(np.uint8)
    pv = np.roll(gv, 1, axis=1) | (rng.random(gv.shape) < 0.005)
    got = evaluate(pa, pv, ga, gv)
    assert got == evaluate(pa, pv, ga, gv, parallel=True)
    _close(got, evaluate_reference(pa, pv, ga, gv))
    _close(got, oracle(pa, pv, ga, gv))
    assert 0 < got["evt_a"] < 100 and 0 < got["seg_v"] < 100


# --- hand-worked cases ----------------------------------------------------------------------------
def _one(tracks):
    """(1, 10, 25) arrays from {name: [(class, onset, offset), ...]}."""
    out = {}
    for name in ("pa", "pv", "ga", "gv"):
        x = np.zeros((1, 10, 25), np.uint8)
        for cls, on, off in tracks.get(name, []):
            x[0, on:off, CLASSES.index(cls)] = 1
        out[name] = x
    return out["pa"], out["pv"], out["ga"], out["gv"]


def test_iou_exactly_one_half_is_a_hit():
    # pred [0,2) vs truth [0,4): IoU = 0.5 -> event TP; segments TP 2, FN 2.
    r = evaluate(*_one({"pa": [("Dog", 0, 2)], "ga": [("Dog", 0, 4)]}))
    assert r["evt_a"] == 100.0
    assert r["seg_a"] == pytest.approx(100 * 4 / 6)


def test_iou_below_one_half_is_a_miss():
    # pred [0,3) vs truth [1,5): IoU = 2/5 -> one FP and one FN.
    r = evaluate(*_one({"pa": [("Dog", 0, 3)], "ga": [("Dog", 1, 5)]}))
    assert r["evt_a"] == 0.0
    assert r["seg_a"] == pytest.approx(100 * 4 / 7)


def test_one_prediction_cannot_cover_two_truth_events():
    # truth [0,2) and [3,4); pred [0,4) hits the first (IoU 2/4) only -> TP 1, FP 0, FN 1.
    r = evaluate(*_one({"pa": [("Cat", 0, 4)], "ga": [("Cat", 0, 2), ("Cat", 3, 4)]}))
    assert r["evt_a"] == pytest.approx(100 * 2 / 3)


def test_event_at_av_sums_counts_before_f():
    # Speech: audio TP only, visual FP only -> F_a = 1, F_v = 0 but Event@AV uses TP 1, FP 1 -> 2/3.
    r = evaluate(*_one({"pa": [("Speech", 0, 10)], "ga": [("Speech", 0, 10)], "pv": [("Speech", 0, 10)]}))
    assert r["seg_a"] == 100.0 and r["seg_v"] == 0.0
    assert r["seg_event"] == pytest.approx(100 * 2 / 3) and r["evt_event"] == pytest.approx(100 * 2 / 3)
    assert r["seg_type"] == pytest.approx((r["seg_a"] + r["seg_v"] + r["seg_av"]) / 3)


def test_audio_visual_is_the_product_of_tracks():
    # Predicted audio [0,5) x visual [3,8) = AV [3,5), exactly the AV truth.
    r = evaluate(*_one({"pa": [("Car", 0, 5)], "pv": [("Car", 3, 8)], "ga": [("Car", 2, 6)], "gv": [("Car", 3, 5)]}))
    assert r["seg_av"] == 100.0 and r["evt_av"] == 100.0


def test_classes_absent_everywhere_do_not_dilute_f():
    # One qualifying class with F = 1; the 24 silent classes are skipped, not averaged in as 1 or 0.
    r = evaluate(*_one({"pa": [("Banjo", 2, 4)], "ga": [("Banjo", 2, 4)],
                        "pv": [("Cello", 0, 1)], "gv": [("Banjo", 0, 1)]}))
    assert r["seg_a"] == 100.0 and r["seg_v"] == 0.0
    # No AV prediction, no AV truth -> true negative video for AV.
    assert r["seg_av"] == 100.0


def test_input_dtypes_are_equivalent():
    rng = np.random.default_rng(3)
    x = _random(rng, 20, 10, 25, [0.2, 0.3, 0.2, 0.3])
    base = evaluate(*x)
    assert evaluate(*(a.astype(bool) for a in x)) == base
    assert evaluate(*(a.astype(np.int64) for a in x)) == base
    assert evaluate(*(np.asfortranarray(a.astype(np.int8)) for a in x)) == base


# --- errors ---------------------------------------------------------------------------------------
def test_shape_and_dtype_errors():
    z = np.zeros((2, 10, 25), np.uint8)
    with pytest.raises(TypeError, match="pred_a.*float64.*threshold"):
        evaluate(z.astype(float), z, z, z)
    with pytest.raises(ValueError, match="gt_v must hold only 0 and 1"):
        evaluate(z, z, z, z + 2)
    with pytest.raises(ValueError, match="same .N, T, C. shape"):
        evaluate(z, z[:, :9], z, z)
    with pytest.raises(ValueError, match=r"pred_v must be \(N, T, C\)"):
        evaluate(z, z[0], z, z)
    with pytest.raises(ValueError, match="no videos"):
        evaluate(*(np.zeros((0, 10, 25), np.uint8),) * 4)


def test_format_table_is_in_paper_order():
    results = {k: float(i) + 0.123 for i, k in enumerate(METRIC_KEYS)}
    lines = format_table(results).splitlines()
    assert len(lines) == 3
    assert lines[1].startswith("Segment-level") and lines[2].startswith("Event-level")
    nums = [float(x) for ln in lines[1:] for x in ln.split()[1:]]
    assert nums == [round(float(i) + 0.123, 2) for i in range(10)]
    with pytest.raises(KeyError, match="evt_event"):
        format_table({k: 0.0 for k in METRIC_KEYS[:-1]})
