"""File helpers shared by every writer: atomic replacement (temp file + rename) and content digests."""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to, renamed over ``path`` when the block succeeds and
    removed when it raises: readers never see half a file, and a kill mid-write leaves the previous
    file intact. The temporary name keeps ``path``'s suffix (``np.savez`` would otherwise add ``.npz``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file (and of its ``.data`` sidecar when present, as ONNX external weights)."""
    h = hashlib.sha256()
    for p in (Path(path), Path(str(path) + ".data")):
        if p.is_file():
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()
