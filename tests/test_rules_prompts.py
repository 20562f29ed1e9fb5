"""Prompts (lsld_engine/labels/prompts.py): the grammar's exact texts, the label-set checks, the cache
reader's refusals and the table's lookups and merges, each with its exact message.

Written to kill the mutants of ``scripts/mutation.py prompts`` (docs/testing.md); complements
tests/test_prompts.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from lsld_engine.errors import LsldError
from lsld_engine.data.llp import CLASSES
from lsld_engine.labels.prompts import (AUDIO_PREFIX, CLASS_PHRASES, DEFAULT_MAX_LABELS, JOIN, MODALITIES, OTHER,
                                 PromptError, PromptTable, check_label_set, class_name_texts, label_sets,
                                 load_prompt_cache, membership, prompt_subsets, prompt_texts, required_prompts,
                                 resolve_prompts, save_prompt_cache, subset_positions, subset_text)


def test_constants():
    assert (AUDIO_PREFIX, OTHER, JOIN, MODALITIES, DEFAULT_MAX_LABELS) == \
        ("This is a sound of ", "other", " and ", ("audio", "visual"), 8)
    assert CLASS_PHRASES == (
        "Speeching", "Car", "Cheering", "Dog", "Cat", "Frying food", "playing basketball",
        "Fire alarm ringing", "Chainsaw", "playing the Cello", "playing the Banjo", "Singing", "Chicken",
        "playing the Violin", "Vacuum cleaner", "Baby laughter", "playing the Accordion", "Lawn-mower",
        "Motorcycle", "Helicopter", "playing the guitar", "Telephone bell ringing", "Baby cry", "Blender",
        "Clapping")
    assert issubclass(PromptError, LsldError) and issubclass(PromptError, ValueError)


def test_check_label_set_sorts_and_refuses():
    assert check_label_set([3, 0, 24]) == (0, 3, 24)
    assert check_label_set(np.array([2, 1])) == (1, 2)
    assert check_label_set([]) == ()
    assert check_label_set(range(8)) == tuple(range(8))
    for bad in ([1, 1], [-1], [25], [0, 25]):
        with pytest.raises(PromptError) as e:
            check_label_set(bad, where="row 4: ")
        s = tuple(sorted(bad))
        assert str(e.value) == f"row 4: bad label set {s}: expected distinct class ids in 0..24"
    with pytest.raises(PromptError) as e:
        check_label_set(range(9))
    assert str(e.value) == ("label set has 9 classes, above the cap of 8 (2**9 prompts per video); "
                            "raise --max-labels if this is intended")
    assert check_label_set(range(3), max_labels=3) == (0, 1, 2)
    with pytest.raises(PromptError) as e:
        check_label_set(range(4), max_labels=3, where="v: ")
    assert str(e.value).startswith("v: label set has 4 classes, above the cap of 3 (2**4 prompts")


def test_subset_positions_and_membership():
    assert subset_positions(0) == ((),)
    assert subset_positions(1) == ((0,), ())
    assert subset_positions(3) == ((0, 1, 2), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), ())
    assert subset_positions(2) == ((0, 1), (0,), (1,), ())
    m = membership(2)
    assert m.dtype == bool and m.tolist() == [[True, True], [True, False], [False, True], [False, False]]
    assert membership(0).shape == (1, 0)
    assert prompt_subsets([5, 2], max_labels=2) == [(2, 5), (2,), (5,), ()]
    with pytest.raises(PromptError):
        prompt_subsets([5, 2, 7], max_labels=2)


def test_subset_text_exact_and_modality_check():
    assert subset_text((3, 11), "visual") == "Dog and Singing"
    assert subset_text((3, 11), "audio") == "This is a sound of Dog and Singing"
    assert subset_text((), "audio") == "This is a sound of other"
    assert subset_text((), "visual") == "other"
    with pytest.raises(PromptError) as e:
        subset_text((1,), "Audio")
    assert str(e.value) == "unknown modality 'Audio': expected audio or visual"
    assert prompt_texts([1, 0], "audio", max_labels=2) == [
        "This is a sound of Speeching and Car", "This is a sound of Speeching", "This is a sound of Car",
        "This is a sound of other"]


def test_label_sets_and_required_prompts_order():
    weak = np.zeros((3, 25), np.uint8)
    weak[0, [4, 1]] = 1
    weak[2, 7] = 2                       # any non-zero is a label
    assert label_sets(weak) == [(1, 4), (), (7,)]
    texts = required_prompts(weak, "visual")
    assert texts == ["other", "Fire alarm ringing", "Car and Cat", "Car", "Cat"]
    assert required_prompts(np.zeros((0, 25), np.uint8), "audio") == []
    assert required_prompts([], "audio") == []
    big = np.zeros((1, 25), np.uint8)
    big[0, :9] = 1
    with pytest.raises(PromptError):
        required_prompts(big, "visual")
    assert len(required_prompts(big, "visual", max_labels=9)) == 2 ** 9


def test_class_name_texts_exact(tmp_path):
    assert class_name_texts() == list(CLASSES)
    assert class_name_texts("phrases") == list(CLASS_PHRASES)
    names = [f"  n{i} " for i in range(25)]
    f = tmp_path / "names.txt"
    f.write_text("\n\n".join(names) + "\n   \n", encoding="utf-8")
    assert class_name_texts(str(f)) == [f"n{i}" for i in range(25)]
    assert class_name_texts([f"x{i}" for i in range(25)])[3] == "x3"
    assert class_name_texts(tuple(range(25)))[7] == "7"
    with pytest.raises(PromptError) as e:
        class_name_texts(["a"] * 24)
    assert str(e.value) == "class names: expected 25 class names (one per class, class order), got 24"
    f.write_text("a\nb\n")
    with pytest.raises(PromptError) as e:
        class_name_texts(str(f))
    assert str(e.value) == f"{f}: expected 25 class names (one per class, class order), got 2"
    with pytest.raises(PromptError) as e:
        class_name_texts(str(tmp_path / "none.txt"))
    assert str(e.value) == f"class names: {str(tmp_path / 'none.txt')!r} is neither 'raw', 'phrases' nor a file"
    with pytest.raises(PromptError):
        class_name_texts(str(tmp_path))   # a folder is not a file


def test_prompt_table_lookup_rows_merge():
    t = PromptTable(["a", "b"], np.arange(6, dtype=np.float64).reshape(2, 3))
    assert t.embeddings.dtype == np.float32 and t.embeddings.flags["C_CONTIGUOUS"]
    assert t.dim == 3 and len(t) == 2 and "b" in t and "c" not in t
    assert t.rows(["b", "a", "b"]).tolist() == [1, 0, 1] and t.rows(["a"]).dtype == np.int64
    np.testing.assert_array_equal(t.lookup(["b"]), [[3, 4, 5]])
    with pytest.raises(PromptError) as e:
        t.lookup(["a", "zz"])
    assert str(e.value) == "prompt 'zz' is not in the prompt table"
    with pytest.raises(PromptError) as e:
        PromptTable(["a"], np.zeros((2, 3)))
    assert str(e.value) == "prompt table: embeddings (2, 3) do not match 1 texts"
    with pytest.raises(PromptError) as e:
        PromptTable(["a"], np.zeros(3))
    assert str(e.value) == "prompt table: embeddings (3,) do not match 1 texts"
    other = PromptTable(["b", "c"], np.full((2, 3), 9.0))
    m = t.merged(other)
    assert m.texts == ["a", "b", "c"]
    np.testing.assert_array_equal(m.embeddings, [[0, 1, 2], [3, 4, 5], [9, 9, 9]])
    assert t.merged(PromptTable(["a"], np.zeros((1, 3)))) is t
    with pytest.raises(PromptError) as e:
        t.merged(PromptTable(["z"], np.zeros((1, 4))))
    assert str(e.value) == "cannot merge prompt tables of dims 3 and 4"
    empty = PromptTable([], np.zeros((0, 0), np.float32))
    m = empty.merged(PromptTable(["z"], np.ones((1, 4))))
    assert m.texts == ["z"] and m.dim == 4


def test_cache_reader_refusals(tmp_path):
    p = tmp_path / "c.npz"
    p.write_bytes(b"\x80\x04junk pickle")
    with pytest.raises(PromptError) as e:
        load_prompt_cache(p)
    assert str(e.value) == f"{p}: not a prompt cache (not an .npz archive); corrupt or another format?"
    with pytest.raises(FileNotFoundError) as e:
        load_prompt_cache(tmp_path / "none.npz")
    assert str(e.value) == f"prompt cache not found: {tmp_path / 'none.npz'}"
    np.savez(p, texts=np.array(["a"]), other=np.zeros(1))
    with pytest.raises(PromptError) as e:
        load_prompt_cache(p)
    assert str(e.value) == f"{p}: a prompt cache needs arrays 'texts' and 'embeddings', has ['other', 'texts']"
    np.savez(p, embeddings=np.zeros((1, 2)))
    with pytest.raises(PromptError) as e:
        load_prompt_cache(p)
    assert "needs arrays 'texts' and 'embeddings', has ['embeddings']" in str(e.value)
    np.savez(p, texts=np.array([1, 2]), embeddings=np.zeros((2, 2)))
    with pytest.raises(PromptError) as e:
        load_prompt_cache(p)
    assert str(e.value) == f"{p}: 'texts' must be a 1-D unicode array, got int64 (2,)"
    np.savez(p, texts=np.array([["a"]]), embeddings=np.zeros((1, 2)))
    with pytest.raises(PromptError) as e:
        load_prompt_cache(p)
    assert str(e.value) == f"{p}: 'texts' must be a 1-D unicode array, got <U1 (1, 1)"
    np.savez(p, texts=np.array(["a", "b"]), embeddings=np.zeros((3, 2)))
    with pytest.raises(PromptError) as e:
        load_prompt_cache(p)
    assert str(e.value) == f"{p}: 'embeddings' must be (M, D) with M=2, got (3, 2)"
    np.savez(p, texts=np.array(["a", "b"]), embeddings=np.zeros(2))
    with pytest.raises(PromptError) as e:
        load_prompt_cache(p)
    assert str(e.value) == f"{p}: 'embeddings' must be (M, D) with M=2, got (2,)"
    np.savez(p, texts=np.array(["a"]), embeddings=np.array([[0.0, np.inf]]))
    with pytest.raises(PromptError) as e:
        load_prompt_cache(p)
    assert str(e.value) == f"{p}: 'embeddings' has non-finite values"
    np.savez(p, texts=np.array(["a"], dtype=object), embeddings=np.zeros((1, 2)))
    with pytest.raises(PromptError) as e:
        load_prompt_cache(p)
    assert str(e.value).startswith(f"{p}: not a prompt cache (")
    assert str(e.value).endswith("); 'texts' must be a unicode array (no pickles)")


def test_cache_round_trip_types_and_empty(tmp_path):
    t = PromptTable(["x", "y"], np.array([[1.5, 2], [3, 4]], np.float64))
    back = load_prompt_cache(save_prompt_cache(tmp_path / "c.npz", t))
    assert back.texts == ["x", "y"] and all(type(s) is str for s in back.texts)
    assert back.embeddings.dtype == np.float32
    np.testing.assert_array_equal(back.embeddings, [[1.5, 2], [3, 4]])
    empty = PromptTable([], np.zeros((0, 5), np.float32))
    path = save_prompt_cache(tmp_path / "e.npz", empty)
    with np.load(path) as z:
        assert z["texts"].dtype.kind == "U" and z["texts"].shape == (0,)
    e = load_prompt_cache(path)
    assert len(e) == 0 and e.dim == 5


def test_resolve_prompts_messages_order_and_dedup(capsys):
    cache = PromptTable(["a"], np.ones((1, 2), np.float32))
    t = resolve_prompts(["a", "a"], cache)
    assert t.texts == ["a"] and capsys.readouterr().err == ""
    t = resolve_prompts(["b", "a", "b"], cache, lambda texts: np.full((len(texts), 2), 3.0), what="CLAP")
    assert t.texts == ["b", "a"] and t.embeddings.tolist() == [[3, 3], [1, 1]]
    assert capsys.readouterr().err == "[prompts] encoding 1 CLAP prompt(s) with the text tower\n"
    with pytest.raises(PromptError) as e:
        resolve_prompts(["a", "m1", "m2"], cache, hint=" (pass --clip-model)")
    assert str(e.value) == ("2 prompt prompt(s) have no cached embedding and no text tower was given "
                            "(pass --clip-model); first missing:\n  'm1'\n  'm2'")
    with pytest.raises(PromptError) as e:
        resolve_prompts(["m"], cache, lambda texts: np.zeros((1, 3)), what="CLIP")
    assert str(e.value) == "CLIP text tower gives D=3 but the cache has D=2"
    with pytest.raises(PromptError) as e:
        resolve_prompts(["m", "n"], None, lambda texts: np.zeros(2), what="CLIP")
    assert str(e.value) == "CLIP text tower returned (2,) for 2 prompts; expected (M, D)"
    t = resolve_prompts(["m"], None, lambda texts: np.ones((1, 3)))
    assert t.texts == ["m"] and t.dim == 3 and t.embeddings.dtype == np.float32


def test_resolve_prompts_message_without_a_hint():
    with pytest.raises(PromptError) as e:
        resolve_prompts(["x"], None, what="CLIP")
    assert str(e.value) == ("1 CLIP prompt(s) have no cached embedding and no text tower was given; "
                            "first missing:\n  'x'")
