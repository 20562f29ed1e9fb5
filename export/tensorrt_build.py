"""TensorRT engines from the exported ONNX files (TensorRT 10 Python API).

NOT RUN HERE: TensorRT is not installable on our machines (its wheels come from NVIDIA's index) and
the lent GPU machine has none either. The builder follows the documented TensorRT 10 API and avoids
what TensorRT 11 removed: networks are *strongly typed* (no ``BuilderFlag.FP16``); an fp16 engine is
built from the fp16 ONNX file (``<network>.fp16.onnx``), whose casts fix every tensor's type.

Engines are cached in ``<engine_dir>/tensorrt/`` under names keyed by everything that invalidates them:
network, precision, GPU name, compute capability, TensorRT version and the ONNX file's sha256 prefix,
e.g. ``han.fp16.nvidia-h100-80gb-hbm3.sm90.trt10.7.0.3f9a1c2b4d5e.engine``. One timing cache per
GPU + TensorRT version (``timing.<gpu>.sm<cc>.trt<ver>.cache``) is shared by all builds.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

#: Largest batch of each engine's optimisation profile (CLIP: 80 frames per clip, 3 clips).
DEFAULT_MAX_BATCH = {"clip_image": 256, "clap_audio": 64, "han": 1024}
WORKSPACE_BYTES = 4 << 30


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


def profile_shapes(shape: Sequence[int], max_batch: int, opt_batch: int | None = None,
                   min_batch: int = 1) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """``(min, opt, max)`` shapes for an input whose axis 0 is dynamic (``-1`` or a name); the other
    axes must be fixed. ``opt`` defaults to ``max``: we run full batches for throughput."""
    rest = tuple(shape[1:])
    if any(not isinstance(d, int) or d < 1 for d in rest):
        raise ValueError(f"only the batch axis may be dynamic, got shape {tuple(shape)}")
    opt = max_batch if opt_batch is None else opt_batch
    if not 1 <= min_batch <= opt <= max_batch:
        raise ValueError(f"need 1 <= min <= opt <= max batch, got {min_batch}, {opt}, {max_batch}")
    return (min_batch, *rest), (opt, *rest), (max_batch, *rest)


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
    from export.onnx_export import onnx_filename

    path = Path(engine_dir) / onnx_filename(network, precision)
    if not path.is_file():
        flag = " --fp16" if precision == "fp16" else ""
        raise FileNotFoundError(f"{path} not found: export it first (`lsld-engine export --networks {network}{flag} "
                                f"--out {engine_dir}`)")
    return path


def engine_path(engine_dir: str | os.PathLike, network: str, precision: str) -> Path:
    """Where the engine for this GPU / TensorRT / ONNX file lives (built or not)."""
    import tensorrt as trt

    from export.onnx_export import file_digest

    src = onnx_for(Path(engine_dir), network, precision)
    return Path(engine_dir) / "tensorrt" / engine_filename(network, precision, current_gpu(), trt.__version__,
                                                           file_digest(src))


def build_engine(onnx_path: Path, out_path: Path, *, max_batch: int, timing_cache: Path | None = None,
                 workspace_bytes: int = WORKSPACE_BYTES) -> Path:
    """Parse ``onnx_path`` into a strongly typed network with one ``[1, max_batch]`` profile and
    serialise the engine to ``out_path`` (the timing cache is read and updated)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        profile.set_shape(inp.name, *profile_shapes(tuple(inp.shape), max_batch))
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(out_path)  # atomic: a crashed build never leaves a truncated engine in the cache
    if timing_cache is not None:
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return out_path


def build_engines(engine_dir: str | os.PathLike, networks: Sequence[str], precision: str = "fp16", *,
                  max_batch: dict[str, int] | None = None, force: bool = False) -> list[Path]:
    """Build (or reuse from the cache) one engine per network; returns their paths, or ``[]`` after
    logging why when TensorRT or a GPU is absent."""
    ok, why = tensorrt_status()
    if not ok:
        log.warning("TensorRT: %s", why)
        return []
    import tensorrt as trt

    engine_dir = Path(engine_dir)
    sizes = {**DEFAULT_MAX_BATCH, **(max_batch or {})}
    gpu = current_gpu()
    timing = engine_dir / "tensorrt" / timing_cache_filename(gpu, trt.__version__)
    out = []
    for net in networks:
        src = onnx_for(engine_dir, net, precision)
        dst = engine_path(engine_dir, net, precision)
        if dst.is_file() and not force:
            log.info("TensorRT: reusing %s", dst)
        else:
            log.info("TensorRT: building %s from %s (max batch %d; minutes)", dst.name, src.name, sizes[net])
            build_engine(src, dst, max_batch=sizes[net], timing_cache=timing)
        out.append(dst)
    return out
