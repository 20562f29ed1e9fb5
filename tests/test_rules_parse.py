"""The parse record (lsld_engine/parsing/parse.py) against the inference rule written out by hand.

Fast, no media and no encoders: the decode/embed stage is replaced by a list of prepared groups
and the HAN by a backend that reads its probabilities straight out of the embeddings, so every
probability, threshold and window boundary is chosen here. Thresholds are chosen so that
swapping the segment and video thresholds changes the events. Written to kill the mutants of
``scripts/mutation.py parse`` (docs/testing.md).
"""
from __future__ import annotations

import numpy as np
import pytest

import lsld_engine.parsing.parse as parse_mod
from lsld_engine.parsing.embed import EmbeddedVideo
from lsld_engine.data.llp import CLASSES, NUM_CLASSES, T
from lsld_engine.media.pool import DecodeFailure
from lsld_engine.parsing.parse import PROB_DECIMALS, Thresholds, failure_record, parse_videos, run_han, video_record
from lsld_engine.parsing.pipeline import Summary

C = NUM_CLASSES


class ProbBackend:
    """A HAN stand-in: embeddings ``(W, 10, 2C)`` audio / ``(W, 80, 2C)`` frames carry the outputs.

    ``seg_prob[:, :, 0] = audio[:, :, :C]``, ``seg_prob[:, :, 1] = frames[:, :10, :C]``,
    ``a_prob = audio[:, 0, C:]``, ``v_prob = frames[:, 0, C:]``. Records each call's window count.
    """

    def __init__(self):
        self.calls: list[int] = []

    def parse(self, audio, frames):
        assert audio.shape[0] == frames.shape[0]
        self.calls.append(audio.shape[0])
        seg = np.stack([audio[:, :, :C], frames[:, :T, :C]], axis=2)
        return {"seg_prob": seg, "a_prob": audio[:, 0, C:].copy(), "v_prob": frames[:, 0, C:].copy()}


def embedded(video_id, seg_a, seg_v, a, v, *, duration=None, has_audio=True, first_window=0, final=True):
    """An EmbeddedVideo whose ProbBackend outputs are ``seg_a``/``seg_v`` ``(W, 10, C)``, ``a``/``v`` ``(W, C)``."""
    w = seg_a.shape[0]
    audio = np.zeros((w, T, 2 * C), np.float32)
    frames = np.zeros((w, 80, 2 * C), np.float32)
    audio[:, :, :C] = seg_a
    audio[:, 0, C:] = a
    frames[:, :T, :C] = seg_v
    frames[:, 0, C:] = v
    return EmbeddedVideo(path=f"/v/{video_id}.mp4", video_id=video_id,
                         duration=float(w * T if duration is None else duration), has_audio=has_audio,
                         frames=frames, audio=audio, first_window=first_window, final=final)


def _probs(video):
    return ProbBackend().parse(video.audio, video.frames)


def _rule_events(seg, vid, seg_thr, vid_thr, duration):
    """Events of one track by hand: positive = seg >= seg_thr and window prob >= vid_thr, windows
    end to end, runs per class, score = mean seg prob of the run, clipped to ``duration``."""
    w = seg.shape[0]
    pos = (seg >= seg_thr) & (vid[:, None, :] >= vid_thr)
    flat, fprob = pos.reshape(w * T, C), seg.reshape(w * T, C).astype(np.float64)
    out = []
    for c in range(C):
        t = 0
        while t < w * T:
            if flat[t, c]:
                s = t
                while t < w * T and flat[t, c]:
                    t += 1
                if s < duration:
                    out.append((s, CLASSES[c], float(s), float(min(t, duration)), float(np.mean(fprob[s:t, c]))))
            t += 1
    return [{"label": lab, "onset": on, "offset": off, "score": sc} for _, lab, on, off, sc in
            sorted(out, key=lambda r: (r[0], CLASSES.index(r[1])))]


def _same(got, want):
    assert [(e["label"], e["onset"], e["offset"]) for e in got] == [(e["label"], e["onset"], e["offset"]) for e in want]
    np.testing.assert_allclose([e["score"] for e in got], [e["score"] for e in want], rtol=1e-6)


