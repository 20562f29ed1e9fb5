"""Paths that may be URIs: ``s3://bucket/x``, ``gs://...``, ``file://...`` are read and written through
``pyarrow.fs`` (the ``[ray]`` / ``[parquet]`` extras); plain paths are local files."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def is_uri(path: str | os.PathLike) -> bool:
    """True for ``scheme://...`` paths (object stores, HDFS, ``file://``): read and written through
    ``pyarrow.fs``; plain paths are local files."""
    return "://" in str(path)


def filesystem(uri: str):
    """``(pyarrow.fs.FileSystem, path inside it)`` of a URI (S3 endpoint: :mod:`lsld_engine.records.objectstore`)."""
    from lsld_engine.records.objectstore import filesystem as store_filesystem
    from lsld_engine.records.parquet_results import pyarrow

    pyarrow()
    return store_filesystem(uri)


def exists(path: str | os.PathLike) -> bool:
    """Whether a local path or a URI names an existing file or folder."""
    if is_uri(path):
        import pyarrow.fs as pafs

        fs, p = filesystem(str(path))
        return fs.get_file_info(p).type != pafs.FileType.NotFound
    return Path(path).exists()


def local_copy(uri: str) -> str:
    """A temporary local file with the bytes of ``uri`` (PyAV and the JSONL reader read local files);
    the caller deletes it. Nothing is left behind when the copy fails."""
    fs, p = filesystem(uri)
    fd, tmp = tempfile.mkstemp(prefix="lsld-", suffix=os.path.splitext(p)[1])
    try:
        with os.fdopen(fd, "wb") as f, fs.open_input_stream(p) as src:
            while chunk := src.read(1 << 22):
                f.write(chunk)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp
