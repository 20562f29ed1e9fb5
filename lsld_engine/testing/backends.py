"""A cheap, deterministic stand-in backend for testing the pipelines (not the networks).

:class:`ToyBackend` embeds images and audio with fixed random projections of coarse pixel and
loudness statistics (so different content gives different, reproducible features) and runs the
real HAN through :class:`~lsld_engine.backends.torch_backend.TorchBackend`. It follows the backend
contract and counts what it was asked to do, so tests can check batching and resume.
"""
from __future__ import annotations

import numpy as np

from lsld_engine.backends.torch_backend import TorchBackend


class ToyBackend:
    """Backend contract with toy encoders. ``model``: HAN checkpoint (or ``None``: small random HAN)."""

    name = "toy"
    device = "cpu"

    def __init__(self, model: str | None = None, dim: int = 512, seed: int = 0, **ignored):
        rng = np.random.default_rng(seed)
        self._img_proj = rng.standard_normal((4 * 4 * 3, dim)).astype(np.float32) / 8
        self._aud_proj = rng.standard_normal((32, dim)).astype(np.float32)
        self._han = TorchBackend(model=model, random_weights=model is None, size="small")
        self.batch_sizes = {"images": 64, "audio": 16, "windows": 256}
        self.calls: list[tuple[str, int]] = []  # (what, batch) of every call

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        """``(B, 224, 224, 3)`` uint8 -> ``(B, 512)``: 4x4 grid of mean colours, projected."""
        self.calls.append(("images", images.shape[0]))
        b = images.shape[0]
        grid = images.reshape(b, 4, 56, 4, 56, 3).mean(axis=(2, 4), dtype=np.float32) / 255.0
        return np.tanh(grid.reshape(b, -1) @ self._img_proj).astype(np.float32)

    def embed_audio(self, segments: np.ndarray) -> np.ndarray:
        """``(B, 48000)`` -> ``(B, 512)``: RMS of 32 chunks, projected and L2-normalised."""
        self.calls.append(("audio", segments.shape[0]))
        rms = np.sqrt((segments.reshape(segments.shape[0], 32, -1) ** 2).mean(axis=2)) + 1e-3
        x = rms @ self._aud_proj
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def parse(self, audio: np.ndarray, frames: np.ndarray) -> dict[str, np.ndarray]:
        self.calls.append(("windows", audio.shape[0]))
        return self._han.parse(audio, frames)

    def close(self) -> None:
        self._han.close()
