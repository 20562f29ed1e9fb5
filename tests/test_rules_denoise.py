"""DeN / ReW (lsld_engine/labels/denoise.py): defaults, strict boundaries of ReW, the label-set grouping,
messages, the labels file and the summary table.

Written to kill the mutants of ``scripts/mutation.py denoise`` (docs/testing.md); complements
tests/test_denoise.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from lsld_engine.labels.denoise import (DEFAULT_ALPHA, DEFAULT_BETA, DenoiseResult, class_similarity, den,
                                 denoise_labels, l2_normalize, load_labels, removed_counts, rew, save_labels,
                                 segment_features, softmax_argmax)
from lsld_engine.data.llp import CLASSES
from lsld_engine.labels.prompts import PromptTable, prompt_texts, required_prompts
from lsld_engine.records.untrusted import InputFileError


def test_defaults():
    assert (DEFAULT_ALPHA, DEFAULT_BETA) == (4.0, 0.4)


def test_segment_features_shapes_and_errors():
    with pytest.raises(ValueError) as e:
        segment_features(np.zeros((1, 12, 3), np.float32))
    assert str(e.value) == "frames: 12 frames per video is not a multiple of 8"
    out = segment_features(np.zeros((0, 16, 3), np.float32))
    assert out.shape == (0, 2, 3) and out.dtype == np.float32
    f = np.arange(2 * 16 * 2, dtype=np.float64).reshape(2, 16, 2)   # float64 in: float32 out
    got = segment_features(f)
    assert got.dtype == np.float32 and got.shape == (2, 2, 2)
    np.testing.assert_allclose(got, f.reshape(2, 2, 8, 2).mean(2), rtol=1e-6)
    f16 = np.asfortranarray(np.ones((1, 8, 4), np.float16) * np.float16(0.5))
    np.testing.assert_array_equal(segment_features(f16), np.full((1, 1, 4), 0.5, np.float32))


def test_l2_normalize_and_softmax_argmax():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-20, 0.0]])
    n = l2_normalize(x)
    assert n.dtype == np.float32
    np.testing.assert_allclose(n[0], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(n[1], [0, 0])                  # a zero row stays zero
    assert np.isfinite(n).all() and n[2, 0] < 1e-6               # a tiny row is not blown up to 1
    assert softmax_argmax(np.array([[1000.0, 1001.0, 999.0]])).tolist() == [1]   # no overflow
    assert softmax_argmax(np.array([[[0.0, -1.0], [-1.0, 0.0]]])).tolist() == [[0, 1]]


def _onehot_table(label_set, modality, dim):
    texts = prompt_texts(label_set, modality)
    return PromptTable(texts, np.eye(len(texts), dim, dtype=np.float32))


def test_den_messages_and_shapes():
    weak = np.zeros((2, 25), np.uint8)
    table = _onehot_table([], "visual", 4)
    with pytest.raises(ValueError) as e:
        den(np.zeros((3, 10, 4), np.float32), weak, table, "visual")
    assert str(e.value) == "den: 3 videos of features but 2 weak-label rows"
    with pytest.raises(ValueError) as e:
        den(np.zeros((2, 10, 5), np.float32), weak, table, "visual")
    assert str(e.value) == "den: visual features have D=5 but prompt embeddings D=4"
    with pytest.raises(ValueError) as e:
        den(np.zeros((2, 10, 4), np.float32), np.zeros((2, 24), np.uint8), table, "visual")
    assert str(e.value) == "weak labels must be (N, 25), got (2, 24)"
    with pytest.raises(ValueError) as e:
        den(np.zeros((2, 10, 4), np.float32), np.zeros(2, np.uint8), table, "visual")
    assert str(e.value) == "weak labels must be (N, 25), got (2,)"
    out = den(np.ones((2, 10, 4), np.float32), weak, table, "visual")
    assert out.shape == (2, 10, 25) and out.dtype == np.float32 and not out.any()


def test_den_groups_videos_by_label_set_in_any_order():
    """Videos of three label sets interleaved; each segment's label is that of its best prompt."""
    d = 16
    sets = {0: [2], 1: [2, 7], 2: []}
    rows = [1, 0, 2, 1, 0, 1]
    weak = np.zeros((len(rows), 25), np.uint8)
    for i, r in enumerate(rows):
        weak[i, sets[r]] = 1
    texts = required_prompts(weak, "visual")
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((len(texts), d)).astype(np.float32)
    table = PromptTable(texts, emb)
    seg = rng.standard_normal((len(rows), 10, d)).astype(np.float32)
    out = den(seg, weak, table, "visual")
    for i, r in enumerate(rows):
        label_set = sets[r]
        if not label_set:
            assert not out[i].any()
            continue
        ptexts = prompt_texts(label_set, "visual")
        pe = l2_normalize(table.lookup(ptexts))
        sims = l2_normalize(seg[i]) @ pe.T
        subsets = [tuple(c for c in label_set if CLASSES[c] in t or (c == 2 and "Cheering" in t)
                         or (c == 7 and "Fire alarm" in t)) for t in ptexts]
        for t in range(10):
            want = np.zeros(25, np.float32)
            want[list(subsets[int(np.argmax(sims[t]))])] = 1
            np.testing.assert_array_equal(out[i, t], want)
    # weak labels other than 1 count as labels
    np.testing.assert_array_equal(den(seg, weak * 3, table, "visual"), out)
    # normalized=True takes the features as they are
    np.testing.assert_array_equal(den(l2_normalize(seg), weak, table, "visual", normalized=True), out)


