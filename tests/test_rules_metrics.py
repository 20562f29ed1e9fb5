"""Official metrics (metrics.py) and per-class metrics (class_metrics.py): small exact cases, an
independent oracle on small random inputs (both kernel paths, both thread paths), every message.

Written to kill the mutants of ``scripts/mutation.py metrics class_metrics`` (docs/testing.md) with
inputs small enough that the kernels also run fast as plain Python (the mutation run strips
``@njit``). Scores are compared with a tolerance of 1e-9: no bit-equality across paths.
"""
from __future__ import annotations

import numpy as np
import pytest

from lsld_engine.evaluation import metrics as M
from lsld_engine.evaluation.class_metrics import (CLASS_KEYS, TRACK_KEYS, ClassCounts, class_counts, class_support, confusion,
                                       format_per_class, overall_from_counts, per_class_f1)
from lsld_engine.evaluation.metrics import METRIC_KEYS, evaluate, format_table, per_video


# --- an oracle: events from edges, IoU as a fraction, F per the definition -------------------------
def _events(seq):
    d = np.diff(np.concatenate([[0], seq, [0]]).astype(int))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def _counts(p, g, level):
    if level == "seg":
        return int((p & g).sum()), int((p & (1 - g)).sum()), int(((1 - p) & g).sum())
    ep, eg = _events(p), _events(g)

    def hit(a, b):
        inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
        return 2 * inter >= (a[1] - a[0]) + (b[1] - b[0]) - inter and inter > 0

    tp = sum(any(hit(a, b) for b in eg) for a in ep)
    return tp, len(ep) - tp, sum(not any(hit(a, b) for a in ep) for b in eg)


def _f(counts):
    fs = [2 * tp / (2 * tp + fp + fn) for tp, fp, fn in counts if tp + fp + fn > 0]
    return sum(fs) / len(fs) if fs else 1.0


def oracle_rows(pa, pv, ga, gv):
    rows = []
    for i in range(pa.shape[0]):
        row = []
        for level in ("seg", "evt"):
            per = {}
            for k, p, g in (("a", pa[i], ga[i]), ("v", pv[i], gv[i]), ("av", pa[i] & pv[i], ga[i] & gv[i])):
                per[k] = [_counts(p[:, c].astype(int), g[:, c].astype(int), level) for c in range(p.shape[1])]
            fa, fv, fav = _f(per["a"]), _f(per["v"]), _f(per["av"])
            both = [tuple(np.add(x, y)) for x, y in zip(per["a"], per["v"])]
            row += [fa, fv, fav, (fa + fv + fav) / 3, _f(both)]
        rows.append(row)
    return 100 * np.array(rows)


def _rand(seed, n, t, c, dens=(0.3, 0.4, 0.35, 0.45)):
    rng = np.random.default_rng(seed)
    return [(rng.random((n, t, c)) < d).astype(np.uint8) for d in dens]


# --- metrics.py -----------------------------------------------------------------------------------
def test_keys_and_constants():
    assert METRIC_KEYS == ("seg_a", "seg_v", "seg_av", "seg_type", "seg_event",
                           "evt_a", "evt_v", "evt_av", "evt_type", "evt_event")
    assert M._MAX_BITS == 62


@pytest.mark.parametrize("t", [10, 62, 63])   # bit-mask path up to 62 segments, scans above
@pytest.mark.parametrize("parallel", [False, True])
def test_per_video_equals_the_oracle(t, parallel):
    x = _rand(t, 16, t, 5)
    got = per_video(*x, parallel=parallel)
    assert got.shape == (16, 10) and got.dtype == np.float64
    np.testing.assert_allclose(got, oracle_rows(*x), rtol=0, atol=1e-9)
    ev = evaluate(*x, parallel=parallel)
    assert list(ev) == list(METRIC_KEYS)
    np.testing.assert_allclose([ev[k] for k in METRIC_KEYS], oracle_rows(*x).mean(0), rtol=0, atol=1e-9)


