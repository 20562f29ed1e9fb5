"""Masks <-> events: runs, scores, windows of long videos, the audio-visual product, the inverse."""
import numpy as np
import pytest

from lsld_engine.records.events import (batch_masks_to_events, events_to_mask, events_to_masks, find_runs, masks_to_events,
                                track_events)
from lsld_engine.data.llp import CLASSES


def _plain_events(mask, probs, seg=1.0, off=0.0):
    """A plain per-class scan, sorted like the library (onset, then class index)."""
    out = []
    for c in range(mask.shape[1]):
        t = 0
        while t < mask.shape[0]:
            if mask[t, c]:
                s = t
                while t < mask.shape[0] and mask[t, c]:
                    t += 1
                score = float(np.mean(probs[s:t, c])) if probs is not None else 1.0
                out.append({"label": CLASSES[c], "onset": s * seg + off, "offset": t * seg + off, "score": score})
            t += 1
    return sorted(out, key=lambda e: (e["onset"], CLASSES.index(e["label"])))


def _assert_events_equal(got, want):
    assert [(e["label"], e["onset"], e["offset"]) for e in got] == [(e["label"], e["onset"], e["offset"]) for e in want]
    np.testing.assert_allclose([e["score"] for e in got], [e["score"] for e in want], rtol=1e-12)


def test_runs_with_scores_and_times():
    mask = np.zeros((10, 25), np.uint8)
    probs = np.zeros((10, 25), np.float32)
    dog, speech = CLASSES.index("Dog"), CLASSES.index("Speech")
    mask[2:5, dog] = 1
    probs[2:5, dog] = [0.6, 0.7, 0.8]
    mask[0:4, speech] = mask[6:10, speech] = 1
    probs[:, speech] = 0.9
    ev = masks_to_events(mask, probs)
    assert [(e["label"], e["onset"], e["offset"]) for e in ev] == [
        ("Speech", 0.0, 4.0), ("Dog", 2.0, 5.0), ("Speech", 6.0, 10.0)]
    assert ev[1]["score"] == pytest.approx(0.7)
    assert ev[0]["score"] == pytest.approx(0.9)
    # Without probabilities a mask is certain.
    assert {e["score"] for e in masks_to_events(mask)} == {1.0}


def test_segment_length_and_offset_scale_times():
    mask = np.zeros((10, 25), bool)
    mask[3:6, 0] = True
    (e,) = masks_to_events(mask, segment_seconds=0.5, offset_s=20.0)
    assert (e["onset"], e["offset"]) == (21.5, 23.0)


@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_batch_matches_plain_scan(density):
    rng = np.random.default_rng(int(density * 10))
    masks = rng.random((30, 10, 25)) < density
    probs = rng.random((30, 10, 25))
    got = batch_masks_to_events(masks, probs, segment_seconds=1.0)
    assert len(got) == 30
    for i in range(30):
        _assert_events_equal(got[i], _plain_events(masks[i], probs[i]))


def test_find_runs_arrays():
    m = np.zeros((2, 10, 3), np.uint8)
    m[1, 0:10, 2] = 1
    m[0, 4:6, 1] = 1
    vid, cls, start, end, score = find_runs(m)
    assert vid.tolist() == [0, 1] and cls.tolist() == [1, 2]
    assert start.tolist() == [4, 0] and end.tolist() == [6, 10] and score.tolist() == [1.0, 1.0]


def test_long_video_windows_merge_across_boundaries():
    # Three 10-s windows; Car runs from 8 s to 14 s (crosses window 0 -> 1), Dog lasts 20-30 s.
    m = np.zeros((3, 10, 25), np.uint8)
    car, dog = CLASSES.index("Car"), CLASSES.index("Dog")
    m[0, 8:, car] = 1
    m[1, :4, car] = 1
    m[2, :, dog] = 1
    ev = masks_to_events(m)
    assert [(e["label"], e["onset"], e["offset"]) for e in ev] == [("Car", 8.0, 14.0), ("Dog", 20.0, 30.0)]


def test_duration_clips_padding_of_last_window():
    m = np.zeros((3, 10, 25), np.uint8)
    m[2, :, 0] = 1   # 20..30 s, but the video is 24.5 s long
    m[2, 7:, 1] = 1  # 27..30 s: entirely in padding
    ev = masks_to_events(m, duration=24.5)
    assert [(e["label"], e["onset"], e["offset"]) for e in ev] == [("Speech", 20.0, 24.5)]


def test_audio_visual_events_are_the_product():
    a = np.zeros((10, 25), np.uint8)
    v = np.zeros((10, 25), np.uint8)
    a[0:6, 3] = 1
    v[4:9, 3] = 1
    pa = np.full((10, 25), 0.8)
    pv = np.full((10, 25), 0.5)
    ev = track_events(a, v, pa, pv)
    assert set(ev) == {"audio", "visual", "audio_visual"}
    (av,) = ev["audio_visual"]
    assert (av["label"], av["onset"], av["offset"]) == (CLASSES[3], 4.0, 6.0)
    assert av["score"] == pytest.approx(0.4)
    assert len(ev["audio"]) == len(ev["visual"]) == 1


def test_round_trip_mask_events_mask():
    rng = np.random.default_rng(1)
    masks = (rng.random((40, 10, 25)) < 0.3).astype(np.uint8)
    events = batch_masks_to_events(masks)
    np.testing.assert_array_equal(events_to_masks(events, 10), masks)
    np.testing.assert_array_equal(events_to_mask(events[7], 10), masks[7])


def test_events_to_mask_rounds_and_clips():
    m = events_to_mask([{"label": "Cat", "onset": 1.0000001, "offset": 2.9999},
                        {"label": "Dog", "onset": 8.0, "offset": 12.0}], num_segments=10)
    assert m[:, CLASSES.index("Cat")].tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert m[:, CLASSES.index("Dog")].tolist() == [0] * 8 + [1, 1]
    assert m.sum() == 4 and m.dtype == np.uint8
    assert events_to_masks([[], []], 10).shape == (2, 10, 25)


def test_errors():
    with pytest.raises(ValueError, match="unknown class 'Kazoo'"):
        events_to_mask([{"label": "Kazoo", "onset": 0, "offset": 1}])
    with pytest.raises(TypeError, match="threshold"):
        masks_to_events(np.zeros((10, 25), np.float32))
    with pytest.raises(ValueError, match="probs shape"):
        masks_to_events(np.zeros((10, 25), np.uint8), np.zeros((10, 24)))
    with pytest.raises(ValueError, match="C = 25"):
        batch_masks_to_events(np.zeros((2, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="differ in shape"):
        track_events(np.zeros((10, 25)), np.zeros((9, 25)))


def test_clipped_offsets_keep_their_partial_last_segment():
    ev = [[{"label": "Speech", "onset": 8.0, "offset": 9.4}], [{"label": "Dog", "onset": 18.0, "offset": 18.5}]]
    m = events_to_masks(ev, 20)
    assert m[0, :, 0].nonzero()[0].tolist() == [8, 9]
    assert m[1, :, 3].nonzero()[0].tolist() == [18]
    # and the round trip through a duration-clipped event is exact
    mask = np.zeros((1, 20, 25), np.uint8)
    mask[0, 15:, 0] = 1
    back = events_to_masks([masks_to_events(mask, duration=17.25)], 20)
    assert back[0, :, 0].nonzero()[0].tolist() == [15, 16, 17]
