"""TensorRT engine files: availability, cache names keyed by GPU / TensorRT / ONNX digest, batch buckets.

Shared by the runtime (:mod:`lsld_engine.backends.tensorrt_backend`) and the builder
(:mod:`export.tensorrt_build`). Engines live in ``<engine_dir>/tensorrt/`` under names keyed by
everything that invalidates them: network, precision, GPU name, compute capability, TensorRT version
and the ONNX file's sha256 prefix, e.g. ``han.fp16.nvidia-h100-80gb-hbm3.sm90.trt10.7.0.3f9a1c2b4d5e.engine``.
One timing cache per GPU + TensorRT version (``timing.<gpu>.sm<cc>.trt<ver>.cache``) is shared by all builds.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from lsld_engine.files import file_digest
from lsld_engine.registry import onnx_filename

#: Largest batch of each engine's optimisation profile (CLIP: 80 frames per clip, 3 clips).
DEFAULT_MAX_BATCH = {"clip_image": 256, "clap_audio": 64, "han": 1024}


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: tuple[int, int]

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


def tensorrt_status() -> tuple[bool, str]:
    """``(True, version)`` when ``tensorrt`` imports and a CUDA GPU is visible, else ``(False, why)``."""
    try:
        import tensorrt as trt
    except ImportError:
        return False, ("TensorRT is not installed (pip install tensorrt from NVIDIA's index: "
                       "pip install --extra-index-url https://pypi.nvidia.com tensorrt); skipping engine builds")
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA GPU visible; TensorRT engines are built on the GPU that will run them"
    return True, trt.__version__


def current_gpu(device: int = 0) -> GpuInfo:
    import torch

    return GpuInfo(torch.cuda.get_device_name(device), tuple(torch.cuda.get_device_capability(device)))


def engine_filename(network: str, precision: str, gpu: GpuInfo, trt_version: str, onnx_digest: str) -> str:
    """Cache key of an engine: a file built for another GPU, TensorRT or ONNX file is never reused."""
    cc = "".join(map(str, gpu.compute_capability))
    return f"{network}.{precision}.{gpu.slug}.sm{cc}.trt{trt_version}.{onnx_digest[:12]}.engine"


def timing_cache_filename(gpu: GpuInfo, trt_version: str) -> str:
    cc = "".join(map(str, gpu.compute_capability))
    return f"timing.{gpu.slug}.sm{cc}.trt{trt_version}.cache"


def batch_buckets(max_batch: int) -> list[int]:
    """Batch sizes actually run: powers of two up to ``max_batch``, and ``max_batch`` itself. Padding to
    a few sizes keeps the kernels TensorRT picked for them (and any CUDA graph) reusable."""
    sizes, b = [], 1
    while b < max_batch:
        sizes.append(b)
        b *= 2
    return sizes + [max_batch]


def padded_batch(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket ``>= n`` (``n`` must not exceed the largest)."""
    for b in buckets:
        if b >= n:
            return b
    raise ValueError(f"batch {n} exceeds the engine's largest profile batch {buckets[-1]}")


def onnx_for(engine_dir: Path, network: str, precision: str) -> Path:
    path = Path(engine_dir) / onnx_filename(network, precision)
    if not path.is_file():
        flag = " --fp16" if precision == "fp16" else ""
        raise FileNotFoundError(f"{path} not found: export it first (`lsld-engine export --networks {network}{flag} "
                                f"--out {engine_dir}`)")
    return path


def engine_path(engine_dir: str | os.PathLike, network: str, precision: str) -> Path:
    """Where the engine for this GPU / TensorRT / ONNX file lives (built or not)."""
    import tensorrt as trt

    src = onnx_for(Path(engine_dir), network, precision)
    return Path(engine_dir) / "tensorrt" / engine_filename(network, precision, current_gpu(), trt.__version__,
                                                           file_digest(src))