@pytest.mark.parametrize("t", [10, 70])
def test_hand_worked_video(t):
    """One video, two classes. Class 0 audio: truth 0-4, prediction 1-4 (IoU 3/4, a hit); class 1
    visual: truth 2-6, prediction 5-9 (IoU 1/7, a miss); class 2 only predicted on audio and visual."""
    z = lambda: np.zeros((1, t, 3), np.uint8)  # noqa: E731
    pa, pv, ga, gv = z(), z(), z(), z()
    ga[0, 0:4, 0] = 1
    pa[0, 1:4, 0] = 1
    gv[0, 2:6, 1] = 1
    pv[0, 5:9, 1] = 1
    pa[0, 7:8, 2] = 1
    pv[0, 7:8, 2] = 1
    r = evaluate(pa, pv, ga, gv)
    seg_a = np.mean([2 * 3 / (6 + 0 + 1), 0.0])           # class 0: 3 TP 1 FN; class 2: 1 FP
    seg_v = np.mean([2 * 1 / (2 + 3 + 3), 0.0])           # class 1: 1 TP 3 FP 3 FN; class 2: 1 FP
    seg_av = 0.0                                          # only class 2 (1 FP) qualifies
    assert r["seg_a"] == pytest.approx(100 * seg_a, abs=1e-9)
    assert r["seg_v"] == pytest.approx(100 * seg_v, abs=1e-9)
    assert r["seg_av"] == pytest.approx(100 * seg_av, abs=1e-9)
    assert r["seg_type"] == pytest.approx(100 * (seg_a + seg_v + seg_av) / 3, abs=1e-9)
    # Event@AV sums audio + visual counts per class: class 0 (3,0,1), class 1 (1,3,3), class 2 (0,2,0)
    assert r["seg_event"] == pytest.approx(100 * np.mean([6 / 7, 2 / 8, 0.0]), abs=1e-9)
    assert r["evt_a"] == pytest.approx(100 * np.mean([1.0, 0.0]), abs=1e-9)
    assert r["evt_v"] == pytest.approx(0.0, abs=1e-9)
    assert r["evt_av"] == pytest.approx(0.0, abs=1e-9)
    assert r["evt_type"] == pytest.approx(100 * 0.5 / 3, abs=1e-9)
    # events: class 0 (1,0,0), class 1 (0,1,1), class 2 (0,2,0)
    assert r["evt_event"] == pytest.approx(100 * np.mean([1.0, 0.0, 0.0]), abs=1e-9)


@pytest.mark.parametrize("t", [10, 70])
def test_iou_boundary_and_one_prediction_two_truths(t):
    z = lambda: np.zeros((1, t, 1), np.uint8)  # noqa: E731
    pa, ga, zero = z(), z(), z()
    ga[0, 0:4, 0] = 1
    pa[0, 2:6, 0] = 1          # IoU 2/6 < 1/2: a miss
    assert evaluate(pa, zero, ga, zero)["evt_a"] == 0.0
    pa[0] = 0
    pa[0, 1:5, 0] = 1          # IoU 3/5 >= 1/2: a hit
    assert evaluate(pa, zero, ga, zero)["evt_a"] == 100.0
    pa[0] = 0
    pa[0, 0:2, 0] = 1          # IoU 2/4 = 1/2 exactly: a hit
    assert evaluate(pa, zero, ga, zero)["evt_a"] == 100.0
    ga[0] = 0
    ga[0, 0:2, 0] = ga[0, 3:5, 0] = 1   # two truths 0-2, 3-5; one prediction 0-5: IoU 2/5 each
    pa[0] = 0
    pa[0, 0:5, 0] = 1
    assert evaluate(pa, zero, ga, zero)["evt_a"] == 0.0
    pa[0] = 0
    pa[0, 0:3, 0] = 1          # IoU with 0-2 is 2/3: TP 1, FN 1 (the second truth)
    assert evaluate(pa, zero, ga, zero)["evt_a"] == pytest.approx(100 * 2 / 3)
    # a prediction that reaches the last segment
    ga[0] = 0
    ga[0, t - 3:, 0] = 1
    pa[0] = 0
    pa[0, t - 2:, 0] = 1
    assert evaluate(pa, zero, ga, zero)["evt_a"] == 100.0
    assert evaluate(pa, zero, ga, zero)["seg_a"] == pytest.approx(100 * 4 / 5)


