"""The networks `lsld-engine export` writes: the registry's I/O as name tuples, exportable modules, example inputs.

Every exported file has a dynamic first axis ``batch``; all other axes are fixed. Names, shapes and
dtypes of inputs and outputs are the registry's (:data:`lsld_engine.registry.NETWORKS`, table in
``docs/export.md``).

``clip_image`` contains the CLIP normalisation (uint8 RGB crops in, embedding out); ``clap_audio``
contains the whole CLAP front end (1-s -> 10-s repeat-pad, int16 quantisation, STFT, log-mel).
Embedding sizes come from the built module (512 for the real and the small configs). Names, I/O and
builders come from :mod:`lsld_engine.registry`; this module adds only what export needs on top.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from lsld_engine import registry
from lsld_engine.contract import FRAMES_PER_WINDOW, IMAGE_SIZE, SAMPLE_RATE, SAMPLES_PER_SEGMENT
from lsld_engine.data.llp import T
from lsld_engine.backends.random_weights import RANDOM_SEED, build_random
from lsld_engine.registry import HAN_OUTPUTS  # noqa: F401 - re-exported

NETWORKS: tuple[str, ...] = registry.EXPORTED


@dataclass(frozen=True)
class NetworkIO:
    """Input/output names of one network, in call / return order."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


IO: dict[str, NetworkIO] = {n: NetworkIO(*registry.io_names(n)) for n in NETWORKS}


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
        return feats(T), feats(FRAMES_PER_WINDOW)
    if name == "clip_image":
        return (rng.integers(0, 256, (batch, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8),)
    if name == "clap_audio":
        t = np.arange(SAMPLES_PER_SEGMENT, dtype=np.float32) / SAMPLE_RATE
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
                 seed: int = RANDOM_SEED) -> nn.Module:
    """The eval-mode torch module of ``name`` whose ``forward(*inputs)`` matches :data:`IO`.

    ``checkpoint=None`` builds random weights from ``seed`` through
    :func:`lsld_engine.backends.random_weights.build_random` (the same networks as ``parse --random-weights``
    on the torch backend); a checkpoint path loads weights (missing files fail fast, naming the
    file). ``small``: the test-size architectures (the HAN: 1 layer)."""
    check_network(name)
    size = "small" if small else "real"
    if checkpoint:
        # A HAN checkpoint carries its own architecture (the registry ignores ``size`` for it).
        enc = registry.build(name, checkpoint, size=size)
    else:
        enc = build_random(name, size=size, seed=seed)
    if name == "han":
        return enc.eval()
    if name == "clip_image":
        # uint8 -> float before the NHWC -> NCHW transpose: TensorRT moves uint8 only through a Cast
        return _Tower(enc, lambda images: enc(images.float().permute(0, 3, 1, 2) / 255.0)).eval()
    return _Tower(enc, enc.forward).eval()
