"""The TensorRT engine builder: engines from the exported ONNX files (TensorRT 10 Python API).

NOT RUN HERE: TensorRT is not installable on our machines (its wheels come from NVIDIA's index) and
the lent GPU machine has none either. The builder follows the documented TensorRT 10 API and avoids
what TensorRT 11 removed: networks are *strongly typed* (no ``BuilderFlag.FP16``); an fp16 engine is
built from the fp16 ONNX file (``<network>.fp16.onnx``), whose casts fix every tensor's type.

Engine file names (the cache keys), batch buckets and the availability check are the runtime's
(:mod:`lsld_engine.backends.tensorrt_engines`); this module only builds.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

# The engine files, their cache names and batch buckets are shared with the runtime (re-exported).
from lsld_engine.backends.tensorrt_engines import (DEFAULT_MAX_BATCH, GpuInfo, batch_buckets,  # noqa: F401
                                                   current_gpu, engine_filename, engine_path, onnx_for,
                                                   padded_batch, tensorrt_status, timing_cache_filename)
from lsld_engine.files import atomic_path

log = logging.getLogger(__name__)

WORKSPACE_BYTES = 4 << 30


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
    with atomic_path(out_path) as tmp:  # a crashed build never leaves a truncated engine in the cache
        tmp.write_bytes(bytes(serialized))
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
