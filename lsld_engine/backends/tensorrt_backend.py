"""The ``tensorrt`` inference backend: native TensorRT engines (TensorRT 10 API).

NOT RUN HERE: neither our development machines nor the lent GPU machine have TensorRT; this follows
the documented API and its pure-Python parts are unit-tested. Engines come from
``export.tensorrt_build`` (``lsld-engine export --tensorrt``); a missing one is built on first use
when the caller passes the builder (``build_missing``, as the ``lsld-engine`` commands do), so the
library never imports ``export``.

Execution: per network one engine, one execution context, one CUDA stream and device buffers
(torch CUDA tensors) allocated once at the profile's largest batch. A call copies its inputs into
the buffers, pads the batch to the next size in :func:`~lsld_engine.backends.tensorrt_engines.batch_buckets` (rows are
independent, so padded rows never change real ones), runs ``execute_async_v3`` on the stream and
copies the real rows back.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from lsld_engine.backends.base import ClosesOnExit
from lsld_engine.backends.tensorrt_engines import (DEFAULT_MAX_BATCH, batch_buckets, current_gpu, engine_path,
                                                   onnx_for, padded_batch, tensorrt_status, timing_cache_filename)

log = logging.getLogger(__name__)


def require_tensorrt() -> None:
    ok, why = tensorrt_status()
    if not ok:
        raise RuntimeError(f"the tensorrt backend is unavailable: {why}. Use --backend onnx or torch.")


class _Engine:
    """One deserialised engine with its context, stream and pre-allocated device buffers."""

    def __init__(self, path: Path, device: "torch.device"):  # noqa: F821
        import tensorrt as trt
        import torch

        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{path}: TensorRT could not deserialise this engine (built by another "
                               f"TensorRT version or GPU?); delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(device=device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.max_batch = int(self.engine.get_tensor_profile_shape(self.inputs[0], 0)[2][0])
        self.buckets = batch_buckets(self.max_batch)
        self.shapes = {n: tuple(self.engine.get_tensor_shape(n))[1:] for n in names}
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.uint8: torch.uint8,
                  trt.int32: torch.int32, trt.int64: torch.int64, trt.bool: torch.bool}
        self.buffers = {n: torch.empty((self.max_batch, *self.shapes[n]),
                                       dtype=dtypes[self.engine.get_tensor_dtype(n)], device=device)
                        for n in names}
        for n, buf in self.buffers.items():
            self.context.set_tensor_address(n, buf.data_ptr())

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch

        n = arrays[0].shape[0]
        parts: list[list[np.ndarray]] = []
        for s in range(0, n, self.max_batch):
            chunk = [a[s:s + self.max_batch] for a in arrays]
            k = chunk[0].shape[0]
            b = padded_batch(k, self.buckets)
            with torch.cuda.stream(self.stream):
                for name, a in zip(self.inputs, chunk):
                    src = torch.from_numpy(np.ascontiguousarray(a)).pin_memory()
                    self.buffers[name][:k].copy_(src, non_blocking=True)
                    self.context.set_input_shape(name, (b, *self.shapes[name]))
                if not self.context.execute_async_v3(self.stream.cuda_stream):
                    raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
                outs = [self.buffers[name][:k].float().cpu() for name in self.outputs]
            self.stream.synchronize()
            parts.append([o.numpy() for o in outs])
        return [np.concatenate(p) if len(p) > 1 else p[0] for p in zip(*parts)]


class TensorRTBackend(ClosesOnExit):
    """TensorRT implementation of the backend contract (see ``docs/CONTRACTS.md``).

    ``engine_dir``: the folder of ``lsld-engine export`` (ONNX files; engines cached under
    ``tensorrt/``). ``precision``: ``fp16`` (default) or ``fp32``. Checkpoint options are accepted
    and unused: the weights are those of the exported files. ``build_missing``: the engine builder
    (:func:`export.tensorrt_build.build_engine`) for engines not built yet; without it a missing
    engine is an error that says how to build it."""

    name = "tensorrt"

    def __init__(self, *, engine_dir: str | os.PathLike | None = None, device: str = "cuda",
                 precision: str = "fp16", clip_checkpoint: str | None = None, clap_checkpoint: str | None = None,
                 model: str | None = None, batch_sizes: dict[str, int] | None = None,
                 build_missing: Callable[..., Path] | None = None, **ignored):
        require_tensorrt()
        import torch

        if engine_dir is None:
            raise ValueError("the tensorrt backend needs engine_dir (create it with "
                             "`lsld-engine export --tensorrt --out DIR`)")
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"the tensorrt backend supports precision fp16 or fp32, not {precision!r}")
        if not str(device).startswith("cuda"):
            raise ValueError(f"the tensorrt backend runs on CUDA devices only, not {device!r}")
        self.engine_dir = Path(engine_dir).expanduser()
        self.device = str(device)
        self._torch_device = torch.device(self.device)
        self.precision = precision
        from lsld_engine.backends.onnx_backend import BATCH_KEYS

        # batch_sizes (images/audio/windows) set the profile of engines built here; existing
        # engines keep the profile they were built with
        self.max_batch = {**DEFAULT_MAX_BATCH,
                          **{BATCH_KEYS[k]: int(v) for k, v in (batch_sizes or {}).items() if k in BATCH_KEYS}}
        self._engines: dict[str, _Engine] = {}
        self._build_missing = build_missing

    def engine(self, network: str) -> _Engine:
        e = self._engines.get(network)
        if e is None:
            import tensorrt as trt

            path = engine_path(self.engine_dir, network, self.precision)
            if not path.is_file():
                if self._build_missing is None:
                    raise FileNotFoundError(f"TensorRT engine {path} not built yet: build it with `lsld-engine "
                                            f"export --tensorrt --out {self.engine_dir}`")
                log.warning("TensorRT engine %s missing: building it now (minutes; cached afterwards)", path.name)
                timing = path.parent / timing_cache_filename(current_gpu(), trt.__version__)
                self._build_missing(onnx_for(self.engine_dir, network, self.precision), path,
                             max_batch=self.max_batch[network], timing_cache=timing)
            e = self._engines[network] = _Engine(path, self._torch_device)
        return e

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        """``(B, 224, 224, 3)`` uint8 -> ``(B, 512)`` float32."""
        images = np.asarray(images)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images must be (B, 224, 224, 3) uint8, got {images.shape} {images.dtype}")
        return self.engine("clip_image").run([images])[0]

    def embed_audio(self, segments: np.ndarray) -> np.ndarray:
        """``(B, 48000)`` float32 -> ``(B, 512)`` float32."""
        return self.engine("clap_audio").run([np.asarray(segments, dtype=np.float32)])[0]

    def parse(self, audio: np.ndarray, frames: np.ndarray) -> dict[str, np.ndarray]:
        """``audio (B, 10, 512)``, ``frames (B, 80, 512)`` -> ``seg_prob``, ``a_prob``, ``v_prob``, ``global_prob``."""
        e = self.engine("han")
        outs = e.run([np.asarray(audio, dtype=np.float32), np.asarray(frames, dtype=np.float32)])
        return dict(zip(e.outputs, outs))

    def close(self) -> None:
        self._engines.clear()
