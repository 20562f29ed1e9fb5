"""The scale-out stages as Ray Data batch functions: decode (CPU tasks) and encode (actor pool).

Both wrap the single-machine code instead of repeating it:

- :func:`decode_batch` runs :func:`lsld_engine.media.pool.decode_stream` over a batch of inputs:
  with a per-file ``timeout`` the videos are decoded in one child process that is stopped and
  replaced when a file takes too long (exactly the single-machine behaviour); without one they
  are decoded in the task's own process (no spawn cost). Inputs on object stores are copied to a
  temporary local file first. A failure becomes a row with ``error`` set (zero windows).
- :class:`ParseActor` / :class:`ExtractActor` build one :class:`lsld_engine.api.Engine` per actor
  (``num_gpus=1`` actors on GPU nodes), embed all frames and audio segments of a batch of videos
  together (batches across videos), then run the HAN on all windows at once and make the records
  (:meth:`~lsld_engine.api.Engine.records`), or write the feature files
  (:meth:`~lsld_engine.api.Engine.extract_decoded`).
  The HAN runs in the encoder actor: it costs well under 1 % of the encoders, and a pool of its
  own would hold CPUs (or a GPU) that decoding needs.

Rows between the stages (columns): ``path``, ``video_id`` -> decode -> + ``duration``,
``has_audio``, ``frames (W, 80, 224, 224, 3) uint8``, ``audio (W, 10, 48000) float32``, ``error``
("" when decoded) -> encode -> ``video_id``, ``status``, ``record`` (the JSON text of the record).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lsld_engine.records.events import DEFAULT_THRESHOLD
from lsld_engine.media.pool import DecodeFailure, decode_stream
from lsld_engine.media import (FRAMES_PER_WINDOW, IMAGE_SIZE, SAMPLES_PER_SEGMENT, SEGMENTS_PER_WINDOW, DecodedVideo,
                               decode_video)
from lsld_engine.records.objectstore import StoreSettings, apply as apply_store
from lsld_engine.scale import trace
from lsld_engine.records.uris import is_uri, local_copy

log = logging.getLogger(__name__)

#: Start of the error of a local input that the task's node cannot see; the driver stops the run
#: on it (an error record would be skipped on resume, and every other video would fail the same way).
NOT_VISIBLE = "not visible on the worker node"
#: Test-only: a node started with this variable (os.pathsep-separated folders) behaves as if those
#: folders were not mounted there (one machine cannot hide a path from one process otherwise).
HIDDEN_VARIABLE = "LSLD_TEST_NODE_HIDES"


def visible(path: str) -> bool:
    """Whether this node sees the local file ``path``."""
    hidden = [h for h in os.environ.get(HIDDEN_VARIABLE, "").split(os.pathsep) if h]
    if any(os.path.abspath(path).startswith(os.path.join(os.path.abspath(h), "")) for h in hidden):
        return False
    return os.path.exists(path)


_NO_FRAMES = np.zeros((0, FRAMES_PER_WINDOW, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
_NO_AUDIO = np.zeros((0, SEGMENTS_PER_WINDOW, SAMPLES_PER_SEGMENT), np.float32)


def decode_batch(batch: dict[str, Any], *, timeout: float | None = None, decode_fn: Callable | None = None,
                 threads: int = 1, store: StoreSettings | None = None, trace_to: str | None = None) -> dict[str, list]:
    """Decode the videos of ``batch`` (columns ``path``, ``video_id``); one output row per input.

    ``timeout``: seconds per file (a child process is used and replaced on expiry); ``decode_fn``:
    the per-video decoder (default :func:`lsld_engine.media.decode_video`); ``threads``: FFmpeg threads;
    ``store``: the driver's object-store settings (the S3 endpoint), applied here before any input is
    opened; ``trace_to``: :mod:`~lsld_engine.scale.trace` file. A local path this node does not see
    gives an error starting with ``PATH: {NOT_VISIBLE}``.
    """
    # whole videos (one row each), also where decode_stream's own default streams parts of long videos
    apply_store(store)
    decode_fn = decode_fn or decode_video
    paths = [str(p) for p in batch["path"]]
    ids = [str(v) for v in batch["video_id"]]
    trace.note(trace_to, "decode", ids)
    local, temps, failed = [], [], {}
    for i, p in enumerate(paths):
        if is_uri(p):
            try:
                local.append(local_copy(p))
                temps.append(local[-1])
            except OSError as e:
                failed[i] = f"{p}: cannot read: {e}"
                local.append(p)
        else:
            if not visible(p):
                failed[i] = f"{p}: {NOT_VISIBLE} ({_node()})"
            local.append(p)
    todo = [i for i in range(len(paths)) if i not in failed]
    try:
        results = list(decode_stream([(local[i], ids[i]) for i in todo], workers=1 if timeout else 0, ordered=True,
                                     timeout=timeout, decode_fn=decode_fn, threads=threads))
    finally:
        for t in temps:
            Path(t).unlink(missing_ok=True)
    out: dict[str, list] = {k: [] for k in ("path", "video_id", "duration", "has_audio", "frames", "audio", "error")}
    by_index = dict(zip(todo, results))
    for i, (path, vid) in enumerate(zip(paths, ids)):
        res = by_index.get(i)
        if res is None or isinstance(res, DecodeFailure):
            err = failed[i] if res is None else res.error.replace(local[i], path)
            out["duration"].append(0.0)
            out["has_audio"].append(False)
            out["frames"].append(_NO_FRAMES)
            out["audio"].append(_NO_AUDIO)
            out["error"].append(err)
        else:
            out["duration"].append(float(res.duration))
            out["has_audio"].append(bool(res.has_audio))
            # copies: results of a decode child live in shared memory that must not outlive the task
            out["frames"].append(np.ascontiguousarray(res.frames))
            out["audio"].append(np.ascontiguousarray(res.audio, dtype=np.float32))
            out["error"].append("")
        out["path"].append(path)
        out["video_id"].append(vid)
    return out


def _node() -> str:
    """This task's node, for messages: ``node <id> at <ip>``."""
    import ray

    return f"node {ray.get_runtime_context().get_node_id()[:12]} at {ray.util.get_node_ip_address()}"


