"""List the videos of a scale-out run: folders, ``--list`` files and globs, local or on any pyarrow filesystem.

Local paths go through :func:`lsld_engine.parsing.video_inputs.collect_inputs` (the single-machine rules: video
extensions, sorted, unique ids); a glob (``archive/**/*.mp4``) is expanded first. URIs
(``s3://bucket/archive/``, ``gs://...``, ``hdfs://...``) are listed with ``pyarrow.fs``: folders
recursively by extension, globs by matching the listing of their fixed prefix. Ids are file stems;
stems that collide get their path relative to the common folder, as on one machine.
"""
from __future__ import annotations

import fnmatch
import glob
import os
import posixpath
from collections import Counter
from pathlib import Path
from typing import Iterable

from lsld_engine.parsing.video_inputs import VIDEO_EXTENSIONS, VideoInput, collect_inputs, list_lines
from lsld_engine.records.objectstore import store_error
from lsld_engine.records.results import filesystem, is_uri

_GLOB_CHARS = set("*?[")


def is_glob(path: str) -> bool:
    return any(c in _GLOB_CHARS for c in str(path))


def list_inputs(inputs: Iterable[str | os.PathLike], list_file: str | os.PathLike | None = None,
                extensions: Iterable[str] = VIDEO_EXTENSIONS) -> list[VideoInput]:
    """The videos of ``inputs`` (folders, files, globs, URIs) plus those of ``list_file``, sorted by
    path with unique ids. Raises ``FileNotFoundError`` naming an input that matches nothing."""
    items = [str(i) for i in inputs]
    if list_file is not None:
        items += read_uri_list(list_file)
    exts = tuple(e.lower() for e in extensions)
    local: list[str] = []
    remote: list[str] = []
    for item in items:
        if is_uri(item):
            try:
                remote += _list_uri(item, exts)
            except FileNotFoundError:
                raise
            except OSError as e:  # unreachable store, refused access: one line naming the URI
                raise store_error(e, item) from None
        elif is_glob(item):
            hits = sorted(glob.glob(os.path.expanduser(item), recursive=True))
            if not hits:
                raise FileNotFoundError(f"no file matches {item}")
            local += [h for h in hits if os.path.isdir(h) or (os.path.isfile(h) and h.lower().endswith(exts))]
        else:
            local.append(item)
    found = collect_inputs(local, extensions=extensions) if local else []
    if not remote:
        return found
    return _with_unique_ids([(i.path, i.video_id) for i in found] + [(u, None) for u in sorted(set(remote))])


def read_uri_list(path: str | os.PathLike) -> list[str]:
    """Entries of a list file (:func:`lsld_engine.parsing.video_inputs.list_lines`); relative local paths
    are relative to the list file's folder, URIs are kept as written."""
    lines = list_lines(path)  # (a URI is refused as written, before Path() folds its "//")
    path = Path(path)
    out = []
    for line in lines:
        if is_uri(line) or os.path.isabs(os.path.expanduser(line)):
            out.append(os.path.expanduser(line) if not is_uri(line) else line)
        else:
            out.append(str(path.parent / line))
    return out


def _list_uri(uri: str, exts: tuple[str, ...]) -> list[str]:
    import pyarrow.fs as pafs

    scheme, rest = uri.split("://", 1)
    pattern = rest if is_glob(rest) else None
    prefix = rest
    if pattern is not None:  # list the fixed part, then match
        parts = rest.split("/")
        fixed = next(i for i, p in enumerate(parts) if is_glob(p))
        prefix = "/".join(parts[:fixed])
    fs, base = filesystem(f"{scheme}://{prefix}")
    info = fs.get_file_info(base)
    if info.type == pafs.FileType.File and pattern is None:
        return [uri]
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"input not found: {uri}")
    root = f"{scheme}://{prefix.rstrip('/')}"
    out = []
    for f in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        if f.type != pafs.FileType.File or f.base_name.startswith("."):
            continue
        rel = posixpath.relpath(f.path, base.rstrip("/"))
        full = f"{root}/{rel}"
        if pattern is not None:
            if fnmatch.fnmatch(f"{prefix.rstrip('/')}/{rel}", pattern):
                out.append(full)
        elif f.base_name.lower().endswith(exts):
            out.append(full)
    if not out:
        raise FileNotFoundError(f"no video files found in {uri}")
    return out


def _with_unique_ids(items: list[tuple[str, str | None]]) -> list[VideoInput]:
    """Ids for mixed local / URI inputs: stems, or paths relative to the common folder when stems
    collide (a URI counts by its path: ``s3://bucket/a/x.mp4`` as ``/bucket/a/x.mp4``)."""
    def key(p: str) -> str:
        if is_uri(p):
            return "/" + p.split("://", 1)[1].lstrip("/")
        return os.path.abspath(p).replace(os.sep, "/")

    def stem(p: str) -> str:
        return posixpath.splitext(posixpath.basename(key(p)))[0]

    counts = Counter(stem(p) for p, _ in items)
    clash = [key(p) for p, _ in items if counts[stem(p)] > 1]
    base = posixpath.commonpath([posixpath.dirname(k) for k in clash]) if clash else "/"
    out = []
    for p, vid in items:
        if counts[stem(p)] > 1:
            vid = posixpath.splitext(posixpath.relpath(key(p), base))[0]
        out.append(VideoInput(p, vid or stem(p)))
    return sorted(out, key=lambda v: v.path)