def _threshold_case():
    """One window where class 0 passes only with (segment 0.3, video 0.7), class 1 only swapped."""
    seg_a = np.zeros((1, T, C), np.float32)
    seg_v = np.zeros((1, T, C), np.float32)
    a = np.zeros((1, C), np.float32)
    v = np.zeros((1, C), np.float32)
    seg_a[0, 2:5, 0] = [0.3, 0.5, 0.6]     # >= 0.3 (exactly at the threshold counts), < 0.7
    a[0, 0] = 0.8                           # >= 0.7
    seg_a[0, 6:8, 1] = 0.8                  # >= 0.7
    a[0, 1] = 0.5                           # >= 0.3 but < 0.7
    seg_v[0, 0:3, 0] = 0.4                  # visual class 0: segment passes 0.3, window 0.75 passes 0.7
    v[0, 0] = 0.75
    seg_v[0, 9, 2] = 0.95                   # visual class 2: window 0.69 just under 0.7
    v[0, 2] = 0.69
    return seg_a, seg_v, a, v


def test_thresholds_default_to_one_half_each():
    th = Thresholds()
    assert (th.segment, th.video) == (0.5, 0.5)


def test_record_applies_segment_and_video_thresholds_the_right_way_round():
    seg_a, seg_v, a, v = _threshold_case()
    video = embedded("clip", seg_a, seg_v, a, v)
    rec = video_record(video, _probs(video), Thresholds(segment=0.3, video=0.7))
    assert [(e["label"], e["onset"], e["offset"]) for e in rec["events"]["audio"]] == [(CLASSES[0], 2.0, 5.0)]
    assert rec["events"]["audio"][0]["score"] == pytest.approx(np.mean(np.float32([0.3, 0.5, 0.6])), rel=1e-6)
    assert [(e["label"], e["onset"], e["offset"]) for e in rec["events"]["visual"]] == [(CLASSES[0], 0.0, 3.0)]
    # audio-visual = the product of the tracks: class 0 on segments 2 (audio 2..4, visual 0..2)
    av = rec["events"]["audio_visual"]
    assert [(e["label"], e["onset"], e["offset"]) for e in av] == [(CLASSES[0], 2.0, 3.0)]
    assert av[0]["score"] == pytest.approx(0.3 * 0.4, rel=1e-6)
    # swapped: class 1 audio instead, no visual event at all (0.4 < 0.7)
    swapped = video_record(video, _probs(video), Thresholds(segment=0.7, video=0.3))
    assert [(e["label"], e["onset"], e["offset"]) for e in swapped["events"]["audio"]] == [(CLASSES[1], 6.0, 8.0)]
    assert [e["label"] for e in swapped["events"]["visual"]] == [CLASSES[2]]  # 0.95 >= 0.7 and 0.69 >= 0.3


def test_record_default_thresholds_match_the_rule_on_random_windows():
    rng = np.random.default_rng(3)
    w = 3
    seg_a, seg_v = rng.random((w, T, C)).astype(np.float32), rng.random((w, T, C)).astype(np.float32)
    a, v = rng.random((w, C)).astype(np.float32), rng.random((w, C)).astype(np.float32)
    video = embedded("r", seg_a, seg_v, a, v, duration=24.5)
    for th in (Thresholds(), Thresholds(segment=0.35, video=0.6), Thresholds(segment=0.6, video=0.35)):
        rec = video_record(video, _probs(video), th)
        _same(rec["events"]["audio"], _rule_events(seg_a, a, th.segment, th.video, 24.5))
        _same(rec["events"]["visual"], _rule_events(seg_v, v, th.segment, th.video, 24.5))
    rec = video_record(video, _probs(video))
    _same(rec["events"]["audio"], _rule_events(seg_a, a, 0.5, 0.5, 24.5))


