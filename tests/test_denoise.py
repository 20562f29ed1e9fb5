"""DeN and ReW rules on hand-built cases, and the vectorized path against the per-video loop."""
import numpy as np
import pytest

from lsld_engine.labels._denoise_ref import den_reference, denoise_reference, rew_reference
from lsld_engine.labels.denoise import (class_similarity, den, denoise_labels, removed_counts, rew,
                                 segment_features, softmax_argmax)
from lsld_engine.labels.prompts import PromptError, PromptTable, prompt_texts, required_prompts


def _table(texts_vecs):
    texts = [t for t, _ in texts_vecs]
    return PromptTable(texts, np.array([v for _, v in texts_vecs], np.float32))


def test_segment_features_mean_of_each_8_frames_float16_and_float32():
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((3, 80, 16)).astype(np.float32)
    want = frames.reshape(3, 10, 8, 16).mean(2)
    np.testing.assert_allclose(segment_features(frames), want, rtol=1e-5, atol=1e-6)
    f16 = frames.astype(np.float16)
    np.testing.assert_allclose(segment_features(f16), f16.astype(np.float32).reshape(3, 10, 8, 16).mean(2),
                               rtol=1e-5, atol=1e-6)
    # Batch-independent: one video alone gives the same bits.
    np.testing.assert_array_equal(segment_features(f16)[1], segment_features(f16[1:2])[0])
    assert segment_features(f16).dtype == np.float32


def test_softmax_argmax_first_maximum_on_ties():
    assert softmax_argmax(np.array([[0.1, 0.5, 0.5, 0.2]], np.float32)).tolist() == [1]
    assert softmax_argmax(np.array([[0.3, 0.3]], np.float32)).tolist() == [0]


def test_den_picks_best_prompt_classes_per_segment():
    # Label set {Car=1, Dog=3}: prompts "Car and Dog", "Car", "Dog", "other".
    e = np.eye(4, dtype=np.float32)
    table = _table([("Car and Dog", e[0]), ("Car", e[1]), ("Dog", e[2]), ("other", e[3])])
    weak = np.zeros((1, 25), np.uint8)
    weak[0, [1, 3]] = 1
    seg = np.zeros((1, 4, 4), np.float32)
    seg[0, 0] = [5, 1, 0, 0]    # Car and Dog
    seg[0, 1] = [0, 2, 1, 0]    # Car
    seg[0, 2] = [0, 0, 3, 1]    # Dog
    seg[0, 3] = [0, 0, 1, 9]    # other -> nothing
    out = den(seg, weak, table, "visual")
    assert out.shape == (1, 4, 25) and out.dtype == np.float32
    assert np.flatnonzero(out[0, 0]).tolist() == [1, 3]
    assert np.flatnonzero(out[0, 1]).tolist() == [1]
    assert np.flatnonzero(out[0, 2]).tolist() == [3]
    assert not out[0, 3].any()


def test_den_ties_take_the_first_prompt():
    # "Car and Dog" and "Dog" have the same embedding: the larger subset (first) wins.
    v = np.array([1, 0, 0], np.float32)
    table = _table([("Car and Dog", v), ("Car", [0, 1, 0]), ("Dog", v), ("other", [0, 0, 1])])
    weak = np.zeros((1, 25), np.uint8)
    weak[0, [1, 3]] = 1
    out = den(np.array([[[2, 0, 0]]], np.float32), weak, table, "visual")
    assert np.flatnonzero(out[0, 0]).tolist() == [1, 3]


def test_den_uses_audio_prompts_for_audio():
    table = _table([("This is a sound of Car", [1, 0]), ("This is a sound of other", [0, 1])])
    weak = np.zeros((1, 25), np.uint8)
    weak[0, 1] = 1
    out = den(np.array([[[1, 0], [0, 1]]], np.float32), weak, table, "audio")
    assert out[0, :, 1].tolist() == [1, 0]
    with pytest.raises(PromptError, match="'Car'"):
        den(np.zeros((1, 2, 2), np.float32), weak, _table([("x", [1, 0])]), "visual")


