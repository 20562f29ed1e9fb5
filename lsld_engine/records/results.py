"""Read parse results back: one JSONL / Parquet / CSV file, or a results folder of shards.

A results folder (written by ``lsld-engine parse --ray``, :mod:`lsld_engine.scale.sinks`) holds
shards ``part-<run>-<n>.<format>`` (each complete: written under a temporary name and renamed, or
put whole on an object store) and, once a run has finished, the manifest ``_SUCCESS``. Paths may be
local or URIs of any filesystem pyarrow reads (``s3://bucket/results``, ``gs://...``).

- :func:`read_results` (``lsld-engine eval``): ``{video_id: record}``, every record validated; a
  video in two shards is an error naming both.
- :func:`done_ids` (resume): the ids already in a file or folder, read cheaply and tolerantly (a
  partial last line of a single JSONL / CSV file, left by a kill, is cut off).
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

# the URI helpers lived here (old import paths keep working)
from lsld_engine.records.objectstore import check_store
from lsld_engine.records.uris import exists, filesystem, is_uri, local_copy  # noqa: F401
from lsld_engine.records.readers import PredictionsError, read_predictions
from lsld_engine.records.writers import WRITERS, format_of

SHARD_PREFIX = "part-"
MANIFEST = "_SUCCESS"


def is_results_folder(path: str | os.PathLike) -> bool:
    if is_uri(path):
        import pyarrow.fs as pafs

        fs, p = filesystem(str(path))
        return fs.get_file_info(p).type == pafs.FileType.Directory
    return Path(path).is_dir()


def shard_files(folder: str | os.PathLike) -> list[str]:
    """The complete shards in a results folder (any format of :data:`~lsld_engine.records.writers.WRITERS`), sorted."""
    suffixes = tuple(w.suffix for w in WRITERS.values())
    if is_uri(folder):
        import pyarrow.fs as pafs

        fs, base = filesystem(str(folder))
        infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File)
        root = str(folder).rstrip("/")
        return [f"{root}/{n}" for n in names if n.startswith(SHARD_PREFIX) and n.endswith(suffixes)]
    d = Path(folder)
    if not d.is_dir():
        return []
    return sorted(str(p) for p in d.iterdir()
                  if p.is_file() and p.name.startswith(SHARD_PREFIX) and p.name.endswith(suffixes))


def read_results_file(path: str, where: dict[str, str] | None = None) -> dict[str, dict]:
    """``{video_id: record}`` of one JSONL or Parquet file (validated; CSV cannot be read back).
    ``where``, when given, is filled with ``{video_id: "FILE:LINE"}`` (Parquet: ``FILE``)."""
    fmt = format_of(path)
    if fmt == "csv":
        raise PredictionsError(f"{path}: a CSV of events cannot be scored; write JSONL or Parquet (--format)")
    temp = is_uri(path)
    local = local_copy(path) if temp else str(path)
    lines: dict[str, int] = {}
    try:
        if fmt == "parquet":
            from lsld_engine.records.parquet_results import read_parquet_records

            recs = read_parquet_records(local)
        else:
            recs = read_predictions(local, line_numbers=lines)
    except PredictionsError as e:
        raise PredictionsError(str(e).replace(local, path)) from None
    finally:
        if temp:
            os.unlink(local)
    if where is not None:
        where.update({vid: f"{path}:{lines[vid]}" if vid in lines else str(path) for vid in recs})
    return recs


def read_results(path: str | os.PathLike, where: dict[str, str] | None = None) -> dict[str, dict]:
    """``{video_id: record}`` of a results file or folder (see the module docstring); ``where``, when
    given, is filled with each video's ``"FILE:LINE"`` (a shard's for a folder; Parquet: ``FILE``).
    An object store that cannot be used is one :class:`~lsld_engine.records.objectstore.StoreError` line."""
    check_store(str(path))
    if not is_results_folder(path):
        if not exists(path):
            raise FileNotFoundError(f"predictions not found: {path}")
        return read_results_file(str(path), where)
    shards = shard_files(path)
    if not shards:
        raise FileNotFoundError(f"{path} is a folder without result shards ({SHARD_PREFIX}*.jsonl / .parquet); "
                                "pass a predictions file, or the results folder of `parse --ray`")
    records: dict[str, dict] = {}
    seen: dict[str, str] = {}
    for shard in shards:
        located: dict[str, str] = {}
        for vid, rec in read_results_file(shard, located).items():
            if vid in records:
                raise PredictionsError(f"{shard}: duplicate video_id {vid!r} (also in {seen[vid]})")
            records[vid] = rec
            seen[vid] = shard
        if where is not None:
            where.update(located)
    return records


def read_csv_statuses(path: str | os.PathLike, repair: bool = True) -> dict[str, str]:
    """``{video_id: status}`` of an events CSV; a partial last line is cut off with ``repair``."""
    path = Path(path)
    if not path.is_file():
        return {}
    data = path.read_bytes()
    header = ",".join(WRITERS["csv"].FIELDS).encode()
    if data and not data.lstrip(b"\xef\xbb\xbf").startswith(header):  # refuse before changing anything
        raise PredictionsError(f"{path}: not an events CSV of ours (its first line is not {header.decode()!r}); "
                               "left untouched: pass another path, or remove it to start over")
    end = data.rfind(b"\n") + 1
    if end < len(data) and repair:
        with open(path, "r+b") as f:
            f.truncate(end)
    rows = csv.reader(io.StringIO(data[:end].decode("utf-8", errors="replace")))
    next(rows, None)  # header
    return {r[0]: r[1] for r in rows if len(r) > 1}


def done_statuses(path: str | os.PathLike, fmt: str | None = None) -> dict[str, str]:
    """``{video_id: status}`` of the videos already in a results file or folder (for resume and the
    manifest; error records count as done, as in a single-machine run)."""
    if is_results_folder(path):
        out: dict[str, str] = {}
        for shard in shard_files(path):
            out.update(_file_statuses(shard, format_of(shard)))
        return out
    if not exists(path):
        return {}
    return _file_statuses(str(path), fmt or format_of(path))


def done_ids(path: str | os.PathLike, fmt: str | None = None) -> set[str]:
    """Ids of the videos already in a results file or folder (:func:`done_statuses`)."""
    return set(done_statuses(path, fmt))


def _file_statuses(path: str, fmt: str) -> dict[str, str]:
    from lsld_engine.records.readers import read_records

    temp = is_uri(path)
    local = local_copy(path) if temp else str(path)
    try:
        if fmt == "parquet":
            from lsld_engine.records.parquet_results import read_parquet_statuses

            try:
                return read_parquet_statuses(local)
            except (OSError, ValueError, KeyError) as e:  # pyarrow: a truncated or foreign file
                raise PredictionsError(f"{path}: not a readable results Parquet file ({e}); "
                                       "remove it to start over") from None
        if fmt == "csv":
            return read_csv_statuses(local, repair=not temp)
        return {vid: rec.get("status", "") for vid, rec in read_records(local, repair=not temp).items()}
    except PredictionsError:
        raise
    except ValueError as e:
        raise PredictionsError(str(e).replace(local, path)) from None
    finally:
        if temp:
            os.unlink(local)
