"""Claiming an output for one writer: an exclusive lock, a writability check before any network is
loaded, and a one-line stop when the disk fills.

- **One writer.** ``parse --out FILE`` locks ``FILE`` itself and ``extract --out ROOT`` locks the
  folder ``ROOT`` (``fcntl.flock``, exclusive, non-blocking). A second process on the same output is
  refused at once with :class:`OutputError`; the kernel drops the lock when its holder exits, even
  on ``kill -9``, so there is never a stale lock to clean up. (``flock`` is advisory and local:
  on some network file systems it may not exclude a process on another machine.)
- **Writable before work.** :func:`check_writable` refuses an output that is a folder, a device
  (``/dev/full``) or a pipe, and writes and syncs a small probe file beside it, so a read-only or
  full disk is reported before minutes of network loading.
- **Disk full mid-run.** :func:`is_disk_full` recognises ENOSPC / EDQUOT / EFBIG; the commands turn
  it into one line that says what was written and that running the same command again resumes.
"""
from __future__ import annotations

import errno
import fcntl
import io
import os
import stat
import tempfile
from pathlib import Path
from typing import IO

from lsld_engine.errors import LsldError
from lsld_engine.files import fs_text

#: Bytes the probe file writes (and syncs) beside an output.
PROBE_BYTES = 64 * 1024
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class OutputError(LsldError, RuntimeError):
    """An output that cannot be written (locked by another process, not a file, disk full)."""


def is_disk_full(e: BaseException) -> bool:
    """True for "no space left", "quota exceeded" and "file too large" errors."""
    return isinstance(e, OSError) and e.errno in _FULL_ERRNOS


def check_writable(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Refuse an output that cannot be written, before any work starts.

    ``path``: the output file (``folder=False``: it may be missing, or must be a regular file) or
    the output folder (``folder=True``; made if missing). A probe file of :data:`PROBE_BYTES` is
    written, synced and removed in the folder, so permissions, a read-only mount and a full disk
    all show up here. Raises :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    shown = fs_text(path)
    if folder:
        if path.exists() and not path.is_dir():
            raise OutputError(f"{shown} exists and is not a folder; give a dataset root folder")
        where = path
    else:
        if path.exists() or path.is_symlink():
            try:
                mode = os.stat(path).st_mode
            except OSError as e:
                raise OutputError(f"{shown}: cannot use as output ({e.strerror})") from None
            if stat.S_ISDIR(mode):
                raise OutputError(f"{shown} is a folder; give a file path for the output")
            if not stat.S_ISREG(mode):
                raise OutputError(f"{shown} is not a regular file (a device or pipe); an output must be "
                                  "a file that can be resumed: give a file path")
        where = path.parent
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the output folder {fs_text(where)} ({e.strerror})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".lsld-probe-", dir=where)
    except OSError as e:
        raise OutputError(f"cannot write in {fs_text(where)} ({e.strerror}); choose a writable output") from None
    try:
        block = b"\0" * PROBE_BYTES
        view = memoryview(block)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as e:
        hint = "free some space" if is_disk_full(e) else "choose a writable output"
        raise OutputError(f"cannot write in {fs_text(where)} ({e.strerror}); {hint} and run again") from None
    finally:
        os.close(fd)
        os.unlink(probe)


class OutputLock:
    """An exclusive ``flock`` on an output file (created if missing, never truncated here) or folder.

    ``OutputLock(path)`` raises :class:`OutputError` when another process holds it. For a file,
    :meth:`text` gives an append-mode text stream on the locked descriptor (the writer must write
    through it: a second descriptor of the same file would not share the lock).
    ``release()`` (or leaving the ``with`` block) unlocks; if the file was created here and is
    still empty it is removed, so a refused or failed run leaves nothing behind.
    """

    def __init__(self, path: str | os.PathLike, *, folder: bool = False, what: str = "--out"):
        self.path, self.folder = Path(path), folder
        shown = fs_text(self.path)
        self.created = False
        if folder:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        else:
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                try:
                    self.fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o666)
                    self.created = True
                except FileExistsError:  # another process created it just now
                    self.fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._close()
            raise OutputError(f"{what} {shown} is being written by another process (it holds an exclusive "
                              "lock); wait for it to finish, or give another output") from None
        self._text: IO[str] | None = None

    def truncate(self) -> None:
        """Empty the locked file (``--no-resume``); call only after deciding to overwrite it."""
        os.ftruncate(self.fd, 0)

    def text(self) -> IO[str]:
        """Append-mode UTF-8 text stream on the locked file (closing it keeps the lock)."""
        if self._text is None:
            self._text = io.open(self.fd, "a", encoding="utf-8", newline="", closefd=False)
        return self._text

    def _close(self) -> None:
        os.close(self.fd)
        if self.created:
            try:
                if self.path.stat().st_size == 0:
                    self.path.unlink()
            except OSError:
                pass

    def release(self) -> None:
        if self.fd < 0:
            return
        if self._text is not None:
            try:
                self._text.close()
            except OSError:  # a disk-full flush already reported by the writer
                pass
        self._close()  # closing the descriptor drops the lock
        self.fd = -1

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
