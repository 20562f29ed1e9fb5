"""The three exportable networks: their I/O contract, how to build them, and random example inputs.

Every exported file has a dynamic first axis ``batch``; all other axes are fixed:

================  ==========================================  =========================================
network           inputs                                      outputs
================  ==========================================  =========================================
``clip_image``    ``images``   ``(batch, 224, 224, 3)`` uint8  ``embedding`` ``(batch, 512)`` float32
``clap_audio``    ``segments`` ``(batch, 48000)`` float32      ``embedding`` ``(batch, 512)`` float32
``han``           ``audio``    ``(batch, 10, 512)`` float32    ``global_prob`` ``(batch, 25)``,
                  ``frames``   ``(batch, 80, 512)`` float32    ``a_prob`` ``(batch, 25)``,
                                                               ``v_prob`` ``(batch, 25)``,
                                                               ``seg_prob`` ``(batch, 10, 2, 25)`` float32
================  ==========================================  =========================================

``clip_image`` contains the CLIP normalisation (uint8 RGB crops in, embedding out); ``clap_audio``
contains the whole CLAP front end (1-s -> 10-s repeat-pad, int16 quantisation, STFT, log-mel).
Embedding sizes come from the built module (512 for the real and the small configs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

NETWORKS: tuple[str, ...] = ("clip_image", "clap_audio", "han")

#: Output order of the HAN (as ``HAN.forward`` returns them).
HAN_OUTPUTS: tuple[str, ...] = ("global_prob", "a_prob", "v_prob", "seg_prob")


@dataclass(frozen=True)
class NetworkIO:
    """Input/output names of one network, in call / return order."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


IO: dict[str, NetworkIO] = {
    "clip_image": NetworkIO(("images",), ("embedding",)),
    "clap_audio": NetworkIO(("segments",), ("embedding",)),
    "han": NetworkIO(("audio", "frames"), HAN_OUTPUTS),
}


#: For fp16 files: the torch scope before which a network stays fp32 (see ``convert_fp16``).
FP32_FRONT_END: dict[str, str] = {"clap_audio": "audio_branch.bn0"}


def check_network(name: str) -> str:
    if name not in IO:
        raise ValueError(f"unknown network {name!r}; choose from {', '.join(NETWORKS)}")
    return name


# --- example inputs --------------------------------------------------------------------------------

def example_inputs(name: str, batch: int, *, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Random inputs of the real dtypes/shapes: features are unit-norm like CLIP/CLAP embeddings,
    images uniform uint8, audio a few sines plus noise in [-1, 1]."""
    rng = np.random.default_rng(seed)
    if name == "han":
        def feats(n: int) -> np.ndarray:
            x = rng.standard_normal((batch, n, 512)).astype(np.float32)
            return x / np.linalg.norm(x, axis=-1, keepdims=True)
        return feats(10), feats(80)
    if name == "clip_image":
        return (rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8),)
    if name == "clap_audio":
        t = np.arange(48000, dtype=np.float32) / 48000
        freqs = rng.uniform(50, 8000, (batch, 3, 1)).astype(np.float32)
        amps = rng.uniform(0.05, 0.3, (batch, 3, 1)).astype(np.float32)
        x = (amps * np.sin(2 * np.pi * freqs * t)).sum(axis=1)
        x += 0.02 * rng.standard_normal(x.shape).astype(np.float32)
        return (np.clip(x, -1, 1).astype(np.float32),)
    raise ValueError(check_network(name))


# --- building the torch modules ----------------------------------------------------------------------

class _Tower(nn.Module):
    """A single-input, single-output view of an encoder tower for export (``fn(x) -> (B, D)``)."""

    def __init__(self, owner: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.owner = owner  # registers the parameters
        self._fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(x).float()


def build_module(name: str, *, checkpoint: str | None = None, small: bool = False,
                 seed: int = 0) -> nn.Module:
    """The eval-mode torch module of ``name`` whose ``forward(*inputs)`` matches :data:`IO`.

    ``checkpoint=None`` builds random weights; a checkpoint path loads weights (missing files fail
    fast, naming the file). ``small``: the test-size architectures (the HAN: 1 layer)."""
    check_network(name)
    torch.manual_seed(seed)
    if name == "han":
        from lsld_engine.checkpoint import load_han
        from lsld_engine.model import build_han
        if checkpoint:
            return load_han(checkpoint).eval()  # the architecture comes from the file
        return build_han(num_layers=1 if small else 4).eval()
    if name == "clip_image":
        from lsld_engine.encoders.clip import build_clip_image_encoder
        enc = build_clip_image_encoder(checkpoint, config="small" if small else "ViT-B-16")
    else:
        from lsld_engine.encoders.clap import build_clap_audio_encoder
        enc = build_clap_audio_encoder(checkpoint, config="small" if small else "HTSAT-tiny")
    if checkpoint is None:
        _perturb(enc)
    if name == "clip_image":
        # uint8 -> float before the NHWC -> NCHW transpose: TensorRT moves uint8 only through a Cast
        return _Tower(enc, lambda images: enc(images.float().permute(0, 3, 1, 2) / 255.0)).eval()
    return _Tower(enc, enc.forward).eval()


def _perturb(module: nn.Module, scale: float = 0.02) -> None:
    """Add noise to every parameter of a random-weight module: some towers zero-initialise tensors
    (projections, biases), which would let parity checks pass through dead paths."""
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:  # frozen ones are fixed transforms (CLAP's STFT and mel matrices)
                p.add_(torch.randn_like(p) * scale)
