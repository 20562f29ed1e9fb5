"""Which videos to process: folders (recursively, by extension), single files, or a list file.

Ids: a video's id is its file stem (LLP's ``filename``). When two inputs share a stem (``a/x.mp4``
and ``b/x.mp4``) both get their path relative to the common folder of the inputs, without the
extension (``a/x``, ``b/x``), so ids stay unique in a predictions file or a feature folder.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

#: Extensions taken when walking folders (lower case; files given explicitly are always taken).
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".wmv",
                                     ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".3gp", ".ogv", ".vob")


@dataclass(frozen=True)
class VideoInput:
    """One video to process."""

    path: str
    video_id: str


def read_list(path: str | os.PathLike) -> list[Path]:
    """Paths listed one per line in ``path`` (blank lines and ``#`` comments skipped; relative paths
    are relative to the list file's folder)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        out.append(p if p.is_absolute() else path.parent / p)
    return out


def find_videos(inputs: Iterable[str | os.PathLike], extensions: Iterable[str] = VIDEO_EXTENSIONS,
                recursive: bool = True) -> list[Path]:
    """Video files under ``inputs`` (folders walked, files taken as given), sorted, without duplicates.

    A missing input raises ``FileNotFoundError`` naming it.
    """
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    found: dict[str, Path] = {}
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            walker = p.rglob("*") if recursive else p.glob("*")
            for f in walker:
                if f.suffix.lower() in exts and f.is_file() and not f.name.startswith("."):
                    found.setdefault(os.path.abspath(f), f)
        elif p.exists():
            found.setdefault(os.path.abspath(p), p)
        else:
            raise FileNotFoundError(f"input not found: {p}")
    return [found[k] for k in sorted(found)]


def assign_ids(paths: list[Path]) -> list[VideoInput]:
    """:class:`VideoInput` per path: the stem, or a relative path when stems collide (module docstring)."""
    stems = Counter(p.stem for p in paths)
    clash = [p for p in paths if stems[p.stem] > 1]
    base = Path(os.path.commonpath([os.path.abspath(p.parent) for p in clash])) if clash else None
    out = []
    for p in paths:
        vid = p.stem
        if stems[vid] > 1:
            vid = Path(os.path.relpath(os.path.abspath(p), base)).with_suffix("").as_posix()
        out.append(VideoInput(str(p), vid))
    return out


def collect_inputs(inputs: Iterable[str | os.PathLike], list_file: str | os.PathLike | None = None,
                   extensions: Iterable[str] = VIDEO_EXTENSIONS) -> list[VideoInput]:
    """Videos from folders/files ``inputs`` plus ``list_file``, sorted by path, with unique ids."""
    items = list(inputs)
    if list_file is not None:
        items += read_list(list_file)
    return assign_ids(find_videos(items, extensions))


def read_records(path: str | os.PathLike, repair: bool = True) -> dict[str, dict]:
    """``{video_id: record}`` of a JSONL file written one flushed line per video (last line wins).

    A run killed mid-write can leave a partial last line (no trailing newline): with ``repair`` it
    is cut off the file, so appending resumes on a clean line and the video is simply redone.
    Any other malformed line raises ``ValueError`` naming the file and line.
    """
    import json

    path = Path(path)
    if not path.is_file():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):  # partial last line
        if repair:
            with open(path, "r+b") as f:
                f.truncate(end)
        data = data[:end]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); not a predictions/log "
                         "JSONL? Fix or remove the file to start over") from None
    records: dict[str, dict] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            vid = rec["video_id"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{path}:{lineno}: not a record line (JSON object with \"video_id\"); "
                             "fix or remove the file to start over") from None
        records[vid] = rec
    return records