def test_all_negative_video_scores_one_hundred_and_empty_classes_do_not_count():
    z = np.zeros((2, 10, 4), np.uint8)
    r = per_video(z, z, z, z)
    np.testing.assert_array_equal(r, np.full((2, 10), 100.0))
    g = z.copy()
    g[1, 0:5, 2] = 1           # video 1: one audio truth, nothing predicted -> A = 0, V = 100 (none)
    r = per_video(z, z, g, z)
    assert r[0].tolist() == [100.0] * 10
    np.testing.assert_allclose(r[1], [0.0, 100.0, 100.0, 200 / 3, 0.0, 0.0, 100.0, 100.0, 200 / 3, 0.0], atol=1e-9)


def test_parallel_default_follows_the_video_count(monkeypatch):
    x = _rand(1, 3, 10, 2)
    calls = []
    real_p, real_s = M._kernel_parallel, M._kernel_serial
    monkeypatch.setattr(M, "_kernel_parallel", lambda *a: calls.append("p") or real_p(*a))
    monkeypatch.setattr(M, "_kernel_serial", lambda *a: calls.append("s") or real_s(*a))
    per_video(*x)
    monkeypatch.setattr(M, "PARALLEL_MIN_VIDEOS", 3)
    per_video(*x)
    monkeypatch.setattr(M, "PARALLEL_MIN_VIDEOS", 4)
    per_video(*x)
    per_video(*x, parallel=True)
    per_video(*x, parallel=False)
    assert calls == ["s", "p", "s", "p", "s"]
    assert M.PARALLEL_MIN_VIDEOS == 4 and real_p is not real_s


def test_parallel_chunks_cover_every_video():
    x = _rand(2, 2 * M._CHUNK + 5, 10, 3)
    np.testing.assert_allclose(per_video(*x, parallel=True), oracle_rows(*x), rtol=0, atol=1e-9)


def test_input_checks_and_messages():
    ok = np.zeros((1, 10, 3), np.uint8)
    with pytest.raises(ValueError) as e:
        evaluate(ok, ok, ok, np.zeros((1, 9, 3), np.uint8))
    assert str(e.value) == ("pred_a, pred_v, gt_a, gt_v must have the same (N, T, C) shape, got "
                            "(1, 10, 3), (1, 10, 3), (1, 10, 3), (1, 9, 3)")
    with pytest.raises(ValueError) as e:
        evaluate(*(np.zeros((0, 10, 3), np.uint8),) * 4)
    assert str(e.value) == "no videos to evaluate (N = 0)"
    for pos, name in enumerate(("pred_a", "pred_v", "gt_a", "gt_v")):
        args = [ok] * 4
        args[pos] = np.zeros((10, 3), np.uint8)
        with pytest.raises(ValueError) as e:
            evaluate(*args)
        assert str(e.value) == f"{name} must be (N, T, C) = videos x segments x classes, got shape (10, 3)"
        args[pos] = np.zeros((1, 10, 3), np.float32)
        with pytest.raises(TypeError) as e:
            evaluate(*args)
        assert str(e.value) == (f"{name} must be a 0/1 array of integer or bool dtype, got float32 "
                                "(threshold probabilities first, e.g. probs >= 0.5)")
        args[pos] = np.full((1, 10, 3), 2, np.int64)
        with pytest.raises(ValueError) as e:
            evaluate(*args)
        assert str(e.value) == f"{name} must hold only 0 and 1, found values in [2, 2]"
        args[pos] = np.full((1, 10, 3), -1, np.int8)
        with pytest.raises(ValueError) as e:
            evaluate(*args)
        assert str(e.value) == f"{name} must hold only 0 and 1, found values in [-1, -1]"


def test_dtypes_bool_and_wide_ints_and_non_contiguous_agree():
    x = _rand(9, 6, 10, 4)
    want = per_video(*x)
    np.testing.assert_array_equal(per_video(*(a.astype(bool) for a in x)), want)
    np.testing.assert_array_equal(per_video(*(a.astype(np.int64) for a in x)), want)
    wide = [np.repeat(a, 2, axis=2)[:, :, ::2] for a in x]   # non-contiguous views
    np.testing.assert_array_equal(per_video(*wide), want)
    one = [a[:, :, :1].astype(np.uint16) for a in x]
    np.testing.assert_allclose(per_video(*one), oracle_rows(*[a.astype(np.uint8) for a in one]), atol=1e-9)
    empty = [np.zeros((2, 10, 0), np.uint8)] * 4   # no classes: every video is all-negative
    np.testing.assert_array_equal(per_video(*empty), np.full((2, 10), 100.0))


