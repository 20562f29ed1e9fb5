"""Prediction files: writers chosen by format name (the readers are in :mod:`lsld_engine.records.readers`).

``jsonl`` (the canonical format, read back by ``lsld-engine eval``): one JSON object per line, one
line per video, written and flushed as soon as the video is done::

    {"video_id": "4YdbENYcIyE_23_33", "status": "ok", "duration": 10.0, "segments": 10,
     "events": {"audio":  [{"label": "Speech", "onset": 0.0, "offset": 4.0, "score": 0.93}],
                "visual": [...], "audio_visual": [...]}}
    {"video_id": "broken_clip", "status": "error", "error": "no video stream"}

- ``video_id``: the file stem; unique within a file. Ids and paths are UTF-8 text: bytes of a file
  name that are not UTF-8 are written as ``\\xNN`` (:func:`lsld_engine.files.fs_text`).
- ``status``: ``"ok"`` or ``"error"``; an error line carries ``"error"`` (a message) and no events.
- ``duration``: seconds of media; ``segments``: number of one-second segments parsed.
- ``events``: the three tracks ``audio``, ``visual``, ``audio_visual``, each a list of events with
  ``label`` (an LLP class name), ``onset`` < ``offset`` in seconds on segment boundaries, and
  ``score`` (mean segment probability, optional when reading).

``csv``: one row per event (``video_id,status,track,label,onset,offset,score,error``); a video
with no event, or a failed one, still gets one row with the event fields empty.

``parquet``: one row per video, events as nested lists (:mod:`lsld_engine.records.parquet_results`).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from pathlib import Path
from typing import IO

from lsld_engine.records.events import TRACKS
from lsld_engine.files import atomic_path, fs_text
# the strict reader lived here (old import paths keep working)
from lsld_engine.records.readers import PredictionsError, check_record, read_predictions  # noqa: F401


def printable(obj):
    """``obj`` (a record: dicts, lists, strings, numbers) with every string made UTF-8-safe
    (:func:`~lsld_engine.files.fs_text`): paths and error messages may carry file-name bytes that
    are not UTF-8, which no UTF-8 file can hold."""
    if isinstance(obj, str):
        return fs_text(obj)
    if isinstance(obj, dict):
        return {printable(k): printable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [printable(v) for v in obj]
    return obj


def ok_record(video_id: str, events: dict[str, list[dict]], duration: float, segments: int) -> dict:
    """The record of a parsed video (``events`` holds the three tracks)."""
    return {"video_id": video_id, "status": "ok", "duration": float(duration), "segments": int(segments),
            "events": {k: list(events.get(k, [])) for k in TRACKS}}


def error_record(video_id: str, error: str) -> dict:
    """The record of a video that could not be parsed."""
    return {"video_id": video_id, "status": "error", "error": str(error)}


class _Writer:
    """Base: opens ``path`` (or takes an open text file), writes records, flushes each one."""

    format: str = ""
    suffix: str = ""

    def __init__(self, path: str | os.PathLike | IO[str], append: bool = False):
        self.written = 0  # records written (and flushed)
        self._failed = False
        if isinstance(path, (str, os.PathLike)):
            self.path = Path(path)
            self._file = open(self.path, "a" if append else "w", encoding="utf-8", newline="")
            self._owns = True
        else:
            self.path, self._file, self._owns = None, path, False

    def write(self, record: dict) -> None:
        try:
            self._write(printable(record))
            # One flush per video: a crash or a kill leaves every finished video on disk.
            self._file.flush()
        except OSError:
            self._failed = True  # e.g. disk full: close() must not raise it a second time
            raise
        self.written += 1

    def _write(self, record: dict) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self._owns and not self._file.closed:
            try:
                self._file.close()
            except OSError:
                if not self._failed:
                    raise

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class JsonlWriter(_Writer):
    """One JSON object per line (the predictions format read by :func:`read_predictions`)."""

    format, suffix = "jsonl", ".jsonl"

    def _write(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")


class CsvEventsWriter(_Writer):
    """One row per event; videos without events (or failed ones) get one row with empty event fields."""

    format, suffix = "csv", ".csv"
    FIELDS = ("video_id", "status", "track", "label", "onset", "offset", "score", "error")

    def __init__(self, path, append: bool = False):
        super().__init__(path, append)
        self._csv = csv.writer(self._file, lineterminator="\n")
        at_start = not append or self._file.tell() == 0
        if at_start:
            self._csv.writerow(self.FIELDS)

    def _write(self, record: dict) -> None:
        vid, status = record["video_id"], record["status"]
        rows = [[vid, status, track, e["label"], e["onset"], e["offset"], e.get("score", ""), ""]
                for track in TRACKS for e in record.get("events", {}).get(track, [])]
        # all rows of a video in one write: a kill leaves whole videos (and at most a partial last line)
        buf = io.StringIO()
        empty = [[vid, status, "", "", "", "", "", record.get("error", "")]]
        csv.writer(buf, lineterminator="\n").writerows(rows or empty)
        self._file.write(buf.getvalue())


class ParquetResultsWriter(_Writer):
    """One Parquet row per video (schema: :mod:`lsld_engine.records.parquet_results`; needs pyarrow).

    Parquet cannot be appended to line by line: rows go out in row groups of ``row_group_size``
    videos to a temporary file beside ``path``, renamed into place by :meth:`close`; with
    ``append`` the rows of an existing ``path`` are carried over first. A killed run leaves the
    previous file as it was (use JSONL, or a results folder with ``--ray``, for runs that resume
    after a kill without losing work).
    """

    format, suffix = "parquet", ".parquet"

    def __init__(self, path, append: bool = False, row_group_size: int = 1000):
        from lsld_engine.records import parquet_results as pr

        self._pr = pr
        self._rows: list[dict] = []
        self.written = 0
        self.row_group_size = row_group_size
        self._atomic = contextlib.ExitStack()  # the temporary file, renamed over ``path`` on close
        if isinstance(path, (str, os.PathLike)):
            self.path = Path(path)
            pr.pyarrow()  # a missing pyarrow is reported before the temporary file exists
            sink = self._atomic.enter_context(atomic_path(self.path))
        else:  # a binary file object: written when closed
            self.path, sink = None, path
        self._writer = pr.open_writer(sink)
        if append and self.path is not None and self.path.is_file():
            for rec in pr.read_parquet_records(self.path).values():
                self._rows.append(rec)
            self._flush_rows()

    def write(self, record: dict) -> None:
        self._rows.append(printable(record))
        self.written += 1
        if len(self._rows) >= self.row_group_size:
            self._flush_rows()

    def _flush_rows(self) -> None:
        if self._rows:
            self._writer.write_table(self._pr.records_to_table(self._rows))
            self._rows = []

    def close(self) -> None:
        if self._writer is None:
            return
        self._flush_rows()
        self._writer.close()
        self._writer = None
        self._atomic.close()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and exc_type is not KeyboardInterrupt and self._writer is not None:
            # a crash: keep the previous file; an interrupt still saves the finished videos
            self._writer.close()
            self._writer = None
            self._atomic.__exit__(exc_type, exc, tb)
            return
        self.close()


#: Writers by format name; the CLI's ``--format`` choices are exactly these keys.
WRITERS: dict[str, type[_Writer]] = {w.format: w for w in (JsonlWriter, CsvEventsWriter, ParquetResultsWriter)}


def format_of(path: str | os.PathLike, default: str = "jsonl") -> str:
    """The format a results path names by its suffix (``.csv``, ``.parquet``, ``.jsonl``), else ``default``."""
    suffix = Path(str(path)).suffix.lower()
    return next((f for f, w in WRITERS.items() if w.suffix == suffix), default)


def get_writer(fmt: str, path: str | os.PathLike | IO[str], append: bool = False) -> _Writer:
    """A writer of format ``fmt`` (one of :data:`WRITERS`) on ``path``."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown output format {fmt!r}: expected one of {', '.join(WRITERS)}")
    return WRITERS[fmt](path, append=append)


def dumps_record(record: dict, fmt: str = "jsonl") -> str:
    """A record as the text its writer would emit (handy for logs and tests)."""
    buf = io.StringIO()
    get_writer(fmt, buf).write(record)
    return buf.getvalue()
