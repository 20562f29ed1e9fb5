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


def fs_text(name: str | os.PathLike) -> str:
    """``name`` as UTF-8-safe text: bytes a file name holds that are not UTF-8 (surrogate escapes)
    become ``\\xNN``; any other lone surrogate ``\\uNNNN``."""
    s = os.fspath(name)
    if isinstance(s, bytes):
        return s.decode("utf-8", "backslashreplace")
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        pass
    out = []
    for ch in s:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # a byte the file system decoder could not map
            out.append(f"\\x{o - 0xDC00:02x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)
