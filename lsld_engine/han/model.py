"""The HAN / MMIL audio-visual video parser (Tian et al., ECCV 2020) as used by LSLD with CLIP + CLAP.

Inputs are per-clip features: audio ``(B, T, 512)`` (one LAION-CLAP embedding per second) and
frames ``(B, T * 8, 512)`` (CLIP ViT-B/16 embeddings at 8 fps). The network:

1. ``fc_a`` on the audio; ``fc_v`` on the frames followed by the mean over each 8 frames -> ``(B, T, D)``.
2. ``num_layers`` hybrid-attention (HAN) layers. At each depth the *same* layer is applied to the
   audio stream (querying the visual stream) and to the visual stream (querying the audio stream),
   both from the previous depth's outputs. One layer:
   ``x = norm1(x + drop(cm_attn(x, y, y)) + drop(self_attn(x, x, x)))``;
   ``x = norm2(x + drop(linear2(drop(relu(linear1(x))))))``.
3. Dropout 0.5 on the visual stream, then ``fc_prob`` + sigmoid -> segment probabilities
   ``(B, T, 2, C)`` (modality 0 audio, 1 visual).
4. Attentive MMIL pooling: ``softmax_t(fc_frame_att)`` weights time, ``softmax_m(fc_av_att)``
   weights the two modalities; ``a_prob`` / ``v_prob`` ``(B, C)`` are the time-pooled per-modality
   probabilities and ``global_prob`` ``(B, C)`` their modality-weighted sum.

Parameter names and shapes are those of the official ``MMIL_Net`` so that the released ``LSLD.pt``
loads with ``strict=True`` (see :mod:`lsld_engine.han.checkpoint`). ``hat_encoder.norm1/norm2`` exist in
the official model but are not applied there (its encoder is built with ``norm=None``);
``HANConfig.final_norm`` turns them on for new models only.

Why ``fc_v`` after the 8-frame mean is exact: ``fc_v(x) = W x + b`` is affine, and an affine map
commutes with any average (weights summing to 1): ``mean_k(W x_k + b) = W mean_k(x_k) + b``. So we
pool first and run ``fc_v`` on ``T`` vectors instead of ``8 T`` (8x less work, and training can keep
only the pooled ``(N, T, 512)`` visual features in memory). The two orders differ only by float
rounding (~1e-6 relative); ``tests/test_model.py`` checks it.

Speed: both streams go through each layer as one batch ``(2B, T, D)`` (the layer's weights are
shared), and the cross- and self-attention input projections are one fused matmul.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lsld_engine.contract import FRAMES_PER_SEGMENT
from lsld_engine.data.llp import NUM_CLASSES, T

#: Frames per one-second segment (8 fps CLIP frames).


@dataclass(frozen=True)
class HANConfig:
    """Architecture of :class:`HAN`; the defaults are the official LSLD model."""

    num_layers: int = 4
    d_model: int = 512
    num_classes: int = NUM_CLASSES
    nhead: int = 1
    dim_feedforward: int = 512
    audio_dim: int = 512
    visual_dim: int = 512
    att_dropout: float = 0.1
    cls_dropout: float = 0.5
    final_norm: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HANConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown HAN config keys {unknown}; expected some of {sorted(known)}")
        return cls(**d)


class HANLayer(nn.Module):
    """One hybrid-attention layer; parameter names follow the official ``HANLayer``.

    ``self_attn`` / ``cm_attn`` are ``nn.MultiheadAttention`` modules only as parameter holders
    (``in_proj_weight``, ``in_proj_bias``, ``out_proj``); :meth:`forward` uses their weights directly
    so the projections of both attentions fuse into one matmul.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model {d_model} is not divisible by nhead {nhead}")
        self.nhead = nhead
        self.att_dropout = dropout
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.cm_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout11 = nn.Dropout(dropout)
        self.dropout12 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Scaled dot-product attention over time; ``(B, T, D)`` each -> ``(B, T, D)``."""
        b, t, d = q.shape
        h = self.nhead
        if h > 1:
            q, k, v = (x.reshape(b, t, h, d // h).transpose(1, 2).reshape(b * h, t, d // h) for x in (q, k, v))
        w = torch.softmax(torch.bmm(q * (q.shape[-1] ** -0.5), k.transpose(1, 2)), dim=-1)
        w = F.dropout(w, self.att_dropout, self.training)
        out = torch.bmm(w, v)
        if h > 1:
            out = out.reshape(b, h, t, d // h).transpose(1, 2).reshape(b, t, d)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(2B, T, D)``: audio streams in the first half, visual in the second.

        Each half attends to itself (self-attention) and to the other half (cross-modal attention),
        exactly as the official layer applied once to audio and once to visual.
        """
        b2, t, d = x.shape
        w = torch.cat([self.cm_attn.in_proj_weight, self.self_attn.in_proj_weight])      # (6D, D)
        bias = torch.cat([self.cm_attn.in_proj_bias, self.self_attn.in_proj_bias])      # (6D,)
        # unbind (not slicing) keeps the backward to one stack instead of six zero-filled buffers
        q_cm, k_cm, v_cm, q_sa, k_sa, v_sa = F.linear(x, w, bias).view(b2, t, 6, d).unbind(2)
        half = b2 // 2
        swap = lambda z: torch.cat([z[half:], z[:half]])  # noqa: E731 - the other modality, row-aligned
        cm = self._attend(q_cm, swap(k_cm), swap(v_cm))
        sa = self._attend(q_sa, k_sa, v_sa)
        cm = self.cm_attn.out_proj(cm)
        sa = self.self_attn.out_proj(sa)
        x = self.norm1(x + self.dropout11(cm) + self.dropout12(sa))
        ff = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm2(x + self.dropout2(ff))