def test_format_table_exact():
    r = {k: float(i) + 0.123 for i, k in enumerate(METRIC_KEYS)}
    w = len("Audio-Visual") + 2
    want = ("".ljust(15) + "".join(c.rjust(w) for c in ("Audio", "Visual", "Audio-Visual", "Type@AV", "Event@AV"))
            + "\n" + "Segment-level".ljust(15) + "".join(f"{i + 0.123:.2f}".rjust(w) for i in range(5))
            + "\n" + "Event-level".ljust(15) + "".join(f"{i + 0.123:.2f}".rjust(w) for i in range(5, 10)))
    assert format_table(r) == want
    assert format_table(r, digits=1).splitlines()[2].split() == ["Event-level", "5.1", "6.1", "7.1", "8.1", "9.1"]
    del r["evt_av"], r["seg_v"]
    with pytest.raises(KeyError) as e:
        format_table(r)
    assert e.value.args[0] == "results lack ['seg_v', 'evt_av']: expected the keys of metrics.METRIC_KEYS"


# --- class_metrics.py ------------------------------------------------------------------------------
def test_class_keys():
    assert TRACK_KEYS == ("a", "v", "av")
    assert CLASS_KEYS == ("seg_a", "seg_v", "seg_av", "evt_a", "evt_v", "evt_av")


@pytest.mark.parametrize("t", [10, 63])
def test_class_counts_against_the_oracle_and_back_to_the_official_numbers(t):
    pa, pv, ga, gv = _rand(100 + t, 12, t, 4)
    c = class_counts(pa, pv, ga, gv)
    assert c.seg.shape == c.evt.shape == (12, 4, 3, 3)
    assert c.seg.dtype == c.evt.dtype == np.int64
    assert c.level("seg") is c.seg and c.level("evt") is c.evt
    for i in range(12):
        for j in range(4):
            tracks = ((pa[i, :, j], ga[i, :, j]), (pv[i, :, j], gv[i, :, j]),
                      (pa[i, :, j] & pv[i, :, j], ga[i, :, j] & gv[i, :, j]))
            for k, (p, g) in enumerate(tracks):
                assert tuple(c.seg[i, j, k]) == _counts(p.astype(int), g.astype(int), "seg")
                assert tuple(c.evt[i, j, k]) == _counts(p.astype(int), g.astype(int), "evt")
    got = overall_from_counts(c)
    assert list(got) == list(METRIC_KEYS)
    want = oracle_rows(pa, pv, ga, gv).mean(0)
    np.testing.assert_allclose([got[k] for k in METRIC_KEYS], want, rtol=0, atol=1e-9)


def test_overall_from_counts_all_negative_video_is_one_hundred():
    z = np.zeros((2, 10, 3), np.uint8)
    g = z.copy()
    g[1, :3, 0] = 1
    got = overall_from_counts(class_counts(z, z, g, z))
    want = oracle_rows(z, z, g, z).mean(0)
    np.testing.assert_allclose([got[k] for k in METRIC_KEYS], want, atol=1e-9)
    assert got["seg_v"] == 100.0 and got["seg_a"] == 50.0


def _hand_counts():
    t = 10
    z = lambda: np.zeros((2, t, 3), np.uint8)  # noqa: E731
    pa, pv, ga, gv = z(), z(), z(), z()
    ga[0, 0:4, 0] = 1
    pa[0, 0:3, 0] = 1        # class 0 audio: seg (3,0,1), evt (1,0,0)
    gv[1, 2:6, 1] = 1
    pv[1, 2:6, 1] = 1
    ga[1, 2:6, 1] = 1
    pa[1, 2:4, 1] = 1        # class 1: audio seg (2,0,2) evt (1,0,0) [IoU 2/4]; visual (4,0,0) (1,0,0)
    pv[0, 8:10, 2] = 1       # class 2 visual: 2 FP segments, 1 FP event
    return pa, pv, ga, gv