def test_rew_rules_exact():
    # One class; "with" s = [0.3, 0.1], "without" s = [0.2, 0.05, -0.5]; Min_w=0.1 < Max_wo=0.2.
    d = np.array([1, 1, 0, 0, 0], np.float32).reshape(1, 5, 1)
    s = np.array([0.3, 0.1, 0.2, 0.05, -0.5], np.float32).reshape(1, 5, 1)
    out, changed = rew(d, s, alpha=4.0, beta=0.4)
    np.testing.assert_allclose(out[0, :, 0], [1.0, 0.4, 0.08, 0.0, 0.0], rtol=1e-6)
    assert changed[0, :, 0].tolist() == [False, True, True, False, False]   # 0.05 < Min_w, -0.5 too


def test_rew_official_rule_keeps_values_outside_the_open_unit_interval():
    # Min_w=-0.1, Max_wo=0.9: both "with" segments and the "without" one are selected.
    d = np.array([1, 1, 0], np.float32).reshape(1, 3, 1)
    s = np.array([-0.1, 0.5, 0.9], np.float32).reshape(1, 3, 1)
    # official getVisualCleanLabel: 4*-0.1 <= 0 keeps 1, 4*0.5 >= 1 keeps 1, 2*0.9 >= 1 keeps 0
    out, changed = rew(d, s, alpha=4.0, beta=2.0)
    np.testing.assert_array_equal(out[0, :, 0], [1.0, 1.0, 0.0])
    assert not changed.any()
    # the clamped variant (earlier engine versions) writes 0 and 1 there
    out, changed = rew(d, s, alpha=4.0, beta=2.0, clamp=True)
    np.testing.assert_array_equal(out[0, :, 0], [0.0, 1.0, 1.0])
    assert changed[0, :, 0].tolist() == [True, False, True]


def test_rew_official_edge_a_with_segment_of_negative_cosine_keeps_one():
    """One video with DeN = 1 and cosine -0.1 (the case where the clamp differed): official 1.0."""
    d = np.zeros((2, 10, 1), np.float32)
    d[0] = 1
    s = np.full((2, 10, 1), 0.05, np.float32)
    s[1] = 0.08                             # "without": Max_wo = 0.08
    s[0, 3, 0] = -0.1                       # Min_w = -0.1 < Max_wo
    s[0, 4, 0] = 0.1                        # with, above Max_wo: untouched
    out, _ = rew(d, s)
    assert out[0, 3, 0] == 1.0 and out[0, 4, 0] == 1.0
    np.testing.assert_allclose(out[0, [0, 1, 2, 5], 0], 0.2, rtol=1e-6)   # 4 * 0.05 < 1
    np.testing.assert_allclose(out[1, :, 0], 0.032, rtol=1e-6)           # 0.4 * 0.08, s > Min_w
    assert rew(d, s, clamp=True)[0][0, 3, 0] == 0.0


@pytest.mark.parametrize("den_vals,sims", [
    ([1, 1, 0, 0], [0.3, 0.2, 0.2, 0.1]),    # Max_wo == Min_w: not strictly greater
    ([1, 1, 0, 0], [0.3, 0.25, 0.2, 0.1]),   # Max_wo < Min_w
    ([1, 1, 1, 1], [0.3, 0.0, 0.2, 0.1]),    # no "without"
    ([0, 0, 0, 0], [0.3, 0.0, 0.2, 0.1]),    # no "with"
])
def test_rew_leaves_class_alone_unless_groups_overlap(den_vals, sims):
    d = np.array(den_vals, np.float32).reshape(1, 4, 1)
    out, changed = rew(d, np.array(sims, np.float32).reshape(1, 4, 1))
    np.testing.assert_array_equal(out, d)
    assert not changed.any()


def test_rew_is_per_class():
    d = np.zeros((1, 2, 2), np.float32)
    d[0, 0] = [1, 1]
    s = np.array([[[0.1, 0.5], [0.2, 0.1]]], np.float32)   # class 0 overlaps, class 1 does not
    out, _ = rew(d, s)
    np.testing.assert_allclose(out[0, :, 0], [0.4, 0.08], rtol=1e-6)
    np.testing.assert_array_equal(out[0, :, 1], [1, 0])


