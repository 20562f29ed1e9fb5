"""Inference backends: ``create_backend("auto" | "torch" | "onnx" | "tensorrt", **options)``.

``auto`` (:mod:`lsld_engine.backends.auto`) picks one of the others for the device. All three implement :class:`lsld_engine.backends.base.Backend`. The onnx / tensorrt modules (and
their runtimes) are imported only when chosen.
"""
from __future__ import annotations

import importlib

from lsld_engine.backends.base import HAN_OUTPUTS, Backend, default_batch_sizes

#: name -> "module:class"
BACKENDS: dict[str, str] = {
    "auto": "lsld_engine.backends.auto:create_auto_backend",
    "torch": "lsld_engine.backends.torch_backend:TorchBackend",
    "onnx": "lsld_engine.backends.onnx_backend:OnnxBackend",
    "tensorrt": "lsld_engine.backends.tensorrt_backend:TensorRTBackend",
}


def create_backend(name: str, **options) -> Backend:
    """A backend by name. ``options``: ``clip_checkpoint``, ``clap_checkpoint``, ``model``, ``device``,
    ``precision``; ``engine_dir`` for onnx / tensorrt; ``random_weights`` / ``size`` for torch.
    Options a backend does not use are ignored (logged at debug level)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}")
    module, _, cls = BACKENDS[name].partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise RuntimeError(f"backend {name!r} is not available: missing module {e.name!r}") from e
    return getattr(mod, cls)(**options)


__all__ = ["BACKENDS", "Backend", "HAN_OUTPUTS", "create_backend", "default_batch_sizes"]