def test_per_class_f1_and_support_by_hand():
    c = class_counts(*_hand_counts())
    np.testing.assert_array_equal(c.seg[1, 1, 2], [2, 0, 2])   # av = audio & visual
    np.testing.assert_array_equal(c.evt[1, 1, 2], [1, 0, 0])
    f = per_class_f1(c)
    assert list(f) == list(CLASS_KEYS)
    np.testing.assert_allclose(f["seg_a"], [100 * 6 / 7, 100 * 4 / 6, np.nan])
    np.testing.assert_allclose(f["seg_v"], [np.nan, 100.0, 0.0])
    np.testing.assert_allclose(f["seg_av"], [np.nan, 100 * 4 / 6, np.nan])
    np.testing.assert_allclose(f["evt_a"], [100.0, 100.0, np.nan])
    np.testing.assert_allclose(f["evt_v"], [np.nan, 100.0, 0.0])
    np.testing.assert_allclose(f["evt_av"], [np.nan, 100.0, np.nan])
    s = class_support(c)
    assert list(s) == list(CLASS_KEYS)
    assert s["seg_a"].tolist() == [4, 4, 0] and s["seg_v"].tolist() == [0, 4, 0] and s["seg_av"].tolist() == [0, 4, 0]
    assert s["evt_a"].tolist() == [1, 1, 0] and s["evt_v"].tolist() == [0, 1, 0] and s["evt_av"].tolist() == [0, 1, 0]
    assert s["seg_a"].dtype == np.int64


def test_format_per_class_exact():
    c = class_counts(*_hand_counts())
    f, s = per_class_f1(c), class_support(c)
    names = ("Speech", "Car", "Dog")
    w = len("Speech") + 2
    heads = ["Seg A", "Seg V", "Seg AV", "Evt A", "Evt V", "Evt AV"]
    lines = format_per_class(f, s, classes=names).splitlines()
    assert lines[0] == "F1 per class, %".ljust(w) + "".join(h.rjust(8) for h in heads + ["#evt A", "#evt V"])
    assert lines[1] == "Speech".ljust(w) + "".join(x.rjust(8) for x in ["85.7", "-", "-", "100.0", "-", "-", "1", "0"])
    assert lines[3] == "Dog".ljust(w) + "".join(x.rjust(8) for x in ["-", "0.0", "-", "-", "0.0", "-", "0", "0"])
    plain = format_per_class(f, classes=names, digits=2).splitlines()
    assert plain[0] == "F1 per class, %".ljust(w) + "".join(h.rjust(8) for h in heads)
    assert plain[2] == "Car".ljust(w) + "".join(x.rjust(8) for x in ["66.67", "100.00", "66.67", "100.00", "100.00",
                                                                   "100.00"])
    assert format_per_class(f, s, classes=names) == format_per_class(f, s, names, 1)
    default = format_per_class({k: np.full(25, np.nan) for k in CLASS_KEYS}).splitlines()
    assert len(default) == 26 and default[1].startswith("Speech") and default[1].split()[1:] == ["-"] * 6


