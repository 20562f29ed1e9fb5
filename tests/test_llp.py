"""The LLP annotation readers: real files (when present) and small malformed files."""
import numpy as np
import pytest

from lsld_engine.data.llp import (CLASSES, NUM_CLASSES, SEGMENT_FILES, T, WEAK_FILES, AnnotationError, load_split,
                             read_segment_labels, read_weak_labels)


def _raw_rows(path):
    with open(path, encoding="utf-8") as f:
        next(f)
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def test_class_list_is_the_official_order():
    assert NUM_CLASSES == 25 and T == 10
    assert CLASSES[0] == "Speech" and CLASSES[5] == "Frying_(food)" and CLASSES[-1] == "Clapping"
    assert len(set(CLASSES)) == 25


@pytest.mark.parametrize("split,count", [("train", 10000), ("val", 649), ("test", 1200)])
def test_real_weak_label_counts(llp_dir, split, count):
    weak = read_weak_labels(llp_dir / WEAK_FILES[split])
    assert len(weak) == count and weak.labels.shape == (count, NUM_CLASSES) and weak.labels.dtype == np.uint8
    assert len(set(weak.video_ids)) == count
    # Independent check of the label matrix against the raw text.
    rows = _raw_rows(llp_dir / WEAK_FILES[split])
    expect = np.zeros_like(weak.labels)
    for i, (_, labels) in enumerate(rows):
        for name in labels.split(","):
            expect[i, CLASSES.index(name)] = 1
    np.testing.assert_array_equal(weak.labels, expect)
    assert (weak.labels.sum(1) >= 1).all()


@pytest.mark.parametrize("split", ["val", "test"])
def test_real_segment_labels_match_plain_construction(llp_dir, split):
    s = load_split(llp_dir, split)
    assert s.gt_audio.shape == s.gt_visual.shape == (len(s), T, NUM_CLASSES)
    index = {v: i for i, v in enumerate(s.video_ids)}
    for track, gt in (("audio", s.gt_audio), ("visual", s.gt_visual)):
        expect = np.zeros_like(gt)
        for vid, on, off, labels in _raw_rows(llp_dir / SEGMENT_FILES[track]):
            if vid not in index:
                continue
            for name in labels.split(","):
                for t in range(int(on), int(off)):  # empty when offset <= onset
                    expect[index[vid], t, CLASSES.index(name)] = 1
        np.testing.assert_array_equal(gt, expect)
        assert gt.any()


def test_real_files_have_six_empty_rows_that_set_nothing(llp_dir, tmp_path):
    empty_total = 0
    test = load_split(llp_dir, "test")
    val = load_split(llp_dir, "val")
    ids = test.video_ids + val.video_ids
    for track in ("audio", "visual"):
        src = llp_dir / SEGMENT_FILES[track]
        lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
        keep = [lines[0]] + [ln for ln in lines[1:] if int(ln.split("\t")[2]) > int(ln.split("\t")[1])]
        empty_total += len(lines) - len(keep)
        stripped = tmp_path / f"{track}.csv"
        stripped.write_text("".join(keep), encoding="utf-8")
        np.testing.assert_array_equal(read_segment_labels(src, ids), read_segment_labels(stripped, ids))
    assert empty_total == 6


def test_video_without_rows_has_all_zero_track(tmp_path):
    p = tmp_path / "seg.csv"
    p.write_text("filename\tonset\toffset\tevent_labels\nvidA\t2\t5\tDog,Cat\n", encoding="utf-8")
    gt = read_segment_labels(p, ["vidB", "vidA"])
    assert not gt[0].any()
    assert gt[1, 2:5, CLASSES.index("Dog")].all() and gt[1, 2:5, CLASSES.index("Cat")].all()
    assert gt[1].sum() == 6


def test_offset_not_after_onset_sets_nothing(tmp_path):
    p = tmp_path / "seg.csv"
    p.write_text("filename\tonset\toffset\tevent_labels\nv\t9\t9\tSpeech\nv\t9\t0\tDog\n", encoding="utf-8")
    assert not read_segment_labels(p, ["v"]).any()


def test_unknown_class_names_file_and_line(tmp_path):
    p = tmp_path / "weak.csv"
    p.write_text("filename\tevent_labels\nv1\tSpeech\nv2\tSpeech,Kazoo\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"weak\.csv:3: unknown class 'Kazoo'"):
        read_weak_labels(p)


def test_unknown_class_in_segment_file_names_line(tmp_path):
    p = tmp_path / "seg.csv"
    p.write_text("filename\tonset\toffset\tevent_labels\nv\t0\t2\tSpeech\nv\t0\t2\tTrumpet\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"seg\.csv:3: unknown class 'Trumpet'"):
        read_segment_labels(p, ["v"])


@pytest.mark.parametrize("row,pattern", [
    ("v\t0\tSpeech", r"seg\.csv:2: expected 4 tab-separated fields"),
    ("v\tzero\t2\tSpeech", r"seg\.csv:2: onset/offset must be integers"),
    ("v\t0\t11\tSpeech", r"seg\.csv:2: onset/offset 0/11 outside"),
])
def test_malformed_segment_row_names_line(tmp_path, row, pattern):
    p = tmp_path / "seg.csv"
    p.write_text(f"filename\tonset\toffset\tevent_labels\n{row}\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=pattern):
        read_segment_labels(p, ["v"])


def test_bad_header_and_duplicates_and_missing_file(tmp_path):
    p = tmp_path / "weak.csv"
    p.write_text("name\tlabels\nv\tSpeech\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"weak\.csv:1: expected header"):
        read_weak_labels(p)
    p.write_text("filename\tevent_labels\nv\tSpeech\nv\tDog\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"weak\.csv:3: duplicate video 'v'"):
        read_weak_labels(p)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_weak_labels(tmp_path / "nope.csv")


def test_load_split_train_has_no_segment_truth(llp_dir):
    s = load_split(llp_dir, "train")
    assert len(s) == 10000 and s.gt_audio is None and s.gt_visual is None
    with pytest.raises(ValueError, match="unknown split"):
        load_split(llp_dir, "dev")


def test_llp_dir_env_names_a_missing_folder(tmp_path, monkeypatch):
    from lsld_engine.data.llp import default_llp_dir
    monkeypatch.setenv("LSLD_LLP_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="LSLD_LLP_DIR"):
        default_llp_dir()


def test_llp_dir_env_wins_when_valid(tmp_path, monkeypatch):
    from lsld_engine.data.llp import default_llp_dir
    (tmp_path / "AVVP_test_pd.csv").write_text("filename\tevent_labels\n")
    monkeypatch.setenv("LSLD_LLP_DIR", str(tmp_path))
    assert default_llp_dir() == tmp_path
