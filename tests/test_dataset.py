"""Dataset root layout and feature loading."""
import numpy as np
import pytest

from lsld_engine.data.dataset import FeatureError, dataset_paths, load_features, load_split_labels


def _root(tmp_path, ids, dtype=np.float16, seed=0):
    p = dataset_paths(tmp_path)
    p.clip_dir.mkdir(parents=True)
    p.clap_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    data = {}
    for v in ids:
        a = rng.standard_normal((10, 512)).astype(dtype)
        f = rng.standard_normal((80, 512)).astype(dtype)
        np.save(p.clap_dir / f"{v}.npy", a)
        np.save(p.clip_dir / f"{v}.npy", f)
        data[v] = (a, f)
    return p, data


def test_default_layout_and_overrides(tmp_path):
    p = dataset_paths(tmp_path)
    assert p.clip_dir == tmp_path / "feats/clip_16" and p.clap_dir == tmp_path / "feats/clap_audioset"
    assert p.clip_cache == tmp_path / "prompts/clip.npz" and p.clap_cache == tmp_path / "prompts/clap.npz"
    q = dataset_paths(tmp_path, clip_dir="/x/clip", clap_dir="/x/clap", prompts_dir="/x/pr")
    assert str(q.clip_dir) == "/x/clip" and str(q.clap_dir) == "/x/clap" and str(q.clip_cache) == "/x/pr/clip.npz"
    assert q.feature_file("audio", "v1").name == "v1.npy" and q.feature_file("visual", "v1").parent == q.clip_dir


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_load_features_in_order_contiguous(tmp_path, dtype):
    ids = [f"vid{i}" for i in range(7)]
    p, data = _root(tmp_path, ids, dtype)
    order = ids[::-1]
    f = load_features(p, order, workers=3, progress=False)
    assert f.video_ids == order
    assert f.audio.shape == (7, 10, 512) and f.audio.dtype == np.float32
    assert f.frames.shape == (7, 80, 512) and f.frames.dtype == dtype
    assert f.audio.flags.c_contiguous and f.frames.flags.c_contiguous
    for i, v in enumerate(order):
        np.testing.assert_array_equal(f.audio[i], data[v][0].astype(np.float32))
        np.testing.assert_array_equal(f.frames[i], data[v][1])


def test_frames_dtype_override(tmp_path):
    p, _ = _root(tmp_path, ["a", "b"])
    assert load_features(p, ["a", "b"], progress=False, frames_dtype=np.float32).frames.dtype == np.float32


def test_missing_file_names_video_and_file(tmp_path):
    p, _ = _root(tmp_path, ["a", "b", "c"])
    (p.clip_dir / "b.npy").unlink()
    with pytest.raises(FeatureError, match=r"video b: feature file not found: .*clip_16/b\.npy"):
        load_features(p, ["a", "b", "c"], progress=False)


def test_wrong_shape_names_video(tmp_path):
    p, _ = _root(tmp_path, ["a", "b"])
    np.save(p.clap_dir / "b.npy", np.zeros((9, 512), np.float32))
    with pytest.raises(FeatureError, match=r"video b: .*clap_audioset/b\.npy has shape \(9, 512\), expected \(10, 512\)"):
        load_features(p, ["a", "b"], progress=False)


def test_non_finite_names_video(tmp_path):
    p, _ = _root(tmp_path, ["a", "b"])
    bad = np.zeros((80, 512), np.float16)
    bad[3, 7] = np.nan
    np.save(p.clip_dir / "a.npy", bad)
    with pytest.raises(FeatureError, match=r"video a: .*a\.npy holds non-finite"):
        load_features(p, ["a", "b"], progress=False)


def test_float32_overflowing_float16_store_is_an_error(tmp_path):
    p, _ = _root(tmp_path, ["a", "b"])
    np.save(p.clip_dir / "b.npy", np.full((80, 512), 1e6, np.float32))
    with pytest.raises(FeatureError, match="video b: .*overflows float16"):
        load_features(p, ["a", "b"], progress=False)


def test_empty_id_list(tmp_path):
    p, _ = _root(tmp_path, [])
    f = load_features(p, [], progress=False)
    assert f.audio.shape == (0, 10, 512) and f.frames.shape == (0, 80, 512)


def test_load_split_labels(tmp_path):
    (tmp_path / "AVVP_train.csv").write_text("filename\tevent_labels\nv1\tSpeech,Dog\nv2\tCar\n")
    s = load_split_labels(dataset_paths(tmp_path), "train")
    assert s.video_ids == ["v1", "v2"] and s.weak[0, [0, 3]].tolist() == [1, 1] and s.gt_audio is None


def test_official_11_character_names_are_read_when_the_full_name_is_absent(tmp_path):
    """The official loaders read ``<filename[:11]>.npy``: a root laid out that way loads as is."""
    full, short = ["BjCEufrlXm4_20_30", "7nSYwyaP4QE_50_60"], ["BjCEufrlXm4", "7nSYwyaP4QE"]
    p, data = _root(tmp_path, short)
    f = load_features(p, full, progress=False)
    assert f.video_ids == full
    np.testing.assert_array_equal(f.frames[1], data["7nSYwyaP4QE"][1])
    # the full name wins when both exist (a root may mix them)
    np.save(p.clip_dir / "BjCEufrlXm4_20_30.npy", np.ones((80, 512), np.float16))
    assert (load_features(p, full, progress=False).frames[0] == 1).all()


def test_two_rows_sharing_an_official_name_is_one_error(tmp_path):
    p, _ = _root(tmp_path, ["BjCEufrlXm4"])
    with pytest.raises(FeatureError) as e:
        load_features(p, ["BjCEufrlXm4_20_30", "BjCEufrlXm4_40_50"], progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "BjCEufrlXm4_20_30 and BjCEufrlXm4_40_50" in msg and "BjCEufrlXm4.npy" in msg


def test_missing_file_names_both_names_tried(tmp_path):
    p, _ = _root(tmp_path, ["a"])
    with pytest.raises(FeatureError, match=r"video BjCEufrlXm4_20_30: feature file not found: .*"
                                           r"BjCEufrlXm4_20_30\.npy \(nor the official name BjCEufrlXm4\.npy\)"):
        load_features(p, ["a", "BjCEufrlXm4_20_30"], progress=False)
