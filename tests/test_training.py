"""Training: objectives vs hand-computed values, the inference rule, learning, determinism, the CLI."""
import json
import math

import numpy as np
import pytest
import torch

from lsld_engine.han.model import HAN, HANConfig
from lsld_engine.han.training import (EvalSet, TrainConfig, TrainSet, compute_loss, evaluate_model, fit,
                                  make_train_set, predict_masks, seed_everything)

# One thread: these models are tiny, and a shared 2-core CI box punishes oversubscribed OpenMP.
torch.set_num_threads(1)


# ------------------------------------------------------------------------------------ losses
def _bce(p, y):
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(y, np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def _outputs():
    g = torch.tensor([[0.9, 0.2, 0.0], [0.4, 0.7, 1.0]])      # 0 and 1 exercise the clamp
    a = torch.tensor([[0.8, 0.1, 0.3], [0.5, 0.6, 0.9]])
    v = torch.tensor([[0.6, 0.3, 0.2], [0.1, 0.8, 0.7]])
    seg = torch.tensor([[[[0.9, 0.1, 0.2], [0.7, 0.0, 0.3]], [[0.2, 0.4, 0.5], [0.6, 0.5, 0.1]]],
                        [[[0.3, 0.8, 0.9], [0.2, 0.6, 1.0]], [[0.1, 0.9, 0.6], [0.4, 0.3, 0.8]]]])  # (2, 2, 2, 3)
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    seg_a = torch.tensor([[[1.0, 0, 0], [0, 0, 0]], [[0, 1, 1], [0, 1, 0]]])
    seg_v = torch.tensor([[[0.4, 0, 0], [1, 0, 0]], [[0, 0, 1], [0, 0.2, 1]]])   # re-weighted values
    return (g, a, v, seg), y, seg_a, seg_v


@pytest.mark.parametrize("objective", ["den", "den+rew"])
def test_denoised_objective_matches_hand_computation(objective):
    out, y, seg_a, seg_v = _outputs()
    g, _, _, seg = (x.numpy() for x in out)
    expected = _bce(g, y) + 3.0 * _bce(seg[:, :, 0], seg_a) + 1.0 * _bce(seg[:, :, 1], seg_v)
    got = compute_loss(out, y, seg_a, seg_v, TrainConfig(labels=objective))
    assert math.isclose(float(got), expected, rel_tol=1e-5)


def test_weak_objective_matches_hand_computation():
    out, y, _, _ = _outputs()
    g, a, v, _ = (x.numpy() for x in out)
    yn = y.numpy()
    expected = _bce(g, yn) + _bce(a, yn) + _bce(v, yn * 0.9 + 0.05)
    got = compute_loss(out, y, None, None, TrainConfig(labels="weak"))
    assert math.isclose(float(got), expected, rel_tol=1e-5)


def test_unknown_objective_is_refused():
    with pytest.raises(ValueError, match="--labels"):
        TrainConfig(labels="strong")
    with pytest.raises(ValueError, match="needs denoised labels"):
        make_train_set(np.zeros((1, 10, 512)), np.zeros((1, 80, 512)), np.zeros((1, 25)), None, "den")


def test_predict_masks_needs_segment_and_video_probability():
    seg = np.zeros((1, 3, 2, 2), np.float32)
    seg[0, :, 0, 0] = [0.6, 0.4, 0.5]   # audio class 0
    seg[0, :, 1, 1] = [0.9, 0.9, 0.2]   # visual class 1
    seg[0, :, 0, 1] = 0.9               # audio class 1: segments high but video-level low
    a = np.array([[0.5, 0.49]])
    v = np.array([[0.0, 0.7]])
    pa, pv = predict_masks(torch.from_numpy(seg), torch.from_numpy(a), v)
    assert pa.dtype == np.uint8 and pa.shape == (1, 3, 2)
    np.testing.assert_array_equal(pa[0], [[1, 0], [0, 0], [1, 0]])
    np.testing.assert_array_equal(pv[0], [[0, 1], [0, 1], [0, 0]])
    pa2, _ = predict_masks(seg, a, v, seg_threshold=0.45, video_threshold=0.4)
    np.testing.assert_array_equal(pa2[0], [[1, 1], [0, 1], [1, 1]])


# ----------------------------------------------------------------------- a learnable toy world
def _toy(n, seed, dim=64, t=10, c=25):
    """Features = class prototypes on the segments where each event is present + noise."""
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(123).standard_normal((2, c, dim)).astype(np.float32)
    weak = np.zeros((n, c), np.float32)
    gts = np.zeros((2, n, t, c), np.uint8)
    for i in range(n):
        for k in rng.choice(5, size=rng.integers(1, 3), replace=False):  # few classes: learnable fast
            weak[i, k] = 1
            for m in range(2):
                s = rng.integers(0, t)
                e = rng.integers(s + 1, t + 1)
                gts[m, i, s:e, k] = 1
            if gts[:, i, :, k].sum() == 0:
                gts[0, i, :, k] = 1
    feats = [np.einsum("ntc,cd->ntd", gts[m].astype(np.float32), protos[m])
             + 0.5 * rng.standard_normal((n, t, dim)).astype(np.float32) for m in range(2)]
    frames = np.repeat(feats[1], 8, axis=1) + 0.2 * rng.standard_normal((n, t * 8, dim)).astype(np.float32)
    return feats[0], frames, weak, gts[0], gts[1]


SMALL = HANConfig(num_layers=1, d_model=64, dim_feedforward=64, audio_dim=64, visual_dim=64)


def _data(objective="den+rew"):
    a, f, w, ga, gv = _toy(320, seed=1)
    labels = {"audio": ga.astype(np.float32), "visual": gv.astype(np.float32), "visual_den": gv.astype(np.float32)}
    train = make_train_set(a, f, w, labels if objective != "weak" else None, objective)
    a, f, _, ga, gv = _toy(48, seed=2)
    val = EvalSet(torch.from_numpy(a), torch.from_numpy(f.reshape(48, 10, 8, -1).mean(2)), ga, gv)
    return train, val


def _fit(train, val, objective="den+rew", epochs=5, seed=6):
    seed_everything(seed)
    model = HAN(config=SMALL)
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=1e-3, seed=seed, labels=objective)
    return model, fit(model, train, val, cfg, progress=False)


