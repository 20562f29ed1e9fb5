"""Integrity of export-cache entries: each file's sha256, recorded in the entry's ``COMPLETE`` marker
when the entry is made, checked when a file of it is loaded.

Why: a complete entry can still be damaged later (a truncated copy, a bad disk, a user editing the
folder). A truncated ONNX file fails to load with a protobuf traceback; one with bytes flipped inside
its weights still loads and silently gives other numbers. The marker's ``files`` map
(``{file name: sha256}``) lets a loader tell both apart from a good entry, and rebuild it
(:func:`lsld_engine.exporting.cache.ensure`). Entries made before the map existed have none: they
count as damaged and are rebuilt once.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from lsld_engine.files import write_text_atomic

MARKER: str = "COMPLETE"


@dataclass(frozen=True)
class Damage:
    """Why an entry cannot be used: ``file`` (the first damaged one) and ``reason`` (a short phrase)."""

    file: Path
    reason: str

    def line(self) -> str:
        return f"{self.file}: {self.reason}"


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of one file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_hashes(folder: str | os.PathLike) -> dict[str, str]:
    """``{name: sha256}`` of the regular files directly in ``folder`` (the marker excluded)."""
    folder = Path(folder)
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())
            if p.is_file() and not p.is_symlink() and p.name != MARKER and not p.name.startswith(".")}


def write_marker(folder: str | os.PathLike, fields: dict) -> Path:
    """Write ``folder/COMPLETE``: ``fields`` plus ``files`` (every file's sha256), through a temporary
    name and a rename, so a marker is never half written. Call it last, when the files are final."""
    folder = Path(folder)
    text = json.dumps({**fields, "files": file_hashes(folder)}, indent=2) + "\n"
    return write_text_atomic(folder / MARKER, text)


def damage(entry: str | os.PathLike, names: Sequence[str]) -> Damage | None:
    """``None`` when the files ``names`` of the complete ``entry`` (and their ``.data`` sidecars when
    recorded) have the sha256 its marker records; else the first :class:`Damage`. Only these files
    are hashed (an fp32 entry's loader needs its ``.onnx`` file, not its manifest)."""
    entry = Path(entry)
    try:
        recorded = json.loads((entry / MARKER).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return Damage(entry / MARKER, "the entry's marker cannot be read")
    if not isinstance(recorded, dict):
        return Damage(entry / names[0], "no sha256 recorded (an entry made by an older lsld-engine)")
    wanted = list(names) + [f"{n}.data" for n in names if f"{n}.data" in recorded]
    for name in wanted:
        path = entry / name
        if name not in recorded:
            return Damage(path, "no sha256 recorded for it")
        try:
            got = sha256_file(path)
        except OSError as e:
            return Damage(path, f"cannot be read ({e.strerror or e})")
        if got != recorded[name]:
            return Damage(path, "its sha256 differs from the one recorded when the entry was made")
    return None


def short(e: BaseException) -> str:
    """The first line of ``e``'s message (its type when the message is empty), for one-line errors."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def full_message(root: str | os.PathLike) -> str:
    return f"the export cache {root} is full: free space or set LSLD_CACHE / --engine-dir"


def rebuild_failed_message(d: Damage, entry: str | os.PathLike, e: BaseException | str) -> str:
    cause = e if isinstance(e, str) else short(e)
    return (f"export cache file {d.file} is damaged ({d.reason}) and rebuilding it failed ({cause}): remove the "
            f"entry with `rm -r {entry}` and run again")


__all__ = ["Damage", "MARKER", "damage", "file_hashes", "full_message", "rebuild_failed_message", "sha256_file",
           "short", "write_marker"]
