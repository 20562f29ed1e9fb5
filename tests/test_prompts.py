"""Prompt grammar, class phrases, prompt caches and cache/tower lookup."""
import numpy as np
import pytest

from lsld_engine.data.llp import CLASSES
from lsld_engine.labels.prompts import (AUDIO_PREFIX, CLASS_PHRASES, PromptError, PromptTable, class_name_texts,
                                 load_prompt_cache, membership, prompt_subsets, prompt_texts,
                                 required_prompts, resolve_prompts, save_prompt_cache)


def test_prompt_order_is_the_official_one_full_set_singles_pairs_other():
    # Classes given out of order: the grammar sorts them (Speech=0, Dog=3, Singing=11). The official
    # refineLabel list for three labels: '1 and 2 and 3', '1', '2', '3', '1 and 2', '1 and 3',
    # '2 and 3', 'other'.
    assert prompt_texts([11, 0, 3], "visual") == [
        "Speeching and Dog and Singing",
        "Speeching", "Dog", "Singing",
        "Speeching and Dog", "Speeching and Singing", "Dog and Singing",
        "other",
    ]
    assert prompt_subsets([3, 0]) == [(0, 3), (0,), (3,), ()]
    # Beyond the official three: the full set, then sizes 1, 2, 3 ascending, then other.
    subsets = prompt_subsets([0, 1, 2, 3])
    assert subsets[0] == (0, 1, 2, 3) and subsets[-1] == ()
    assert [len(s) for s in subsets[1:-1]] == [1] * 4 + [2] * 6 + [3] * 4
    assert subsets[1:5] == [(0,), (1,), (2,), (3,)] and subsets[11] == (0, 1, 2)


def test_prompt_order_decides_exact_ties_as_the_official_code():
    """Two prompts with the same embedding tie exactly: the first in official order wins."""
    from lsld_engine.labels.denoise import den
    weak = np.zeros((1, 25), np.uint8)
    weak[0, [0, 3, 11]] = 1
    texts = prompt_texts([0, 3, 11], "visual")
    emb = np.eye(8, 4, dtype=np.float32)  # 8 prompts, D = 4
    # "Speeching" (a single, official position 1) and "Speeching and Dog" (a pair, position 4)
    # share one embedding; a segment along it ties between them.
    emb[texts.index("Speeching and Dog")] = emb[texts.index("Speeching")] = [1, 0, 0, 0]
    emb[0] = [0, 1, 0, 0]
    seg = np.tile(np.array([1, 0, 0, 0], np.float32), (1, 10, 1))
    out = den(seg, weak, PromptTable(texts, emb), "visual")
    # the single comes first in the official order: only Speech (class 0) is on, not Dog
    assert out[0, :, 0].all() and not out[0, :, 3].any() and not out[0, :, 11].any()


def test_audio_prompts_have_prefix_and_other():
    texts = prompt_texts([1], "audio")
    assert texts == ["This is a sound of Car", "This is a sound of other"]
    assert AUDIO_PREFIX == "This is a sound of "


def test_class_phrases_in_class_order():
    assert len(CLASS_PHRASES) == len(CLASSES) == 25
    assert CLASS_PHRASES[5] == "Frying food" and CLASS_PHRASES[24] == "Clapping"
    assert prompt_texts([9, 20], "visual")[0] == "playing the Cello and playing the guitar"


def test_any_size_up_to_cap_then_clear_error():
    s = list(range(8))
    assert len(prompt_texts(s, "visual")) == 2 ** 8
    with pytest.raises(PromptError, match="above the cap of 8"):
        prompt_texts(list(range(9)), "visual")
    assert len(prompt_texts(list(range(9)), "visual", max_labels=9)) == 2 ** 9
    with pytest.raises(PromptError, match="cap of 2"):
        prompt_texts([0, 1, 2], "audio", max_labels=2)


def test_empty_label_set_is_only_other():
    assert prompt_texts([], "visual") == ["other"]


def test_membership_matches_subsets():
    m = membership(3)
    assert m.shape == (8, 3)
    assert m[0].all() and not m[-1].any()
    assert m[1].tolist() == [True, False, False] and m[6].tolist() == [False, True, True]


def test_required_prompts_unique_over_label_sets():
    weak = np.zeros((4, 25), np.uint8)
    weak[0, [0, 3]] = 1
    weak[1, [0, 3]] = 1
    weak[2, [3]] = 1
    texts = required_prompts(weak, "visual")
    assert len(texts) == len(set(texts))
    assert set(texts) == {"Speeching and Dog", "Speeching", "Dog", "other"}


def test_cache_round_trip_without_pickles(tmp_path):
    t = PromptTable(["a", "bé"], np.arange(6, dtype=np.float32).reshape(2, 3))
    path = save_prompt_cache(tmp_path / "c.npz", t)
    with np.load(path, allow_pickle=False) as z:
        assert z["texts"].dtype.kind == "U" and z["embeddings"].dtype == np.float32
    back = load_prompt_cache(path)
    assert back.texts == ["a", "bé"]
    np.testing.assert_array_equal(back.lookup(["bé"]), [[3, 4, 5]])


def test_cache_with_object_texts_is_refused(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, texts=np.array(["a", None], dtype=object), embeddings=np.zeros((2, 3), np.float32))
    with pytest.raises(PromptError, match="no pickles"):
        load_prompt_cache(path)


def test_cache_missing_arrays_and_file(tmp_path):
    np.savez(tmp_path / "x.npz", foo=np.zeros(2))
    with pytest.raises(PromptError, match="'texts' and 'embeddings'"):
        load_prompt_cache(tmp_path / "x.npz")
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_prompt_cache(tmp_path / "nope.npz")


def test_resolve_uses_cache_first_then_tower_for_misses_only():
    cache = PromptTable(["a"], np.ones((1, 2), np.float32))
    asked = []

    def tower(texts):
        asked.append(list(texts))
        return np.full((len(texts), 2), 7.0)

    t = resolve_prompts(["b", "a", "c"], cache, tower)
    assert asked == [["b", "c"]]
    assert t.texts == ["b", "a", "c"]
    np.testing.assert_array_equal(t.embeddings, [[7, 7], [1, 1], [7, 7]])


def test_resolve_without_tower_lists_first_missing():
    cache = PromptTable(["a"], np.ones((1, 2), np.float32))
    missing = [f"m{i}" for i in range(8)]
    with pytest.raises(PromptError) as e:
        resolve_prompts(["a"] + missing, cache, None, what="CLIP")
    msg = str(e.value)
    assert "8 CLIP prompt(s)" in msg and "'m0'" in msg and "'m4'" in msg and "'m5'" not in msg


def test_resolve_checks_tower_output_shape():
    with pytest.raises(PromptError, match=r"expected \(M, D\)"):
        resolve_prompts(["a", "b"], None, lambda t: np.zeros((1, 2)))


def test_class_name_texts(tmp_path):
    assert class_name_texts("raw")[5] == "Frying_(food)"
    assert class_name_texts("phrases")[0] == "Speeching"
    f = tmp_path / "names.txt"
    f.write_text("\n".join(f"n{i}" for i in range(25)))
    assert class_name_texts(str(f))[24] == "n24"
    f.write_text("only\ntwo\n")
    with pytest.raises(PromptError, match="expected 25 class names"):
        class_name_texts(str(f))
