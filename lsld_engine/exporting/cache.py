"""The export cache of ``--backend auto``: ONNX files made on first use, reused by later runs.

Layout (``$LSLD_CACHE``, default ``~/.cache/lsld-engine/``)::

    onnx/<network>-fp32-<key>/              one finished fp32 entry (never changed once complete)
        <network>.onnx
        manifest.json                      names, shapes, source, parity (lsld_engine.exporting.folder)
        COMPLETE                           the key's fields and each file's sha256: written last
    onnx/int8-<key>/                        one int8 engine: the towers of the fp32 entries it was
        clip_image.onnx, clap_audio.onnx   made from, quantized (int8 inside, fp32 names), han.onnx
        han.onnx (when the HAN is known)   copied, fidelity.json (its report and gate), manifest.json,
        fidelity.json, manifest.json       COMPLETE
    onnx/.locks/<entry>.lock               one flock per entry: two processes export it once
    onnx/.tmp-<entry>-<pid>-<n>/           an export in progress (removed or renamed into place)

The key (:meth:`ExportSpec.fields`) is a digest of everything that changes the file: the network,
the checkpoint's sha256 (or the random-weights seed), the architecture size, the ONNX opset, the
export batch and dynamic axis, the precision, and the versions of torch, onnx, onnxruntime and
lsld-engine. A changed checkpoint gives another key, so another entry; old entries stay until the
folder is cleared (``rm -r``, any time no run is using it).

Crash safety: an entry is built in a temporary folder and renamed into place in one ``rename`` after
its ``COMPLETE`` marker (with each file's sha256) is written; a reader loads only folders that have
the marker, and an fp32 file only when its sha256 matches (:mod:`lsld_engine.exporting.integrity`;
else the entry is rebuilt once). A killed export leaves a temporary folder that the next exporter of
that entry removes (it holds the entry's lock). A full disk removes the temporary folder and raises
one line naming the cache.

Parity against PyTorch (:mod:`lsld_engine.exporting.parity`, batch sizes 1 and 3) is checked once,
when the entry is made; an entry that fails it is not cached.

int8 (:func:`ensure_int8`): the fp32 entries of the towers (and of the HAN when its weights are
known) are made or reused first; :data:`QUANTIZE_FUNCTION` then builds one int8 engine from them,
with the fidelity report the gate reads when a backend loads it (``backends.int8_report``). The
engine is kept even when it is below the gate (the measurement would not change on a rebuild), so
``--force-int8`` can load it later; a loader refuses it otherwise.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import itertools
import json
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from lsld_engine.errors import LsldError
from lsld_engine.backends.random_weights import RANDOM_SEED
from lsld_engine.exporting import integrity
from lsld_engine.exporting.integrity import MARKER
from lsld_engine.records.outputs import is_disk_full

log = logging.getLogger(__name__)

#: Bump when the layout or the meaning of an entry changes (old entries are then ignored).
CACHE_FORMAT: int = 1
#: Precisions an entry can have (fp16 stays an explicit `lsld-engine export --fp16` file).
PRECISIONS: tuple[str, ...] = ("fp32", "int8")
#: ``"module:function"`` that makes an int8 engine folder from an fp32 one:
#: ``quantize_folder(src_dir: Path, dst_dir: Path, *, force: bool)`` writes ``dst_dir`` whole (int8
#: towers under the fp32 file names, the HAN copied, ``fidelity.json``, ``manifest.json``) from the
#: fp32 files ``src_dir/<network>.onnx``. Imported only when int8 is asked for.
QUANTIZE_FUNCTION: str = "lsld_engine.backends.quantize:quantize_folder"
#: How the cached int8 engines are made (part of their key): dynamic int8, report on generated clips.
INT8_SETTINGS: dict = {"method": "dynamic", "calibration": "generated"}
#: Fault injection for the crash tests: ``LSLD_EXPORT_FAULT=kill`` makes the exporting process
#: SIGKILL itself after the ONNX file is written, before the entry is complete.
FAULT_ENV: str = "LSLD_EXPORT_FAULT"

_tmp_counter = itertools.count()


class ExportCacheError(LsldError, RuntimeError):
    """An entry could not be made (parity failed, int8 unavailable, the cache folder not writable)."""


def cache_root() -> Path:
    """``$LSLD_CACHE``, else ``~/.cache/lsld-engine`` (``$XDG_CACHE_HOME/lsld-engine`` when set)."""
    env = os.environ.get("LSLD_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lsld-engine"


def runtime_versions() -> dict[str, str]:
    """The versions that shape an exported file or the way it is run."""
    import onnx
    import onnxruntime
    import torch

    import lsld_engine

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "lsld_engine": lsld_engine.__version__}


@functools.lru_cache(maxsize=64)
def _digest_cached(path: str, size: int, mtime_ns: int) -> str:
    from lsld_engine.files import file_digest

    return file_digest(path)


def checkpoint_digest(path: str | os.PathLike) -> str:
    """sha256 of a checkpoint file (memoised per process on path, size and mtime)."""
    p = Path(path).expanduser().resolve()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {path}") from None
    return _digest_cached(str(p), st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class ExportSpec:
    """What one cache entry holds: ``network`` from ``checkpoint`` (``None``: random weights of
    ``seed``), ``size`` ``"real"``/``"small"``, at ``opset`` and ``precision``."""

    network: str
    checkpoint: str | None = None
    size: str = "real"
    seed: int = RANDOM_SEED
    opset: int | None = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        from lsld_engine.registry import EXPORTED

        if self.network not in EXPORTED:
            raise ValueError(f"unknown network {self.network!r}; expected one of {', '.join(EXPORTED)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"cache precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.size not in ("real", "small"):
            raise ValueError(f"size must be 'real' or 'small', got {self.size!r}")

    def fields(self) -> dict:
        """Everything the key is made of (also written to the entry's ``COMPLETE`` marker)."""
        from lsld_engine.exporting.onnx_export import BATCH_AXIS, EXPORT_BATCH, OPSET

        source = ({"checkpoint_sha256": checkpoint_digest(self.checkpoint)} if self.checkpoint
                  else {"random_seed": self.seed})
        return {"format": CACHE_FORMAT, "network": self.network, **source, "size": self.size,
                "opset": self.opset or OPSET, "precision": self.precision, "export_batch": EXPORT_BATCH,
                "batch_axis": BATCH_AXIS, "versions": runtime_versions()}

    def key(self) -> str:
        """16 hex digits of the sha256 of :meth:`fields`."""
        text = json.dumps(self.fields(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def entry_name(self) -> str:
        return f"{self.network}-{self.precision}-{self.key()}"

    def filename(self) -> str:
        from lsld_engine.registry import onnx_filename

        return onnx_filename(self.network, self.precision)

    def fp32(self) -> "ExportSpec":
        return ExportSpec(self.network, self.checkpoint, self.size, self.seed, self.opset, "fp32")


def entry_dir(spec: ExportSpec, root: str | os.PathLike | None = None) -> Path:
    return Path(root or cache_root()) / "onnx" / spec.entry_name()


def cached_file(spec: ExportSpec, root: str | os.PathLike | None = None) -> Path | None:
    """The entry's ONNX file when the entry is complete, else ``None`` (never a partial file)."""
    d = entry_dir(spec, root)
    f = d / spec.filename()
    return f if (d / MARKER).is_file() and f.is_file() else None


@dataclass
class EnsureResult:
    """Where the file is and whether this call made it (``seconds``: the export's cost)."""

    path: Path
    exported: bool
    seconds: float = 0.0


def ensure(spec: ExportSpec, root: str | os.PathLike | None = None, *,
           note: Callable[[str], None] | None = None, parity: bool = True,
           unloadable: str | None = None) -> EnsureResult:
    """The ONNX file of ``spec``, exported into the cache on first use (under the entry's lock).

    A complete entry is used when its file has the sha256 its marker records
    (:mod:`lsld_engine.exporting.integrity`); else (or when the caller says it is ``unloadable``: why
    it failed to load) it is rebuilt once, with one warning; a failed rebuild raises
    :class:`ExportCacheError` naming the file and the ``rm -r`` that clears the entry.
    ``note``: where the one-line first-use message goes (default: stderr)."""
    if spec.precision != "fp32":
        raise ValueError(f"ensure() makes fp32 entries; int8 engines come from ensure_int8 (got {spec.precision})")
    root = Path(root or cache_root())
    name = spec.entry_name()

    def build(tmp: Path) -> dict:
        (note or _stderr)(f"lsld-engine: exporting {spec.network} ({spec.size} size, {spec.precision}) to ONNX "
                          f"once for --backend auto (a minute or more for the real size); cached in "
                          f"{root / 'onnx' / name}")
        _export_fp32(spec, tmp, parity)
        return spec.fields()

    def check(found: Path) -> integrity.Damage | None:
        if unloadable:
            return integrity.Damage(found, f"it cannot be loaded: {unloadable}")
        return integrity.damage(found.parent, [found.name])

    return _made_once(root, name, lambda: cached_file(spec, root), build, note, check)


def int8_entry_name(specs: Sequence[ExportSpec]) -> str:
    """``int8-<16 hex>``: the digest of the fp32 sources' keys and :data:`INT8_SETTINGS`."""
    fields = {"format": CACHE_FORMAT, "int8": INT8_SETTINGS,
              "sources": {s.network: s.fields() for s in sorted(specs, key=lambda s: s.network)}}
    return "int8-" + hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def cached_int8(specs: Sequence[ExportSpec], root: str | os.PathLike | None = None) -> Path | None:
    """The complete int8 engine folder of ``specs``, else ``None``."""
    d = Path(root or cache_root()) / "onnx" / int8_entry_name(specs)
    return d if (d / MARKER).is_file() else None


def ensure_int8(specs: Sequence[ExportSpec], root: str | os.PathLike | None = None, *,
                note: Callable[[str], None] | None = None, parity: bool = True) -> EnsureResult:
    """The int8 engine folder made from the fp32 entries of ``specs`` (the towers, plus the HAN
    when given), built on first use under its lock. ``EnsureResult.path`` is the folder; whether it
    passes the fidelity gate is the loader's check (:func:`lsld_engine.backends.int8_report.check_folder`)."""
    specs = [s.fp32() for s in specs]
    if not any(s.network in ("clip_image", "clap_audio") for s in specs):
        raise ValueError("an int8 engine needs clip_image and/or clap_audio")
    root = Path(root or cache_root())
    name = int8_entry_name(specs)

    def build(tmp: Path) -> dict:
        quantize = quantize_hook()  # before any export: a missing quantizer costs nothing
        sources = {s.network: ensure(s, root, note=note, parity=parity).path for s in specs}
        (note or _stderr)(f"lsld-engine: building the int8 engine once ({', '.join(sources)}; quantization and "
                          f"its fidelity report on generated clips, a few minutes for the real size); cached in "
                          f"{root / 'onnx' / name}")
        src = tmp / ".fp32"
        src.mkdir()
        manifest = {}
        for path in sources.values():
            os.symlink(path, src / path.name)
            with contextlib.suppress(OSError, ValueError):
                manifest.update(json.loads((path.parent / "manifest.json").read_text()))
        (src / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        quantize(src, tmp / ".engine", force=True)
        for f in (tmp / ".engine").iterdir():
            os.rename(f, tmp / f.name)
        shutil.rmtree(src)
        (tmp / ".engine").rmdir()
        return {**INT8_SETTINGS, "name": name, "sources": {n: p.parent.name for n, p in sources.items()}}

    return _made_once(root, name, lambda: cached_int8(specs, root), build, note)


def _made_once(root: Path, name: str, lookup: Callable[[], Path | None], build: Callable[[Path], dict],
               note: Callable[[str], None] | None,
               check: Callable[[Path], integrity.Damage | None] | None = None) -> EnsureResult:
    """The cache entry ``name``: ``lookup()`` when it is complete (and ``check(found)`` finds no
    damage), else made once under its lock by ``build(tmp)`` (fills the temporary folder, returns the
    marker's fields) and renamed into place; a damaged entry is rebuilt once."""
    found = lookup()
    if found is not None and (check is None or check(found) is None):
        return EnsureResult(found, False)
    with _entry_lock(root, name, note):
        found = lookup()  # another process made (or repaired) it while we waited
        damaged = found and check and check(found)
        if found is not None and not damaged:
            return EnsureResult(found, False)
        if damaged:
            log.warning("export cache file %s is damaged (%s): rebuilding its entry", damaged.file, damaged.reason)
        t0 = time.perf_counter()
        try:
            with _building(root, name) as tmp:
                marker = build(tmp)
                _fault_point()
                # the files' sha256, checked on every later load; written last, atomically
                integrity.write_marker(tmp, {**marker, "pid": os.getpid(), "made_at": time.time()})
        except Exception as e:  # _building has removed the half-made folder
            if is_disk_full(e):
                raise ExportCacheError(integrity.full_message(root)) from None
            if damaged:
                raise ExportCacheError(integrity.rebuild_failed_message(damaged, root / "onnx" / name, e)) from None
            raise
        seconds = time.perf_counter() - t0
        log.info("%s: made in %.1f s", name, seconds)
        return EnsureResult(lookup(), True, seconds)


def quantize_hook() -> Callable[..., object]:
    """:data:`QUANTIZE_FUNCTION`, imported now; a clear error when this install has no int8 path."""
    module, _, fn = QUANTIZE_FUNCTION.partition(":")
    try:
        import importlib

        return getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError) as e:
        raise ExportCacheError(f"--precision int8 needs {module}.{fn}, which this install lacks ({e}); "
                               "use --precision fp32") from None


def _export_fp32(spec: ExportSpec, out: Path, parity: bool) -> None:
    from lsld_engine.exporting.folder import export_folder
    from lsld_engine.exporting.onnx_export import OPSET
    from lsld_engine.exporting.parity import format_results

    results = export_folder(out, [spec.network], {spec.network: spec.checkpoint}, small=spec.size == "small",
                            opset=spec.opset or OPSET, parity=parity, seed=spec.seed)
    bad = [r for r in results if not r.ok]
    if bad:
        raise ExportCacheError(f"{spec.network}: the exported ONNX file does not match PyTorch, so it is not "
                               "cached (use --backend torch):\n" + format_results(bad))


def _fault_point() -> None:
    if os.environ.get(FAULT_ENV) == "kill":
        os.kill(os.getpid(), signal.SIGKILL)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _entry_lock(root: Path, name: str, note: Callable[[str], None] | None) -> Iterator[None]:
    """An exclusive ``flock`` on ``onnx/.locks/<name>.lock`` (waits for another exporter; the kernel
    drops the lock when a holder dies, so a killed exporter never blocks the next run)."""
    locks = root / "onnx" / ".locks"
    try:
        locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(locks / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        if is_disk_full(e):
            raise ExportCacheError(integrity.full_message(root)) from None
        raise ExportCacheError(f"export cache {root}: {e.strerror} (set LSLD_CACHE to a writable folder)") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            (note or _stderr)(f"lsld-engine: waiting for another process exporting {name} into {root}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # drops the lock


@contextlib.contextmanager
def _building(root: Path, name: str) -> Iterator[Path]:
    """A fresh temporary folder, renamed to the entry when the block succeeds, removed when it
    raises. Call with the entry's lock held: leftovers of killed exports of it are removed first."""
    onnx_dir = root / "onnx"
    for stale in onnx_dir.glob(f".tmp-{name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = onnx_dir / f".tmp-{name}-{os.getpid()}-{next(_tmp_counter)}"
    tmp.mkdir(parents=True)
    final = onnx_dir / name
    try:
        yield tmp
        if final.exists():  # an entry without its marker cannot be: rename is atomic; be safe anyway
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def cache_size(root: str | os.PathLike | None = None) -> tuple[int, int]:
    """``(bytes, complete entries)`` under the cache folder (0, 0 when it does not exist)."""
    root = Path(root or cache_root())
    total = 0
    for p in root.rglob("*") if root.is_dir() else ():
        with contextlib.suppress(OSError):
            if p.is_file():
                total += p.stat().st_size
    entries = sum(1 for d in (root / "onnx").glob("*/") if (d / MARKER).is_file()) if root.is_dir() else 0
    return total, entries


def spec_for(network: str, options: dict, precision: str = "fp32") -> ExportSpec:
    """The :class:`ExportSpec` of ``network`` for backend ``options`` (``clip_checkpoint``,
    ``clap_checkpoint``, ``model``, ``size``, ``random_weights``)."""
    key = {"clip_image": "clip_checkpoint", "clap_audio": "clap_checkpoint", "han": "model"}[network]
    ckpt = options.get(key)
    if ckpt is None and not options.get("random_weights"):
        from lsld_engine.backends.torch_backend import check_weights

        check_weights([network], **options)  # raises MissingWeightsError naming the flag
    return ExportSpec(network, str(ckpt) if ckpt else None, options.get("size") or "real", precision=precision)


__all__ = ["CACHE_FORMAT", "EnsureResult", "ExportCacheError", "ExportSpec", "FAULT_ENV", "MARKER", "PRECISIONS",
           "INT8_SETTINGS", "QUANTIZE_FUNCTION", "cache_root", "cache_size", "cached_file", "cached_int8", "ensure",
           "ensure_int8", "entry_dir", "int8_entry_name", "quantize_hook",
           "runtime_versions", "spec_for"]
