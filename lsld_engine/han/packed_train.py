"""The CPU training engine: the HAN's forward, backward and Adam step on packed parameter buffers.

:func:`lsld_engine.han.training.fit` uses it on CPU (on CUDA it trains the :class:`~lsld_engine.han.model.HAN`
module with autograd). It computes the same function as ``HAN.forward_pooled`` in training mode
(``tests/test_packed_train.py`` checks outputs and every gradient against the module with autograd)
and applies ``torch.optim.Adam``'s update; what differs is only where time goes. On a 2-core CPU a
training step is bounded by ~41 GFLOP of dense matmuls per batch of 32; the rest is overhead this
engine removes:

- **Packed parameters.** All matmul weights live in one flat buffer, laid out so each fused
  projection is one contiguous matrix: per layer ``[q_cm; q_sa; k_sa; v_sa]`` applied to the
  streams and ``[k_cm; v_cm]`` applied to the streams swapped (so cross-modal keys and values line
  up row by row with their queries without gathering), and the three heads as one ``(3C, D)``
  matrix. Weight gradients are written by the matmul straight into a flat gradient buffer
  (:class:`_LinearInto`): no autograd leaves, no per-parameter accumulation, no concatenation.
- **One optimizer pass.** Adam runs over the flat buffers in a Numba kernel; in bf16 mode it reads
  the bf16 gradients and writes the bf16 weight copy in the same pass (float32 master weights and
  moments, like autocast training).
- **Cheap dropout.** Keep-masks for the whole step come from one call of a counter-based integer hash
  (:func:`lsld_engine.han._train_kernels.keep_mask_bits`) as 0/1 tensors; the ``1/(1-p)`` scale is
  folded into ``addcmul`` or into the next matmul's ``alpha``. Same distribution as ``nn.Dropout``
  (keep probability ``1 - p`` to 2^-32), not the same random numbers as torch's generator;
  reproducible for a seed.

Layout of the streams: rows ``[0, B T)`` are audio, ``[B T, 2 B T)`` visual, ``(2 B T, D)``.

``precision="bf16"`` runs matmuls and activations in bfloat16 (layer norm statistics, softmax,
the heads' pooling and the loss in float32), like ``torch.autocast``; it is not bit-exact with
float32 training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from lsld_engine.han import _train_kernels as kernels
from lsld_engine.han.model import HAN, HANConfig

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}
_ONE_BITS = {torch.float32: np.uint32(0x3F800000), torch.bfloat16: np.uint16(0x3F80)}
_BITS_DTYPE = {torch.float32: (torch.int32, np.uint32), torch.bfloat16: (torch.int16, np.uint16)}


@dataclass(frozen=True)
class _Entry:
    """One packed tensor: ``shape``, the rows of official state-dict tensors stacked on dim 0."""

    name: str
    shape: tuple[int, ...]
    pieces: tuple[tuple[str, int, int], ...]    # (state_dict key, first row, end row)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _layout(cfg: HANConfig) -> tuple[list[_Entry], list[_Entry]]:
    """``(matmul entries, layer-norm entries)`` of a HAN; every trained parameter appears once."""
    d, f, c = cfg.d_model, cfg.dim_feedforward, cfg.num_classes
    mm: list[_Entry] = []
    ln: list[_Entry] = []

    def linear(name: str, key: str, out_dim: int, in_dim: int) -> None:
        mm.append(_Entry(f"{name}_w", (out_dim, in_dim), ((f"{key}.weight", 0, out_dim),)))
        mm.append(_Entry(f"{name}_b", (out_dim,), ((f"{key}.bias", 0, out_dim),)))

    def stacked(name: str, rows: tuple[tuple[str, int, int], ...]) -> None:
        mm.append(_Entry(f"{name}_w", (len(rows) * d, d), tuple((k + "weight", a, b) for k, a, b in rows)))
        mm.append(_Entry(f"{name}_b", (len(rows) * d,), tuple((k + "bias", a, b) for k, a, b in rows)))

    def norm(name: str, key: str) -> None:
        ln.append(_Entry(f"{name}_w", (d,), ((f"{key}.weight", 0, d),)))
        ln.append(_Entry(f"{name}_b", (d,), ((f"{key}.bias", 0, d),)))

    for i in range(cfg.num_layers):
        p = f"hat_encoder.layers.{i}."
        cm, sa = p + "cm_attn.in_proj_", p + "self_attn.in_proj_"
        # in_proj rows: [0, D) query, [D, 2D) key, [2D, 3D) value
        stacked(f"{i}.x", ((cm, 0, d), (sa, 0, d), (sa, d, 2 * d), (sa, 2 * d, 3 * d)))
        stacked(f"{i}.xs", ((cm, d, 2 * d), (cm, 2 * d, 3 * d)))
        linear(f"{i}.cmo", p + "cm_attn.out_proj", d, d)
        linear(f"{i}.sao", p + "self_attn.out_proj", d, d)
        linear(f"{i}.l1", p + "linear1", f, d)
        linear(f"{i}.l2", p + "linear2", d, f)
        norm(f"{i}.n1", p + "norm1")
        norm(f"{i}.n2", p + "norm2")
    linear("fa", "fc_a", d, cfg.audio_dim)
    linear("fv", "fc_v", d, cfg.visual_dim)
    heads = ("fc_prob", "fc_frame_att", "fc_av_att")
    mm.append(_Entry("hd_w", (3 * c, d), tuple((h + ".weight", 0, c) for h in heads)))
    mm.append(_Entry("hd_b", (3 * c,), tuple((h + ".bias", 0, c) for h in heads)))
    if cfg.final_norm:
        norm("enc.n1", "hat_encoder.norm1")
        norm("enc.n2", "hat_encoder.norm2")
    return mm, ln


class _LinearInto(torch.autograd.Function):
    """``k`` stacked linear maps of ``x`` at once, each output contiguous, whose backward writes the
    weight and bias gradients into given buffers.

    ``x`` ``(N, in)``, ``w`` ``(k out, in)``, ``b`` ``(k out,)`` -> ``k`` tensors
    ``alpha * x @ w_j.T + b_j`` ``(N, out)``. ``gw``, ``gb`` (shaped like ``w``, ``b``) are views of
    the flat gradient buffer, overwritten (each weight is used once per step). Separate outputs,
    rather than one ``(N, k out)`` matmul split afterwards, keep queries, keys and values contiguous
    for the attention and spare the backward a strided gather of their gradients.
    """

    @staticmethod
    def forward(ctx, x, w, b, gw, gb, k: int, alpha: float):
        ctx.save_for_backward(x, w)
        ctx.grads, ctx.k, ctx.alpha = (gw, gb), k, alpha
        return tuple(torch.addmm(bj, x, wj.t(), alpha=alpha) for wj, bj in zip(w.chunk(k), b.chunk(k)))

    @staticmethod
    def backward(ctx, *grads):
        x, w = ctx.saved_tensors
        gw, gb = ctx.grads
        gx = None
        for gy, wj, gwj, gbj in zip(grads, w.chunk(ctx.k), gw.chunk(ctx.k), gb.chunk(ctx.k)):
            torch.addmm(gwj, gy.t(), x, beta=0, alpha=ctx.alpha, out=gwj)
            torch.sum(gy, 0, out=gbj)
            if ctx.needs_input_grad[0]:
                gx = torch.mm(gy, wj) if gx is None else gx.addmm_(gy, wj)
        if gx is not None and ctx.alpha != 1.0:
            gx.mul_(ctx.alpha)
        return gx, None, None, None, None, None, None


@dataclass
class _LayerMasks:
    """0/1 keep-masks of one HAN layer (compute dtype): attention weights ``(2, 2B h, T, T)``
    (cross-modal, self), the two residual branches and the feed-forward output ``(2BT, D)``,
    the feed-forward hidden units ``(2BT, F)``."""

    att: torch.Tensor
    res_cm: torch.Tensor
    res_sa: torch.Tensor
    hidden: torch.Tensor
    res_ff: torch.Tensor


class _MaskMaker:
    """Draws every dropout mask of a step into one reused buffer with one kernel call."""

    def __init__(self, cfg: HANConfig, dtype: torch.dtype, seed: int):
        self.cfg, self.dtype, self.seed = cfg, dtype, int(seed)
        self.buffer = torch.empty(0, dtype=dtype)

    def _shapes(self, b: int, t: int) -> list[tuple[tuple[int, ...], float]]:
        cfg, rows = self.cfg, 2 * b * t
        per_layer = [((2, 2 * b * cfg.nhead, t, t), cfg.att_dropout), ((rows, cfg.d_model), cfg.att_dropout),
                     ((rows, cfg.d_model), cfg.att_dropout), ((rows, cfg.dim_feedforward), cfg.att_dropout),
                     ((rows, cfg.d_model), cfg.att_dropout)]
        return per_layer * cfg.num_layers + [((b * t, cfg.d_model), cfg.cls_dropout)]

    def __call__(self, step: int, b: int, t: int) -> tuple[list[_LayerMasks], torch.Tensor]:
        """Masks for training step ``step`` of a batch ``(b, t)``: per-layer masks and the visual
        stream's classifier-dropout mask ``(b t, D)``."""
        shapes = self._shapes(b, t)
        sizes = [math.prod(s) for s, _ in shapes]
        starts = np.zeros(len(sizes) + 1, np.int64)
        np.cumsum(sizes, out=starts[1:])
        if self.buffer.numel() < starts[-1]:
            self.buffer = torch.empty(int(starts[-1]), dtype=self.dtype)
        int_dtype, np_dtype = _BITS_DTYPE[self.dtype]
        bits = self.buffer.view(int_dtype).numpy().view(np_dtype)
        mask64 = (1 << 64) - 1
        keys = np.array([((self.seed * 0x9E3779B97F4A7C15 + step) * 0xD1B54A32D192ED03 + (s + 1) * 0xA24BAED4963EE407) & mask64
                         for s in range(len(sizes))], np.uint64)
        thresholds = np.array([min(round(p * 2.0 ** 32), 2 ** 32 - 1) if p > 0 else 0 for _, p in shapes], np.uint32)
        ones = np.full(len(sizes), _ONE_BITS[self.dtype], np_dtype)
        kernels.keep_mask_bits(bits, starts, keys, thresholds, ones)
        views = [self.buffer[int(a):int(a) + n].view(s) for a, n, (s, _) in zip(starts[:-1], sizes, shapes)]
        layers = [_LayerMasks(*views[5 * i:5 * i + 5]) for i in range(self.cfg.num_layers)]
        return layers, views[-1]