def test_record_fields_and_duration_clipping():
    seg_a = np.zeros((2, T, C), np.float32)
    seg_a[1, 3:, 4] = 0.9      # seconds 13..20 of a 14.5-s video: clipped to 14.5
    seg_a[1, 8, 5] = 0.9       # second 18: after the end, dropped
    a = np.full((2, C), 0.9, np.float32)
    video = embedded("vid-1", seg_a, np.zeros_like(seg_a), a, np.zeros_like(a), duration=14.5, has_audio=False)
    rec = video_record(video, _probs(video))
    assert set(rec) == {"video_id", "status", "duration", "segments", "events", "path", "has_audio"}
    assert rec["video_id"] == "vid-1" and rec["status"] == "ok"
    assert rec["duration"] == 14.5 and rec["segments"] == 2 * T
    assert rec["path"] == "/v/vid-1.mp4" and rec["has_audio"] is False
    assert [(e["label"], e["onset"], e["offset"]) for e in rec["events"]["audio"]] == [(CLASSES[4], 13.0, 14.5)]
    assert rec["events"]["visual"] == [] and rec["events"]["audio_visual"] == []
    assert "probs" not in rec and "window_probs" not in rec


def test_save_probs_rounds_to_four_decimals_audio_then_visual():
    assert PROB_DECIMALS == 4
    rng = np.random.default_rng(0)
    seg_a, seg_v = rng.random((2, T, C)).astype(np.float32), rng.random((2, T, C)).astype(np.float32)
    a, v = rng.random((2, C)).astype(np.float32), rng.random((2, C)).astype(np.float32)
    seg_a[0, 0, 0] = 0.123456
    video = embedded("p", seg_a, seg_v, a, v)
    rec = video_record(video, _probs(video), save_probs=True)
    pa, pv = np.asarray(rec["probs"]["audio"]), np.asarray(rec["probs"]["visual"])
    assert pa.shape == pv.shape == (2 * T, C)
    np.testing.assert_allclose(pa, seg_a.reshape(-1, C), atol=5.1e-5)
    np.testing.assert_allclose(pv, seg_v.reshape(-1, C), atol=5.1e-5)
    assert pa[0, 0] == 0.1235
    assert np.all(np.round(pa, 4) == pa) and np.all(np.round(pv, 4) == pv)
    wa, wv = np.asarray(rec["window_probs"]["audio"]), np.asarray(rec["window_probs"]["visual"])
    np.testing.assert_allclose(wa, a, atol=5.1e-5)
    np.testing.assert_allclose(wv, v, atol=5.1e-5)
    assert np.all(np.round(wa, 4) == wa)
    assert isinstance(rec["probs"]["audio"][0][0], float)


def test_failure_record():
    rec = failure_record(DecodeFailure(path="/x/bad.mp4", video_id="bad", error="no video stream"))
    assert rec == {"video_id": "bad", "status": "error", "error": "no video stream", "path": "/x/bad.mp4"}


def test_run_han_splits_one_call_back_per_video():
    rng = np.random.default_rng(1)
    vids = [embedded(str(i), *(rng.random((w, T, C)).astype(np.float32) for _ in range(2)),
                     *(rng.random((w, C)).astype(np.float32) for _ in range(2))) for i, w in enumerate([2, 1, 3])]
    backend = ProbBackend()
    outs = run_han(backend, vids)
    assert backend.calls == [6]
    assert len(outs) == 3
    for vid, out in zip(vids, outs):
        assert set(out) == {"seg_prob", "a_prob", "v_prob"}
        ref = _probs(vid)
        for k in out:
            np.testing.assert_array_equal(out[k], ref[k])
    assert run_han(backend, []) == [] and backend.calls == [6]


class ListWriter:
    def __init__(self):
        self.records = []

    def write(self, rec):
        self.records.append(rec)


