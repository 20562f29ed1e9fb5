"""A straightforward HAN/MMIL training reimplementation: the baseline side of ``bench.train_bench``.

It follows the structure of the official code literally: ``nn.MultiheadAttention`` in
sequence-first layout with permutes, the HAN layer called once for audio and once for visual at
each depth, ``fc_v`` on all 80 frames before the 8-frame average, a per-sample loss loop, and a
dataset that reads two ``.npy`` files per item. Same parameter names as :class:`lsld_engine.han.model.HAN`,
so the two share weights (``tests/test_model.py`` checks they compute the same function).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class NaiveHANLayer(nn.Module):
    def __init__(self, d_model: int = 512, nhead: int = 1, dim_feedforward: int = 512, dropout: float = 0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.cm_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout11 = nn.Dropout(dropout)
        self.dropout12 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, src_q, src_v):
        src_q = src_q.permute(1, 0, 2)
        src_v = src_v.permute(1, 0, 2)
        src1 = self.cm_attn(src_q, src_v, src_v)[0]
        src2 = self.self_attn(src_q, src_q, src_q)[0]
        src_q = self.norm1(src_q + self.dropout11(src1) + self.dropout12(src2))
        src2 = self.linear2(self.dropout(F.relu(self.linear1(src_q))))
        src_q = self.norm2(src_q + self.dropout2(src2))
        return src_q.permute(1, 0, 2)


class NaiveEncoder(nn.Module):
    def __init__(self, num_layers: int, d_model: int = 512):
        super().__init__()
        self.layers = nn.ModuleList(NaiveHANLayer(d_model) for _ in range(num_layers))
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src_a, src_v):
        for layer in self.layers:
            out_a = layer(src_a, src_v)
            out_v = layer(src_v, src_a)
            src_a, src_v = out_a, out_v
        return src_a, src_v


class NaiveHAN(nn.Module):
    def __init__(self, num_layers: int = 4, num_classes: int = 25):
        super().__init__()
        self.fc_prob = nn.Linear(512, num_classes)
        self.fc_frame_att = nn.Linear(512, num_classes)
        self.fc_av_att = nn.Linear(512, num_classes)
        self.fc_a = nn.Linear(512, 512)
        self.fc_v = nn.Linear(512, 512)
        self.hat_encoder = NaiveEncoder(num_layers)
        self.dropout = nn.Dropout(0.5)

    def forward(self, audio, frames):
        x1 = self.fc_a(audio)
        vid = self.fc_v(frames).permute(0, 2, 1).unsqueeze(-1)          # (B, D, 80, 1)
        x2 = F.avg_pool2d(vid, (8, 1)).squeeze(-1).permute(0, 2, 1)     # (B, 10, D)
        x1, x2 = self.hat_encoder(x1, x2)
        x2 = self.dropout(x2)
        x = torch.cat([x1.unsqueeze(-2), x2.unsqueeze(-2)], dim=-2)
        frame_prob = torch.sigmoid(self.fc_prob(x))
        frame_att = torch.softmax(self.fc_frame_att(x), dim=1)
        av_att = torch.softmax(self.fc_av_att(x), dim=2)
        temporal_prob = frame_att * frame_prob
        global_prob = (temporal_prob * av_att).sum(dim=2).sum(dim=1)
        a_prob = temporal_prob[:, :, 0, :].sum(dim=1)
        v_prob = temporal_prob[:, :, 1, :].sum(dim=1)
        return global_prob, a_prob, v_prob, frame_prob


class NpyDataset(torch.utils.data.Dataset):
    """Reads ``clap/<id>.npy`` and ``clip/<id>.npy`` for every item, like the official loader."""

    def __init__(self, clap_dir: Path, clip_dir: Path, video_ids, weak, seg_a, seg_v):
        self.clap_dir, self.clip_dir = Path(clap_dir), Path(clip_dir)
        self.ids, self.weak, self.seg_a, self.seg_v = list(video_ids), weak, seg_a, seg_v

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        vid = self.ids[i]
        audio = np.load(self.clap_dir / f"{vid}.npy").astype(np.float32)
        frames = np.load(self.clip_dir / f"{vid}.npy").astype(np.float32)
        return {"audio": torch.from_numpy(audio), "frames": torch.from_numpy(frames),
                "label": torch.from_numpy(self.weak[i].astype(np.float32)),
                "seg_a": torch.from_numpy(self.seg_a[i]), "seg_v": torch.from_numpy(self.seg_v[i])}


def naive_loss(out, batch, eps: float = 1e-7):
    """The LSLD objective, one sample at a time."""
    global_prob, a_prob, v_prob, seg_prob = out
    total = 0.0
    for i in range(global_prob.shape[0]):
        g = global_prob[i].clamp(eps, 1 - eps)
        sa = seg_prob[i, :, 0].clamp(eps, 1 - eps)
        sv = seg_prob[i, :, 1].clamp(eps, 1 - eps)
        total = total + (F.binary_cross_entropy(g, batch["label"][i])
                         + 3.0 * F.binary_cross_entropy(sa, batch["seg_a"][i])
                         + F.binary_cross_entropy(sv, batch["seg_v"][i]))
    return total / global_prob.shape[0]
