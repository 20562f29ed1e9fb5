"""The inference backend contract shared by ``torch``, ``onnx`` and ``tensorrt`` (see docs/CONTRACTS.md).

A backend runs the three networks of the parse pipeline on numpy arrays:

- ``embed_images(images (B, 224, 224, 3) uint8) -> (B, 512) float32`` — CLIP crops, normalised inside;
- ``embed_audio(segments (B, 48000) float32) -> (B, 512) float32`` — 1-s mono 48-kHz CLAP segments;
- ``parse(audio (B, 10, 512), frames (B, 80, 512)) -> {"seg_prob" (B, 10, 2, C), "a_prob", "v_prob",
  "global_prob" (B, C)}`` — the HAN, float32 numpy.

Callers batch across videos; a backend may split a call into smaller device batches but never
changes the results' order.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from lsld_engine.registry import HAN_OUTPUTS  # noqa: F401 - the names every backend's ``parse`` returns


@runtime_checkable
class Backend(Protocol):
    """What the parse / extract pipelines need from an inference backend."""

    name: str
    device: str

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        """``(B, 224, 224, 3)`` uint8 CLIP-ready RGB crops -> ``(B, 512)`` float32."""
        ...

    def embed_audio(self, segments: np.ndarray) -> np.ndarray:
        """``(B, 48000)`` float32 mono 1-s segments at 48 kHz -> ``(B, 512)`` float32."""
        ...

    def parse(self, audio: np.ndarray, frames: np.ndarray) -> dict[str, np.ndarray]:
        """``audio (B, 10, 512)``, ``frames (B, 80, 512)`` -> the :data:`HAN_OUTPUTS` as numpy arrays."""
        ...

    def close(self) -> None:
        """Free device memory / sessions."""
        ...


class ClosesOnExit:
    """``with backend: ...`` closes it: the one ``__enter__`` / ``__exit__`` of the torch, ONNX and
    TensorRT backends (each defines ``close()``)."""

    def close(self) -> None:  # pragma: no cover - every backend defines its own
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def default_batch_sizes(device: str, runtime: str = "torch") -> dict[str, int]:
    """Per-call batch sizes that keep a device busy without exhausting its memory.

    ``images``: CLIP crops per ``embed_images`` call; ``audio``: CLAP segments per ``embed_audio``
    call (each is a 10-s HTSAT forward, ~8x a ViT-B/16 image in activations); ``windows``: HAN
    windows per ``parse`` call. GPU sizes follow the throughput plateau of a ViT-B/16 in fp16
    (~10k images/s at batch 256 on an H200). On a CPU small batches win, as the activations then
    stay in cache (2-core AMD EPYC Zen 4, idle, real-size towers): ONNX Runtime ran ViT-B/16 int8
    at 14.4 images/s at batch 4 vs 12.1 at 64 (fp32 5.25 vs 4.56) and HTSAT int8 at 15.3 segments/s
    at batch 4 vs 14.2 at 16; torch with bf16 CLIP weights peaked at batch 16 (8.4 vs 7.8 at 64).
    ``runtime``: ``torch`` or ``onnx`` (their CPU optimum differs).
    """
    if str(device).startswith("cuda"):
        return {"images": 256, "audio": 64, "windows": 1024}
    if runtime == "onnx":
        return {"images": 4, "audio": 4, "windows": 256}
    return {"images": 16, "audio": 16, "windows": 256}
