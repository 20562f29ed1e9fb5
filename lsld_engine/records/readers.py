"""Readers of record files: the strict predictions reader (``lsld-engine eval``) and the tolerant
one that resume uses (``--out`` of ``parse``, the extract log).

- :func:`read_predictions` / :func:`check_record`: every line must be a valid record
  (docs/formats.md); a bad one raises :class:`PredictionsError` naming the file and line.
- :func:`read_records`: the ids already in a JSONL written one flushed line per video; a line cut
  by a kill is repaired, anything else that is not such a file is refused and left untouched.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from lsld_engine.records.events import TRACKS
from lsld_engine.files import fs_text
from lsld_engine.data.llp import CLASS_INDEX
from lsld_engine.records.untrusted import InputFileError, json_line


class PredictionsError(InputFileError):
    """A malformed predictions file; the message names the file and line."""


def read_predictions(path: str | os.PathLike, line_numbers: dict[str, int] | None = None) -> dict[str, dict]:
    """Read a predictions JSONL into ``{video_id: record}`` (file order), validating every line.

    Blank lines are skipped. A malformed line (including hostile JSON: see
    :func:`lsld_engine.records.untrusted.json_line`) or a repeated ``video_id`` raises
    :class:`PredictionsError` naming the file and line number. ``line_numbers``, when given, is
    filled with ``{video_id: line}``.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"predictions file {path} is a folder; pass the JSONL file itself")
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    records: dict[str, dict] = {}
    first_line: dict[str, int] = {}
    with open(path, "rb") as f:  # decoded per line, so a bad byte is reported with its line number
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise PredictionsError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start}); "
                                       "is this a predictions JSONL?") from None
            if not line.strip():
                continue
            try:
                rec = json_line(line, where)
            except InputFileError as e:
                raise PredictionsError(str(e)) from None
            _check_record(rec, where)
            vid = rec["video_id"]
            if vid in records:
                raise PredictionsError(f"{where}: duplicate video_id {vid!r} (first on line {first_line[vid]}); "
                                       "keep one line per video")
            records[vid] = rec
            first_line[vid] = lineno
    if line_numbers is not None:
        line_numbers.update(first_line)
    return records


def check_record(rec, where: str) -> None:
    """Raise :class:`PredictionsError` (prefixed by ``where``) unless ``rec`` is a valid record."""
    _check_record(rec, where)


def _check_record(rec, where: str) -> None:
    if not isinstance(rec, dict):
        raise PredictionsError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    vid = rec.get("video_id")
    if not isinstance(vid, str) or not vid:
        raise PredictionsError(f"{where}: missing or empty \"video_id\" (a string)")
    status = rec.get("status")
    if status == "error":
        if not isinstance(rec.get("error"), str):
            raise PredictionsError(f"{where}: video {vid!r} has status \"error\" but no \"error\" message")
        return
    if status != "ok":
        raise PredictionsError(f"{where}: video {vid!r}: \"status\" must be \"ok\" or \"error\", got {status!r}")
    events = rec.get("events")
    if not isinstance(events, dict):
        raise PredictionsError(f"{where}: video {vid!r}: missing \"events\" object with tracks {', '.join(TRACKS)}")
    unknown = sorted(set(events) - set(TRACKS))
    if unknown:
        raise PredictionsError(f"{where}: video {vid!r}: unknown event track(s) {unknown}; expected {list(TRACKS)}")
    for track in TRACKS:
        lst = events.get(track)
        if not isinstance(lst, list):
            raise PredictionsError(f"{where}: video {vid!r}: events[{track!r}] must be a list")
        for k, e in enumerate(lst):
            _check_event(e, f"{where}: video {vid!r}: events[{track!r}][{k}]")


def _check_event(e, where: str) -> None:
    if not isinstance(e, dict):
        raise PredictionsError(f"{where}: expected an object with label, onset, offset")
    if e.get("label") not in CLASS_INDEX:
        raise PredictionsError(f"{where}: unknown class {e.get('label')!r} (expected one of the 25 LLP classes)")
    on, off = e.get("onset"), e.get("offset")
    if not (_is_number(on) and _is_number(off)):
        raise PredictionsError(f"{where}: onset and offset must be numbers (seconds), got {on!r}, {off!r}")
    if not 0 <= on < off:
        raise PredictionsError(f"{where}: need 0 <= onset < offset, got onset {on}, offset {off}")
    if "score" in e and not _is_number(e["score"]):
        raise PredictionsError(f"{where}: score must be a number, got {e['score']!r}")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def read_records(path: str | os.PathLike, repair: bool = True) -> dict[str, dict]:
    """``{video_id: record}`` of a JSONL file written one flushed line per video (last line wins).

    The whole file is validated before anything is changed: a file that is not such a JSONL (an
    MP4, a text file, a line that is not an object with a string ``video_id``, hostile JSON) raises
    :class:`~lsld_engine.records.untrusted.InputFileError` naming the file and line, and is left untouched.
    A run killed mid-write can leave a partial last line (no trailing newline, starting like our
    records, ``{"video_id"``): with ``repair`` it is cut off the file (and only then), so appending
    resumes on a clean line and the video is simply redone; a complete record lacking only its
    newline gets the newline.
    """
    path = Path(path)
    if not path.exists():
        return {}
    shown = fs_text(path)
    if not path.is_file():
        raise InputFileError(f"{shown}: not a regular file; give a JSONL file path")
    with open(path, "rb") as f:
        head = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
        if head and not head.startswith(b"{"):
            raise InputFileError(f"{shown}: not a JSONL file of records (it starts with {head[:16]!r}); "
                                 "left untouched: pass another path, or remove it to start over")
        f.seek(0)
        data = f.read()
    end = data.rfind(b"\n") + 1
    tail = data[end:]
    lines = data[:end].split(b"\n")[:-1] if end else []
    records: dict[str, dict] = {}
    for lineno, raw in enumerate(lines, start=1):
        _read_record(raw, f"{shown}:{lineno}", records, first=lineno == 1)
    fix = None
    if tail.strip():
        where = f"{shown}:{len(lines) + 1}"
        try:
            _read_record(tail, where, records, first=not lines)
            fix = "newline"
        except InputFileError:
            if not tail.lstrip(b"\xef\xbb\xbf").startswith(b'{"video_id"'):
                raise InputFileError(f"{where}: the last line is cut off and is not a record; left untouched: "
                                     "pass another path, or fix or remove the file") from None
            fix = "cut"
    if repair and fix == "cut":  # everything else validated: only now touch the file
        with open(path, "r+b") as f:
            f.truncate(end)
    elif repair and fix == "newline":
        with open(path, "ab") as f:
            f.write(b"\n")
    return records


def _read_record(raw: bytes, where: str, records: dict, first: bool) -> None:
    try:
        text = raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as e:
        raise InputFileError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start}); not a predictions/log "
                             "JSONL? Left untouched: fix or remove the file to start over") from None
    if not text.strip():
        return
    rec = json_line(text, where)
    vid = rec.get("video_id") if isinstance(rec, dict) else None
    if not isinstance(vid, str) or not vid:
        raise InputFileError(f"{where}: not a record line (a JSON object with a string \"video_id\"); "
                             "left untouched: fix or remove the file to start over")
    records[vid] = rec