def _random_problem(seed, n=80, dim=24):
    rng = np.random.default_rng(seed)
    weak = np.zeros((n, 25), np.uint8)
    for i in range(n):
        k = rng.integers(0, 5)     # includes empty and 4-class sets
        weak[i, rng.choice(25, k, replace=False)] = 1
    tables = {}
    for m in ("audio", "visual"):
        texts = required_prompts(weak, m)
        tables[m] = PromptTable(texts, rng.standard_normal((len(texts), dim)).astype(np.float32))
    audio = rng.standard_normal((n, 10, dim)).astype(np.float32)
    frames = rng.standard_normal((n, 80, dim)).astype(np.float16)
    names = rng.standard_normal((25, dim)).astype(np.float32)
    return weak, tables, audio, frames, names


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorized_equals_reference_loop(seed):
    weak, tables, audio, frames, names = _random_problem(seed)
    res = denoise_labels(audio, frames, weak, tables["audio"], tables["visual"], names, alpha=4.0, beta=0.4)
    a, v, vr = denoise_reference(audio, frames, weak, tables["audio"], tables["visual"], names, 4.0, 0.4)
    np.testing.assert_array_equal(res.audio, a)
    np.testing.assert_array_equal(res.visual_den, v)
    np.testing.assert_array_equal(res.visual, vr)
    assert 0 < (res.visual != res.visual_den).sum()          # ReW did something
    assert (res.audio.sum() > 0) and (res.audio <= weak[:, None, :]).all()


def test_den_reference_agrees_on_float16_segments():
    weak, tables, _, frames, _ = _random_problem(5)
    seg = segment_features(frames)
    np.testing.assert_array_equal(den(seg, weak, tables["visual"], "visual"),
                                  den_reference(seg, weak, tables["visual"], "visual"))


@pytest.mark.parametrize("clamp", [False, True])
@pytest.mark.parametrize("beta", [0.4, 3.0])      # 3.0: "without" values above 1 occur
def test_rew_vectorized_equals_reference_on_random_sims(clamp, beta):
    rng = np.random.default_rng(3)
    d = (rng.random((30, 10, 25)) < 0.2).astype(np.float32)
    s = rng.uniform(-0.2, 0.5, (30, 10, 25)).astype(np.float32)   # negative "with" cosines occur
    out, _ = rew(d, s, 4.0, beta, clamp=clamp)
    np.testing.assert_allclose(out, rew_reference(d, s, 4.0, beta, clamp), rtol=1e-6)
    edges = rew(d, s, 4.0, beta, clamp=not clamp)[0] != out
    assert edges.any()                     # the two rules differ on this problem


def test_summary_counts():
    weak, tables, audio, frames, names = _random_problem(4)
    res = denoise_labels(audio, frames, weak, tables["audio"], tables["visual"], names)
    want = weak.sum(0) * 10 - (res.audio > 0.5).sum((0, 1))
    np.testing.assert_array_equal(res.removed_audio, want)
    np.testing.assert_array_equal(removed_counts(weak, res.visual_den), res.removed_visual)
    np.testing.assert_array_equal(res.reweighted, (res.visual != res.visual_den).sum((0, 1)))
    assert "total" in res.summary() and "Speech" in res.summary()


def test_class_similarity_is_cosine():
    seg = np.array([[[3, 4]]], np.float32)
    names = np.array([[1, 0], [0, 2]], np.float32)
    np.testing.assert_allclose(class_similarity(seg, names)[0, 0], [0.6, 0.8], rtol=1e-6)


def test_cap_applies_in_den():
    weak = np.zeros((1, 25), np.uint8)
    weak[0, :3] = 1
    table = PromptTable(prompt_texts([0, 1, 2], "visual"), np.eye(8, 4, dtype=np.float32))
    with pytest.raises(PromptError, match="cap of 2"):
        den(np.zeros((1, 10, 4), np.float32), weak, table, "visual", max_labels=2)
