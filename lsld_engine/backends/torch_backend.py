"""The ``torch`` inference backend: CLIP image tower, CLAP audio tower and HAN in PyTorch.

Towers come from :mod:`lsld_engine.registry` (local checkpoints, or random weights when asked
explicitly), the HAN from :func:`lsld_engine.han.checkpoint.load_han` (ours or the official ``LSLD.pt``).
Each network is built on first use, so a caller that only parses precomputed features needs only
``model``, and one that only extracts features needs no HAN.

CPU float32 by default; on CUDA ``precision="fp16"``/``"bf16"`` runs the towers under autocast
(the HAN stays fp32: it is negligible and its thresholds are the contract). A CUDA out-of-memory
error halves the batch and retries, so the default batch sizes adapt to smaller cards.
"""
from __future__ import annotations

import logging
import os
import warnings
from typing import Callable

import numpy as np
import torch

from lsld_engine.backends.base import ClosesOnExit, HAN_OUTPUTS, default_batch_sizes
from lsld_engine.errors import LsldError
# Seed of random-weight networks: the same flags give the same networks in every process and on every
# backend (`extract`, `parse` and `export --random-weights` agree; see lsld_engine.backends.random_weights).
from lsld_engine.backends.random_weights import RANDOM_SEED  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

#: Which option/flag supplies the weights of each network (for error messages).
WEIGHT_OPTIONS: dict[str, tuple[str, str]] = {
    "clip_image": ("clip_checkpoint", "--clip-checkpoint (CLIP ViT-B/16, e.g. OpenAI ViT-B-16.pt)"),
    "clap_audio": ("clap_checkpoint", "--clap-checkpoint (LAION-CLAP, e.g. 630k-audioset-best.pt)"),
    "han": ("model", "--model (a train.lsld checkpoint or the official LSLD.pt)"),
}


class MissingWeightsError(LsldError, FileNotFoundError):
    """A network's weights were not given (or the file does not exist); the message names the flag."""


def check_weights(networks, *, random_weights: bool = False, **options) -> None:
    """Fail fast, before any work, when a needed network has no weights or its file is missing.

    ``networks``: names from :data:`WEIGHT_OPTIONS`; ``options``: ``clip_checkpoint``, ... values.
    """
    missing = []
    for net in networks:
        key, flag = WEIGHT_OPTIONS[net]
        path = options.get(key)
        if path is None:
            if not random_weights:
                missing.append(f"{flag}: not given")
        elif not os.path.isfile(path):
            missing.append(f"{flag}: file not found: {path}")
    if missing:
        raise MissingWeightsError("missing weights —\n  " + "\n  ".join(missing)
                                  + "\n(no weights are downloaded; pass local files, or --random-weights "
                                    "for demos and tests only)")