def test_class_similarity_normalized_flag():
    seg = np.array([[[3, 4]]], np.float32)
    names = np.array([[2, 0], [0, 1], [3, 4]], np.float32)
    np.testing.assert_allclose(class_similarity(seg, names)[0, 0], [0.6, 0.8, 1.0], rtol=1e-6)
    np.testing.assert_allclose(class_similarity(seg, names, normalized=True)[0, 0], [3, 4, 5], rtol=1e-6)
    assert class_similarity(np.zeros((2, 3, 2), np.float32), names).shape == (2, 3, 3)


def test_rew_strict_boundaries_and_defaults():
    # with s = [0.3, 0.2], without s = [0.2, 0.25, 0.1]: Min_w = 0.2, Max_wo = 0.25
    d = np.array([1, 1, 0, 0, 0], np.float32).reshape(1, 5, 1)
    s = np.array([0.3, 0.2, 0.2, 0.25, 0.1], np.float32).reshape(1, 5, 1)
    out, changed = rew(d, s)
    # with: 0.3 >= Max_wo stays 1; 0.2 < 0.25 -> 4 * 0.2 = 0.8
    # without: 0.2 is not > Min_w = 0.2 (stays 0); 0.25 > 0.2 -> 0.4 * 0.25 = 0.1; 0.1 stays 0
    np.testing.assert_allclose(out[0, :, 0], [1.0, 0.8, 0.0, 0.1, 0.0], rtol=1e-6)
    assert changed[0, :, 0].tolist() == [False, True, False, True, False]
    assert out.dtype == np.float32 and changed.dtype == bool
    # a "with" value exactly at Max_wo is left alone
    s2 = np.array([0.25, 0.2, 0.2, 0.25, 0.1], np.float32).reshape(1, 5, 1)
    np.testing.assert_allclose(rew(d, s2, alpha=2.0)[0][0, :, 0], [1.0, 0.4, 0.0, 0.1, 0.0], rtol=1e-6)
    # soft DeN values: "with" means > 0.5
    soft = np.array([0.6, 0.51, 0.5, 0.4, 0.0], np.float32).reshape(1, 5, 1)
    out, _ = rew(soft, s, alpha=1.0, beta=1.0)
    np.testing.assert_allclose(out[0, :, 0], [0.6, 0.2, 0.5, 0.25, 0.0], rtol=1e-6)
    # the input is not modified
    assert d[0, :, 0].tolist() == [1, 1, 0, 0, 0]


def test_rew_negative_values_keep_one_officially_clip_at_zero_clamped_and_value_one_is_no_change():
    d = np.array([1, 1, 0], np.float32).reshape(1, 3, 1)
    s = np.array([0.25, -0.2, 0.3], np.float32).reshape(1, 3, 1)   # Min_w = -0.2, Max_wo = 0.3
    out, changed = rew(d, s, alpha=4.0, beta=0.4)
    np.testing.assert_allclose(out[0, :, 0], [1.0, 1.0, 0.12], rtol=1e-6)   # 4 * -0.2 <= 0: keeps 1
    assert changed[0, :, 0].tolist() == [False, False, True]
    out, changed = rew(d, s, alpha=4.0, beta=0.4, clamp=True)
    np.testing.assert_allclose(out[0, :, 0], [1.0, 0.0, 0.12], rtol=1e-6)
    assert changed[0, :, 0].tolist() == [False, True, True]   # 4 * 0.25 = 1.0: not a change


