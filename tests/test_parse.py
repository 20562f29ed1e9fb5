"""`lsld-engine parse`: the pipeline (decode -> embed -> HAN -> events -> JSONL), resume, errors, order.

Most tests run the real command with :class:`lsld_engine.testing.backends.ToyBackend` (cheap
deterministic encoders + the real HAN) patched in as the backend, so they test the pipeline and
not the networks; the torch backend and the parse == extract + train.lsld test consistency use
random-weight small CLIP / CLAP towers.
"""
from __future__ import annotations

import json
import queue
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lsld_engine import backends
from lsld_engine.cli import main
from lsld_engine.media.pool import DecodeFailure
from lsld_engine.parsing.embed import EmbeddedVideo, embed_groups, embed_videos, take_ready
from lsld_engine.parsing.video_inputs import assign_ids, collect_inputs
from lsld_engine.data.llp import CLASSES, NUM_CLASSES
from lsld_engine.media import decode_video
from lsld_engine.parsing.parse import Thresholds, video_record
from lsld_engine.testing.backends import ToyBackend
from lsld_engine.testing.compare import assert_embeddings_match, distinct
from lsld_engine.testing.videos import VideoSpec, make_video
from lsld_engine.records.writers import read_predictions
from rule_helpers import assert_events_follow_rule, event_keys, rule_events, swap_sensitive_thresholds

F32 = 1e-5  # tolerance for float32 embeddings compared across batch sizes (not bit-equal: BLAS)
CLIPS = {  # LLP-like 10-s clips that differ in picture and sound
    "clipA_0_10": VideoSpec(freq=440.0),
    "clipB_5_15": VideoSpec(freq=1500.0, amps=(0.1, 0.1), audio_onset=4.0),
    "clipC_2_12": VideoSpec(freq=220.0, amps=(0.7, 0.0), pattern="texture"),
}