class TorchBackend(ClosesOnExit):
    """PyTorch implementation of the backend contract (:class:`lsld_engine.backends.base.Backend`).

    Options: ``clip_checkpoint``, ``clap_checkpoint``, ``model`` (paths), ``device`` (``cpu`` /
    ``cuda[:N]``), ``precision`` (``fp32``/``fp16``/``bf16``), ``random_weights`` (build networks
    without a checkpoint from :data:`RANDOM_SEED`; tests, demos, benchmarks), ``size`` (``"real"``
    or ``"small"`` test architectures of the towers; a HAN checkpoint carries its own size), ``batch_sizes`` (overrides of
    :func:`~lsld_engine.backends.base.default_batch_sizes`), ``threads`` (CPU intra-op threads),
    ``auto_precision`` (CPU, no ``--precision`` given: each tower in
    :func:`lsld_engine.hardware.cpu_tower_precision`).
    """

    name = "torch"

    def __init__(self, *, clip_checkpoint: str | None = None, clap_checkpoint: str | None = None,
                 model: str | None = None, device: str = "cpu", precision: str = "fp32",
                 random_weights: bool = False, size: str = "real", batch_sizes: dict[str, int] | None = None,
                 threads: int | None = None, auto_precision: bool = False, **ignored):
        from lsld_engine.encoders.runtime import check_precision, resolve_device

        if ignored:
            log.debug("torch backend: ignoring options %s", sorted(ignored))
        self._device = resolve_device(device)
        self.device = str(self._device)
        self.precision = check_precision(precision, self._device)
        # no --precision on a CPU: each tower in the precision that measured fastest there (bf16 for CLAP
        # on a native-bf16 CPU, fp32 for CLIP; lsld_engine.hardware.cpu_tower_precision)
        self.auto_precision = bool(auto_precision) and self._device.type == "cpu"
        self.random_weights = bool(random_weights)
        self.size = size
        self.options = {"clip_checkpoint": clip_checkpoint, "clap_checkpoint": clap_checkpoint, "model": model}
        self.batch_sizes = {**default_batch_sizes(self.device), **(batch_sizes or {})}
        if threads:
            torch.set_num_threads(int(threads))
        self._nets: dict[str, torch.nn.Module] = {}

    # --- networks, built on first use ---

    def network(self, name: str) -> torch.nn.Module:
        """The ``clip_image`` / ``clap_audio`` / ``han`` module (built and cached on first call)."""
        net = self._nets.get(name)
        if net is None:
            net = self._nets[name] = self._build(name)
        return net

    def _build(self, name: str) -> torch.nn.Module:
        from lsld_engine import registry

        key, _ = WEIGHT_OPTIONS[name]
        path = self.options[key]
        check_weights([name], random_weights=self.random_weights, **self.options)
        size = self.size
        precision = self.precision_of(name)
        if path is not None:
            return self._construct(registry, name, path, size, precision)
        log.warning("%s: random weights (%s size) — outputs are meaningless; for tests and demos only", name, size)
        from lsld_engine.backends.random_weights import build_random

        # the same weights as `export --random-weights` and the auto backend's export cache
        if name == "han":
            return build_random(name, size=size, seed=RANDOM_SEED, device=self._device)
        return build_random(name, size=size, seed=RANDOM_SEED, device=self._device, precision=precision)

    def precision_of(self, name: str) -> str:
        """The precision network ``name`` runs in (the HAN: always fp32)."""
        if name == "han":
            return "fp32"
        if self.auto_precision:
            from lsld_engine.hardware import cpu_tower_precision

            precision, why = cpu_tower_precision(name)
            if name not in self._nets:  # said once, when the tower is built
                log.info("%s: %s on this CPU (%s; --precision overrides)", name, precision, why)
            return precision
        return self.precision

    def _construct(self, registry, name: str, path: str | None, size: str, precision: str) -> torch.nn.Module:
        if name == "han":
            return registry.build("han", path, size=size).to(self._device).eval()
        with warnings.catch_warnings():
            # HTSAT calls torch.meshgrid without indexing=: harmless noise on every run
            warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
            return registry.build(name, path, size=size, device=self._device, precision=precision)

    def warm_up(self, networks=("clip_image", "clap_audio", "han")) -> None:
        """Build ``networks`` now (load errors surface before the first video is decoded)."""
        for n in networks:
            self.network(n)

    # --- the contract ---

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        """``(B, 224, 224, 3)`` uint8 -> ``(B, 512)`` float32 (CLIP normalisation inside the tower)."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be (B, 224, 224, 3) uint8, got {images.shape} {images.dtype}")
        enc = self.network("clip_image")
        return self._adaptive("images", lambda x, bs: enc.embed(x, batch_size=bs), images)

    def embed_audio(self, segments: np.ndarray) -> np.ndarray:
        """``(B, 48000)`` float32 mono 1-s segments -> ``(B, 512)`` float32 (L2-normalised, as laion_clap)."""
        segments = np.asarray(segments, dtype=np.float32)
        if segments.ndim != 2:
            raise ValueError(f"audio segments must be (B, 48000) float32, got {segments.shape}")
        enc = self.network("clap_audio")
        return self._adaptive("audio", lambda x, bs: enc.embed(x, batch_size=bs), segments)

    def parse(self, audio: np.ndarray, frames: np.ndarray) -> dict[str, np.ndarray]:
        """HAN: ``audio (B, 10, 512)``, ``frames (B, 80, 512)`` (float16/32) -> :data:`HAN_OUTPUTS`."""
        from lsld_engine.han.model import pool_frames

        audio, frames = np.asarray(audio), np.asarray(frames)
        if audio.ndim != 3 or frames.ndim != 3 or audio.shape[0] != frames.shape[0]:
            raise ValueError(f"expected audio (B, 10, 512) and frames (B, 80, 512); got {audio.shape}, {frames.shape}")
        han = self.network("han")

        def run(chunk: tuple[np.ndarray, np.ndarray], bs: int) -> list[np.ndarray]:
            outs = []
            with torch.inference_mode():
                for s in range(0, chunk[0].shape[0], bs):
                    a = torch.as_tensor(np.asarray(chunk[0][s:s + bs], np.float32)).to(self._device)
                    # pool first, as training does (exact: fc_v is affine; see lsld_engine.han.model)
                    v = pool_frames(torch.as_tensor(chunk[1][s:s + bs]).to(self._device))
                    outs.append([t.float().cpu().numpy() for t in han.forward_pooled(a, v)])
            return [np.concatenate(parts) for parts in zip(*outs)]

        res = self._adaptive("windows", run, (audio, frames))
        return dict(zip(HAN_OUTPUTS, res))

    def _adaptive(self, kind: str, fn: Callable, x):
        """``fn(x, batch)`` with this backend's batch for ``kind``, halved on CUDA out-of-memory."""
        while True:
            bs = self.batch_sizes[kind]
            try:
                return fn(x, bs)
            except torch.cuda.OutOfMemoryError:
                if bs == 1:
                    raise
                self.batch_sizes[kind] = max(1, bs // 2)
                torch.cuda.empty_cache()
                log.warning("CUDA out of memory at %s batch %d: retrying with %d", kind, bs, self.batch_sizes[kind])

    def close(self) -> None:
        self._nets.clear()
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