def test_removed_counts():
    weak = np.zeros((2, 25), np.uint8)
    weak[0, [1, 2]] = 1
    weak[1, 2] = 1
    labels = np.zeros((2, 4, 25), np.float32)
    labels[0, :, 1] = [1, 0.6, 0.5, 0.0]       # > 0.5 kept: 2 of 4
    labels[1, :, 2] = 1
    r = removed_counts(weak, labels)
    assert r.dtype == np.int64 and r[1] == 2 and r[2] == 4 and r.sum() == 6


def _problem(n=6, d=8, seed=0):
    rng = np.random.default_rng(seed)
    weak = np.zeros((n, 25), np.uint8)
    for i in range(n):
        weak[i, rng.choice(25, 1 + i % 3, replace=False)] = 1
    tables = {m: PromptTable(required_prompts(weak, m), rng.standard_normal((len(required_prompts(weak, m)), d)))
              for m in ("audio", "visual")}
    return (weak, tables, rng.standard_normal((n, 10, d)).astype(np.float32),
            rng.standard_normal((n, 80, d)).astype(np.float32), rng.standard_normal((25, d)).astype(np.float32))


def test_denoise_labels_parts_and_visual_segments():
    weak, tables, audio, frames, names = _problem()
    res = denoise_labels(audio, frames, weak, tables["audio"], tables["visual"], names, alpha=3.0, beta=0.5)
    np.testing.assert_array_equal(res.audio, den(audio, weak, tables["audio"], "audio"))
    seg_v = segment_features(frames)
    v = den(seg_v, weak, tables["visual"], "visual")
    np.testing.assert_array_equal(res.visual_den, v)
    vr, changed = rew(v, class_similarity(seg_v, names), 3.0, 0.5)
    np.testing.assert_allclose(res.visual, vr, atol=1e-6)
    np.testing.assert_array_equal(res.removed_audio, removed_counts(weak, res.audio))
    np.testing.assert_array_equal(res.removed_visual, removed_counts(weak, v))
    np.testing.assert_array_equal(res.reweighted, changed.sum((0, 1)))
    assert res.reweighted.dtype == np.int64
    same = denoise_labels(audio, None, weak, tables["audio"], tables["visual"], names, alpha=3.0, beta=0.5,
                          visual_segments=seg_v)
    np.testing.assert_array_equal(same.visual, res.visual)
    default = denoise_labels(audio, frames, weak, tables["audio"], tables["visual"], names)
    np.testing.assert_allclose(default.visual, rew(v, class_similarity(seg_v, names))[0], atol=1e-6)
    with pytest.raises(Exception):
        denoise_labels(audio, frames, weak, tables["audio"], tables["visual"], names, max_labels=1)


def _result():
    z = np.zeros((2, 10, 25), np.float32)
    c = np.arange(25, dtype=np.int64)
    return DenoiseResult(z, z + 1, z + 0.5, c, 2 * c, 3 * c)


def test_summary_table_exact():
    lines = _result().summary().splitlines()
    assert lines[0] == f"{'class':24s} {'removed_a':>9s} {'removed_v':>9s} {'reweighted':>10s}"
    assert lines[1] == f"{CLASSES[0]:24s} {0:9d} {0:9d} {0:10d}"
    assert lines[25] == f"{CLASSES[24]:24s} {24:9d} {48:9d} {72:10d}"
    assert lines[26] == f"{'total':24s} {300:9d} {600:9d} {900:10d}"
    assert len(lines) == 27


