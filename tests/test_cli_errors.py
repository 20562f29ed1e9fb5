"""Bad user input through the real entry points: one ``error:`` line naming the file, status 2, no traceback."""
from __future__ import annotations

import collections
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lsld_engine import cli
from lsld_engine.data.dataset import FeatureError, dataset_paths, load_features
from lsld_engine.data.llp import AnnotationError, read_weak_labels
from lsld_engine.labels.prompts import PromptError, load_prompt_cache
from lsld_engine.han.training import TrainConfig
from train import lsld


@pytest.fixture
def junk(tmp_path) -> Path:
    """Random bytes under a torch-like name (not a zip archive, not a pickle)."""
    p = tmp_path / "junk.pt"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    return p


@pytest.fixture
def pickled_object(tmp_path) -> Path:
    """A weights-only-loadable torch file holding no tensors at all."""
    p = tmp_path / "counter.pt"
    torch.save(collections.Counter(a=1), p)
    return p


def _assert_user_error(rc, capsys, *needles):
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    assert "error:" in err
    for n in needles:
        assert n in err, err
    return err


# ---------------------------------------------------------------- python -m train.lsld
def test_train_test_stage_random_bytes_checkpoint(tmp_path, junk, capsys):
    rc = lsld.main(["test", "--data", str(tmp_path), "--checkpoint", str(junk)])
    err = _assert_user_error(rc, capsys, str(junk), "not a checkpoint")
    assert "refused to unpickle" not in err  # random bytes are not a pickle at all


