"""The extract pipeline: video files -> the dataset layout training reads.

::

    decode (worker processes) -> embed (batched across videos; lsld_engine.parsing.embed) -> write
    ROOT/feats/clip_16/<id>.npy        (80, 512)  CLIP ViT-B/16 frame embeddings (float16 by default)
    ROOT/feats/clap_audioset/<id>.npy  (10, 512)  LAION-CLAP 1-s segment embeddings
    ROOT/feats/extract_log.jsonl       one line per video: ok (duration, has_audio, windows) or error

Ids: a 10-s clip keeps its file stem (LLP's ``filename``); a longer video gives one entry per 10-s
window, ``<stem>@0``, ``<stem>@10``, ... (:func:`lsld_engine.media.window_ids`).

File names (``names``): ``full`` (default) writes ``<id>.npy``; ``official`` writes the official
loaders' ``<id[:11]>.npy`` (the YouTube id of an LLP ``filename``), the layout of the released
LSLD feature folders. Official names hold one window per video and one video per name: two inputs
with the same 11-character name are refused before anything is decoded, and a video longer than
one window gets an error line in the log (its files would share one name).

Nothing half-written survives a kill: every ``.npy`` is written under a temporary name and renamed
into place, and the video's log line is appended only after all its files are in place. A video
is skipped (resume) when its last log line is ``ok`` and all its window files exist, or, without a
log line, when ``<stem>.npy`` exists in both folders (features made elsewhere). Failed videos are
retried by the next run.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from lsld_engine.data.dataset import CLAP_SUBDIR, CLIP_SUBDIR, official_name
from lsld_engine.parsing.embed import EmbeddedVideo
from lsld_engine.files import atomic_path
from lsld_engine.media.pool import DecodeFailure
from lsld_engine.parsing.pipeline import Summary, embedded_groups
from lsld_engine.records.readers import read_records
from lsld_engine.parsing.video_inputs import InputError, VideoInput
from lsld_engine.records.writers import printable

LOG_NAME = "feats/extract_log.jsonl"
#: ``--names``: the file-name schemes of a feature root (module docstring).
NAME_SCHEMES = ("full", "official")


class FeatureStore:
    """Where a dataset root keeps features, and how they are written (atomically)."""

    def __init__(self, root: str | os.PathLike, dtype: str = "float16", names: str = "full"):
        if names not in NAME_SCHEMES:
            raise ValueError(f"feature file names must be one of {', '.join(NAME_SCHEMES)}, not {names!r}")
        self.names = names
        self.root = Path(root)
        self.clip_dir = self.root / CLIP_SUBDIR
        self.clap_dir = self.root / CLAP_SUBDIR
        self.log_path = self.root / LOG_NAME
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float16, np.float32):
            raise ValueError(f"feature dtype must be float16 or float32, not {dtype!r}")
        self.clip_dir.mkdir(parents=True, exist_ok=True)
        self.clap_dir.mkdir(parents=True, exist_ok=True)

    def stem(self, entry_id: str) -> str:
        """The file stem of an entry under this store's name scheme."""
        return official_name(entry_id) if self.names == "official" else entry_id

    def files(self, entry_id: str) -> tuple[Path, Path]:
        stem = self.stem(entry_id)
        return self.clip_dir / f"{stem}.npy", self.clap_dir / f"{stem}.npy"

    def window_problem(self, video: EmbeddedVideo) -> str | None:
        """Why ``video`` cannot be written under this scheme (official names: one window), or None."""
        if self.names == "official" and (len(video.window_ids) > 1 or not video.final
                                         or video.window_ids[0] != video.video_id):
            return (f"{video.video_id} is longer than one 10-s window: official 11-character names hold "
                    "one window per video (extract it with --names full)")
        return None

    def is_done(self, video: VideoInput, logged: dict | None) -> bool:
        if logged is not None:
            return logged.get("status") == "ok" and all(
                f.is_file() for wid in logged.get("windows", []) for f in self.files(wid))
        return all(f.is_file() for f in self.files(video.video_id))

    def write(self, video: EmbeddedVideo) -> None:
        """Write each window's ``(80, D)`` CLIP and ``(10, D)`` CLAP arrays."""
        for wid, frames, audio in zip(video.window_ids, video.frames, video.audio):
            clip_path, clap_path = self.files(wid)
            save_atomic(clip_path, frames.astype(self.dtype))
            save_atomic(clap_path, audio.astype(self.dtype))


def save_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a temporary name beside ``path``, then rename: readers never see half a file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


def log_record(video: EmbeddedVideo | DecodeFailure, windows: list[str] | None = None) -> dict:
    """The extract log line of one video; ``windows``: the ids of all its windows (default: those of
    ``video``, which for a streamed video is only its last part)."""
    if isinstance(video, DecodeFailure):
        return {"video_id": video.video_id, "path": video.path, "status": "error", "error": video.error}
    return {"video_id": video.video_id, "path": video.path, "status": "ok", "duration": video.duration,
            "has_audio": video.has_audio, "windows": windows if windows is not None else video.window_ids}


