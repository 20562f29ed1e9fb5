"""The CPU training engine (lsld_engine.han.packed_train) against the HAN module with autograd and
torch.optim.Adam: same function, same gradients, same update."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lsld_engine.han import _train_kernels as kernels
from lsld_engine.han.model import HAN, HANConfig
from lsld_engine.han.packed_train import PackedTrainer
from lsld_engine.han.training import TrainConfig, compute_loss

SMALL = dict(num_layers=2, d_model=64, num_classes=7, dim_feedforward=96, audio_dim=32, visual_dim=48)


def _batch(cfg: HANConfig, b: int = 5, t: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(b, t, cfg.audio_dim, generator=g)
    visual = torch.randn(b, t, cfg.visual_dim, generator=g)
    weak = (torch.rand(b, cfg.num_classes, generator=g) > 0.6).float()
    seg_a = (torch.rand(b, t, cfg.num_classes, generator=g) > 0.7).float()
    seg_v = torch.rand(b, t, cfg.num_classes, generator=g)          # soft labels, like ReW's
    return audio, visual, weak, seg_a, seg_v


def _model(seed: int = 1, **kw) -> HAN:
    torch.manual_seed(seed)
    model = HAN(config=HANConfig(**kw))
    with torch.no_grad():   # non-trivial norms and biases so that every parameter matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _packed_grads(trainer: PackedTrainer, model: HAN) -> dict[str, torch.Tensor]:
    """The engine's gradient buffers mapped to the official parameter names."""
    shadow = copy.deepcopy(model)
    saved = trainer.master.detach().clone()
    with torch.no_grad():
        trainer.master[:trainer._n_mm] = trainer._grad_mm.float()
        for leaf, off in trainer._leaves:
            trainer.master[off:off + leaf.numel()] = leaf.grad.reshape(-1)
    trainer.write_back(shadow)
    with torch.no_grad():
        trainer.master.copy_(saved)
    return dict(shadow.named_parameters())


@pytest.mark.parametrize("kw", [
    dict(),                                                            # the official architecture
    dict(SMALL),
    dict(SMALL, nhead=4, final_norm=True),
], ids=["official", "small", "heads+final_norm"])
def test_forward_and_every_gradient_match_the_module(kw):
    cfg = HANConfig(att_dropout=0.0, cls_dropout=0.0, **kw)   # no dropout: training mode == eval mode
    model = _model(**cfg.to_dict())
    audio, visual, weak, seg_a, seg_v = _batch(cfg)
    loss_cfg = TrainConfig()
    trainer = PackedTrainer(model, lr=1e-3)

    ours = trainer.forward(audio, visual)
    ref = model.train().forward_pooled(audio, visual)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

    compute_loss(ours, weak, seg_a, seg_v, loss_cfg).backward()
    compute_loss(ref, weak, seg_a, seg_v, loss_cfg).backward()
    grads = _packed_grads(trainer, model)
    scale = max(float(p.grad.abs().max()) for p in model.parameters() if p.grad is not None)
    checked = 0
    for name, p in model.named_parameters():
        if p.grad is None:      # hat_encoder.norm1/2 without final_norm: unused, as officially
            assert "hat_encoder.norm" in name and not cfg.final_norm
            continue
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-5 * scale, msg=name)
        checked += 1
    assert checked == 16 * cfg.num_layers + 10 + (4 if cfg.final_norm else 0)


