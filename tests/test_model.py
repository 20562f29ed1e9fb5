"""HAN: official parameter layout, forward shapes and semantics, checkpoints (ours and official)."""
import numpy as np
import pytest
import torch

from bench.naive_han import NaiveHAN
from lsld_engine.han.checkpoint import CheckpointError, load_han, read_han_file, save_han
from lsld_engine.han.model import HAN, HANConfig, build_han, pool_frames

torch.set_num_threads(1)  # small models; robust on a shared 2-core CI box


def _inputs(b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 10, 512, generator=g), torch.randn(b, 80, 512, generator=g)


def _official_keys(num_layers):
    keys = {f"{m}.{p}" for m in ("fc_prob", "fc_frame_att", "fc_av_att", "fc_a", "fc_v") for p in ("weight", "bias")}
    keys |= {f"hat_encoder.norm{i}.{p}" for i in (1, 2) for p in ("weight", "bias")}
    for i in range(num_layers):
        pre = f"hat_encoder.layers.{i}"
        for att in ("self_attn", "cm_attn"):
            keys |= {f"{pre}.{att}.{p}" for p in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")}
        keys |= {f"{pre}.{m}.{p}" for m in ("linear1", "linear2", "norm1", "norm2") for p in ("weight", "bias")}
    return keys


def test_state_dict_has_the_official_keys_and_shapes():
    sd = build_han(num_layers=4).state_dict()
    assert set(sd) == _official_keys(4)
    assert sd["fc_prob.weight"].shape == (25, 512)
    assert sd["fc_v.weight"].shape == (512, 512) and sd["fc_a.weight"].shape == (512, 512)
    assert sd["hat_encoder.layers.3.cm_attn.in_proj_weight"].shape == (1536, 512)
    assert sd["hat_encoder.layers.0.self_attn.out_proj.weight"].shape == (512, 512)


def test_forward_shapes_and_probability_ranges():
    m = build_han(num_layers=2).eval()
    g, a, v, seg = m(*_inputs(3))
    assert g.shape == a.shape == v.shape == (3, 25)
    assert seg.shape == (3, 10, 2, 25)
    for x in (g, a, v, seg):
        assert torch.all((x >= 0) & (x <= 1))
    with pytest.raises(ValueError, match="frames"):
        m(torch.zeros(1, 10, 512), torch.zeros(1, 40, 512))


def test_matches_the_literal_official_structure():
    """Fused layers (both streams in one batch, fused projections) compute the official network."""
    ours = build_han(num_layers=3).eval()
    ref = NaiveHAN(num_layers=3).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    audio, frames = _inputs(4, seed=1)
    with torch.no_grad():
        for x, y in zip(ours(audio, frames), ref(audio, frames)):
            torch.testing.assert_close(x, y, atol=2e-6, rtol=1e-5)


def test_multi_head_matches_nn_multihead_attention():
    ours = HAN(config=HANConfig(num_layers=1, nhead=4)).eval()
    ref = NaiveHAN(num_layers=1).eval()
    for layer in ref.hat_encoder.layers:  # rebuild the reference attentions with 4 heads
        layer.self_attn = torch.nn.MultiheadAttention(512, 4, dropout=0.1)
        layer.cm_attn = torch.nn.MultiheadAttention(512, 4, dropout=0.1)
    ref.load_state_dict(ours.state_dict(), strict=True)
    ref.eval()
    audio, frames = _inputs(2, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(ours(audio, frames)[3], ref(audio, frames)[3], atol=2e-6, rtol=1e-5)


def test_fc_v_after_the_mean_equals_fc_v_before():
    """An affine layer commutes with the 8-frame mean: pool-then-fc_v == fc_v-then-pool."""
    m = build_han(num_layers=1)
    _, frames = _inputs(5, seed=3)
    frames = frames * 3 + 1
    with torch.no_grad():
        before = m.fc_v(frames).reshape(5, 10, 8, 512).mean(2)
        after = m.fc_v(pool_frames(frames))
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(after, m.fc_v(frames[:, ::8]), atol=1e-3)  # the pooling really matters


def test_dropout_only_in_training_mode():
    m = build_han(num_layers=1)
    audio, frames = _inputs(2)
    m.train()
    assert not torch.equal(m(audio, frames)[3], m(audio, frames)[3])
    m.eval()
    assert torch.equal(m(audio, frames)[3], m(audio, frames)[3])


def test_final_norm_changes_output_only_when_enabled():
    torch.manual_seed(0)
    m = HAN(config=HANConfig(num_layers=1)).eval()
    torch.manual_seed(0)
    n = HAN(config=HANConfig(num_layers=1, final_norm=True)).eval()
    with torch.no_grad():
        for p in n.hat_encoder.norm1.parameters():
            p.add_(0.5)
    audio, frames = _inputs(2)
    with torch.no_grad():
        assert not torch.allclose(m(audio, frames)[3], n(audio, frames)[3])


# ------------------------------------------------------------------------------- checkpoints
def _write_official(path, model, numpy_rng=True):
    """A file in the official LSLD.pt layout: model + optimizer + scheduler + RNG states."""
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    model(*_inputs(2))[0].sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=6, gamma=0.25)
    obj = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
           "epoch": 7, "torch_rng_state": torch.get_rng_state(), "best_F": np.float64(61.5)}
    if numpy_rng:
        obj["numpy_rng_state"] = np.random.get_state()
    torch.save(obj, path)