class HANEncoder(nn.Module):
    """``num_layers`` HAN layers over the audio and visual streams (official name: ``hat_encoder``)."""

    def __init__(self, cfg: HANConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            HANLayer(cfg.d_model, cfg.nhead, cfg.dim_feedforward, cfg.att_dropout) for _ in range(cfg.num_layers))
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.final_norm = cfg.final_norm

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``a``, ``v`` ``(B, T, D)`` -> encoded ``(B, T, D)`` each."""
        b = a.shape[0]
        x = torch.cat([a, v])
        for layer in self.layers:
            x = layer(x)
        # Slicing, not chunk(2): chunk's guard would make torch.export bake the batch size in.
        a, v = x[:b], x[b:]
        if self.final_norm:
            a, v = self.norm1(a), self.norm2(v)
        return a, v


class HAN(nn.Module):
    """The LSLD parser (official ``MMIL_Net`` with CLIP + CLAP inputs). See the module docstring."""

    def __init__(self, num_layers: int = 4, d_model: int = 512, num_classes: int = NUM_CLASSES, *,
                 config: HANConfig | None = None, **kwargs):
        super().__init__()
        cfg = config or HANConfig(num_layers=num_layers, d_model=d_model, num_classes=num_classes, **kwargs)
        self.config = cfg
        self.fc_prob = nn.Linear(cfg.d_model, cfg.num_classes)
        self.fc_frame_att = nn.Linear(cfg.d_model, cfg.num_classes)
        self.fc_av_att = nn.Linear(cfg.d_model, cfg.num_classes)
        self.fc_a = nn.Linear(cfg.audio_dim, cfg.d_model)
        self.fc_v = nn.Linear(cfg.visual_dim, cfg.d_model)
        self.hat_encoder = HANEncoder(cfg)
        self.dropout = nn.Dropout(cfg.cls_dropout)

    def forward(self, audio: torch.Tensor, frames: torch.Tensor):
        """``audio`` ``(B, T, 512)``, ``frames`` ``(B, 8 T, 512)`` ->
        ``global_prob (B, C), a_prob (B, C), v_prob (B, C), seg_prob (B, T, 2, C)``."""
        if frames.dim() != 3 or audio.dim() != 3 or frames.shape[1] != FRAMES_PER_SEGMENT * audio.shape[1]:
            raise ValueError(f"expected audio (B, T, D) and frames (B, {FRAMES_PER_SEGMENT} T, D), got "
                             f"{tuple(audio.shape)} and {tuple(frames.shape)}")
        return self.forward_pooled(audio, pool_frames(frames))

    def forward_pooled(self, audio: torch.Tensor, visual: torch.Tensor):
        """Like :meth:`forward` with the frames already averaged per segment: ``visual`` ``(B, T, 512)``
        = mean of each 8 frames (see the module docstring for why this is exact)."""
        if audio.shape[:2] != visual.shape[:2]:
            raise ValueError(f"audio {tuple(audio.shape)} and visual {tuple(visual.shape)} differ in (B, T)")
        a, v = self.hat_encoder(self.fc_a(audio), self.fc_v(visual))
        x = torch.stack([a, self.dropout(v)], dim=2)                       # (B, T, 2, D)
        c = self.config.num_classes
        w = torch.cat([self.fc_prob.weight, self.fc_frame_att.weight, self.fc_av_att.weight])
        b = torch.cat([self.fc_prob.bias, self.fc_frame_att.bias, self.fc_av_att.bias])
        logits = F.linear(x, w, b)                                          # (B, T, 2, 3C)
        prob_logit, frame_logit, av_logit = logits.split(c, dim=-1)
        seg_prob = torch.sigmoid(prob_logit)
        frame_att = torch.softmax(frame_logit, dim=1)                      # over time
        av_att = torch.softmax(av_logit, dim=2)                            # over the 2 modalities
        temporal = frame_att * seg_prob
        global_prob = (temporal * av_att).sum(dim=(1, 2))
        a_prob = temporal[:, :, 0].sum(dim=1)
        v_prob = temporal[:, :, 1].sum(dim=1)
        return global_prob, a_prob, v_prob, seg_prob


def pool_frames(frames: torch.Tensor, frames_per_segment: int = FRAMES_PER_SEGMENT) -> torch.Tensor:
    """Mean of each ``frames_per_segment`` consecutive frames: ``(B, 8 T, D)`` -> ``(B, T, D)`` float32."""
    b, n, d = frames.shape
    if n % frames_per_segment:
        raise ValueError(f"{n} frames is not a multiple of {frames_per_segment} frames per segment")
    return frames.reshape(b, n // frames_per_segment, frames_per_segment, d).float().mean(dim=2)


def build_han(num_layers: int = 4, **kwargs) -> HAN:
    """A randomly initialised :class:`HAN` (``kwargs``: other :class:`HANConfig` fields)."""
    return HAN(config=HANConfig(num_layers=num_layers, **kwargs))


__all__ = ["FRAMES_PER_SEGMENT", "HAN", "HANConfig", "HANEncoder", "HANLayer", "T", "build_han", "pool_frames"]