@pytest.mark.parametrize("objective", ["den+rew", "weak"])
def test_training_improves_over_the_initial_validation_score(objective):
    train, val = _data(objective)
    model, res = _fit(train, val, objective)
    assert len(res.history) == 5 and 1 <= res.best_epoch <= 5
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    best = res.history[res.best_epoch - 1]
    key = "seg_a" if objective == "weak" else "evt_a"
    assert best[key] > res.initial[key] + 10
    if objective != "weak":
        assert best["evt_v"] > res.initial["evt_v"] + 10
    # the kept state is the best epoch's: re-evaluating it reproduces that epoch's numbers
    model.load_state_dict(res.best_state)
    again = evaluate_model(model, val)
    assert again["evt_a"] == pytest.approx(best["evt_a"])


def test_ties_in_the_selection_metric_go_to_the_later_epoch(monkeypatch):
    import lsld_engine.han.training as training

    flat = {k: 50.0 for k in ("seg_a", "seg_v", "seg_av", "seg_type", "seg_event",
                              "evt_a", "evt_v", "evt_av", "evt_type", "evt_event")}
    monkeypatch.setattr(training, "evaluate_model", lambda *a, **k: dict(flat))
    train, val = _data()
    _, res = _fit(train, val, epochs=3)
    assert res.best_epoch == 3


def test_training_is_deterministic_for_a_seed():
    train, val = _data()
    _, r1 = _fit(train, val, epochs=2)
    _, r2 = _fit(train, val, epochs=2)
    _, r3 = _fit(train, val, epochs=2, seed=7)
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(r1.history) == strip(r2.history)
    for k in r1.best_state:
        assert torch.equal(r1.best_state[k], r2.best_state[k])
    assert strip(r1.history) != strip(r3.history)