@pytest.fixture(scope="module")
def han_ckpt(tmp_path_factory):
    from lsld_engine.han.checkpoint import save_han
    from lsld_engine.han.model import build_han

    torch.manual_seed(3)
    return str(save_han(build_han(num_layers=1), tmp_path_factory.mktemp("han") / "han.safetensors"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Folder: three 10-s clips, a 25-s video in a subfolder, a garbage file, a non-video file."""
    d = tmp_path_factory.mktemp("videos")
    for name, spec in CLIPS.items():
        make_video(d / f"{name}.mp4", spec)
    (d / "sub").mkdir()
    make_video(d / "sub" / "long_video.mkv", VideoSpec(container="mkv", duration=25.0))
    (d / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    (d / "notes.txt").write_text("not a video")
    return d


@pytest.fixture
def toy(monkeypatch, _model_flag):
    """Patch the CLI's backend factory with a ToyBackend on the module's HAN; returns the instances."""
    made = []
    # (--model defaults to the module's HAN checkpoint through _model_flag)

    def create(name, **options):
        be = ToyBackend(model=options.get("model"))
        made.append(be)
        return be

    monkeypatch.setattr(backends, "create_backend", create)
    return made


def run_parse(videos, out, *extra):
    return main(["parse", str(videos), "--out", str(out), "--random-weights", "--quiet", "--workers", "0", *extra])


@pytest.fixture
def _model_flag(monkeypatch, han_ckpt):
    # every command line in this module uses the module's HAN checkpoint unless it names another
    import lsld_engine.commands.parse as cmd

    real = cmd.add_arguments

    def add(p):
        real(p)
        p.set_defaults(model=han_ckpt)
    monkeypatch.setattr(cmd, "add_arguments", add)


def lines(path) -> list[str]:
    return Path(path).read_text().splitlines()


# --- inputs ------------------------------------------------------------------------------------------

def test_inputs_recurse_take_video_extensions_and_sort(videos):
    items = collect_inputs([videos])
    assert [i.video_id for i in items] == ["broken", *CLIPS, "long_video"]
    assert all(Path(i.path).suffix in (".mp4", ".mkv") for i in items)


def test_colliding_stems_get_unique_relative_ids(tmp_path):
    paths = [tmp_path / "a" / "x.mp4", tmp_path / "b" / "x.mp4", tmp_path / "y.mp4"]
    assert [i.video_id for i in assign_ids(paths)] == ["a/x", "b/x", "y"]


# --- the command ---------------------------------------------------------------------------------------

def test_parse_writes_one_line_per_video_and_an_error_line(videos, tmp_path, toy, capsys):
    out = tmp_path / "results.jsonl"
    code = run_parse(videos, out)
    cap = capsys.readouterr()
    assert code == 1  # one video failed
    assert cap.out == ""  # results only to the file
    assert "failed 1" in cap.err and "broken" in cap.err
    preds = read_predictions(out)
    assert sorted(preds) == sorted(["broken", *CLIPS, "long_video"])
    assert preds["broken"]["status"] == "error" and "broken.mp4" in preds["broken"]["error"]
    for vid in CLIPS:
        r = preds[vid]
        assert r["status"] == "ok" and r["segments"] == 10 and r["duration"] == pytest.approx(10.0)
        assert set(r["events"]) == {"audio", "visual", "audio_visual"}
    # every window of the 4 good videos went through the HAN once (10-s clips: 1 window, long: 3)
    assert sum(b for what, b in toy[0].calls if what == "windows") == 3 + 3


def test_long_video_is_parsed_in_windows_with_absolute_times(videos, tmp_path, toy):
    out = tmp_path / "r.jsonl"
    run_parse(videos, out, "--save-probs")
    r = read_predictions(out)["long_video"]
    assert r["segments"] == 30 and r["duration"] == pytest.approx(25.0, abs=0.05)
    assert np.shape(r["probs"]["audio"]) == (30, NUM_CLASSES)
    assert np.shape(r["window_probs"]["visual"]) == (3, NUM_CLASSES)
    evs = [e for track in r["events"].values() for e in track]
    assert evs and all(0 <= e["onset"] < e["offset"] <= r["duration"] + 1e-9 for e in evs)


def test_events_merge_across_window_boundaries():
    # class 3 positive in window 0 segments 8-9 and window 1 segments 0-2: one event 8 s .. 13 s
    w = 3
    seg = np.full((w, 10, 2, NUM_CLASSES), 0.1)
    seg[0, 8:, 0, 3] = 0.9
    seg[1, :3, 0, 3] = 0.7
    seg[2, 9, 1, 5] = 0.8  # in the padding past the 25-s duration: dropped
    seg[2, 4, 1, 6] = 0.8  # 24 s .. 25 s: kept, clipped to the duration
    probs = {"seg_prob": seg, "a_prob": np.full((w, NUM_CLASSES), 0.9), "v_prob": np.full((w, NUM_CLASSES), 0.9)}
    video = EmbeddedVideo("x.mp4", "x", 24.5, True, np.zeros((w, 80, 8)), np.zeros((w, 10, 8)))
    rec = video_record(video, probs)
    assert rec["events"]["audio"] == [{"label": CLASSES[3], "onset": 8.0, "offset": 13.0,
                                       "score": pytest.approx((0.9 * 2 + 0.7 * 3) / 5)}]
    assert rec["events"]["visual"] == [{"label": CLASSES[6], "onset": 24.0, "offset": 24.5, "score": pytest.approx(0.8)}]
    assert rec["events"]["audio_visual"] == []
    # the video-level threshold applies per window
    probs["a_prob"][1] = 0.2
    assert video_record(video, probs)["events"]["audio"][0]["offset"] == 10.0
    assert video_record(video, probs, Thresholds(segment=0.95))["events"]["audio"] == []



def test_video_record_applies_each_threshold_to_its_own_probability():
    # class 2: segments 0-4 at 0.6 in a clip whose audio video probability is 0.8;
    # class 4: segments 5-9 at 0.8 with a video probability of 0.6 (values picked by hand)
    seg = np.full((1, 10, 2, NUM_CLASSES), 0.1)
    seg[0, :5, 0, 2] = 0.6
    seg[0, 5:, 0, 4] = 0.8
    a_prob = np.full((1, NUM_CLASSES), 0.1)
    a_prob[0, 2], a_prob[0, 4] = 0.8, 0.6
    probs = {"seg_prob": seg, "a_prob": a_prob, "v_prob": np.full((1, NUM_CLASSES), 0.1)}
    video = EmbeddedVideo("x.mp4", "x", 10.0, True, np.zeros((1, 80, 8)), np.zeros((1, 10, 8)))
    strict_segments = video_record(video, probs, Thresholds(segment=0.7, video=0.5))["events"]["audio"]
    assert strict_segments == [{"label": CLASSES[4], "onset": 5.0, "offset": 10.0, "score": pytest.approx(0.8)}]
    strict_video = video_record(video, probs, Thresholds(segment=0.5, video=0.7))["events"]["audio"]
    assert strict_video == [{"label": CLASSES[2], "onset": 0.0, "offset": 5.0, "score": pytest.approx(0.6)}]


def test_resume_after_kill_gives_the_same_lines_and_no_duplicates(videos, tmp_path, toy):
    full = tmp_path / "full.jsonl"
    assert run_parse(videos, full) == 1
    want = set(lines(full))
    # a kill after two finished videos, in the middle of writing the third line
    text = full.read_text().splitlines(keepends=True)
    killed = tmp_path / "killed.jsonl"
    killed.write_text("".join(text[:2]) + text[2][: len(text[2]) // 2])
    kept = {json.loads(x)["video_id"] for x in text[:2]}
    toy.clear()
    # the exit code and summary are this run's: 1 only if the broken video was still to do
    assert run_parse(videos, killed) == (0 if "broken" in kept else 1)
    assert set(lines(killed)) == want and len(lines(killed)) == len(want)
    read_predictions(killed)  # no duplicate ids, every line valid
    # only the missing videos went through the HAN (a 10-s clip is 1 window, the long video 3)
    windows = {"broken": 0, "long_video": 3, **{c: 1 for c in CLIPS}}
    assert sum(b for what, b in toy[0].calls if what == "windows") == sum(
        n for vid, n in windows.items() if vid not in kept)
    # a third run has nothing to do
    toy.clear()
    assert run_parse(videos, killed) == 0
    assert toy == [] and set(lines(killed)) == want


def test_no_resume_overwrites(videos, tmp_path, toy):
    out = tmp_path / "r.jsonl"
    out.write_text('{"video_id": "stale", "status": "error", "error": "x"}\n')
    run_parse(videos, out, "--no-resume")
    assert "stale" not in read_predictions(out) and len(lines(out)) == 5


def test_list_file_and_limit(videos, tmp_path, toy):
    lst = tmp_path / "list.txt"
    shutil.copy(videos / "clipB_5_15.mp4", tmp_path / "clipB_5_15.mp4")
    lst.write_text(f"# two videos\nclipB_5_15.mp4\n\n{videos / 'sub' / 'long_video.mkv'}\n")
    out = tmp_path / "r.jsonl"
    assert main(["parse", "--list", str(lst), "--out", str(out), "--random-weights", "--quiet", "--workers", "0"]) == 0
    assert sorted(read_predictions(out)) == ["clipB_5_15", "long_video"]
    out2 = tmp_path / "r2.jsonl"
    assert run_parse(videos, out2, "--limit", "2") == 1  # broken.mp4 sorts first
    assert len(lines(out2)) == 2


def test_ordered_writes_in_path_order(videos, tmp_path, toy):
    out = tmp_path / "r.jsonl"
    main(["parse", str(videos), "--out", str(out), "--random-weights", "--quiet", "--workers", "2", "--ordered"])
    ids = [json.loads(x)["video_id"] for x in lines(out)]
    assert ids == [i.video_id for i in collect_inputs([videos])]


def test_missing_weights_fail_fast_naming_the_flag(videos, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["parse", str(videos), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--clip-checkpoint" in err and "--clap-checkpoint" in err and "--model" in err
    assert main(["parse", str(videos), "--out", str(out), "--quiet", "--random-weights",
                 "--model", str(tmp_path / "nope.safetensors")]) == 2
    assert "nope.safetensors" in capsys.readouterr().err
    assert not out.exists()


def test_no_videos_is_an_error(tmp_path, capsys):
    # status 2 (usage), not 1 (= some videos failed), as docs/parse.md says
    with pytest.raises(SystemExit) as e:
        main(["parse", str(tmp_path), "--out", str(tmp_path / "r.jsonl"), "--random-weights"])
    assert e.value.code == 2
    assert "no video files" in capsys.readouterr().err


def test_missing_input_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["parse", str(tmp_path / "absent"), "--out", str(tmp_path / "r.jsonl"), "--random-weights"])
    assert e.value.code == 2
    assert "absent" in capsys.readouterr().err


# --- the encode stage ------------------------------------------------------------------------------------

class _Ready:
    """A fake feeder: ``ready`` items are waiting, then none is (queue.Empty), then the end."""

    def __init__(self, items, ready):
        self.items, self.ready = list(items), ready

    def get(self, block=True):
        if not self.items:
            raise StopIteration
        if not block and self.ready <= 0:
            self.ready = len(self.items)  # more arrive while the encoder works
            raise queue.Empty
        self.ready -= 1
        return self.items.pop(0)


def test_an_encode_round_takes_every_ready_video_up_to_max_frames():
    vids = [EmbeddedVideo("p", f"v{i}", 10.0, True, np.zeros((1, 80, 1)), np.zeros((1, 10, 1))) for i in range(5)]
    long = EmbeddedVideo("p", "long", 30.0, True, np.zeros((3, 80, 1)), np.zeros((3, 10, 1)))
    fail = DecodeFailure("b.mp4", "b", "boom")
    feeder = _Ready([vids[0], fail, vids[1], vids[2], long, vids[3], vids[4]], ready=3)
    rounds = []
    ended = False
    while not ended:
        group, ended = take_ready(feeder.get, max_frames=320)
        rounds.append([g.video_id for g in group])
    # 3 ready; then 4 ready but 320 frames reached after `long` (80 + 240); then the rest
    assert rounds == [["v0", "b", "v1"], ["v2", "long"], ["v3", "v4"], []] or \
        rounds == [["v0", "b", "v1"], ["v2", "long"], ["v3", "v4"]]


def test_embed_groups_keep_order_and_pass_failures(videos):
    decoded = [decode_video(videos / f"{n}.mp4") for n in CLIPS]
    fail = DecodeFailure("b.mp4", "b", "boom")
    be = ToyBackend()
    groups = list(embed_groups(iter([decoded[0], fail, decoded[1], decoded[2]]), be))
    flat = [x for g in groups for x in g]
    assert [x.video_id for x in flat] == ["clipA_0_10", "b", "clipB_5_15", "clipC_2_12"]
    assert flat[1] is fail
    want_img = [be.embed_images(d.frames[0]) for d in decoded]
    want_aud = [be.embed_audio(d.audio[0]) for d in decoded]
    for k, v in enumerate([flat[0], flat[2], flat[3]]):
        assert v.frames.shape == (1, 80, 512) and v.audio.shape == (1, 10, 512)
        # close to this video's embeddings, far from the other videos' (BLAS is not bit-stable)
        # float32 end to end: BLAS differences are ~1e-7, the clips' toy audio embeddings differ by ~3e-3
        assert_embeddings_match(v.frames[0], want_img[k], wrong=distinct(want_img[k], want_img, F32), atol=F32)
        assert_embeddings_match(v.audio[0], want_aud[k], wrong=distinct(want_aud[k], want_aud, F32), atol=F32)


# --- the torch backend -------------------------------------------------------------------------------------

def test_embed_videos_batch_across_videos(videos):
    decoded = [decode_video(videos / f"{n}.mp4") for n in CLIPS]
    be = ToyBackend()
    out = embed_videos(decoded, be, max_batch=200)
    # 240 frames of 3 videos in calls of 200 + 40 rows (not one call per video)
    assert [b for what, b in be.calls if what == "images"] == [200, 40]
    assert [b for what, b in be.calls if what == "audio"] == [30]
    want = [be.embed_images(d.frames[0]) for d in decoded]
    for k, v in enumerate(out):
        assert_embeddings_match(v.frames[0], want[k], wrong=distinct(want[k], want, F32), atol=F32)


def test_torch_backend_loads_checkpoints_and_matches_the_towers(tmp_path, han_ckpt):
    from lsld_engine import registry
    from lsld_engine.encoders.clap import random_clap_state_dict
    from lsld_engine.encoders.clip import random_clip_state_dict

    clip_f, clap_f = tmp_path / "clip.pt", tmp_path / "clap.pt"
    torch.save(random_clip_state_dict("small", seed=1), clip_f)
    torch.save({"state_dict": {f"module.{k}": v for k, v in random_clap_state_dict("small", text=False, seed=2).items()}},
               clap_f)
    be = backends.create_backend("torch", clip_checkpoint=str(clip_f), clap_checkpoint=str(clap_f), model=han_ckpt,
                                 size="small")
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    segs = (0.3 * rng.standard_normal((2, 48000))).astype(np.float32)
    want_img = registry.build("clip_image", clip_f, config="small").embed(imgs)
    np.testing.assert_allclose(be.embed_images(imgs), want_img, rtol=1e-5, atol=1e-5)
    want_aud = registry.build("clap_audio", clap_f, config="small").embed(segs)
    np.testing.assert_allclose(be.embed_audio(segs), want_aud, rtol=1e-5, atol=1e-5)
    out = be.parse(rng.standard_normal((4, 10, 512)).astype(np.float32),
                   rng.standard_normal((4, 80, 512)).astype(np.float16))
    assert out["seg_prob"].shape == (4, 10, 2, NUM_CLASSES) and out["a_prob"].shape == (4, NUM_CLASSES)
    assert set(out) == set(backends.HAN_OUTPUTS)


def test_torch_backend_random_weights_only_when_asked_and_reproducible():
    from lsld_engine.backends.torch_backend import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="--clip-checkpoint"):
        backends.create_backend("torch").embed_images(np.zeros((1, 224, 224, 3), np.uint8))
    imgs = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    a = backends.create_backend("torch", random_weights=True, size="small").embed_images(imgs)
    b = backends.create_backend("torch", random_weights=True, size="small").embed_images(imgs)
    np.testing.assert_array_equal(a, b)


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="nope"):
        backends.create_backend("nope")


# --- parse == extract + train.lsld test ----------------------------------------------------------------------

def _write_annotations(root: Path, ids: list[str], gt_a: np.ndarray, gt_v: np.ndarray) -> None:
    from lsld_engine.synthetic.synth import _write_segments, _write_weak  # the official tab-separated layouts

    _write_weak(root / "AVVP_test_pd.csv", ids, (gt_a | gt_v).max(axis=1))
    _write_segments(root / "AVVP_eval_audio.csv", ids, gt_a)
    _write_segments(root / "AVVP_eval_visual.csv", ids, gt_v)


@pytest.mark.slow
def test_parse_then_eval_equals_extract_then_train_test(tmp_path, han_ckpt, capsys):
    """The same ten numbers from `parse` + `eval` as from `extract` + `python -m train.lsld test`."""
    from lsld_engine.backends.torch_backend import TorchBackend
    from lsld_engine.data.dataset import dataset_paths, load_features
    from lsld_engine.records.events import predict_masks
    from train.lsld import main as train_main

    vids = tmp_path / "videos"
    vids.mkdir()
    for name, spec in CLIPS.items():
        make_video(vids / f"{name}.mp4", spec)
    ids = sorted(CLIPS)
    root = tmp_path / "root"
    towers = ["--random-weights", "--small", "--quiet", "--workers", "1"]
    assert main(["extract", str(vids), "--out", str(root), "--dtype", "float32", *towers]) == 0

    # ground truth near the model's own predictions (on the extracted features), with flips,
    # so the ten numbers are neither 0 nor 100 and any disagreement between the paths shows
    feats = load_features(dataset_paths(root), ids, progress=False)
    out = TorchBackend(model=han_ckpt).parse(feats.audio, feats.frames)
    pred_a, pred_v = predict_masks(out["seg_prob"], out["a_prob"], out["v_prob"])
    assert pred_a.any() and pred_v.any(), "degenerate test: the random HAN predicts nothing"
    rng = np.random.default_rng(0)
    gt_a = pred_a ^ (rng.random(pred_a.shape) < 0.05).astype(np.uint8)
    gt_v = pred_v ^ (rng.random(pred_v.shape) < 0.05).astype(np.uint8)
    _write_annotations(root, ids, gt_a, gt_v)
    capsys.readouterr()

    assert train_main(["test", "--data", str(root), "--checkpoint", han_ckpt, "--json"]) == 0
    via_features = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    results = tmp_path / "results.jsonl"
    assert main(["parse", str(vids), "--out", str(results), "--model", han_ckpt, *towers]) == 0
    capsys.readouterr()
    assert main(["eval", "--pred", str(results), "--annotations", str(root), "--json"]) == 0
    via_parse = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert via_parse == via_features
    assert any(0 < v < 100 for v in via_parse.values())


# --- thresholds end to end ------------------------------------------------------------------------------

@pytest.fixture
def default_records(videos, tmp_path, toy):
    """One parse with the default thresholds and ``--save-probs``: the probabilities to pick thresholds from."""
    out = tmp_path / "default.jsonl"
    assert run_parse(videos, out, "--save-probs") == 1  # the broken video
    return read_predictions(out)


def test_parse_events_are_the_rule_on_the_saved_probabilities(default_records):
    assert_events_follow_rule(default_records, 0.5, 0.5)


def test_thresholds_reach_the_rule_the_right_way_round(videos, tmp_path, toy, default_records):
    seg_t, video_t = swap_sensitive_thresholds(default_records)
    out = tmp_path / "thresholds.jsonl"
    assert run_parse(videos, out, "--save-probs", "--seg-threshold", str(seg_t),
                     "--video-threshold", str(video_t)) == 1
    got = read_predictions(out)
    # the same network, so the same probabilities; only the rule's thresholds changed
    for vid, rec in default_records.items():
        if rec["status"] == "ok":
            np.testing.assert_allclose(got[vid]["probs"]["audio"], rec["probs"]["audio"], atol=2e-4)
    assert_events_follow_rule(got, seg_t, video_t)
    # the swap would have shown: the other way round gives other events
    swapped = {vid: event_keys(rule_events(r, video_t, seg_t)) for vid, r in got.items() if r["status"] == "ok"}
    assert swapped != {vid: event_keys(r["events"]) for vid, r in got.items() if r["status"] == "ok"}