def test_labels_file_round_trip_and_refusals(tmp_path):
    res = _result()
    p = save_labels(tmp_path / "labels.npz", ["v1", "v2"], res)
    assert p == tmp_path / "labels.npz"
    ids, arrays = load_labels(p)
    assert ids == ["v1", "v2"] and all(type(i) is str for i in ids)
    assert sorted(arrays) == sorted(["video_ids", "audio", "visual_den", "visual", "removed_audio",
                                     "removed_visual", "reweighted", "classes"])
    np.testing.assert_array_equal(arrays["visual"], res.visual)
    np.testing.assert_array_equal(arrays["removed_visual"], res.removed_visual)
    assert arrays["classes"].tolist() == list(CLASSES)
    assert arrays["video_ids"].dtype.kind == "U"
    bad = tmp_path / "bad.npz"
    np.savez(bad, video_ids=np.arange(2))
    with pytest.raises(InputFileError) as e:
        load_labels(bad)
    assert str(e.value) == f"{bad}: video_ids must be a 1-D array of strings, got int64 (2,)"
    np.savez(bad, video_ids=np.array([["a"]]))
    with pytest.raises(InputFileError) as e:
        load_labels(bad)
    assert str(e.value) == f"{bad}: video_ids must be a 1-D array of strings, got <U1 (1, 1)"
    np.savez(bad, video_ids=np.array([b"a", b"b"]))
    assert load_labels(bad)[0] == ["b'a'", "b'b'"]   # bytes ids are accepted (kind "S"), shown as str()
    np.savez(bad, audio=np.zeros(1))
    with pytest.raises(InputFileError) as e:
        load_labels(bad)
    assert "missing array(s) ['video_ids']" in str(e.value)


def test_labels_file_with_no_videos(tmp_path):
    z = np.zeros((0, 10, 25), np.float32)
    c = np.zeros(25, np.int64)
    p = save_labels(tmp_path / "empty.npz", [], DenoiseResult(z, z, z, c, c, c))
    ids, arrays = load_labels(p)
    assert ids == [] and arrays["audio"].shape == (0, 10, 25)


def test_max_labels_reaches_both_modalities():
    weak = np.zeros((1, 25), np.uint8)
    weak[0, :9] = 1                        # nine labels: above the default cap of 8
    rng = np.random.default_rng(2)
    tables = {m: PromptTable(prompt_texts(range(9), m, max_labels=9), rng.standard_normal((512, 4)))
              for m in ("audio", "visual")}
    audio = rng.standard_normal((1, 10, 4)).astype(np.float32)
    frames = rng.standard_normal((1, 80, 4)).astype(np.float32)
    names = rng.standard_normal((25, 4)).astype(np.float32)
    res = denoise_labels(audio, frames, weak, tables["audio"], tables["visual"], names, max_labels=9)
    assert res.audio.shape == res.visual.shape == (1, 10, 25)
    assert res.audio[0, :, 9:].sum() == 0 and res.audio.sum() > 0


def test_softmax_argmax_per_row_on_any_rank_and_far_apart_rows():
    # rows far apart: a shift by the global maximum would underflow the second row to all zeros
    assert softmax_argmax(np.array([[0.0, -1.0], [-2001.0, -2000.0]])).tolist() == [0, 1]
    # (1, 2, 2): the softmax is over the last axis only
    assert softmax_argmax(np.array([[[1.0, 2.0], [0.0, 10.0]]])).tolist() == [[1, 1]]


def test_rew_thresholds_are_per_class():
    # class 0: with s = [0.05], without s = [0.6, 0.0] (Min_w 0.05 < Max_wo 0.6: active)
    # class 1: with s = [0.1], without s = [0.08, 0.0] (Max_wo 0.08 < Min_w 0.1: left alone, although
    # 0.08 is above class 0's Min_w and 0.1 below class 0's Max_wo)
    d = np.zeros((1, 3, 2), np.float32)
    d[0, 0] = 1
    s = np.array([[[0.05, 0.1], [0.6, 0.08], [0.0, 0.0]]], np.float32)
    out, changed = rew(d, s, alpha=1.0, beta=0.5)
    np.testing.assert_allclose(out[0, :, 0], [0.05, 0.3, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(out[0, :, 1], [1, 0, 0])
    assert changed[0, :, 1].tolist() == [False, False, False]


def test_l2_normalize_scales_short_rows_up():
    np.testing.assert_allclose(l2_normalize(np.array([[0.3, 0.4], [0.0, 1e-3]])), [[0.6, 0.8], [0.0, 1.0]],
                               rtol=1e-6)
