"""Per-class counts, F1 and the confusion view against the official metrics and hand-worked cases."""
import numpy as np
import pytest

from lsld_engine.evaluation.class_metrics import (CLASS_KEYS, class_counts, class_support, confusion, format_per_class,
                                       overall_from_counts, per_class_f1)
from lsld_engine.data.llp import CLASSES
from lsld_engine.evaluation.metrics import METRIC_KEYS, evaluate


@pytest.mark.parametrize("t_len", [10, 70])          # bit-mask and scan paths of the official kernels
@pytest.mark.parametrize("density", [0.0, 0.05, 0.4, 0.9])
def test_counts_reproduce_the_ten_official_numbers(t_len, density):
    rng = np.random.default_rng([t_len, int(density * 100)])
    x = [(rng.random((64, t_len, 25)) < density).astype(np.uint8) for _ in range(4)]
    got = overall_from_counts(class_counts(*x))
    want = evaluate(*x)
    assert list(got) == list(METRIC_KEYS)
    for k in METRIC_KEYS:
        assert got[k] == pytest.approx(want[k], abs=1e-9), k


def test_per_class_f1_by_hand():
    t = 10
    gt_a = np.zeros((2, t, 25), np.uint8)
    pred_a = np.zeros_like(gt_a)
    gt_a[0, 0:4, 0] = 1          # Speech: true 0-4
    pred_a[0, 0:3, 0] = 1        # predicted 0-3: 3 TP, 1 FN segments; IoU 3/4 -> event TP
    gt_a[1, 5:9, 1] = 1          # Car: true 5-9
    pred_a[1, 0:2, 1] = 1        # predicted 0-2: no overlap -> seg 2 FP, 4 FN; event 1 FP, 1 FN
    zeros = np.zeros_like(gt_a)
    c = class_counts(pred_a, zeros, gt_a, zeros)
    np.testing.assert_array_equal(c.seg[0, 0, 0], [3, 0, 1])
    np.testing.assert_array_equal(c.evt[0, 0, 0], [1, 0, 0])
    np.testing.assert_array_equal(c.evt[1, 1, 0], [0, 1, 1])
    f1 = per_class_f1(c)
    assert set(f1) == set(CLASS_KEYS)
    assert f1["seg_a"][0] == pytest.approx(100 * 6 / 7)
    assert f1["evt_a"][0] == pytest.approx(100.0)
    assert f1["seg_a"][1] == pytest.approx(0.0)
    assert np.isnan(f1["seg_v"]).all() and np.isnan(f1["seg_a"][2:]).all()   # absent: no score, not 0
    sup = class_support(c)
    assert sup["evt_a"][0] == 1 and sup["seg_a"][1] == 4
    table = format_per_class(f1, sup)
    assert len(table.splitlines()) == 26 and "85.7" in table and "Car" in table


def test_confusion_counts_missed_and_confused_segments():
    t = 10
    gt = np.zeros((1, t, 25), np.uint8)
    pred = np.zeros_like(gt)
    gt[0, 0:4, 3] = 1            # Dog true on 0-3
    pred[0, 0:2, 4] = 1          # Cat predicted on 0-1 instead: Dog -> Cat twice
    pred[0, 2:4, 3] = 1          # Dog found on 2-3
    gt[0, 6:8, 9] = 1            # Cello true on 6-7, nothing predicted: plain misses
    m = confusion(pred, gt)
    assert m.shape == (25, 26)
    assert m[3, 4] == 2 and m[3, 25] == 0
    assert m[9, 25] == 2
    assert m.sum() == 4


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="same"):
        class_counts(np.zeros((1, 10, 25), int), np.zeros((1, 10, 25), int), np.zeros((1, 9, 25), int),
                     np.zeros((1, 10, 25), int))
    with pytest.raises(TypeError, match="threshold"):
        class_counts(*(np.zeros((1, 10, 25), float),) * 4)
    assert len(CLASSES) == 25