def split_decoded(batch: dict[str, Any]) -> tuple[list[DecodedVideo | DecodeFailure], list[DecodedVideo]]:
    """The rows of a decoded batch as ``DecodedVideo`` / ``DecodeFailure`` (in order), and the decoded ones."""
    items: list = []
    for i in range(len(batch["video_id"])):
        path, vid, err = str(batch["path"][i]), str(batch["video_id"][i]), str(batch["error"][i])
        if err:
            items.append(DecodeFailure(path, vid, err))
        else:
            items.append(DecodedVideo(path, vid, float(batch["duration"][i]), bool(batch["has_audio"][i]),
                                      np.asarray(batch["frames"][i]), np.asarray(batch["audio"][i])))
    return items, [v for v in items if isinstance(v, DecodedVideo)]


class _EncoderActor:
    """One engine per actor process, built once (weights load once per actor, not per batch)."""

    def __init__(self, backend: str, options: dict, max_batch: int | None = None, store: StoreSettings | None = None,
                 trace_to: str | None = None, **engine_options):
        from lsld_engine.api import Engine, EngineOptions, open_backend
        from lsld_engine.hardware import resolve_precision

        apply_store(store)
        self.trace_to = trace_to
        trace.note(trace_to, "actor")
        # resolved here, not on the driver: the actor's CPU may lack native bf16 where the driver's has it
        if "precision" in options:
            options = {**options, "precision": resolve_precision(options["precision"], options.get("device", "cpu"))}
        self.engine = Engine(open_backend(backend, options), EngineOptions(backend=backend, **engine_options))
        self.max_batch = max_batch

    def _items(self, batch: dict[str, Any]) -> list:
        items, _ = split_decoded(batch)
        trace.note(self.trace_to, "encode", [it.video_id for it in items])
        return items


class ParseActor(_EncoderActor):
    """Decoded videos -> parse records (embed, HAN over all windows of the batch, events):
    :meth:`lsld_engine.api.Engine.records`."""

    def __init__(self, backend: str, options: dict, *, seg_threshold: float = DEFAULT_THRESHOLD,
                 video_threshold: float = DEFAULT_THRESHOLD,
                 save_probs: bool = False, max_batch: int | None = None, store: StoreSettings | None = None,
                 trace_to: str | None = None):
        super().__init__(backend, options, max_batch, store, trace_to, seg_threshold=seg_threshold,
                         video_threshold=video_threshold, save_probs=save_probs)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        return _record_columns(self.engine.records(self._items(batch), self.max_batch))


class ExtractActor(_EncoderActor):
    """Decoded videos -> feature files in a dataset root (a folder every node sees) and their log
    records: :meth:`lsld_engine.api.Engine.extract_decoded`."""

    def __init__(self, backend: str, options: dict, *, root: str, dtype: str = "float16", names: str = "full",
                 max_batch: int | None = None, store: StoreSettings | None = None, trace_to: str | None = None):
        super().__init__(backend, options, max_batch, store, trace_to)
        from lsld_engine.parsing.extract import FeatureStore

        self.store = FeatureStore(root, dtype, names)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        # each file is atomic; the driver logs a video after this returns
        return _record_columns(self.engine.extract_decoded(self._items(batch), self.store, self.max_batch))


def _record_columns(records: list[dict]) -> dict[str, list]:
    return {"video_id": [r["video_id"] for r in records], "status": [r["status"] for r in records],
            "record": [json.dumps(r, ensure_ascii=False, allow_nan=False) for r in records]}
