"""``--backend auto`` (the default of ``parse``, ``extract`` and the Ray actors): the fastest backend
this machine has, chosen in one place.

Rules (:func:`choose`), in order:

1. ``engine_dir`` given: the exported files there win — ``tensorrt`` on CUDA when TensorRT is
   installed, else ``onnx``.
2. CUDA device: ``tensorrt`` would need an engine folder, so without ``--engine-dir`` the GPU keeps
   today's path, ``torch`` (fp16 autocast).
3. CPU with native bf16 (AVX512-BF16 / AMX), no ``--precision`` given: ``torch`` with each tower
   in the precision that measured fastest (:func:`lsld_engine.hardware.cpu_tower_precision`): CLIP
   with bf16 weights ran 2.0x eager fp32 and 1.9x ONNX Runtime fp32 (which sits at the CPU's
   nominal fp32 peak, so no fp32 runtime can go much further), cosine to fp32 >= 0.9999 on random
   weights (``bench/cpu_towers_bench.py``, ``bench/auto_bench.py``).
4. CPU, ``--precision fp32`` (or no native bf16) or ``int8``: ``onnx`` — ONNX Runtime over the
   export cache (:mod:`lsld_engine.exporting.cache`): files made on first use, reused afterwards.
   ONNX Runtime fp32 ran CLIP ViT-B/16 1.2-2.3x and CLAP HTSAT 1.6-2.4x eager torch fp32, depending
   on the CPU (``BENCHMARKS.md``, ``bench/cpu_towers_bench.py``); int8 is the int8 engine built from those files.
5. CPU, bf16 asked for (or onnxruntime missing): ``torch`` — ONNX Runtime's CPU provider has no
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
from lsld_engine.registry import onnx_filename as network_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutoChoice:
    """What ``auto`` runs: ``backend`` (``torch`` / ``onnx`` / ``tensorrt``), ``precision``, and why."""

    backend: str
    device: str
    precision: str
    reason: str
    cached: bool = False  # onnx over the export cache (no --engine-dir)
    per_tower: bool = False  # torch with each tower in its fastest precision (no --precision given)

    def describe(self) -> str:
        where = " (export cache)" if self.cached else ""
        prec = "bf16/fp32 per tower" if self.per_tower else self.precision
        return f"{self.backend}{where} {prec} on {self.device}: {self.reason}"


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def tensorrt_ready() -> tuple[bool, str]:
    """``(usable, why)`` of TensorRT (installed and a GPU visible)."""
    from lsld_engine.backends.tensorrt_engines import tensorrt_status

    return tensorrt_status()


def choose(device: str = "cpu", precision: str | None = None, *, engine_dir: str | os.PathLike | None = None,
           auto_precision: bool | None = None) -> AutoChoice:
    """The backend ``auto`` runs on ``device`` for ``precision`` (``None``: the device's default).
    ``auto_precision``: the user gave no ``--precision`` (default: ``precision is None``)."""
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
    if (precision is None if auto_precision is None else auto_precision) and prec == "fp32":
        from lsld_engine.hardware import cpu_bf16_support, cpu_tower_precision

        native, why = cpu_bf16_support()
        clip, clip_why = cpu_tower_precision("clip_image")
        if native and clip == "bf16":
            return AutoChoice("torch", device, "fp32", f"CPU with native bf16 ({why}), no --precision: towers in bf16 "
                              f"where faster ({clip_why}); --precision fp32 runs ONNX Runtime fp32", per_tower=True)
    if not _have("onnxruntime") or not _have("onnx"):
        return AutoChoice("torch", device, prec, "onnxruntime / onnx are not installed (pip install "
                                                 "'lsld-engine[export]')")
    if prec in ("fp32", "int8"):
        return AutoChoice("onnx", device, prec, "CPU: ONNX Runtime runs the towers ~2.3-2.5x faster than eager "
                                               "torch (bench/auto_bench.py, BENCHMARKS.md)", cached=True)
    return AutoChoice("torch", device, prec, f"CPU {prec}: ONNX Runtime has no fast {prec} path on CPU")


def resolve(backend: str, options: dict) -> tuple[str, AutoChoice | None]:
    """``(backend to create, choice)``: ``auto`` resolved for ``options`` (``device``, ``precision``,
    ``engine_dir``), any other name passed through with ``None``."""
    if backend != "auto":
        return backend, None
    c = choose(options.get("device") or "cpu", options.get("precision"), engine_dir=options.get("engine_dir"),
               auto_precision=bool(options.get("auto_precision")))
    return ("auto" if c.cached else c.backend), c


def create_auto_backend(**options):
    """The backend :func:`choose` picks for ``options`` (the ``create_backend`` options)."""
    from lsld_engine.backends import create_backend

    c = choose(options.get("device") or "cpu", options.get("precision"), engine_dir=options.get("engine_dir"),
               auto_precision=bool(options.get("auto_precision")))
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
    :func:`~lsld_engine.exporting.cache.cache_root`). ``precision``: ``fp32`` or ``int8``: the towers
    then come from the cached int8 engine (:func:`lsld_engine.exporting.cache.ensure_int8`, built on
    first use with its fidelity report), which must pass its gate unless ``force_int8``; the HAN
    stays fp32."""

    name = "onnx"

    def __init__(self, *, cache_dir: str | os.PathLike | None = None, random_weights: bool = False,
                 size: str = "real", precision: str = "fp32", engine_dir=None, force_int8: bool = False,
                 **options):
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
        self.force_int8 = force_int8
        #: the int8 engine folder once a tower was loaded from it (the summary names its report)
        self.int8_dir: Path | None = None
        #: network -> seconds its first-use export took in this process (0: reused)
        self.export_seconds: dict[str, float] = {}
        self._paths: dict[str, Path] = {}

    def path(self, network: str, unloadable: str | None = None) -> Path:
        """The cached file of ``network`` (made, checked against its sha256, or rebuilt: ``ensure``);
        ``unloadable``: why the file found before failed to load (its entry is then rebuilt)."""
        from lsld_engine.exporting.cache import ensure, spec_for

        if self.precision == "int8" and network != "han":
            return self._int8_engine() / network_file(network)
        if unloadable is None and network in self._paths:
            return self._paths[network]  # hashed once per process, not on every session lookup
        res = ensure(spec_for(network, self._spec_options), self.cache_dir, unloadable=unloadable)
        self.export_seconds.setdefault(network, res.seconds)
        self._paths[network] = res.path
        return res.path

    def session(self, network: str):
        """The session of ``network``; a cached fp32 file that fails to load (a damaged file whose
        sha256 still matches, e.g. damaged before it was recorded) has its entry rebuilt once."""
        from lsld_engine.errors import LsldError
        from lsld_engine.exporting import integrity
        from lsld_engine.exporting.cache import ExportCacheError

        if network in self._sessions or (self.precision == "int8" and network != "han"):
            return super().session(network)
        path = self.path(network)  # its own errors (weights, cache folder, rebuilds) pass through
        try:
            return super().session(network)
        except LsldError:
            raise
        except Exception as e:  # protobuf DecodeError, onnxruntime's load errors, wrong inputs
            self.path(network, unloadable=integrity.short(e))
        try:
            return super().session(network)
        except LsldError:
            raise
        except Exception as e:
            raise ExportCacheError(f"export cache file {path} cannot be loaded even after rebuilding it "
                                   f"({integrity.short(e)}): remove the entry with `rm -r {path.parent}` "
                                   "and run again") from None

    def _int8_engine(self) -> Path:
        """The cached int8 engine of the towers (+ the HAN when its weights are known), gate checked."""
        if self.int8_dir is None:
            from lsld_engine.backends.int8_report import check_folder
            from lsld_engine.exporting.cache import ensure_int8, spec_for

            nets = ["clip_image", "clap_audio"]
            if self._spec_options.get("model") or self._spec_options.get("random_weights"):
                nets.append("han")  # the report's HAN and event rows need it
            res = ensure_int8([spec_for(n, self._spec_options) for n in nets], self.cache_dir)
            self.export_seconds.setdefault("int8", res.seconds)
            check_folder(res.path, force=self.force_int8)
            self.int8_dir = res.path
        return self.int8_dir

    def warm_up(self, networks=("clip_image", "clap_audio", "han")) -> None:
        """Export (first use) and load ``networks`` now, before any video is decoded."""
        for n in networks:
            self.session(n)