def test_train_set_keeps_segment_means_of_frames():
    a, f, w, ga, gv = _toy(4, seed=3, dim=512)
    labels = {"audio": ga.astype(np.float32), "visual": gv.astype(np.float32), "visual_den": gv.astype(np.float32)}
    ts = make_train_set(a, f.astype(np.float16), w, labels, "den")
    assert isinstance(ts, TrainSet) and ts.visual.dtype == torch.float32 and ts.visual.shape == (4, 10, 512)
    np.testing.assert_allclose(ts.visual.numpy(), f.astype(np.float16).astype(np.float32).reshape(4, 10, 8, 512).mean(2),
                               rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from lsld_engine.synthetic import synth
    root = tmp_path_factory.mktemp("world")
    synth.make_world(root, n_train=96, n_val=32, n_test=32, seed=3, progress=False)
    return root


@pytest.mark.slow
def test_cli_stages_end_to_end(tiny_world, tmp_path, capsys):
    from train.lsld import main

    run = tmp_path / "run"
    assert main(["--data", str(tiny_world), "--run-dir", str(run), "--epochs", "2", "--num-layers", "1",
                 "--no-progress"]) == 0
    for f in ("labels.npz", "best.safetensors", "best.json", "metrics.json", "config.json", "curves.png"):
        assert (run / f).is_file(), f
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["val"]) == 2 and metrics["best_epoch"] in (1, 2)
    assert set(metrics["test"]) == {"seg_a", "seg_v", "seg_av", "seg_type", "seg_event",
                                    "evt_a", "evt_v", "evt_av", "evt_type", "evt_event"}
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["labels"] == "den+rew" and cfg["model"]["num_layers"] == 1
    capsys.readouterr()

    # `test --json` reproduces the run's test numbers, from our checkpoint ...
    assert main(["test", "--data", str(tiny_world), "--checkpoint", str(run / "best.safetensors"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == pytest.approx(metrics["test"])

    # ... and from the same weights in the official LSLD.pt layout.
    from lsld_engine.han.checkpoint import read_han_file
    state, _ = read_han_file(run / "best.safetensors")
    official = tmp_path / "LSLD.pt"
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 1,
                "numpy_rng": np.random.get_state(), "torch_rng": torch.get_rng_state()}, official)
    assert main(["test", "--data", str(tiny_world), "--checkpoint", str(official), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == pytest.approx(metrics["test"])

    # `train` alone, weak objective, into another folder (no labels needed).
    run2 = tmp_path / "weak"
    assert main(["train", "--data", str(tiny_world), "--run-dir", str(run2), "--labels", "weak",
                 "--epochs", "1", "--num-layers", "1", "--no-progress"]) == 0
    assert json.loads((run2 / "metrics.json").read_text())["test"] is None


def test_interrupted_training_keeps_its_best_checkpoint(tiny_world, tmp_path, monkeypatch):
    """A run stopped after epoch 2 of 5 still has a loadable best checkpoint and its history."""
    import lsld_engine.han.training as training
    from lsld_engine.han.checkpoint import load_han
    from train.lsld import main

    real_eval = training.evaluate_model
    calls = {"n": 0}

    def eval_then_stop(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:  # initial + 2 epochs done, stop during epoch 3's validation
            raise KeyboardInterrupt
        return real_eval(*a, **k)

    monkeypatch.setattr(training, "evaluate_model", eval_then_stop)
    run = tmp_path / "run"
    main(["train", "--data", str(tiny_world), "--run-dir", str(run), "--labels", "weak", "--epochs", "5",
          "--num-layers", "1", "--no-progress"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["val"]) == 2 and metrics["best_epoch"] in (1, 2)
    assert json.loads((run / "best.json").read_text())["best_epoch"] == metrics["best_epoch"]
    assert load_han(run / "best.safetensors").config.num_layers == 1
    assert not list(run.glob("*.tmp"))


@pytest.mark.slow
def test_cli_denoise_stage_and_label_alignment(tiny_world, tmp_path, capsys):
    from train.lsld import main

    out = tmp_path / "labels.npz"
    assert main(["denoise", "--data", str(tiny_world), "--out", str(out)]) == 0
    with np.load(out, allow_pickle=False) as z:
        assert z["visual"].shape == (96, 10, 25)
        ids = list(z["video_ids"])
    # labels for other videos are refused with a clear message
    bad = tmp_path / "bad.npz"
    with np.load(out, allow_pickle=False) as z:
        np.savez(bad, **{**{k: z[k] for k in z.files}, "video_ids": np.array(ids[::-1])})
    capsys.readouterr()
    assert main(["train", "--data", str(tiny_world), "--run-dir", str(tmp_path / "r"), "--labels-file", str(bad),
                 "--epochs", "1", "--num-layers", "1", "--no-progress"]) == 2  # one error line, status 2
    assert "do not match AVVP_train.csv" in capsys.readouterr().err


def test_bf16_precision_trains(monkeypatch):
    """``precision="bf16"`` trains, and really in bfloat16: every matmul of the CPU engine reads bf16
    operands. (On a CPU without native bf16 a bf16 request becomes fp32 -- test_hardening -- so
    bf16 is forced here: emulated there, slower.)"""
    from lsld_engine.han import packed_train

    monkeypatch.setenv("LSLD_ALLOW_SLOW_BF16", "1")  # exercise bf16 numerics on any CPU (slow where emulated)
    seen = set()
    real = packed_train._LinearInto.forward

    def spy(ctx, x, w, *rest):  # the packed engine's linear maps: all of its matmul FLOPs
        seen.add((x.dtype, w.dtype))
        return real(ctx, x, w, *rest)

    monkeypatch.setattr(packed_train._LinearInto, "forward", staticmethod(spy))
    train, val = _data()
    seed_everything(6)
    model = HAN(config=SMALL)
    res = fit(model, train, val, TrainConfig(epochs=1, batch_size=32, lr=1e-3, precision="bf16"), progress=False,
              evaluate_initial=False)
    assert math.isfinite(res.history[0]["loss"])
    assert seen == {(torch.bfloat16, torch.bfloat16)}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, weights stay fp32
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")


def test_bf16_engine_output_departs_from_fp32_beyond_rounding(monkeypatch):
    """The bf16 engine's forward is not fp32 in disguise: on the same weights and dropout masks its
    probabilities differ from fp32 by bf16 rounding (~1e-3), far above fp32's (~1e-6), and still
    track them."""
    from lsld_engine.han.packed_train import PackedTrainer

    torch.manual_seed(0)
    model = HAN(config=SMALL)
    audio, visual = torch.randn(4, 10, 64), torch.randn(4, 10, 64)
    out = {p: PackedTrainer(model, lr=1e-3, precision=p, seed=1).forward(audio, visual, step=0)[3].detach()
           for p in ("fp32", "bf16")}
    again = PackedTrainer(model, lr=1e-3, precision="fp32", seed=1).forward(audio, visual, step=0)[3].detach()
    fp32_noise = (again - out["fp32"]).abs().max().item()
    diff = (out["bf16"] - out["fp32"]).abs().max().item()
    assert fp32_noise < 1e-5 and 1e-4 < diff < 0.05, (fp32_noise, diff)


@pytest.mark.slow
def test_a_root_with_official_feature_names_denoises_trains_and_tests(llp_dir, tmp_path, capsys):
    """The released LSLD features are named ``<filename[:11]>.npy``: ``python -m train.lsld --data
    ROOT`` runs on such a root with the same labels and numbers as on full names."""
    import shutil

    from lsld_engine.synthetic import synth
    from train.lsld import main

    full = tmp_path / "full"
    synth.make_world(full, n_train=64, n_val=24, n_test=24, seed=5, llp_dir=llp_dir, progress=False)
    official = tmp_path / "official"
    shutil.copytree(full, official)
    renamed = 0
    for sub in ("feats/clip_16", "feats/clap_audioset"):
        for f in (official / sub).glob("*.npy"):
            f.rename(f.with_name(f.name[:11] + ".npy"))
            renamed += 1
    assert renamed == 2 * (64 + 24 + 24)
    runs = {}
    for name, root in (("full", full), ("official", official)):
        runs[name] = tmp_path / f"run_{name}"
        assert main(["--data", str(root), "--run-dir", str(runs[name]), "--epochs", "1", "--num-layers", "1",
                     "--no-progress"]) == 0
    with np.load(runs["full"] / "labels.npz") as a, np.load(runs["official"] / "labels.npz") as b:
        for k in ("audio", "visual_den", "visual"):
            np.testing.assert_array_equal(a[k], b[k])
    got = {n: json.loads((r / "metrics.json").read_text())["test"] for n, r in runs.items()}
    assert got["official"] == pytest.approx(got["full"], abs=1e-6)
    capsys.readouterr()
