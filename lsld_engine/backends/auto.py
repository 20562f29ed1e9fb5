"""``--backend auto`` (the default of ``parse``, ``extract`` and the Ray actors): the fastest backend
this machine has, chosen in one place.

Rules (:func:`choose`), in order:

1. ``engine_dir`` given: the exported files there win — ``tensorrt`` on CUDA when TensorRT is
   installed, else ``onnx``.
2. CUDA device: ``tensorrt`` would need an engine folder, so without ``--engine-dir`` the GPU keeps
   today's path, ``torch`` (fp16 autocast).
3. CPU, precision fp32 (the default) or int8: ``onnx`` — ONNX Runtime over the export cache
   (:mod:`lsld_engine.exporting.cache`): files made on first use, reused afterwards. ONNX Runtime
   fp32 ran CLIP ViT-B/16 2.3x and CLAP HTSAT 2.4x faster than eager torch fp32 on the 2-core dev CPU
   (issue 21's table; ``bench/auto_bench.py`` measures it end to end).
4. CPU, bf16 asked for (or onnxruntime missing): ``torch`` — ONNX Runtime's CPU provider has no
   fast bf16 path.

:func:`create_auto_backend` is what ``create_backend("auto", **options)`` calls, so a Ray actor that
gets ``backend="auto"`` decides on its own device, like a single machine does.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from lsld_engine.backends.onnx_backend import OnnxBackend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutoChoice:
    """What ``auto`` runs: ``backend`` (``torch`` / ``onnx`` / ``tensorrt``), ``precision``, and why."""

    backend: str
    device: str
    precision: str
    reason: str
    cached: bool = False  # onnx over the export cache (no --engine-dir)

    def describe(self) -> str:
        where = " (export cache)" if self.cached else ""
        return f"{self.backend}{where} {self.precision} on {self.device}: {self.reason}"


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def tensorrt_ready() -> tuple[bool, str]:
    """``(usable, why)`` of TensorRT (installed and a GPU visible)."""
    from lsld_engine.backends.tensorrt_engines import tensorrt_status

    return tensorrt_status()


def choose(device: str = "cpu", precision: str | None = None, *, engine_dir: str | os.PathLike | None = None
           ) -> AutoChoice:
    """The backend ``auto`` runs on ``device`` for ``precision`` (``None``: the device's default)."""
    device = str(device or "cpu")
    on_cuda = device.startswith("cuda")
    if engine_dir:
        if on_cuda:
            ok, why = tensorrt_ready()
            if ok:
                return AutoChoice("tensorrt", device, precision or "fp16", "--engine-dir given and TensorRT is installed")
            return AutoChoice("onnx", device, precision or "fp32", f"--engine-dir given; TensorRT: {why}")
        return AutoChoice("onnx", device, precision or "fp32", "--engine-dir given: its exported files are run")
    if on_cuda:
        ok, why = tensorrt_ready()
        extra = "TensorRT needs --engine-dir (lsld-engine export --tensorrt)" if ok else f"TensorRT: {why}"
        return AutoChoice("torch", device, precision or "fp16", f"CUDA keeps the torch path; {extra}")
    prec = precision or "fp32"
    if not _have("onnxruntime") or not _have("onnx"):
        return AutoChoice("torch", device, prec, "onnxruntime / onnx are not installed (pip install "
                                                 "'lsld-engine[export]')")
    if prec in ("fp32", "int8"):
        return AutoChoice("onnx", device, prec, "CPU: ONNX Runtime runs the towers ~2.3-2.5x faster than eager "
                                               "torch (issue 21; bench/auto_bench.py)", cached=True)
    return AutoChoice("torch", device, prec, f"CPU {prec}: ONNX Runtime has no fast {prec} path on CPU")


def resolve(backend: str, options: dict) -> tuple[str, AutoChoice | None]:
    """``(backend to create, choice)``: ``auto`` resolved for ``options`` (``device``, ``precision``,
    ``engine_dir``), any other name passed through with ``None``."""
    if backend != "auto":
        return backend, None
    c = choose(options.get("device") or "cpu", options.get("precision"), engine_dir=options.get("engine_dir"))
    return ("auto" if c.cached else c.backend), c


def create_auto_backend(**options):
    """The backend :func:`choose` picks for ``options`` (the ``create_backend`` options)."""
    from lsld_engine.backends import create_backend

    c = choose(options.get("device") or "cpu", options.get("precision"), engine_dir=options.get("engine_dir"))
    log.info("backend auto -> %s", c.describe())
    options = {**options, "device": c.device, "precision": c.precision}
    if c.cached:
        return CachedOnnxBackend(**options)
    return create_backend(c.backend, **options)


class CachedOnnxBackend(OnnxBackend):
    """ONNX Runtime over the export cache: each network's file is made on its first use
    (:func:`lsld_engine.exporting.cache.ensure`) and loaded from the cache afterwards.

    Options: those of :class:`~lsld_engine.backends.onnx_backend.OnnxBackend` without ``engine_dir``,
    plus ``random_weights``, ``size`` (as the torch backend) and ``cache_dir`` (default
    :func:`~lsld_engine.exporting.cache.cache_root`). ``precision``: ``fp32`` or ``int8``."""

    name = "onnx"

    def __init__(self, *, cache_dir: str | os.PathLike | None = None, random_weights: bool = False,
                 size: str = "real", precision: str = "fp32", engine_dir=None, **options):
        from lsld_engine.exporting.cache import PRECISIONS, ExportCacheError, cache_root

        if precision not in PRECISIONS:
            raise ValueError(f"the export cache holds {' / '.join(PRECISIONS)} files, not {precision!r}")
        self.cache_dir = Path(cache_dir or cache_root()).expanduser()
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ExportCacheError(f"export cache {self.cache_dir}: {e.strerror} (set LSLD_CACHE to a writable "
                                   "folder, or pass --engine-dir)") from None
        self._spec_options = {k: options.get(k) for k in ("clip_checkpoint", "clap_checkpoint", "model")}
        self._spec_options.update(random_weights=random_weights, size=size)
        # the session options of int8 files are fp32's (only fp16 needs other graph optimisations)
        super().__init__(engine_dir=self.cache_dir, precision="fp32", **options)
        self.precision = precision
        #: network -> seconds its first-use export took in this process (0: reused)
        self.export_seconds: dict[str, float] = {}

    def path(self, network: str) -> Path:
        from lsld_engine.exporting.cache import ensure, spec_for

        res = ensure(spec_for(network, self._spec_options, self.precision), self.cache_dir)
        self.export_seconds.setdefault(network, res.seconds)
        return res.path

    def warm_up(self, networks=("clip_image", "clap_audio", "han")) -> None:
        """Export (first use) and load ``networks`` now, before any video is decoded."""
        for n in networks:
            self.session(n)