def _reference_forward(model: HAN, audio, visual, layer_masks, cls_mask):
    """The official HAN forward written out per stream, with dropout = the engine's 0/1 masks
    scaled by 1 / (1 - p): checks where each mask goes and how it is scaled."""
    cfg, sd = model.config, model.state_dict()
    b, t = audio.shape[:2]
    d, h, bt = cfg.d_model, cfg.nhead, b * t
    keep, keep_cls = 1 / (1 - cfg.att_dropout), 1 / (1 - cfg.cls_dropout)
    lin = lambda x, k: x @ sd[k + ".weight"].T + sd[k + ".bias"]  # noqa: E731
    ln = lambda x, k: torch.nn.functional.layer_norm(x, (d,), sd[k + ".weight"], sd[k + ".bias"])  # noqa: E731

    def mha(xq, xkv, prefix, mask):                 # mask (B h, T, T), index batch * h + head
        w, bias = sd[prefix + "in_proj_weight"], sd[prefix + "in_proj_bias"]
        q, k, v = (z @ w[i * d:(i + 1) * d].T + bias[i * d:(i + 1) * d] for i, z in enumerate((xq, xkv, xkv)))
        split = lambda z: z.reshape(b, t, h, d // h).transpose(1, 2)  # noqa: E731
        att = torch.softmax(split(q) @ split(k).transpose(-1, -2) / (d // h) ** 0.5, -1)
        att = att * mask.float().reshape(b, h, t, t) * keep
        return lin((att @ split(v)).transpose(1, 2).reshape(b, t, d), prefix + "out_proj")

    xa, xv = lin(audio, "fc_a"), lin(visual, "fc_v")
    for i, m in enumerate(layer_masks):
        p = f"hat_encoder.layers.{i}."
        outs = []
        for s, (x, other) in enumerate(((xa, xv), (xv, xa))):
            rows, bats = slice(s * bt, (s + 1) * bt), slice(s * b * h, (s + 1) * b * h)
            r = lambda z: z[rows].float().reshape(b, t, -1) * keep  # noqa: E731
            y = x + mha(x, other, p + "cm_attn.", m.att[0][bats]) * r(m.res_cm) \
                + mha(x, x, p + "self_attn.", m.att[1][bats]) * r(m.res_sa)
            y = ln(y, p + "norm1")
            hid = torch.relu(lin(y, p + "linear1")) * r(m.hidden)
            outs.append(ln(y + lin(hid, p + "linear2") * r(m.res_ff), p + "norm2"))
        xa, xv = outs
    if cfg.final_norm:
        xa, xv = ln(xa, "hat_encoder.norm1"), ln(xv, "hat_encoder.norm2")
    xv = xv * cls_mask.float().reshape(b, t, d) * keep_cls
    x = torch.stack([xa, xv], dim=2)
    seg = torch.sigmoid(lin(x, "fc_prob"))
    temporal = torch.softmax(lin(x, "fc_frame_att"), dim=1) * seg
    glob = (temporal * torch.softmax(lin(x, "fc_av_att"), dim=2)).sum(dim=(1, 2))
    return glob, temporal[:, :, 0].sum(1), temporal[:, :, 1].sum(1), seg


@pytest.mark.parametrize("kw", [dict(), dict(SMALL, nhead=4, final_norm=True)], ids=["official", "heads+final_norm"])
def test_dropout_masks_are_applied_where_and_as_nn_dropout_would(kw):
    cfg = HANConfig(att_dropout=0.3, cls_dropout=0.5, **kw)
    model = _model(**cfg.to_dict())
    audio, visual, *_ = _batch(cfg, b=3)
    trainer = PackedTrainer(model, lr=1e-3, seed=11)
    with torch.no_grad():
        ours = trainer.forward(audio, visual, step=4)
        layer_masks, cls_mask = trainer._masks(4, 3, audio.shape[1])
        ref = _reference_forward(model, audio, visual, layer_masks, cls_mask)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_bf16_engine_tracks_float32():
    cfg = HANConfig(att_dropout=0.0, cls_dropout=0.0)
    model = _model()
    audio, visual, weak, seg_a, seg_v = _batch(cfg, b=8)
    f32 = PackedTrainer(model, lr=1e-3)
    b16 = PackedTrainer(model, lr=1e-3, precision="bf16")
    out32, out16 = f32.forward(audio, visual), b16.forward(audio, visual)
    assert all(o.dtype == torch.float32 for o in out16)
    diffs = [float((a - b).detach().abs().max()) for a, b in zip(out32, out16)]
    # close to fp32, yet not fp32: bf16 rounding (~1e-3) is far above fp32's (~1e-6)
    assert max(diffs) < 0.05 and min(diffs) > 1e-4, diffs
    compute_loss(out32, weak, seg_a, seg_v, TrainConfig()).backward()
    compute_loss(out16, weak, seg_a, seg_v, TrainConfig()).backward()
    g32, g16 = f32._grad_mm, b16._grad_mm.float()
    cos = float(torch.dot(g32, g16) / (g32.norm() * g16.norm()))
    assert cos > 0.99


def test_write_back_restores_the_official_layout_exactly():
    model = _model(**SMALL, final_norm=True)
    trainer = PackedTrainer(model, lr=1e-3)
    other = _model(seed=5, **SMALL, final_norm=True)
    trainer.write_back(other)
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k
    other.load_state_dict(other.state_dict(), strict=True)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_adam_steps_match_torch_adam(precision):
    """Three steps of the engine == three steps of torch.optim.Adam fed the engine's gradients."""
    cfg = HANConfig(**SMALL)
    model = _model(**SMALL)
    reference = copy.deepcopy(model)
    trainer = PackedTrainer(model, lr=3e-3, precision=precision, seed=3)
    opt = torch.optim.Adam(reference.parameters(), lr=3e-3)
    loss_cfg = TrainConfig()
    for step in range(3):
        audio, visual, weak, seg_a, seg_v = _batch(cfg, seed=step)
        trainer.step(audio, visual, lambda out: compute_loss(out, weak, seg_a, seg_v, loss_cfg))
        grads = _packed_grads(trainer, model)    # the gradients this step used (buffers persist)
        for name, p in reference.named_parameters():
            p.grad = grads[name].detach().clone() if name in grads and "hat_encoder.norm" not in name else None
        opt.step()
    trained = trainer.write_back(copy.deepcopy(model))
    for (name, a), (_, b) in zip(trained.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)
    if precision == "bf16":   # the bf16 weights the next forward reads are the master weights rounded
        assert torch.equal(trainer._weights, trainer.master[:trainer._n_mm].to(torch.bfloat16))


def test_dropout_masks_have_the_right_rates_and_are_reproducible():
    cfg = HANConfig(att_dropout=0.1, cls_dropout=0.5)
    model = _model()
    a = PackedTrainer(model, lr=1e-3, seed=7)
    layers, cls = a._masks(0, 32, 10)
    hidden = layers[0].hidden.float()
    assert set(torch.unique(hidden).tolist()) == {0.0, 1.0}
    n = hidden.numel()
    assert abs(float(hidden.mean()) - 0.9) < 5 * (0.09 / n) ** 0.5
    assert abs(float(cls.float().mean()) - 0.5) < 5 * (0.25 / cls.numel()) ** 0.5
    att = torch.cat([m.att.reshape(-1) for m in layers]).float()
    assert abs(float(att.mean()) - 0.9) < 5 * (0.09 / att.numel()) ** 0.5
    first = [m.hidden.clone() for m in layers]
    # different layers, sites and steps draw different masks; the same (seed, step) the same ones
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(layers[0].res_cm, layers[0].res_sa)
    b = PackedTrainer(model, lr=1e-3, seed=7)
    assert all(torch.equal(m.hidden, f) for m, f in zip(b._masks(0, 32, 10)[0], first))
    assert not torch.equal(b._masks(1, 32, 10)[0][0].hidden, first[0])
    assert not torch.equal(PackedTrainer(model, lr=1e-3, seed=8)._masks(0, 32, 10)[0][0].hidden, first[0])


def test_mask_kernel_is_independent_of_the_thread_count():
    import numba

    out1 = np.empty(100_003, np.uint32)
    out2 = np.empty_like(out1)
    args = (np.array([0, 50_000, 100_003]), np.array([12345, 2 ** 63 + 99], np.uint64),
            np.array([2 ** 31, 0], np.uint32), np.array([0x3F800000, 0x40000000], np.uint32))
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        kernels.keep_mask_bits(out1, *args)
    finally:
        numba.set_num_threads(threads)
    kernels.keep_mask_bits(out2, *args)
    assert np.array_equal(out1, out2)
    assert np.all(out1[50_000:] == 0x40000000)             # p = 0 keeps everything
    assert 0.48 < (out1[:50_000] > 0).mean() < 0.52


def test_dropout_changes_outputs_between_steps_and_repeats_within_one():
    cfg = HANConfig(**SMALL)
    model = _model(**SMALL)
    audio, visual, *_ = _batch(cfg, b=2)
    trainer = PackedTrainer(model, lr=1e-3)
    with torch.no_grad():
        o0, o1 = trainer.forward(audio, visual, step=0), trainer.forward(audio, visual, step=1)
        assert not torch.equal(o0[3], o1[3])
        assert torch.equal(trainer.forward(audio, visual, step=0)[3], o0[3])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="precision"):
        PackedTrainer(_model(**SMALL), lr=1e-3, precision="fp8")
    with pytest.raises(ValueError, match="cls_dropout"):
        PackedTrainer(HAN(config=HANConfig(**SMALL, cls_dropout=1.0)), lr=1e-3)
    trainer = PackedTrainer(_model(**SMALL), lr=1e-3)
    audio, visual, *_ = _batch(HANConfig(**SMALL), b=4)
    with pytest.raises(ValueError, match=r"differ in \(B, T\)"):
        trainer.forward(audio, visual[:3])


def test_both_training_engines_take_the_same_steps():
    """Without dropout, the packed CPU engine and the module engine (what fit uses off the CPU)
    train to the same weights, epoch learning rates included."""
    from lsld_engine.han.training import ModuleTrainer, epoch_lr

    cfg = HANConfig(**SMALL, att_dropout=0.0, cls_dropout=0.0)
    packed_model, module_model = _model(**cfg.to_dict()), _model(**cfg.to_dict())
    train_cfg = TrainConfig(lr=2e-3, step_size=2, gamma=0.5)
    packed = PackedTrainer(packed_model, lr=train_cfg.lr)
    module = ModuleTrainer(module_model, lr=train_cfg.lr)
    for epoch in (1, 2, 3):
        packed.lr = module.lr = epoch_lr(train_cfg, epoch)
        for step in range(2):
            audio, visual, weak, seg_a, seg_v = _batch(cfg, seed=10 * epoch + step)
            fn = lambda out: compute_loss(out, weak, seg_a, seg_v, train_cfg)  # noqa: E731
            la, lb = packed.step(audio, visual, fn), module.step(audio, visual, fn)
            torch.testing.assert_close(la, lb, rtol=1e-4, atol=1e-6)
    assert module.lr == packed.lr == 2e-3 * 0.5
    packed.write_back(packed_model)
    d = cfg.d_model
    for (name, a), (_, b) in zip(packed_model.named_parameters(), module_model.named_parameters()):
        # Parameters the output is invariant to (softmax shifts: the time- and modality-attention
        # biases, the attention key biases) get zero gradients up to rounding noise, which Adam
        # rescales to full-size steps: the engines agree on everything else.
        if name in ("fc_frame_att.bias", "fc_av_att.bias"):
            continue
        if name.endswith("in_proj_bias"):
            a, b = torch.cat([a[:d], a[2 * d:]]), torch.cat([b[:d], b[2 * d:]])
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    audio, visual, *_ = _batch(cfg, seed=99)
    with torch.no_grad():
        for x, y in zip(packed_model.eval().forward_pooled(audio, visual), module_model.eval().forward_pooled(audio, visual)):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
