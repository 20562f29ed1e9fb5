"""The inference rule and events (lsld_engine/records/events.py): boundaries, shapes, messages.

Written to kill the mutants of ``scripts/mutation.py events`` (docs/testing.md); complements
tests/test_events.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from lsld_engine.records.events import (TRACKS, batch_masks_to_events, events_to_mask, events_to_masks, find_runs,
                                masks_to_events, predict_masks, track_events)
from lsld_engine.data.llp import CLASSES, NUM_CLASSES, T

C = NUM_CLASSES


def _probs(n=2, t=T, c=C, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, t, 2, c)).astype(np.float32), rng.random((n, c)).astype(np.float32), \
        rng.random((n, c)).astype(np.float32)


def test_tracks_order():
    assert TRACKS == ("audio", "visual", "audio_visual")


def test_predict_masks_is_the_rule_elementwise_with_both_thresholds():
    seg, a, v = _probs(3, seed=1)
    for st, vt in ((0.5, 0.5), (0.3, 0.7), (0.7, 0.3)):
        pa, pv = predict_masks(seg, a, v, st, vt)
        assert pa.dtype == np.uint8 and pv.dtype == np.uint8
        assert pa.shape == pv.shape == (3, T, C)
        want_a = (seg[:, :, 0] >= st) & (a[:, None, :] >= vt)
        want_v = (seg[:, :, 1] >= st) & (v[:, None, :] >= vt)
        np.testing.assert_array_equal(pa, want_a.astype(np.uint8))
        np.testing.assert_array_equal(pv, want_v.astype(np.uint8))
    # the defaults are one half each
    np.testing.assert_array_equal(predict_masks(seg, a, v)[0], predict_masks(seg, a, v, 0.5, 0.5)[0])


def test_predict_masks_threshold_is_inclusive_and_not_swapped():
    seg = np.zeros((1, T, 2, C), np.float32)
    a = np.zeros((1, C), np.float32)
    v = np.zeros((1, C), np.float32)
    seg[0, 0, 0, 0] = 0.25   # audio seg exactly at the segment threshold
    a[0, 0] = 0.75           # audio window exactly at the video threshold
    seg[0, 1, 1, 1] = 0.75   # visual: seg at the video threshold value, window at the segment one
    v[0, 1] = 0.25
    pa, pv = predict_masks(seg, a, v, seg_threshold=0.25, video_threshold=0.75)
    assert pa[0, 0, 0] == 1 and pa.sum() == 1
    assert pv.sum() == 0     # 0.25 < 0.75 for the window
    pa2, pv2 = predict_masks(seg, a, v, seg_threshold=0.75, video_threshold=0.25)
    assert pa2.sum() == 0 and pv2[0, 1, 1] == 1 and pv2.sum() == 1


def test_predict_masks_uses_each_modalitys_own_window_probability():
    seg = np.ones((1, T, 2, C), np.float32)
    a = np.zeros((1, C), np.float32)
    v = np.ones((1, C), np.float32)
    pa, pv = predict_masks(seg, a, v)
    assert pa.sum() == 0 and pv.sum() == T * C
    seg[0, :, 0] = 0.0   # audio segments off, visual on
    pa, pv = predict_masks(seg, v, v)
    assert pa.sum() == 0 and pv.sum() == T * C


class _Tensor:
    """What predict_masks needs of a torch tensor (``detach().cpu().numpy()``), without importing torch."""

    def __init__(self, x):
        self.x = x

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.x


def test_predict_masks_takes_torch_tensors():
    seg, a, v = _probs(2, seed=4)
    got = predict_masks(_Tensor(seg), _Tensor(a), _Tensor(v), 0.4, 0.6)
    want = predict_masks(seg, a, v, 0.4, 0.6)
    for g, w in zip(got, want):
        assert isinstance(g, np.ndarray)
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("shapes", [
    ((2, T, C), (2, C), (2, C)),            # no modality axis
    ((2, T, 3, C), (2, C), (2, C)),         # three modalities
    ((2, T, 2, C), (3, C), (3, C)),         # a_prob for another batch
    ((2, T, 2, C), (2, C - 1), (2, C - 1)),  # another class count
    ((2, T, 2, C), (2, C), (2, C - 1)),     # v_prob differs from a_prob
    ((2, T, 2, C), (2, C), (3, C)),
])
def test_predict_masks_refuses_wrong_shapes_naming_them(shapes):
    s, a, v = (np.zeros(x, np.float32) for x in shapes)
    with pytest.raises(ValueError) as e:
        predict_masks(s, a, v)
    assert str(e.value) == (f"expected seg_prob (N, T, 2, C) and a_prob, v_prob (N, C); "
                            f"got {s.shape}, {a.shape}, {v.shape}")


def test_find_runs_order_and_scores_and_errors():
    m = np.zeros((2, 6, 3), np.uint8)
    p = np.arange(36, dtype=np.float64).reshape(2, 6, 3) / 100
    m[0, 1:4, 2] = 1
    m[0, 1:2, 0] = 1
    m[0, 5:, 0] = 1
    m[1, 0:6, 1] = 1
    vid, cls, start, end, score = find_runs(m, p)
    assert vid.tolist() == [0, 0, 0, 1]
    assert cls.tolist() == [0, 2, 0, 1]
    assert start.tolist() == [1, 1, 5, 0]
    assert end.tolist() == [2, 4, 6, 6]
    np.testing.assert_allclose(score, [p[0, 1, 0], p[0, 1:4, 2].mean(), p[0, 5, 0], p[1, :, 1].mean()], rtol=1e-12)
    for arr in (vid, cls, start, end):
        assert arr.dtype == np.int64
    _, _, _, _, ones = find_runs(m)
    assert ones.tolist() == [1.0] * 4
    with pytest.raises(ValueError) as e:
        find_runs(np.zeros((6, 3), np.uint8))
    assert str(e.value) == "masks must be (N, T, C), got shape (6, 3)"
    with pytest.raises(ValueError) as e:
        find_runs(m, p[:, :5])
    assert str(e.value) == "probs shape (2, 5, 3) differs from masks shape (2, 6, 3)"


def test_find_runs_accepts_non_contiguous_probs():
    m = np.ones((1, 4, 2), np.uint8)
    p = np.asfortranarray(np.array([[[0.1, 0.5], [0.2, 0.5], [0.3, 0.5], [0.4, 0.5]]]))
    _, cls, _, _, score = find_runs(m, p[:, :, ::-1])
    assert cls.tolist() == [0, 1]
    np.testing.assert_allclose(score, [0.5, 0.25])


def test_batch_events_durations_and_class_count():
    masks = np.zeros((2, T, C), np.uint8)
    masks[0, 8:10, 3] = 1     # 8..10 on a 9.5-s video: clipped to 9.5
    masks[1, 9, 4] = 1        # 9..10 on a 9.0-s video: starts at the end, dropped
    masks[1, 2:4, 4] = 1
    out = batch_masks_to_events(masks, durations=[9.5, 9.0])
    assert out == [[{"label": CLASSES[3], "onset": 8.0, "offset": 9.5, "score": 1.0}],
                   [{"label": CLASSES[4], "onset": 2.0, "offset": 4.0, "score": 1.0}]]
    # a scalar duration is broadcast to every video
    out = batch_masks_to_events(masks, durations=9.0)
    assert [(e["onset"], e["offset"]) for e in out[0]] == [(8.0, 9.0)]
    assert [(e["onset"], e["offset"]) for e in out[1]] == [(2.0, 4.0)]
    # offsets and segment lengths apply before clipping
    out = batch_masks_to_events(masks[:1], segment_seconds=2.0, offset_s=1.0, durations=[20.0])
    assert [(e["onset"], e["offset"]) for e in out[0]] == [(17.0, 20.0)]
    with pytest.raises(ValueError) as e:
        batch_masks_to_events(np.zeros((1, T, C - 1), np.uint8))
    assert str(e.value) == f"masks must have C = {C} LLP classes last, got shape (1, {T}, {C - 1})"
    assert batch_masks_to_events(np.zeros((3, T, C), np.uint8)) == [[], [], []]


def test_masks_to_events_shapes_and_errors():
    mask = np.zeros((2, T, C), np.uint8)
    mask[0, 9, 0] = mask[1, 0, 0] = 1
    probs = np.zeros((2, T, C))
    probs[0, 9, 0], probs[1, 0, 0] = 0.2, 0.6
    (e,) = masks_to_events(mask, probs, duration=20.0)
    assert (e["onset"], e["offset"]) == (9.0, 11.0) and e["score"] == pytest.approx(0.4)
    (e,) = masks_to_events(mask, probs, duration=10.5)
    assert (e["onset"], e["offset"]) == (9.0, 10.5)
    with pytest.raises(ValueError) as x:
        masks_to_events(np.zeros((C,), np.uint8))
    assert str(x.value) == f"mask must be (T, C) or (W, T, C), got shape ({C},)"
    with pytest.raises(ValueError) as x:
        masks_to_events(np.zeros((1, 1, T, C), np.uint8))
    assert "mask must be (T, C) or (W, T, C)" in str(x.value)
    with pytest.raises(ValueError) as x:
        masks_to_events(mask, probs[0])
    assert str(x.value) == f"probs shape ({T}, {C}) differs from mask shape (2, {T}, {C})"


def test_track_events_av_product_and_errors():
    ma = np.zeros((T, C), np.uint8)
    mv = np.zeros((T, C), bool)
    pa = np.full((T, C), 0.5)
    pv = np.full((T, C), 0.8)
    ma[1:5, 2] = 1
    mv[3:7, 2] = True
    ev = track_events(ma, mv, pa, pv, duration=10.0)
    assert list(ev) == ["audio", "visual", "audio_visual"]
    assert [(e["onset"], e["offset"]) for e in ev["audio_visual"]] == [(3.0, 5.0)]
    assert ev["audio_visual"][0]["score"] == pytest.approx(0.4)
    assert ev["audio"][0]["score"] == pytest.approx(0.5) and ev["visual"][0]["score"] == pytest.approx(0.8)
    # one probability missing: scores are 1.0 for the product
    ev = track_events(ma, mv, pa, None)
    assert ev["audio_visual"][0]["score"] == 1.0 and ev["audio"][0]["score"] == pytest.approx(0.5)
    ev = track_events(ma, mv, None, pv)
    assert ev["audio_visual"][0]["score"] == 1.0 and ev["visual"][0]["score"] == pytest.approx(0.8)
    ev = track_events(ma, mv, segment_seconds=2.0, duration=9.0)
    assert [(e["onset"], e["offset"]) for e in ev["audio"]] == [(2.0, 9.0)]
    with pytest.raises(ValueError) as x:
        track_events(ma, mv[:5])
    assert str(x.value) == f"audio mask ({T}, {C}) and visual mask (5, {C}) differ in shape"
    with pytest.raises(TypeError) as x:
        track_events(pa, pv)
    assert str(x.value) == ("mask_a must be a 0/1 integer or bool mask, got float64 "
                            "(threshold probabilities first)")
    with pytest.raises(TypeError) as x:
        track_events(ma, pv)
    assert str(x.value).startswith("mask_v must be a 0/1 integer or bool mask")


def test_integer_masks_other_than_one_count_as_positive():
    m = np.zeros((T, C), np.int32)
    m[2:4, 0] = 7
    (e,) = masks_to_events(m)
    assert (e["onset"], e["offset"]) == (2.0, 4.0)
    ev = track_events(m, m)
    assert [(e["onset"], e["offset"]) for e in ev["audio_visual"]] == [(2.0, 4.0)]


def test_events_to_masks_rounding_clipping_and_unknown_labels():
    ev = [{"label": CLASSES[0], "onset": 2.0, "offset": 4.5},     # partial last segment kept
          {"label": CLASSES[1], "onset": -1.0, "offset": 30.0},   # clipped to the clip
          {"label": CLASSES[2], "onset": 3.0000001, "offset": 4.0000001}]  # float noise: one segment
    m = events_to_mask(ev)
    assert m.shape == (T, C) and m.dtype == np.uint8
    assert np.flatnonzero(m[:, 0]).tolist() == [2, 3, 4]
    assert np.flatnonzero(m[:, 1]).tolist() == list(range(T))
    assert np.flatnonzero(m[:, 2]).tolist() == [3]
    assert m.sum() == 3 + T + 1
    m2 = events_to_mask([{"label": CLASSES[0], "onset": 1.0, "offset": 3.0}], num_segments=20, segment_seconds=0.5)
    assert m2.shape == (20, C) and np.flatnonzero(m2[:, 0]).tolist() == [2, 3, 4, 5]
    many = events_to_masks([[], ev[:1]], num_segments=6)
    assert many.shape == (2, 6, C) and many[0].sum() == 0 and np.flatnonzero(many[1, :, 0]).tolist() == [2, 3, 4]
    assert events_to_masks([[], []]).shape == (2, T, C)
    with pytest.raises(ValueError) as x:
        events_to_masks([[], [{"label": "Unicorn", "onset": 0.0, "offset": 1.0}]])
    assert str(x.value) == "video #1: unknown class 'Unicorn' (expected one of the 25 LLP classes)"


def test_events_round_trip_through_masks_on_random_windows():
    rng = np.random.default_rng(11)
    masks = (rng.random((3, T, C)) < 0.3).astype(np.uint8)
    events = batch_masks_to_events(masks)
    np.testing.assert_array_equal(events_to_masks(events), masks)


def test_find_runs_names_masks_in_its_type_error():
    with pytest.raises(TypeError) as x:
        find_runs(np.zeros((1, T, C), np.float32))
    assert str(x.value) == ("masks must be a 0/1 integer or bool mask, got float32 "
                            "(threshold probabilities first)")


def test_track_events_applies_segment_length_and_duration_to_every_track():
    m = np.zeros((2, T, C), np.uint8)
    m[0, 8:, 1] = 1
    m[1, :3, 1] = 1          # windows end to end: one run 8..13 (segments), clipped by the duration
    ev = track_events(m, m, segment_seconds=0.5, duration=6.0)
    for track in TRACKS:
        assert [(e["onset"], e["offset"]) for e in ev[track]] == [(4.0, 6.0)], track
    ev = track_events(m, m, segment_seconds=2.0)
    for track in TRACKS:
        assert [(e["onset"], e["offset"]) for e in ev[track]] == [(16.0, 26.0)], track
    ev = track_events(m, m, duration=10.0)   # the run starts at 8 s: kept, cut at 10 s
    for track in TRACKS:
        assert [(e["onset"], e["offset"]) for e in ev[track]] == [(8.0, 10.0)], track
    m2 = np.zeros((T, C), np.uint8)
    m2[9, 0] = 1
    for track in TRACKS:
        assert track_events(m2, m2, duration=9.0)[track] == []   # starts at the end: dropped


def test_events_to_masks_never_wrap_around_for_events_before_the_clip():
    m = events_to_mask([{"label": CLASSES[0], "onset": -1.0, "offset": 3.0},     # starts before 0
                        {"label": CLASSES[1], "onset": -2.0, "offset": 0.0}])    # ends at 0: nothing
    assert np.flatnonzero(m[:, 0]).tolist() == [0, 1, 2]
    assert m[:, 1].sum() == 0
    assert m.sum() == 3