def test_parse_videos_joins_parts_drops_failed_parts_and_counts(monkeypatch):
    """A streamed video in two parts, a video that fails after one part, a decode failure."""
    rng = np.random.default_rng(7)

    def rnd(w):
        return (rng.random((w, T, C)).astype(np.float32), rng.random((w, T, C)).astype(np.float32),
                rng.random((w, C)).astype(np.float32), rng.random((w, C)).astype(np.float32))

    long1, long2, short, broken1 = rnd(2), rnd(1), rnd(1), rnd(1)
    groups = [
        [embedded("long", *long1, duration=25.0, first_window=0, final=False),
         embedded("short", *short, duration=9.0),
         embedded("broken", *broken1, first_window=0, final=False)],
        [DecodeFailure(path="/v/broken.mp4", video_id="broken", error="corrupt at 12 s"),
         embedded("long", *long2, duration=25.0, first_window=2, final=True),
         DecodeFailure(path="/v/gone.mp4", video_id="gone", error="no such file")],
    ]
    seen = {}

    def fake_groups(inputs, backend, summary, **kw):
        seen.update(kw)
        seen["inputs"], seen["backend"] = inputs, backend
        yield from groups

    monkeypatch.setattr(parse_mod, "embedded_groups", fake_groups)
    backend, writer = ProbBackend(), ListWriter()
    th = Thresholds(segment=0.4, video=0.6)
    inputs = ["in-1", "in-2"]
    summary = parse_videos(inputs, backend, writer, workers=3, ordered=True, thresholds=th, save_probs=True,
                           progress=False, total=4, max_frames=160, decode_timeout=9.5, decode_fn="fn",
                           limits="lim")
    assert seen.pop("inputs") is inputs and seen.pop("backend") is backend
    assert seen == dict(workers=3, ordered=True, progress=False, total=4, max_frames=160, decode_timeout=9.5,
                        decode_fn="fn", limits="lim")
    assert backend.calls == [4, 1]
    assert [r["video_id"] for r in writer.records] == ["short", "broken", "long", "gone"]
    short_rec, broken_rec, long_rec, gone_rec = writer.records
    assert broken_rec == {"video_id": "broken", "status": "error", "error": "corrupt at 12 s",
                          "path": "/v/broken.mp4"}
    assert gone_rec["status"] == "error" and gone_rec["error"] == "no such file"
    assert long_rec["segments"] == 3 * T and long_rec["duration"] == 25.0
    seg_a = np.concatenate([long1[0], long2[0]])
    a = np.concatenate([long1[2], long2[2]])
    _same(long_rec["events"]["audio"], _rule_events(seg_a, a, 0.4, 0.6, 25.0))
    assert np.asarray(long_rec["probs"]["audio"]).shape == (3 * T, C)
    assert np.asarray(long_rec["window_probs"]["visual"]).shape == (3, C)
    _same(short_rec["events"]["visual"], _rule_events(short[1], short[3], 0.4, 0.6, 9.0))
    assert isinstance(summary, Summary)
    assert summary.done == 2 and summary.windows == 3 + 1
    assert summary.failed == [("broken", "corrupt at 12 s"), ("gone", "no such file")]


def test_parse_videos_fills_the_given_summary_and_defaults(monkeypatch):
    seen = {}

    def fake_groups(inputs, backend, summary, **kw):
        seen.update(kw)
        seen["summary"] = summary
        seg = np.zeros((1, T, C), np.float32)
        seg[0, :, 0] = 0.55
        a = np.zeros((1, C), np.float32)
        a[0, 0] = 0.55
        yield [embedded("x", seg, seg, a, a)]

    monkeypatch.setattr(parse_mod, "embedded_groups", fake_groups)
    mine = Summary(total=7)
    writer = ListWriter()
    out = parse_videos([], ProbBackend(), writer, summary=mine)
    assert out is mine and seen["summary"] is mine
    assert (mine.total, mine.done, mine.windows) == (7, 1, 1)
    assert seen == dict(workers=2, ordered=False, progress=True, total=None, max_frames=None,
                        decode_timeout=None, decode_fn=None, limits=None, summary=mine)
    (rec,) = writer.records
    assert "probs" not in rec  # save_probs defaults to off
    assert [(e["label"], e["onset"], e["offset"]) for e in rec["events"]["audio"]] == [(CLASSES[0], 0.0, 10.0)]
