"""The synthetic LLP world: a loadable dataset root, the denoise stage on it, label quality."""
import re

import numpy as np
import pytest

from lsld_engine.synthetic import synth, synth_quality
from lsld_engine.cli import main as cli_main
from lsld_engine.data.dataset import dataset_paths, load_features, load_split_labels
from lsld_engine.data.llp import CLASSES, load_split
from lsld_engine.labels.prompts import load_prompt_cache, required_prompts


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    return synth.make_world(root, n_train=240, n_val=30, n_test=30, seed=0, progress=False)


@pytest.fixture(scope="module")
def labels(world, tmp_path_factory):
    from train import denoise as stage
    out = tmp_path_factory.mktemp("labels") / "labels.npz"
    assert stage.main(["--data", str(world), "--out", str(out)]) == 0
    return out


def test_world_is_a_loadable_dataset_root(world):
    p = dataset_paths(world)
    splits = {s: load_split_labels(p, s) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [240, 30, 30]
    f = load_features(p, splits["train"].video_ids, progress=False)
    assert f.frames.dtype == np.float16 and f.audio.shape == (240, 10, 512)
    for s in ("val", "test"):
        sp = splits[s]
        # Every weak label is present in at least one segment of one modality, and nothing else is.
        seen = (sp.gt_audio.max(1) | sp.gt_visual.max(1))
        np.testing.assert_array_equal(seen, sp.weak)


def test_prompt_caches_cover_every_prompt_and_class_name(world):
    p = dataset_paths(world)
    weak = np.concatenate([load_split_labels(p, s).weak for s in ("train", "val", "test")])
    clap, clip = load_prompt_cache(p.clap_cache), load_prompt_cache(p.clip_cache)
    assert all(t in clap for t in required_prompts(weak, "audio"))
    assert all(t in clip for t in required_prompts(weak, "visual"))
    assert all(n in clip for n in CLASSES)
    assert clip.embeddings.shape[1] == 512


def test_truth_is_noisy_inside_weak_labels(world):
    with np.load(world / synth.TRUTH_FILE, allow_pickle=False) as z:
        ids, ga, gv = list(z["video_ids"]), z["audio"], z["visual"]
    s = load_split(world, "train")
    assert ids == s.video_ids and ga.shape == gv.shape == (240, 10, 25)
    w = s.weak[:, None, :].astype(bool)
    assert not (ga.astype(bool) & ~w).any() and not (gv.astype(bool) & ~w).any()
    # Segment-level noise: labelled events are missing from many segments, speech mostly unseen.
    full = np.broadcast_to(w, gv.shape).sum()
    assert ga.sum() < 0.9 * full and gv.sum() < 0.8 * full
    sp = s.weak[:, 0].astype(bool)
    assert gv[sp, :, 0].mean() < 0.5 * ga[sp, :, 0].mean()


def test_same_seed_same_world(tmp_path):
    a = synth.make_world(tmp_path / "a", n_train=5, n_val=2, n_test=2, seed=3, progress=False)
    b = synth.make_world(tmp_path / "b", n_train=5, n_val=2, n_test=2, seed=3, progress=False)
    vid = load_split(a, "train").video_ids[2]
    for sub in ("feats/clip_16", "feats/clap_audioset"):
        np.testing.assert_array_equal(np.load(a / sub / f"{vid}.npy"), np.load(b / sub / f"{vid}.npy"))
    assert (a / "AVVP_eval_visual.csv").read_text() == (b / "AVVP_eval_visual.csv").read_text()


def test_float32_option(tmp_path):
    r = synth.make_world(tmp_path, n_train=3, n_val=1, n_test=1, dtype="float32", progress=False)
    vid = load_split(r, "train").video_ids[0]
    assert np.load(r / "feats/clip_16" / f"{vid}.npy").dtype == np.float32


def test_segment_files_round_trip_runs(tmp_path):
    gt = np.zeros((2, 10, 25), np.uint8)
    gt[0, 2:5, 3] = 1
    gt[0, 7:10, 3] = 1
    gt[1, :, 0] = 1
    path = tmp_path / "seg.csv"
    synth._write_segments(path, ["a", "b"], gt)
    from lsld_engine.data.llp import read_segment_labels
    np.testing.assert_array_equal(read_segment_labels(path, ["a", "b"]), gt)
    assert len(path.read_text().splitlines()) == 4


def test_stage_writes_labels_aligned_with_train_csv(world, labels):
    with np.load(labels, allow_pickle=False) as z:
        ids = list(z["video_ids"])
        a, vd, v = z["audio"], z["visual_den"], z["visual"]
    s = load_split(world, "train")
    assert ids == s.video_ids
    for arr in (a, vd, v):
        assert arr.shape == (240, 10, 25) and arr.dtype == np.float32
    assert set(np.unique(vd)) <= {0.0, 1.0} and (v != vd).any() and (v >= 0).all() and (v <= 1).all()
    assert (a <= s.weak[:, None, :]).all()


def test_quality_ordering_on_small_world(world, labels):
    q = synth_quality.label_quality(world, labels)
    a, v = q["audio"], q["visual"]
    assert a["DeN"]["F1"] > a["weak"]["F1"]
    assert v["DeN+ReW"]["F1"] > v["DeN"]["F1"] > v["weak"]["F1"]
    assert "DeN+ReW" in synth_quality.format_quality(q)


def test_quality_cli(world, labels, capsys):
    assert cli_main(["synth", "quality", "--data", str(world), "--labels", str(labels), "--json"]) == 0
    assert '"DeN+ReW"' in capsys.readouterr().out


def test_stage_without_cache_or_tower_lists_missing_prompts(world, tmp_path, capsys):
    from train import denoise as stage
    assert stage.main(["--data", str(world), "--prompts-dir", str(tmp_path), "--out", str(tmp_path / "l.npz")]) == 2
    assert re.search(r"(?s)error: .*CLAP prompt\(s\) have no cached embedding.*This is a sound of",
                     capsys.readouterr().err)


def test_stage_with_an_object_array_prompt_cache_stops_with_one_line_and_status_2(world, tmp_path, capsys):
    """A prompt cache holding object arrays (pickles) is refused unread: a user error, exit status 2."""
    from train.lsld import main as lsld_main

    prompts = tmp_path / "pr"
    prompts.mkdir()
    np.savez(prompts / "clap.npz", texts=np.array(["a", None], dtype=object), embeddings=np.zeros((2, 512), np.float32))
    out = tmp_path / "l.npz"
    assert lsld_main(["denoise", "--data", str(world), "--prompts-dir", str(prompts), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m train.lsld denoise: error: ") and "clap.npz" in err[-1]
    assert "no pickles" in err[-1] and not any("Traceback" in line for line in err)
    assert not out.exists()


def test_stage_uses_tower_for_misses_and_writes_cache(world, tmp_path, monkeypatch):
    from train import denoise as stage
    calls = []

    def fake_tower(kind, args):
        def enc(texts):
            calls.append((kind, len(texts)))
            return np.random.default_rng(len(texts)).standard_normal((len(texts), 512))
        return enc

    monkeypatch.setattr(stage, "_text_tower", fake_tower)
    out = tmp_path / "l.npz"
    assert stage.main(["--data", str(world), "--prompts-dir", str(tmp_path / "pr"), "--out", str(out),
                       "--write-prompt-cache"]) == 0
    assert {k for k, _ in calls} == {"clip", "clap"}
    weak = load_split(world, "train").weak
    clip = load_prompt_cache(tmp_path / "pr" / "clip.npz")
    assert all(t in clip for t in required_prompts(weak, "visual")) and "Frying_(food)" in clip
    # A second run is served from the written caches alone.
    calls.clear()
    assert stage.main(["--data", str(world), "--prompts-dir", str(tmp_path / "pr"), "--out", str(out)]) == 0
    assert calls == []


def test_checkpoint_without_encoders_is_a_clear_error(world, tmp_path, monkeypatch):
    import builtins
    from train import denoise as stage
    real_import = builtins.__import__

    def no_encoders(name, *a, **k):
        if name.startswith("lsld_engine.encoders"):
            raise ImportError("no encoders here")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_encoders)
    with pytest.raises(SystemExit, match="text tower not available"):
        stage.main(["--data", str(world), "--prompts-dir", str(tmp_path), "--clap-checkpoint", "x.pt",
                    "--out", str(tmp_path / "l.npz")])


def test_borrows_real_annotations(llp_dir, tmp_path):
    r = synth.make_world(tmp_path, n_train=20, n_val=10, n_test=10, seed=1, llp_dir=llp_dir, progress=False)
    real_val = load_split(llp_dir, "val")
    val = load_split(r, "val")
    idx = [real_val.video_ids.index(v) for v in val.video_ids]
    np.testing.assert_array_equal(val.gt_visual, real_val.gt_visual[idx])
    np.testing.assert_array_equal(val.gt_audio, real_val.gt_audio[idx])
    real_train = load_split(llp_dir, "train")
    tr = load_split(r, "train")
    assert set(tr.video_ids) <= set(real_train.video_ids)


def test_core_imports_without_encoder_stack():
    import subprocess
    import sys
    code = ("import sys; import lsld_engine.data.dataset, lsld_engine.labels.prompts, lsld_engine.labels.denoise, lsld_engine.synthetic.synth;"
            "bad = [m for m in ('open_clip', 'laion_clap', 'av', 'torch') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
