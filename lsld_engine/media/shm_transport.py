"""Shared-memory transport: a worker's result dataclass -> a small picklable message + one ``/dev/shm`` file.

:func:`pack` writes a result's ndarray fields into one file under :data:`SHM_DIR` (one copy, in the
worker) and returns a message naming it; :func:`unpack` maps the file in the consumer (no copy) and
unlinks it at once, so nothing is left behind once the arrays are garbage-collected; :func:`discard`
removes the file of a message that will not be unpacked. Without a shm name the result travels
pickled (``("obj", result)``). Used by :mod:`lsld_engine.media.pool`.
"""
from __future__ import annotations

import dataclasses
import mmap
import os
from typing import Any

import numpy as np

#: Where the per-result files live (a tmpfs on Linux).
SHM_DIR = "/dev/shm"
#: Byte alignment of each array inside a file.
_ALIGN = 64


def pack(result: Any, shm_name: str | None) -> tuple:
    """Picklable message for ``result``; with ``shm_name``, its ndarray fields go to one shm file."""
    if shm_name is None or not dataclasses.is_dataclass(result):
        return ("obj", result)
    arrays = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)
              if isinstance(getattr(result, f.name), np.ndarray)}
    if not arrays:
        return ("obj", result)
    layout, offset = [], 0
    for name, a in arrays.items():
        layout.append((name, a.dtype.str, a.shape, offset))
        offset += -(-a.nbytes // _ALIGN) * _ALIGN
    path = os.path.join(SHM_DIR, shm_name)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.ftruncate(fd, max(offset, 1))
        # pwrite copies straight into the tmpfs pages (no page faults through a mapping)
        for (name, dt, shape, off), a in zip(layout, arrays.values()):
            if a.nbytes == 0:  # e.g. the empty planes of a fallback video (memoryview cannot cast them)
                continue
            buf = memoryview(np.ascontiguousarray(a)).cast("B")
            while buf:
                k = os.pwrite(fd, buf, off)
                buf, off = buf[k:], off + k
    finally:
        os.close(fd)
    rest = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name not in arrays}
    return ("shm", type(result), rest, layout, path, offset)


def unpack(msg: tuple) -> Any:
    """The result a :func:`pack` message stands for; its shm file is mapped, then unlinked at once."""
    if msg[0] == "obj":
        return msg[1]
    _, cls, rest, layout, path, size = msg
    fd = os.open(path, os.O_RDWR)
    try:
        # MAP_POPULATE maps all pages in one call instead of one fault per 4 KiB page
        # shared + writable: the file is ours alone once unlinked, so the arrays can be written
        # in place like in-process ones, without the copy-on-write of a private mapping
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        mm = mmap.mmap(fd, max(size, 1), flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
        os.unlink(path)  # the mapping lives on until the arrays are garbage-collected
    arrays = {name: np.ndarray(shape, dt, buffer=mm, offset=off) for name, dt, shape, off in layout}
    return cls(**rest, **arrays)


def discard(msg: tuple) -> None:
    """Remove the shm file of a message that will never be unpacked (its video was dropped)."""
    if msg[0] == "shm":
        try:
            os.unlink(msg[4])
        except FileNotFoundError:
            pass