def test_train_test_stage_missing_checkpoint(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    _assert_user_error(lsld.main(["test", "--data", str(tmp_path), "--checkpoint", str(missing)]), capsys,
                       str(missing))


def test_train_test_stage_wrong_shape_state_dict(tmp_path, capsys):
    from lsld_engine.han.model import build_han

    state = build_han(num_layers=1).state_dict()
    key = "fc_a.bias"
    state[key] = torch.zeros(7, 3)
    path = tmp_path / "wrong.pt"
    torch.save(state, path)
    _assert_user_error(lsld.main(["test", "--data", str(tmp_path), "--checkpoint", str(path)]), capsys,
                       str(path), key)


def test_train_test_stage_missing_dataset(tmp_path, capsys):
    from lsld_engine.han.checkpoint import save_han
    from lsld_engine.han.model import build_han

    ckpt = save_han(build_han(num_layers=1), tmp_path / "m.safetensors")
    _assert_user_error(lsld.main(["test", "--data", str(tmp_path / "absent"), "--checkpoint", str(ckpt)]), capsys,
                       "AVVP_test_pd.csv")


@pytest.mark.parametrize("flag,value", [("--epochs", "-1"), ("--epochs", "0"), ("--batch-size", "0"),
                                        ("--num-layers", "0")])
def test_train_rejects_non_positive_counts(tmp_path, flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        lsld.main(["train", "--data", str(tmp_path), "--run-dir", str(tmp_path / "run"), flag, value])
    assert e.value.code == 2
    assert flag in capsys.readouterr().err


@pytest.mark.parametrize("device", ["gpu", "cuda:x"] + ([] if torch.cuda.is_available() else ["cuda"]))
def test_train_rejects_unusable_device_before_loading(tmp_path, device, capsys):
    with pytest.raises(SystemExit) as e:
        lsld.main(["train", "--data", str(tmp_path), "--run-dir", str(tmp_path / "run"), "--device", device])
    assert e.value.code == 2
    assert "--device" in capsys.readouterr().err


def test_train_config_rejects_zero_batch():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=-1)


@pytest.mark.parametrize("stage", ["all", "train", "test", "denoise"])
def test_stage_help_shows_each_default_once(stage):
    text = " ".join(lsld.build_parser(stage).format_help().split())
    assert "(default: None)" not in text
    assert not re.search(r"\(default[^()]*\) \(default", text), text


@pytest.mark.parametrize("stage,optional", [("all", True), ("ablation", True), ("train", False), ("test", False)])
def test_data_help_promises_the_synthetic_world_only_where_optional(stage, optional):
    data = next(a for a in lsld.build_parser(stage)._actions if a.dest == "data")
    assert data.required is not optional
    assert ("built-in synthetic world" in data.help) is optional


# ---------------------------------------------------------------- lsld-engine
def test_top_level_help_is_for_users(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "argument parsing only" not in out


@pytest.fixture
def ann(tmp_path) -> Path:
    """A one-video test split."""
    d = tmp_path / "ann"
    d.mkdir()
    (d / "AVVP_test_pd.csv").write_text("filename\tevent_labels\nv0\tSpeech\n")
    (d / "AVVP_eval_audio.csv").write_text("filename\tonset\toffset\tevent_labels\nv0\t0\t3\tSpeech\n")
    (d / "AVVP_eval_visual.csv").write_text("filename\tonset\toffset\tevent_labels\n")
    return d


def test_eval_predictions_not_utf8(tmp_path, ann, capsys):
    pred = tmp_path / "p.jsonl"
    pred.write_bytes(b"\xff\xfe garbage\n")
    rc = cli.main(["eval", "--pred", str(pred), "--annotations", str(ann)])
    _assert_user_error(rc, capsys, f"{pred}:1", "UTF-8")


def test_eval_predictions_folder(tmp_path, ann, capsys):
    rc = cli.main(["eval", "--pred", str(tmp_path), "--annotations", str(ann)])
    _assert_user_error(rc, capsys, str(tmp_path), "is a folder")


def test_extract_unusable_clap_checkpoint(tmp_path, pickled_object, capsys):
    from lsld_engine.testing.videos import VideoSpec, make_video

    video = make_video(tmp_path / "v.mp4", VideoSpec(duration=1.0))
    rc = cli.main(["extract", str(video), "--out", str(tmp_path / "root"), "--random-weights", "--small",
                   "--workers", "0", "--quiet", "--clap-checkpoint", str(pickled_object)])
    _assert_user_error(rc, capsys, str(pickled_object))


def test_internal_errors_keep_their_traceback():
    assert cli.is_user_error(FileNotFoundError("x"))
    assert cli.is_user_error(FeatureError("x"))
    assert not cli.is_user_error(ValueError("x"))
    assert not cli.is_user_error(KeyError("x"))
    with pytest.raises(ZeroDivisionError):
        cli.report_user_errors("prog", lambda: 1 / 0)


def test_encoder_checkpoint_random_bytes(junk):
    from lsld_engine.encoders.checkpoints import CheckpointError, read_state_dict

    with pytest.raises(CheckpointError, match="not a CLAP checkpoint file") as e:
        read_state_dict(junk, "CLAP checkpoint")
    assert str(junk) in str(e.value)


# ---------------------------------------------------------------- files
def test_annotations_with_byte_order_mark(tmp_path):
    p = tmp_path / "AVVP_train.csv"
    p.write_bytes(b"\xef\xbb\xbffilename\tevent_labels\nv0\tSpeech,Dog\n")
    weak = read_weak_labels(p)
    assert weak.video_ids == ["v0"] and weak.labels.sum() == 2


def test_annotations_not_utf8_names_line(tmp_path):
    p = tmp_path / "AVVP_train.csv"
    p.write_bytes(b"filename\tevent_labels\nv0\tSpeech\nv1\tDog\xff\n")
    with pytest.raises(AnnotationError, match=rf"{p}:3: not UTF-8"):
        read_weak_labels(p)


def test_annotations_empty_file(tmp_path):
    p = tmp_path / "AVVP_train.csv"
    p.write_bytes(b"")
    with pytest.raises(AnnotationError, match="empty file"):
        read_weak_labels(p)


def _feature_root(tmp_path, ids):
    paths = dataset_paths(tmp_path)
    for d, shape in ((paths.clap_dir, (10, 512)), (paths.clip_dir, (80, 512))):
        d.mkdir(parents=True, exist_ok=True)
        for v in ids:
            np.save(d / f"{v}.npy", np.zeros(shape, np.float16))
    return paths


def test_feature_file_not_npy(tmp_path):
    paths = _feature_root(tmp_path, ["a", "b"])
    (paths.clap_dir / "b.npy").write_text("garbage\n")
    with pytest.raises(FeatureError, match="b.npy.*not a .npy file"):
        load_features(paths, ["a", "b"], progress=False)


def test_feature_folder_missing(tmp_path):
    paths = _feature_root(tmp_path, ["a"])
    for f in paths.clip_dir.iterdir():
        f.unlink()
    paths.clip_dir.rmdir()
    with pytest.raises(FeatureError, match="visual feature folder not found.*--clip-dir"):
        load_features(paths, ["a"], progress=False)


def test_prompt_cache_not_npz(tmp_path):
    p = tmp_path / "clip.npz"
    p.write_text("junk\n")
    with pytest.raises(PromptError, match="not an .npz archive"):
        load_prompt_cache(p)


def test_synth_quality_missing_labels(tmp_path, capsys):
    from lsld_engine.synthetic import synth

    synth.make_world(tmp_path, n_train=8, n_val=4, n_test=4, llp_dir=None, workers=1, progress=False)
    missing = tmp_path / "labels.npz"
    _assert_user_error(cli.main(["synth", "quality", "--data", str(tmp_path), "--labels", str(missing)]), capsys,
                       "labels.npz")


def test_run_dir_is_a_file(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("")
    rc = lsld.main(["train", "--data", str(tmp_path), "--run-dir", str(f), "--labels", "weak"])
    _assert_user_error(rc, capsys, "afile")


def test_synth_make_into_a_file(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("")
    _assert_user_error(cli.main(["synth", "make", "--out", str(f), "--llp-dir", "none"]), capsys, "afile")


def test_denoise_out_is_a_folder_fails_before_work(tmp_path):
    with pytest.raises(SystemExit, match="is a folder"):
        lsld.main(["denoise", "--data", str(tmp_path / "absent"), "--out", str(tmp_path)])
    assert not list(tmp_path.glob("*.tmp.npz"))


def test_train_denoise_module_missing_dataset(tmp_path, capsys):
    from train import denoise

    _assert_user_error(denoise.main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "l.npz")]), capsys,
                       "AVVP_train.csv")


def test_parse_resume_from_a_binary_out_names_it(tmp_path):
    from lsld_engine.parsing.video_inputs import read_records

    out = tmp_path / "r.jsonl"
    out.write_bytes(b"\xff\xfe\n")
    with pytest.raises(ValueError, match=rf"{out}: not a JSONL file"):
        read_records(out)
    assert out.read_bytes() == b"\xff\xfe\n"  # left untouched


def test_predictions_with_byte_order_mark(tmp_path):
    import json

    from lsld_engine.records.writers import read_predictions

    p = tmp_path / "p.jsonl"
    rec = {"video_id": "v0", "status": "ok", "duration": 10.0, "segments": 10,
           "events": {"audio": [], "visual": [], "audio_visual": []}}
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(rec).encode() + b"\n")
    assert list(read_predictions(p)) == ["v0"]


