"""Device, precision and batching shared by the encoder towers."""
from __future__ import annotations

import contextlib
import json
from importlib import resources
from typing import Callable, Iterator

import numpy as np
import torch

PRECISIONS = ("fp32", "fp16", "bf16")
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"cpu"`` -> CPU (the default); ``"cuda"``/``"cuda:N"`` must be available."""
    dev = torch.device(device or "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
    return dev


def check_precision(precision: str, device: torch.device) -> str:
    """Validate ``precision`` for ``device``: fp32 anywhere, bf16 anywhere, fp16 on CUDA only."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision='fp16' needs a CUDA device (CPU fp16 matmuls are slow and lossy); "
                         "use 'fp32' or 'bf16' on CPU")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed-precision context for ``precision`` (weights stay fp32; a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])


def full_precision(device_type: str) -> contextlib.AbstractContextManager:
    """Turn autocast off inside (front ends whose values overflow fp16, e.g. power spectra)."""
    return torch.autocast(device_type=device_type, enabled=False)


def load_config(name: str) -> dict:
    """A packaged JSON config ``lsld_engine/configs/<name>.json``."""
    path = resources.files("lsld_engine") / "configs" / f"{name}.json"
    if not path.is_file():
        known = sorted(p.name[:-5] for p in (resources.files("lsld_engine") / "configs").iterdir()
                       if p.name.endswith(".json"))
        raise KeyError(f"unknown encoder config {name!r}; known: {', '.join(known)}")
    return json.loads(path.read_text())


def batched_numpy(fn: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray | torch.Tensor,
                  batch_size: int, device: torch.device, precision: str) -> np.ndarray:
    """Run ``fn`` over ``x`` in chunks of ``batch_size`` (first axis) -> float32 numpy ``(N, D)``."""
    x = torch.as_tensor(x)
    outs: list[np.ndarray] = []
    with torch.inference_mode(), autocast(device, precision):
        for chunk in _chunks(x, batch_size):
            outs.append(fn(chunk.to(device, non_blocking=True)).float().cpu().numpy())
    if not outs:
        raise ValueError("no inputs to encode (empty batch)")
    return np.concatenate(outs, axis=0)


def _chunks(x: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    for i in range(0, x.shape[0], size):
        yield x[i:i + size]