def test_official_format_round_trip_strict(tmp_path):
    model = build_han(num_layers=2)
    path = tmp_path / "LSLD.pt"
    _write_official(path, model)
    loaded = load_han(path)
    assert loaded.config.num_layers == 2
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    audio, frames = _inputs(2)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(audio, frames)[0], model(audio, frames)[0])


def test_official_format_written_by_numpy1_loads(tmp_path):
    """numpy 1.x pickles name ``numpy.core.multiarray``; both spellings are allowed."""
    model = build_han(num_layers=1)
    path = tmp_path / "old.pt"
    obj = {"model": model.state_dict(), "numpy_rng_state": np.random.get_state()}
    torch.save(obj, path, _use_new_zipfile_serialization=False)  # legacy format: a raw pickle stream
    raw = path.read_bytes()
    assert b"numpy._core.multiarray" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    loaded = load_han(path)
    assert torch.equal(loaded.state_dict()["fc_a.weight"], model.state_dict()["fc_a.weight"])


def test_our_checkpoint_round_trip(tmp_path):
    model = HAN(config=HANConfig(num_layers=2, nhead=2))
    path = save_han(model, tmp_path / "best.safetensors", extra={"best_epoch": 3})
    assert path.with_suffix(".json").is_file()
    loaded = load_han(path)
    assert loaded.config == model.config  # nhead comes from the stored config, not the shapes
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_refuses_arbitrary_pickles(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": build_han(num_layers=1).state_dict(), "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        read_han_file(path)


def test_clear_errors(tmp_path):
    not_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], not_dict)
    with pytest.raises(CheckpointError, match="list.pt.*expected a dict"):
        load_han(not_dict)

    sd = build_han(num_layers=1).state_dict()
    missing = tmp_path / "missing.pt"
    torch.save({"model": {k: v for k, v in sd.items() if k != "fc_v.bias"}}, missing)
    with pytest.raises(CheckpointError, match="missing.pt.*fc_v.bias"):
        load_han(missing)

    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {**sd, "fc_prob.bias": torch.zeros(7)}}, wrong)
    with pytest.raises(CheckpointError, match="wrong.pt.*fc_prob.bias"):
        load_han(wrong, config=HANConfig(num_layers=1))

    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_han(tmp_path / "nope.pt")

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_han(garbage)
