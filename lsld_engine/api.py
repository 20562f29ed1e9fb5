"""The Python API: load an engine once, then parse videos, extract features or get events for
frames and audio already in memory.

::

    import lsld_engine

    with lsld_engine.load_engine(random_weights=True, small=True) as engine:   # or model="LSLD.pt", ...
        for record in engine.parse(["clip.mp4", "videos/"]):    # the records `lsld-engine parse` writes
            print(record["video_id"], record["events"]["audio"])
        record = engine.events(frames, audio)                   # (W, 80, 224, 224, 3) uint8, (W, 10, 48000) float32

:func:`load_engine` takes the options of ``lsld-engine parse`` (keyword names are the flags with
``_``: ``clip_checkpoint``, ``engine_dir``, ``seg_threshold``, ...). The CLI commands and the
``--ray`` encoder actors build their engine here too, so a record from Python equals the line the
CLI writes for the same video and options (docs/formats.md). Errors a caller can fix are
:class:`~lsld_engine.errors.LsldError` subclasses; a video that cannot be decoded gives its error
record, as in the CLI.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from lsld_engine.errors import EngineError, LsldError  # noqa: F401  (EngineError: part of this API)
from lsld_engine.media.frame_rule import DEFAULT_FRAME_RULE
from lsld_engine.records.events import DEFAULT_THRESHOLD, check_threshold

log = logging.getLogger("lsld_engine")

#: The networks of ``parse`` and of ``extract``.
PARSE_NETWORKS = ("clip_image", "clap_audio", "han")
EXTRACT_NETWORKS = ("clip_image", "clap_audio")


class EngineOptionsError(LsldError, ValueError):
    """Options or in-memory arrays the engine cannot use (one line naming the problem)."""


@dataclass(frozen=True)
class EngineOptions:
    """What ``lsld-engine parse`` / ``extract`` take besides inputs and output (the flags, with ``_``).

    ``device`` / ``precision`` None: cuda when available (fp16), else cpu (fp32); ``workers`` None:
    :func:`default_workers`; ``backend_extra``: further backend options passed through as they are
    (e.g. ``threads``, TensorRT's ``build_missing``).
    """

    model: str | None = None
    clip_checkpoint: str | None = None
    clap_checkpoint: str | None = None
    random_weights: bool = False
    small: bool = False
    backend: str = "auto"
    engine_dir: str | None = None
    device: str | None = None
    precision: str | None = None
    batch_size: int | None = None
    workers: int | None = None
    threads: int | None = None
    force_int8: bool = False
    ordered: bool = False
    seg_threshold: float = DEFAULT_THRESHOLD
    video_threshold: float = DEFAULT_THRESHOLD
    save_probs: bool = False
    frame_rule: str = DEFAULT_FRAME_RULE
    jpeg_roundtrip: bool = False
    pixels: str = "cpu"
    decoder: str = "cpu"
    decode_timeout: float | None = None
    max_duration: float | None = None
    max_resolution: tuple[int, int] | None = None
    backend_extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # checked here, so load_engine, the CLI and the Ray actors refuse a bad threshold before any work
        object.__setattr__(self, "seg_threshold", check_threshold("seg_threshold", self.seg_threshold))
        object.__setattr__(self, "video_threshold", check_threshold("video_threshold", self.video_threshold))

    @classmethod
    def from_namespace(cls, ns, **overrides) -> "EngineOptions":
        """The options of an ``argparse.Namespace`` (attributes it lacks keep their defaults)."""
        values = {f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name)}
        values = {k: v for k, v in values.items() if v is not None or k in ("device", "precision")}
        return cls(**{**values, **overrides})

    def resolved(self) -> tuple[str, str]:
        """``(device, precision)``: the given ones, else cuda / fp16 when available, else cpu / fp32
        (``bf16`` on a CPU without native bf16 becomes fp32, :func:`lsld_engine.hardware.resolve_precision`)."""
        from lsld_engine.hardware import resolve_precision

        device = self.device
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        precision = self.precision or ("fp16" if device.startswith("cuda") else "fp32")
        return device, resolve_precision(precision, device)

    def backend_options(self, device: str, precision: str) -> dict:
        """The keyword options of :func:`lsld_engine.backends.create_backend`."""
        opts = {"clip_checkpoint": self.clip_checkpoint, "clap_checkpoint": self.clap_checkpoint,
                "model": self.model, "device": device, "precision": precision}
        if self.batch_size:
            opts["batch_sizes"] = {"images": self.batch_size, "audio": max(1, self.batch_size // 4)}
        if self.random_weights:
            opts["random_weights"] = True
        if self.small:
            opts["size"] = "small"
        if self.engine_dir:
            opts["engine_dir"] = str(self.engine_dir)
        if self.threads:
            opts["threads"] = self.threads
        if self.precision is None:
            opts["auto_precision"] = True  # torch on a CPU: bf16 only for the towers it speeds up
        if precision == "int8":  # the int8 ONNX files of `export --precision int8`, behind their fidelity gate
            from lsld_engine.backends.int8_report import int8_backend_options

            opts.update(int8_backend_options(self.backend, precision, self.engine_dir, self.force_int8))
        opts.update(self.backend_extra)
        return opts

    def limits(self):
        """The :class:`~lsld_engine.media.MediaLimits` of ``max_duration`` / ``max_resolution``."""
        from lsld_engine.media.decoders import media_limits

        return media_limits(self.max_duration, self.max_resolution)

    def decode_fn(self, whole: bool = False):
        """The per-video decode function (:func:`lsld_engine.media.decoders.decode_function`)."""
        from lsld_engine.media.decoders import decode_function

        return decode_function(decoder=self.decoder, pixels=self.pixels, frame_rule=self.frame_rule,
                               jpeg_roundtrip=self.jpeg_roundtrip, whole=whole,
                               limits=self.limits() if whole else None)

    def thresholds(self):
        from lsld_engine.parsing.parse import Thresholds

        return Thresholds(self.seg_threshold, self.video_threshold)


def default_workers(device: str) -> int:
    """Decode processes for ``device`` (:func:`lsld_engine.backends.threads.plan_threads`)."""
    from lsld_engine.backends.threads import plan_threads

    return plan_threads(device).workers


def check_weights(options: EngineOptions, networks: Sequence[str], backend_options: dict) -> None:
    """Fail before any work when a network has no weights (torch) or ``engine_dir`` is missing
    (onnx / tensorrt): :class:`~lsld_engine.backends.torch_backend.MissingWeightsError` /
    :class:`EngineOptionsError`."""
    if options.backend == "torch" or options.backend == "auto" and not options.engine_dir:
        from lsld_engine.backends.torch_backend import check_weights as check

        check(list(networks), **backend_options)
    elif options.backend in ("onnx", "tensorrt") and not options.engine_dir:
        raise EngineOptionsError(f"--backend {options.backend} needs --engine-dir (the folder of "
                                 "`lsld-engine export`)")


def open_backend(name: str, backend_options: dict, networks: Sequence[str] | None = None):
    """Build backend ``name`` (:func:`lsld_engine.backends.create_backend`); ``networks``: warm these
    up now (None: none). A failure to build it is an :class:`EngineError` (one line)."""
    from lsld_engine import backends

    try:
        backend = backends.create_backend(name, **backend_options)
    except LsldError:
        raise
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        raise EngineError(str(e)) from e
    if networks is not None and hasattr(backend, "warm_up"):
        backend.warm_up(tuple(networks))
    return backend


class Engine:
    """Networks loaded once (a backend) and the options of a run; see the module docstring.

    Close it (``close()`` or ``with``) to free the backend's memory and sessions.
    """

    def __init__(self, backend, options: EngineOptions = EngineOptions(), device: str | None = None):
        self.backend = backend
        self.options = options
        self.device = device or getattr(backend, "device", "cpu")

    @classmethod
    def open(cls, options: EngineOptions, networks: Sequence[str] = PARSE_NETWORKS) -> "Engine":
        """Resolve device and precision, check the weights, build and warm up the backend."""
        from dataclasses import replace

        from lsld_engine.backends.threads import plan_threads

        device, precision = options.resolved()
        opts = options.backend_options(device, precision)
        check_weights(options, networks, opts)
        plan = plan_threads(device, workers=options.workers, threads=options.threads)
        log.info("threads: %s", plan.describe())
        if plan.threads is not None:
            opts["threads"] = plan.threads
        options = replace(options, workers=plan.workers)
        return cls(open_backend(options.backend, opts, networks), options, device)

    # --- videos on disk ----------------------------------------------------------------------------

    def inputs(self, paths: Iterable[str | os.PathLike] | str | os.PathLike):
        """The videos of ``paths`` (files and folders, walked as the CLI does; unique ids)."""
        from lsld_engine.parsing.video_inputs import InputError, VideoInput, collect_inputs

        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = list(paths)
        if paths and all(isinstance(p, VideoInput) for p in paths):
            return paths
        try:
            return collect_inputs(paths)
        except FileNotFoundError as e:
            raise InputError(str(e)) from None

    def parse(self, paths, *, ordered: bool | None = None, progress: bool = False, summary=None) -> Iterator[dict]:
        """One record per video of ``paths`` as each completes (``ordered``: in input order), the
        same dicts ``lsld-engine parse`` writes (docs/formats.md); a video that fails gives its error
        record. ``summary``: a :class:`~lsld_engine.parsing.pipeline.Summary` to count into."""
        from lsld_engine.parsing.parse import parse_records

        o = self.options
        items = self.inputs(paths)
        return parse_records(items, self.backend, workers=self.workers,
                             ordered=o.ordered if ordered is None else ordered, thresholds=o.thresholds(),
                             save_probs=o.save_probs, progress=progress, summary=summary,
                             decode_timeout=o.decode_timeout, decode_fn=_reads_uris(o.decode_fn(), items),
                             limits=o.limits())

    def parse_into(self, paths, sink, *, progress: bool = False, summary=None) -> None:
        """Write the record of each video of ``paths`` to ``sink`` (anything with ``write(record)``:
        a writer of :mod:`lsld_engine.records.writers`, a results-folder sink) as it completes."""
        records = self.parse(paths, progress=progress, summary=summary)
        try:
            for record in records:
                sink.write(record)
        finally:
            records.close()

    def extract(self, paths, out_root: str | os.PathLike, *, dtype: str = "float16", names: str = "full",
                progress: bool = False):
        """Write the CLIP / CLAP features of ``paths`` into the dataset root ``out_root`` (the layout of
        ``lsld-engine extract``; ``names`` ``full`` or ``official``, see :mod:`lsld_engine.parsing.extract`;
        videos already there are skipped); returns the run's
        :class:`~lsld_engine.parsing.pipeline.Summary`."""
        from pathlib import Path

        from lsld_engine.parsing.extract import LOG_NAME, FeatureStore, pending
        from lsld_engine.records.outputs import OutputLock, check_writable
        from lsld_engine.parsing.pipeline import Summary

        items = self.inputs(paths)
        root = Path(out_root)
        check_writable(root, folder=True)
        check_writable(root / LOG_NAME)
        with OutputLock(root, folder=True, what="dataset root"):
            store = FeatureStore(root, dtype, names)
            todo, skipped = pending(items, store)
            summary = Summary(total=len(items), skipped=skipped)
            self.extract_into(todo, store, summary=summary, progress=progress)
        return summary

    def extract_into(self, items, store, *, summary=None, progress: bool = False):
        """Extract ``items`` (all of them) into a :class:`~lsld_engine.parsing.extract.FeatureStore`."""
        from lsld_engine.parsing.extract import extract_features

        o = self.options
        return extract_features(self.inputs(items), self.backend, store, workers=self.workers, progress=progress,
                                summary=summary, decode_timeout=o.decode_timeout, decode_fn=o.decode_fn(),
                                limits=o.limits())

    @property
    def workers(self) -> int:
        return default_workers(self.device) if self.options.workers is None else self.options.workers

    # --- frames and audio in memory ----------------------------------------------------------------

    def events(self, frames: np.ndarray, audio: np.ndarray, *, duration: float | None = None,
               has_audio: bool = True, video_id: str = "frames", path: str = "") -> dict:
        """The record (events, and probabilities with ``save_probs``) of one video already decoded.

        ``frames``: ``(W, 80, 224, 224, 3)`` uint8 RGB CLIP crops (or ``(80, 224, 224, 3)``, one
        window): 8 frames per second of each 10-s window, as :func:`lsld_engine.media.decode_video`
        gives; ``audio``: ``(W, 10, 48000)`` float32 mono at 48 kHz in [-1, 1] (or ``(W * 480000,)``);
        ``duration``: true length in seconds (default ``W * 10``). A single window may leave out
        ``W`` in both arrays. Wrong shapes or dtypes, and NaN / inf audio, raise
        :class:`EngineOptionsError` naming the array (and the first bad window and segment).
        """
        from lsld_engine.contract import (FRAMES_PER_WINDOW, IMAGE_SIZE, SAMPLES_PER_SEGMENT,
                                          SEGMENTS_PER_WINDOW, WINDOW_SECONDS)
        from lsld_engine.media import DecodedVideo

        frames, audio = np.asarray(frames), np.asarray(audio)
        if frames.ndim == 4:
            frames = frames[None]
        shape = (FRAMES_PER_WINDOW, IMAGE_SIZE, IMAGE_SIZE, 3)
        if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[1:] != shape or not frames.shape[0]:
            raise EngineOptionsError(f"frames: expected (W, {', '.join(map(str, shape))}) uint8 RGB "
                                     f"(or one window without W), got {frames.shape} {frames.dtype}"
                                     + _nonfinite_note(frames))
        w = frames.shape[0]
        want = (w, SEGMENTS_PER_WINDOW, SAMPLES_PER_SEGMENT)
        if audio.size != np.prod(want) or audio.dtype.kind != "f":
            raise EngineOptionsError(f"audio: expected {want} float32 (48 kHz mono, as many windows as frames), "
                                     f"got {audio.shape} {audio.dtype}")
        bad = ~np.isfinite(audio.reshape(want)).all(axis=2)              # (W, 10) segments with NaN / inf
        if bad.any():
            win, seg = (int(i) for i in np.argwhere(bad)[0])
            raise EngineOptionsError(f"audio: NaN or inf samples in {int(bad.sum())} segment(s), the first in "
                                     f"window {win} segment {seg} ({win * WINDOW_SECONDS + seg}-"
                                     f"{win * WINDOW_SECONDS + seg + 1} s); audio must be finite, in [-1, 1]")
        video = DecodedVideo(path, video_id, float(w * WINDOW_SECONDS if duration is None else duration), has_audio,
                             frames, audio.reshape(want).astype(np.float32, copy=False))
        return self.records([video])[0]

    def records(self, items: list, max_batch: int | None = None) -> list[dict]:
        """Records of whole decoded videos / :class:`~lsld_engine.media.pool.DecodeFailure` (in order),
        embedded together in calls of at most ``max_batch`` rows (the ``--ray`` encoder actors)."""
        from lsld_engine.parsing.parse import records_of

        return records_of(self.backend, items, self.options.thresholds(), self.options.save_probs, max_batch)

    def extract_decoded(self, items: list, store, max_batch: int | None = None) -> list[dict]:
        """Write the features of whole decoded videos into ``store``; their extract log records, in order."""
        from lsld_engine.parsing.extract import extract_decoded

        return extract_decoded(self.backend, items, store, max_batch)

    # --- lifetime ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Free the backend (device memory, sessions)."""
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _nonfinite_note(frames: np.ndarray) -> str:
    """``; it holds NaN / inf (first in window W)`` for float frames that do, else ``""``."""
    if frames.dtype.kind != "f" or frames.ndim < 2:
        return ""
    bad = ~np.isfinite(frames.reshape(frames.shape[0], -1)).all(axis=1)
    return f"; it also holds NaN / inf, first in window {int(np.argmax(bad))}" if bad.any() else ""


def _reads_uris(decode_fn, items):
    """``decode_fn``, able to read object-store URIs among ``items`` (copied to a temporary local file
    first, with this process's S3 settings: :class:`lsld_engine.parsing.remote_inputs.FetchFirst`)."""
    from lsld_engine.records.uris import is_uri

    if not any(is_uri(i.path) for i in items):
        return decode_fn
    from lsld_engine.records.objectstore import current
    from lsld_engine.parsing.remote_inputs import FetchFirst

    return FetchFirst(decode_fn, current())


def load_engine(model: str | os.PathLike | None = None, *, networks: Sequence[str] = PARSE_NETWORKS,
                **options) -> Engine:
    """Load the networks once: ``model`` (a HAN checkpoint: ours or the official ``LSLD.pt``) and the
    options of ``lsld-engine parse`` as keywords (:class:`EngineOptions`: ``clip_checkpoint``,
    ``clap_checkpoint``, ``random_weights``, ``small``, ``backend``, ``engine_dir``, ``device``,
    ``precision``, ``batch_size``, ``workers``, ``seg_threshold``, ``video_threshold``,
    ``save_probs``, ``frame_rule``, ...; ``backend_extra``: a dict passed to the backend as it is).
    ``networks``: :data:`EXTRACT_NETWORKS` for an engine that only extracts features."""
    unknown = sorted(set(options) - {f.name for f in fields(EngineOptions)})
    if unknown:
        raise EngineOptionsError(f"unknown engine options: {', '.join(unknown)} (see lsld_engine.api.EngineOptions)")
    return Engine.open(EngineOptions(model=None if model is None else str(model), **options), networks)