@pytest.mark.parametrize("flag,value", [("--limit", "-1"), ("--workers", "-2"), ("--batch-size", "0"),
                                        ("--decode-timeout", "0"), ("--decode-timeout", "-1"), ("--limit", "x")])
@pytest.mark.parametrize("command", ["parse", "extract"])
def test_video_commands_reject_bad_counts(tmp_path, command, flag, value, capsys):
    # --limit -1 used to slice off the last video silently; a negative timeout failed every video
    with pytest.raises(SystemExit) as e:
        cli.main([command, str(tmp_path), "--out", str(tmp_path / "o"), "--random-weights", flag, value])
    assert e.value.code == 2
    assert flag in capsys.readouterr().err


def test_train_workers_negative(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        lsld.main(["test", "--data", str(tmp_path), "--checkpoint", "x.pt", "--workers", "-1"])
    assert e.value.code == 2 and "--workers" in capsys.readouterr().err


def test_ctrl_c_is_one_line_and_130(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert cli.report_user_errors("prog", interrupted) == 130
    err = capsys.readouterr().err
    assert "prog: interrupted" in err and "Traceback" not in err


def test_annotations_given_as_a_file(tmp_path, ann, capsys):
    f = ann / "AVVP_test_pd.csv"
    rc = cli.main(["eval", "--pred", str(tmp_path / "p.jsonl"), "--annotations", str(f)])
    _assert_user_error(rc, capsys, f"{f} is a file", "folder")
