"""Write parse records into a results folder as complete shards, and the ``_SUCCESS`` manifest.

Records are small (about 2 KB a video against megabytes of decoded media), so the driver writes
them: it buffers records and writes a shard every ``rows_per_shard`` records or ``shard_seconds``
seconds, whichever comes first, with the format's writer from :data:`lsld_engine.records.writers.WRITERS`.
A shard is complete or absent: on a local/shared filesystem it is written under a hidden temporary
name and renamed (:func:`lsld_engine.files.atomic_path`); on an object store it is one PUT. So a killed run loses at most the records of
its unwritten shard, and resuming (:func:`lsld_engine.records.results.done_ids` of the folder) never writes
a video twice.

``_SUCCESS`` (JSON) is removed when a run starts and written when it ends:
``{"format", "videos", "ok", "error", "shards", "inputs", "skipped", "this_run": {...}, "finished"}``.
"""
from __future__ import annotations

import io
import json
import os
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from lsld_engine.files import atomic_path
from lsld_engine.records.objectstore import store_error
from lsld_engine.records.results import MANIFEST, SHARD_PREFIX, done_statuses, filesystem, is_uri, shard_files
from lsld_engine.records.writers import WRITERS, get_writer

class ShardSink:
    """Buffered, sharded writer of parse records into the folder ``out`` (a path or URI)."""

    def __init__(self, out: str | os.PathLike, fmt: str = "jsonl", *, rows_per_shard: int = 1000,
                 shard_seconds: float = 60.0):
        if fmt not in WRITERS:
            raise ValueError(f"unknown output format {fmt!r}: expected one of {', '.join(WRITERS)}")
        self.out, self.fmt = str(out).rstrip("/") or "/", fmt
        self.rows_per_shard, self.shard_seconds = max(1, rows_per_shard), shard_seconds
        self.run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.shards: list[str] = []
        self.counts = {"ok": 0, "error": 0}
        self._buf: list[dict] = []
        self._last = time.monotonic()
        self._prepare()

    # --- folder ---------------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Create the folder, drop the manifest of a previous run and its leftover temporary files."""
        if is_uri(self.out):
            fs, p = filesystem(self.out)
            try:
                fs.create_dir(p, recursive=True)
            except OSError as e:  # e.g. the bucket is missing (never created here) or the store refuses
                raise store_error(e, self.out) from None
            try:
                fs.delete_file(f"{p}/{MANIFEST}")
            except (FileNotFoundError, OSError):
                pass
            return
        d = Path(self.out)
        if d.exists() and not d.is_dir():
            raise NotADirectoryError(f"--out {d} is a file; with --ray, --out is a results folder")
        d.mkdir(parents=True, exist_ok=True)
        (d / MANIFEST).unlink(missing_ok=True)
        for tmp in d.glob(f".{SHARD_PREFIX}*.tmp-*"):  # atomic_path's names of unfinished shards
            tmp.unlink(missing_ok=True)

    def _put(self, name: str, data: bytes) -> None:
        if is_uri(self.out):
            fs, p = filesystem(self.out)
            try:
                with fs.open_output_stream(f"{p}/{name}") as f:
                    f.write(data)
            except OSError as e:  # the store went away mid-run: one line; the shards already put stay
                raise store_error(e, f"{self.out}/{name}") from None
            return
        with atomic_path(Path(self.out) / name) as tmp:
            tmp.write_bytes(data)

    # --- records --------------------------------------------------------------------------------

    def write(self, record: dict) -> None:
        self._buf.append(record)
        self.counts["ok" if record.get("status") == "ok" else "error"] += 1
        if len(self._buf) >= self.rows_per_shard or time.monotonic() - self._last >= self.shard_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records as one shard."""
        self._last = time.monotonic()
        if not self._buf:
            return
        name = f"{SHARD_PREFIX}{self.run_id}-{len(self.shards):05d}{WRITERS[self.fmt].suffix}"
        self._put(name, render(self._buf, self.fmt))
        self.shards.append(name)
        self._buf = []

    def close(self, *, inputs: int | None = None, skipped: int = 0) -> dict:
        """Write the last shard and the manifest (counts over the whole folder); returns the manifest."""
        self.flush()
        statuses = done_statuses(self.out)
        ok = sum(s == "ok" for s in statuses.values())
        manifest = {"format": self.fmt, "videos": len(statuses), "ok": ok, "error": len(statuses) - ok,
                    "inputs": inputs, "skipped": skipped,
                    "this_run": {"run_id": self.run_id, "shards": self.shards, **self.counts},
                    "shards": len(shard_files(self.out)),
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self._put(MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
        return manifest

    def abort(self) -> None:
        """Keep what is finished: write the buffered records, no manifest (the run is not complete)."""
        self.flush()


def render(records: list[dict], fmt: str) -> bytes:
    """The bytes of one shard holding ``records`` in format ``fmt`` (its registry writer)."""
    if fmt == "parquet":
        buf = io.BytesIO()
        w = get_writer("parquet", buf)
        for r in records:
            w.write(r)
        w.close()
        return buf.getvalue()
    text = io.StringIO()
    w = get_writer(fmt, text)
    for r in records:
        w.write(r)
    return text.getvalue().encode("utf-8")


def read_manifest(out: str | os.PathLike) -> dict | None:
    """The ``_SUCCESS`` manifest of a results folder, or None while no run has finished."""
    if is_uri(out):
        fs, p = filesystem(str(out))
        try:
            with fs.open_input_stream(f"{p}/{MANIFEST}") as f:
                return json.loads(f.read())
        except (FileNotFoundError, OSError):
            return None
    m = Path(out) / MANIFEST
    return json.loads(m.read_text()) if m.is_file() else None