def extract_decoded(backend, items: list, store: FeatureStore, max_batch: int | None = None) -> list[dict]:
    """Embed whole decoded videos already in memory together and write their files into ``store``;
    the log records of ``items`` (:class:`~lsld_engine.media.DecodedVideo` / :class:`DecodeFailure`),
    in order (the ``--ray`` encoder actors; the caller logs each after this returns)."""
    from lsld_engine.parsing.embed import default_max_frames, embed_videos

    max_batch = max_batch or default_max_frames(backend)  # as embed_groups on one machine
    done = iter(embed_videos([it for it in items if not isinstance(it, DecodeFailure)], backend, max_batch))
    records = []
    for it in items:
        if not isinstance(it, DecodeFailure):
            it = _checked(next(done), store)
            if not isinstance(it, DecodeFailure):
                store.write(it)  # atomic per file
        records.append(log_record(it))
    return records


def _checked(video: EmbeddedVideo, store: FeatureStore) -> EmbeddedVideo | DecodeFailure:
    """``video``, or its error entry when the store's name scheme cannot hold it."""
    problem = store.window_problem(video)
    return video if problem is None else DecodeFailure(video.path, video.video_id, problem)


def pending(inputs: Iterable[VideoInput], store: FeatureStore) -> tuple[list[VideoInput], int]:
    """Inputs still to extract, and how many were skipped as done."""
    logged = read_records(store.log_path) if store.log_path.is_file() else {}
    owner = {wid: vid for vid, rec in logged.items() if rec.get("status") == "ok"
             for wid in rec.get("windows", []) if isinstance(wid, str) and wid != vid}
    todo, skipped = [], 0
    inputs = list(inputs)
    if store.names == "official":
        seen: dict[str, VideoInput] = {}
        for vi in inputs:
            first = seen.setdefault(store.stem(vi.video_id), vi)
            if first is not vi:
                raise InputError(f"{first.shown_path} and {vi.shown_path} share the official 11-character name "
                                 f"{store.stem(vi.video_id)}.npy; extract them with --names full")
    for vi in inputs:
        if vi.video_id in owner:  # e.g. `long@10.mp4` extracted into a root that holds `long.mp4`
            raise InputError(f"{vi.shown_path}: its id {vi.video_id!r} is a window of video {owner[vi.video_id]!r} "
                             f"already in {store.root}; its files would overwrite that window: rename the file "
                             "or use another --out")
    for vi in inputs:
        if store.is_done(vi, logged.get(vi.video_id)):
            skipped += 1
        else:
            todo.append(vi)
    return todo, skipped


def extract_features(inputs: Iterable[VideoInput], backend, store: FeatureStore, *, workers: int = 2,
                     progress: bool = True, max_frames: int | None = None, decode_timeout: float | None = None,
                     summary: Summary | None = None, decode_fn=None, limits=None) -> Summary:
    """Decode, embed and write ``inputs`` (all of them: filter with :func:`pending` first).
    ``workers``, ``max_frames``, ``decode_timeout``, ``decode_fn``, ``limits``: see
    :func:`lsld_engine.parsing.pipeline.embedded_groups`. A long video arrives in parts (a few windows each)
    whose files are written as they come; its log line follows its last part."""
    summary = summary or Summary()
    inputs = list(inputs)
    groups = embedded_groups(inputs, backend, summary, workers=workers, progress=progress, max_frames=max_frames,
                             decode_timeout=decode_timeout, decode_fn=decode_fn, limits=limits)
    written: dict[str, list[str]] = {}  # window ids written so far of open (streamed) videos
    refused: set[str] = set()  # videos the name scheme cannot hold: their later parts are dropped
    with open(store.log_path, "a", encoding="utf-8") as logf, contextlib.closing(groups):
        for group in groups:
            for item in group:
                windows = None
                if not isinstance(item, DecodeFailure):
                    if item.video_id in refused:
                        continue
                    item = _checked(item, store)
                    if isinstance(item, DecodeFailure):
                        refused.add(item.video_id)
                if isinstance(item, DecodeFailure):
                    written.pop(item.video_id, None)  # its files stay, unlogged: redone next run
                else:
                    store.write(item)
                    windows = written.setdefault(item.video_id, [])
                    windows += item.window_ids
                    if not item.final:
                        continue  # more parts of this video to come
                    del written[item.video_id]
                # after the files: a line "ok" means every file of the video is in place
                logf.write(json.dumps(printable(log_record(item, windows)), ensure_ascii=False) + "\n")
                logf.flush()
                summary.count(item, windows=None if windows is None else len(windows))
    return summary
