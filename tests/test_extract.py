"""`lsld-engine extract`: the dataset layout, window ids, the log, resume and atomic writes.

The command runs with :class:`lsld_engine.testing.backends.ToyBackend` patched in (cheap,
deterministic encoders), so file contents can be checked against the encoders exactly; the real
small towers go through `extract` in tests/test_parse.py's consistency test.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from lsld_engine import backends
from lsld_engine.cli import main
from lsld_engine.media import decode_video
from lsld_engine.testing.backends import ToyBackend
from lsld_engine.testing.compare import assert_embeddings_match
from lsld_engine.testing.videos import VideoSpec, make_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    make_video(d / "clip_0_10.mp4", VideoSpec())
    make_video(d / "long.mp4", VideoSpec(duration=25.0, freq=880.0))
    make_video(d / "silent.mp4", VideoSpec(acodec=None, duration=5.0))
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 500)
    return d


@pytest.fixture
def toy(monkeypatch):
    made = []

    def create(name, **options):
        assert name == "auto"  # the default backend
        made.append(ToyBackend())
        return made[-1]

    monkeypatch.setattr(backends, "create_backend", create)
    return made


def extract(videos, root, *extra):
    return main(["extract", str(videos), "--out", str(root), "--random-weights", "--quiet", "--workers", "0", *extra])


def log_lines(root):
    return [json.loads(x) for x in (root / "feats" / "extract_log.jsonl").read_text().splitlines()]


def test_extract_writes_the_dataset_layout(videos, tmp_path, toy, capsys):
    root = tmp_path / "root"
    assert extract(videos, root) == 1  # corrupt.mp4 failed
    err = capsys.readouterr().err
    assert "extracted 3 videos (5 windows), failed 1" in err and "corrupt" in err
    clip, clap = root / "feats" / "clip_16", root / "feats" / "clap_audioset"
    ids = ["clip_0_10", "long@0", "long@10", "long@20", "silent"]
    assert sorted(p.stem for p in clip.glob("*.npy")) == ids
    assert sorted(p.stem for p in clap.glob("*.npy")) == ids
    assert not list(root.rglob(".*tmp*"))  # no temporary files left
    a = np.load(clip / "clip_0_10.npy")
    assert a.shape == (80, 512) and a.dtype == np.float16
    assert np.load(clap / "long@20.npy").shape == (10, 512)
    # the files hold the encoder's outputs for the right window
    be = ToyBackend()
    d = decode_video(videos / "long.mp4")
    # (tolerances, not bit-equality: BLAS results differ across batch sizes and CPUs)
    img = [be.embed_images(d.frames[w]) for w in range(3)]
    aud = [be.embed_audio(d.audio[w]) for w in range(3)]
    assert_embeddings_match(np.load(clip / "long@10.npy"), img[1], wrong=[img[0], img[2]])
    assert_embeddings_match(np.load(clap / "long@20.npy"), aud[2], wrong=[aud[0], aud[1]])
    log = {r["video_id"]: r for r in log_lines(root)}
    assert log["long"]["windows"] == ["long@0", "long@10", "long@20"]
    assert log["long"]["duration"] == pytest.approx(25.0, abs=0.05) and log["long"]["has_audio"] is True
    assert log["silent"]["has_audio"] is False and log["silent"]["duration"] == pytest.approx(5.0, abs=0.05)
    assert log["corrupt"]["status"] == "error" and "corrupt.mp4" in log["corrupt"]["error"]


def test_float32_and_limit(videos, tmp_path, toy):
    root = tmp_path / "root"
    assert extract(videos, root, "--dtype", "float32", "--limit", "2") == 1  # corrupt sorts first
    assert np.load(root / "feats" / "clip_16" / "clip_0_10.npy").dtype == np.float32
    assert len(log_lines(root)) == 2


def test_resume_skips_done_videos_and_redoes_incomplete_ones(videos, tmp_path, toy, capsys):
    root = tmp_path / "root"
    extract(videos, root)
    capsys.readouterr()
    toy.clear()
    assert extract(videos, root) == 1  # only the corrupt video is tried again
    assert "skipped 3 already done" in capsys.readouterr().err
    assert sum(b for what, b in toy[0].calls if what == "images") == 0
    # a window file lost (or never renamed into place by a killed run): that video is redone
    (root / "feats" / "clap_audioset" / "long@10.npy").unlink()
    toy.clear()
    extract(videos, root)
    assert sum(b for what, b in toy[0].calls if what == "images") == 3 * 80
    assert (root / "feats" / "clap_audioset" / "long@10.npy").is_file()


def test_a_kill_while_writing_leaves_no_partial_file(videos, tmp_path, toy, monkeypatch):
    import lsld_engine.parsing.extract as ex

    root = tmp_path / "root"
    real_save = np.save
    calls = []

    def dying_save(f, arr, **kw):
        calls.append(1)
        if len(calls) == 3:  # the third file: write half, then die
            f.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt
        real_save(f, arr, **kw)

    monkeypatch.setattr(ex.np, "save", dying_save)
    assert extract(videos, root) == 130
    monkeypatch.setattr(ex.np, "save", real_save)
    # in path order: corrupt fails, clip_0_10 writes its 2 files, long dies on its first file
    files = sorted(f.name for f in (root / "feats").rglob("*.npy"))
    assert files == ["clip_0_10.npy", "clip_0_10.npy"]
    assert not list(root.rglob(".*tmp*"))
    # the interrupted video has no "ok" log line, so the next run redoes it
    assert {r["video_id"] for r in log_lines(root) if r["status"] == "ok"} == {"clip_0_10"}
    assert extract(videos, root) == 1
    assert len(list((root / "feats" / "clip_16").glob("*.npy"))) == 5


def test_missing_weights_name_the_flags(videos, tmp_path, capsys):
    assert main(["extract", str(videos), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--clip-checkpoint" in err and "--clap-checkpoint" in err and "--model" not in err


def test_frame_rule_flag_reaches_the_features(videos, tmp_path, toy):
    """`--frame-rule hold` gives the hold rule's frames, the default the official ones (they differ
    at 25 fps), and `--jpeg-roundtrip` is passed to the decoder."""
    one = tmp_path / "one"
    one.mkdir()
    (one / "clip_0_10.mp4").symlink_to(videos / "clip_0_10.mp4")
    be = ToyBackend()
    # the reference embeddings come from a separate (unbatched) call: compare within a tolerance, and
    # require the other rule's embeddings to be far off, so a wrong rule still fails
    want = {rule: be.embed_images(decode_video(one / "clip_0_10.mp4", frame_rule=rule).frames[0])
            for rule in ("official", "hold")}
    for rule, other in (("official", "hold"), ("hold", "official")):
        root = tmp_path / rule
        extra = () if rule == "official" else ("--frame-rule", "hold")
        assert extract(one, root, *extra) == 0
        got = np.load(root / "feats" / "clip_16" / "clip_0_10.npy")
        assert_embeddings_match(got, want[rule], wrong=[want[other]])
    root = tmp_path / "jpeg"
    assert extract(one, root, "--jpeg-roundtrip") == 0
    want_jpeg = be.embed_images(decode_video(one / "clip_0_10.mp4", jpeg_roundtrip=True).frames[0])
    assert_embeddings_match(np.load(root / "feats" / "clip_16" / "clip_0_10.npy"), want_jpeg)
    with pytest.raises(SystemExit) as e:
        main(["extract", str(one), "--out", str(tmp_path / "x"), "--frame-rule", "nearest"])
    assert e.value.code == 2


def test_ray_decode_tasks_get_the_frame_rule_flags():
    """`--ray` decodes with the CPU reference path, with `--frame-rule` / `--jpeg-roundtrip` bound."""
    import argparse

    from lsld_engine.commands.scale import _decode_fn

    from lsld_engine.media.limits import MediaLimits

    fn = _decode_fn(argparse.Namespace(frame_rule="hold", jpeg_roundtrip=True, pixels="cpu", decoder="cpu",
                                       max_duration=60.0, max_resolution=(640, 480)))
    assert fn.func is decode_video
    assert fn.keywords == {"frame_rule": "hold", "jpeg_roundtrip": True, "limits": MediaLimits(60.0, (640, 480))}


def test_official_names_write_the_11_character_youtube_id(tmp_path, toy, capsys):
    """``--names official``: ``<id[:11]>.npy`` as the released LSLD feature folders; the training
    reader finds them; a longer video gets an error line, and a resume skips what is there."""
    from lsld_engine.data.dataset import dataset_paths, load_features

    d = tmp_path / "videos"
    d.mkdir()
    make_video(d / "BjCEufrlXm4_20_30.mp4", VideoSpec())
    make_video(d / "7nSYwyaP4QE_50_60.mp4", VideoSpec(freq=660.0))
    make_video(d / "aLongVideo1_0_30.mp4", VideoSpec(duration=25.0))
    root = tmp_path / "root"
    assert extract(d, root, "--names", "official") == 1  # the long video cannot take one name
    err = capsys.readouterr().err
    assert "longer than one 10-s window" in err and "--names full" in err
    clip = root / "feats" / "clip_16"
    assert sorted(p.name for p in clip.glob("*.npy")) == ["7nSYwyaP4QE.npy", "BjCEufrlXm4.npy"]
    log = {r["video_id"]: r for r in log_lines(root)}
    assert log["aLongVideo1_0_30"]["status"] == "error" and log["BjCEufrlXm4_20_30"]["status"] == "ok"
    feats = load_features(dataset_paths(root), ["BjCEufrlXm4_20_30", "7nSYwyaP4QE_50_60"], progress=False)
    np.testing.assert_array_equal(feats.frames[0], np.load(clip / "BjCEufrlXm4.npy"))
    toy.clear()
    (d / "aLongVideo1_0_30.mp4").unlink()
    assert extract(d, root, "--names", "official") == 0
    assert "skipped 2 already done" in capsys.readouterr().err


def test_official_names_refuse_two_inputs_with_one_name(tmp_path, toy, capsys):
    d = tmp_path / "videos"
    d.mkdir()
    make_video(d / "BjCEufrlXm4_20_30.mp4", VideoSpec())
    make_video(d / "BjCEufrlXm4_40_50.mp4", VideoSpec())
    root = tmp_path / "root"
    assert extract(d, root, "--names", "official") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "share the official 11-character name BjCEufrlXm4.npy" in err[0]
    assert not list((root / "feats" / "clip_16").glob("*.npy"))