def test_confusion_exact_and_dtype():
    gt = np.zeros((2, 4, 3), np.uint8)
    pred = np.zeros_like(gt)
    gt[0, 0:2, 0] = 1
    pred[0, 0:2, 1] = 1          # class 0 missed twice while 1 is predicted: 0 -> 1 twice
    pred[0, 1, 2] = 1            # and once also 2 on segment 1
    gt[1, 3, 2] = 1              # class 2 missed, nothing false predicted there
    gt[1, 0, 1] = pred[1, 0, 1] = 1   # a hit counts nowhere
    m = confusion(pred, gt)
    assert m.dtype == np.int64 and m.shape == (3, 4)
    np.testing.assert_array_equal(m, [[0, 2, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
    assert confusion(pred.astype(bool), gt.astype(np.int32)).tolist() == m.tolist()


def test_class_metrics_messages():
    ok = np.zeros((1, 10, 3), np.uint8)
    with pytest.raises(ValueError) as e:
        class_counts(ok, ok, ok, np.zeros((2, 10, 3), np.uint8))
    assert str(e.value) == ("pred_a, pred_v, gt_a, gt_v must have the same (N, T, C) shape, got "
                            "(1, 10, 3), (1, 10, 3), (1, 10, 3), (2, 10, 3)")
    for pos, name in enumerate(("pred_a", "pred_v", "gt_a", "gt_v")):
        args = [ok] * 4
        args[pos] = np.zeros((1, 10, 3), float)
        with pytest.raises(TypeError) as e:
            class_counts(*args)
        assert str(e.value).startswith(f"{name} must be a 0/1 array")
    with pytest.raises(ValueError) as e:
        confusion(ok, np.zeros((1, 9, 3), np.uint8))
    assert str(e.value) == "pred (1, 10, 3) and gt (1, 9, 3) differ in shape"
    with pytest.raises(TypeError) as e:
        confusion(ok.astype(float), ok)
    assert str(e.value).startswith("pred must be a 0/1 array")
    with pytest.raises(TypeError) as e:
        confusion(ok, ok.astype(float))
    assert str(e.value).startswith("gt must be a 0/1 array")
    assert isinstance(ClassCounts(seg=ok, evt=ok).level("seg"), np.ndarray)
    with pytest.raises(KeyError):
        ClassCounts(seg=ok, evt=ok).level("frame")


@pytest.mark.parametrize("t", [62, 63, 64])
def test_most_runs_a_track_can_have(t):
    """Alternating segments: ceil(T / 2) runs per track, the most the run buffers must hold."""
    alt = np.zeros((1, t, 2), np.uint8)
    alt[0, ::2, 0] = 1
    alt[0, 1::2, 1] = 1
    shifted = np.roll(alt, 1, axis=1)
    x = [alt, shifted, alt, alt]
    np.testing.assert_allclose(per_video(*x), oracle_rows(*x), rtol=0, atol=1e-9)
    c = class_counts(*x)
    assert c.evt[0, 0, 0].tolist() == [(t + 1) // 2, 0, 0]


def test_one_qualifying_class_is_that_class_f():
    x = np.zeros((1, 10, 3), np.uint8)
    x[0, 2:5, 1] = 1
    z = np.zeros_like(x)
    got = overall_from_counts(class_counts(x, z, x, z))
    assert got["seg_a"] == 100.0 and got["evt_a"] == 100.0 and got["seg_v"] == 100.0
    assert evaluate(x, z, x, z)["seg_a"] == 100.0


def test_format_per_class_header_is_left_aligned():
    lines = format_per_class({k: np.full(25, np.nan) for k in CLASS_KEYS}).splitlines()
    assert lines[0].startswith("F1 per class, % ") and lines[1].startswith("Speech ")


def test_a_class_positive_only_in_segment_zero_counts():
    p = np.zeros((1, 10, 2), np.uint8)
    p[0, 0, 0] = 1                      # one false positive at segment 0, nothing else anywhere
    z = np.zeros_like(p)
    r = evaluate(p, z, z, z)
    assert r["seg_a"] == 0.0 and r["evt_a"] == 0.0 and r["seg_v"] == 100.0


def test_parallel_chunks_one_video_past_a_chunk_boundary():
    x = _rand(4, 2 * M._CHUNK + 1, 10, 3)
    np.testing.assert_allclose(per_video(*x, parallel=True), oracle_rows(*x), rtol=0, atol=1e-9)


def test_scan_path_inactive_classes_single_track_classes_and_all_negative_videos():
    t = 70                                   # > 62 segments: the scan kernel
    z = np.zeros((3, t, 3), np.uint8)
    pa, pv, ga, gv = z.copy(), z.copy(), z.copy(), z.copy()
    gv[1, 5:9, 2] = 1                        # video 1: class 2 only in the visual truth (class 0, 1 absent)
    pa[2, 0:3, 1] = ga[2, 0:3, 1] = 1        # video 2: class 1 only on audio, found
    x = [pa, pv, ga, gv]
    rows = per_video(*x)
    np.testing.assert_allclose(rows, oracle_rows(*x), rtol=0, atol=1e-9)
    assert rows[0].tolist() == [100.0] * 10  # video 0: nothing anywhere
    assert rows[1, 1] == 0.0 and rows[2, 0] == 100.0


def test_scan_path_prediction_only_classes_count():
    t = 70
    z = np.zeros((1, t, 2), np.uint8)
    pa, pv = z.copy(), z.copy()
    pa[0, 3:5, 0] = 1                        # class 0: only an audio prediction (false positive)
    pv[0, 3:5, 1] = 1                        # class 1: only a visual prediction
    r = per_video(pa, pv, z, z)[0]
    assert r[0] == 0.0 and r[1] == 0.0