class PackedTrainer:
    """Trains a CPU :class:`HAN`'s parameters with Adam; see the module docstring.

    ``model`` supplies the architecture and initial weights (read once); :meth:`write_back` copies
    the trained weights into it (for validation and checkpoints). ``lr``/``betas``/``eps`` are
    Adam's; ``seed`` keys the dropout masks.
    """

    def __init__(self, model: HAN, *, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 precision: str = "fp32", seed: int = 0):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}: expected one of {list(PRECISIONS)}")
        if any(p.device.type != "cpu" for p in model.parameters()):
            raise ValueError("PackedTrainer trains CPU models; use the HAN module with autograd on other devices")
        self.cfg: HANConfig = model.config
        for name in ("att_dropout", "cls_dropout"):
            if not 0.0 <= getattr(self.cfg, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self.cfg, name)}")
        self.dtype = PRECISIONS[precision]
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.steps = 0
        self._mm, self._ln = _layout(self.cfg)
        self._n_mm = sum(e.numel for e in self._mm)
        n = self._n_mm + sum(e.numel for e in self._ln)
        self.master = torch.empty(n, dtype=torch.float32)          # float32 master weights
        self._exp_avg = torch.zeros(n, dtype=torch.float32)
        self._exp_avg_sq = torch.zeros(n, dtype=torch.float32)
        self._pack(model)
        # float32: the matmuls read the master weights; bf16: a bf16 copy that Adam rewrites
        self._weights = self.master[:self._n_mm] if self.dtype == torch.float32 else self.master[:self._n_mm].to(self.dtype)
        self._grad_mm = torch.zeros(self._n_mm, dtype=self.dtype)
        self._grad_ln = torch.zeros(n - self._n_mm, dtype=torch.float32)
        self.w: dict[str, torch.Tensor] = {}
        self.g: dict[str, torch.Tensor] = {}
        off = 0
        for e in self._mm:
            # requires_grad only so that autograd runs _LinearInto.backward, which writes the gradient
            # itself and returns None for the weight (nothing accumulates in .grad)
            self.w[e.name] = self._weights[off:off + e.numel].view(e.shape).requires_grad_()
            self.g[e.name] = self._grad_mm[off:off + e.numel].view(e.shape)
            off += e.numel
        # layer norms stay float32 autograd leaves (views of the master buffer): tiny, and float32
        # like autocast keeps them
        self._leaves: list[tuple[torch.Tensor, int]] = []
        for e in self._ln:
            leaf = self.master[off:off + e.numel].view(e.shape).requires_grad_()
            self.w[e.name] = leaf
            self._leaves.append((leaf, off))
            off += e.numel
        self._masks = _MaskMaker(self.cfg, self.dtype, seed)

    # -- parameters -------------------------------------------------------------------------------
    def _entries(self):
        off = 0
        for e in self._mm + self._ln:
            yield e, off
            off += e.numel

    @torch.no_grad()
    def _pack(self, model: HAN) -> None:
        sd = model.state_dict()
        for e, off in self._entries():
            rows = torch.cat([sd[k][a:b] for k, a, b in e.pieces])
            self.master[off:off + e.numel].copy_(rows.reshape(-1))

    @torch.no_grad()
    def write_back(self, model: HAN) -> HAN:
        """Copy the trained float32 weights into ``model`` (official parameter layout); returns it."""
        sd = model.state_dict()
        for e, off in self._entries():
            packed = self.master[off:off + e.numel].view(e.shape)
            row = 0
            for k, a, b in e.pieces:
                sd[k][a:b].copy_(packed[row:row + b - a])
                row += b - a
        return model

    # -- forward ----------------------------------------------------------------------------------
    def _linear(self, name: str, x: torch.Tensor, alpha: float = 1.0, k: int = 1):
        """``x`` ``(N, in)`` through packed linear ``name``: one ``(N, out)`` tensor, or ``k`` of them
        for a stack of ``k`` maps."""
        out = _LinearInto.apply(x, self.w[name + "_w"], self.w[name + "_b"], self.g[name + "_w"],
                                self.g[name + "_b"], k, alpha)
        return out[0] if k == 1 else out

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention over time with the 0/1 dropout ``mask`` ``(2B h, T, T)`` on its weights (the
        ``1/(1-p)`` scale is the caller's); ``q``, ``k``, ``v`` ``(2B, T, D)`` -> ``(2B T, D)``."""
        b2, t, d = q.shape
        h = self.cfg.nhead
        if h > 1:
            q, k, v = (z.reshape(b2, t, h, d // h).transpose(1, 2).reshape(b2 * h, t, d // h) for z in (q, k, v))
        scores = torch.bmm(q, k.transpose(1, 2)).float() * (d // h) ** -0.5
        w = (torch.softmax(scores, dim=-1) * mask).to(q.dtype)
        out = torch.bmm(w, v)
        if h > 1:
            out = out.reshape(b2, h, t, d // h).transpose(1, 2)
        return out.reshape(b2 * t, d)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor, step: int | None = None):
        """Training-mode forward of ``audio``, ``visual`` ``(B, T, 512)`` float32 (visual = 8-frame
        means) with the dropout masks of ``step`` (default: the next step) ->
        ``global_prob (B, C), a_prob (B, C), v_prob (B, C), seg_prob (B, T, 2, C)`` float32.

        The masks live in a buffer the next call overwrites: backpropagate before calling again."""
        cfg, cd = self.cfg, self.dtype
        b, t = audio.shape[:2]
        if visual.shape[:2] != (b, t):
            raise ValueError(f"audio {tuple(audio.shape)} and visual {tuple(visual.shape)} differ in (B, T)")
        bt, d, c = b * t, cfg.d_model, cfg.num_classes
        layer_masks, cls_mask = self._masks(self.steps if step is None else step, b, t)
        keep = 1.0 / (1.0 - cfg.att_dropout)
        x = torch.cat([self._linear("fa", audio.reshape(bt, -1).to(cd)),
                       self._linear("fv", visual.reshape(bt, -1).to(cd))])                  # (2BT, D)
        for i, m in enumerate(layer_masks):
            xs = torch.cat([x[bt:], x[:bt]])        # the other modality of each row
            q_cm, q_sa, k_sa, v_sa = (z.view(2 * b, t, d) for z in self._linear(f"{i}.x", x, k=4))
            k_cm, v_cm = (z.view(2 * b, t, d) for z in self._linear(f"{i}.xs", xs, k=2))
            cm = self._linear(f"{i}.cmo", self._attend(q_cm, k_cm, v_cm, m.att[0]), keep)
            sa = self._linear(f"{i}.sao", self._attend(q_sa, k_sa, v_sa, m.att[1]), keep)
            x = torch.addcmul(torch.addcmul(x, cm, m.res_cm, value=keep), sa, m.res_sa, value=keep)
            x = F.layer_norm(x, (d,), self.w[f"{i}.n1_w"], self.w[f"{i}.n1_b"])
            hidden = torch.relu(self._linear(f"{i}.l1", x)) * m.hidden
            x = torch.addcmul(x, self._linear(f"{i}.l2", hidden, keep), m.res_ff, value=keep)
            x = F.layer_norm(x, (d,), self.w[f"{i}.n2_w"], self.w[f"{i}.n2_b"])
        a, v = x[:bt], x[bt:]
        if cfg.final_norm:
            a = F.layer_norm(a, (d,), self.w["enc.n1_w"], self.w["enc.n1_b"])
            v = F.layer_norm(v, (d,), self.w["enc.n2_w"], self.w["enc.n2_b"])
        v = v * cls_mask * (1.0 / (1.0 - cfg.cls_dropout))
        logits = self._linear("hd", torch.cat([a, v])).float().view(2, b, t, 3 * c).permute(1, 2, 0, 3)
        prob_logit, frame_logit, av_logit = logits.split(c, dim=-1)                           # (B, T, 2, C)
        seg_prob = torch.sigmoid(prob_logit)
        temporal = torch.softmax(frame_logit, dim=1) * seg_prob
        global_prob = (temporal * torch.softmax(av_logit, dim=2)).sum(dim=(1, 2))
        return global_prob, temporal[:, :, 0].sum(dim=1), temporal[:, :, 1].sum(dim=1), seg_prob

    # -- step -------------------------------------------------------------------------------------
    def step(self, audio: torch.Tensor, visual: torch.Tensor,
             loss_fn: Callable[[tuple[torch.Tensor, ...]], torch.Tensor]) -> torch.Tensor:
        """One training step on a batch: forward, ``loss_fn(outputs)``, backward, Adam. Returns the
        (detached) loss."""
        for leaf, _ in self._leaves:
            leaf.grad = None
        loss = loss_fn(self.forward(audio, visual))
        loss.backward()
        for leaf, off in self._leaves:
            self._grad_ln[off - self._n_mm:off - self._n_mm + leaf.numel()].copy_(leaf.grad.reshape(-1))
        self.steps += 1
        self._adam()
        return loss.detach()

    def _adam(self) -> None:
        b1, b2 = self.betas
        args = (np.float32(self.lr), np.float32(b1), np.float32(b2), np.float32(self.eps),
                np.float32(1.0 - b1 ** self.steps), np.float32(math.sqrt(1.0 - b2 ** self.steps)))
        p, m, v = self.master.detach().numpy(), self._exp_avg.numpy(), self._exp_avg_sq.numpy()
        n = self._n_mm
        if self.dtype == torch.float32:
            kernels.adam_f32(self._grad_mm.numpy(), p[:n], m[:n], v[:n], *args)
        else:
            u16 = lambda x: x.view(torch.int16).numpy().view(np.uint16)  # noqa: E731
            kernels.adam_bf16(u16(self._grad_mm), p[:n], m[:n], v[:n], u16(self._weights), *args)
        kernels.adam_f32(self._grad_ln.numpy(), p[n:], m[n:], v[n:], *args)


__all__ = ["PRECISIONS", "PackedTrainer"]
