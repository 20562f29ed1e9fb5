r"""Which videos to process: folders (recursively, by extension), single files, or a list file.

Ids: a video's id is its file stem (LLP's ``filename``). Ids are made unique before any work starts
(:func:`assign_ids`), deterministically, so a re-run gives the same ids and resume works:

1. Two inputs sharing a stem (``a/x.mp4`` and ``b/x.mp4``) both take their path relative to the
   common folder of the clashing inputs, without the extension (``a/x``, ``b/x``).
2. If that still clashes (``x.mp4`` and ``x.mkv`` in one folder), those inputs keep their
   extension (``x.mp4``, ``x.mkv``).
3. ``@`` followed by a number is how a long video names its 10-s windows (``long@10``): an input
   whose stem is ``<another input's id>@<number>`` (``long@10.mp4`` beside ``long.mp4``) keeps its
   extension (``long@10.mp4``), so its entry can never overwrite a window of the other.
4. Anything still clashing (only possible through the escaping below) is refused with an
   :class:`InputError` naming the files.

Names that are not UTF-8: a file system may hold any bytes in a name (``caf\xe9.mp4``, Latin-1).
Python hands them over as "surrogate-escaped" text, which cannot be written to a UTF-8 file.
Ids and the paths written into JSONL records therefore show each byte that is not UTF-8 as
``\xNN`` (two lower-case hex digits; Python's ``backslashreplace``): ``caf\xe9``
(:func:`fs_text`). The file itself is still opened by its real name. Going back from the text to
the bytes: ``codecs.escape_decode(text.encode())[0]`` (exact unless the name also holds a literal
backslash).

Walking folders skips, and counts (:class:`Skipped`): hidden files and folders (leading ``.``),
files without a video extension are ignored silently; symlink loops, dangling links and folders
named like videos (``x.mp4/``) are listed, as they are probably not what the user meant.
"""
from __future__ import annotations

import os
import re
import stat
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from lsld_engine.errors import LsldError
# fs_text and read_records lived here (old import paths keep working)
from lsld_engine.files import fs_text  # noqa: F401
from lsld_engine.records.readers import read_records  # noqa: F401
from lsld_engine.records.uris import is_uri

#: Extensions taken when walking folders (lower case; files given explicitly are always taken).
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".wmv",
                                     ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".3gp", ".ogv", ".vob")

#: Object-store inputs are listed and read by the ``--ray`` run (and by ``parse`` into an
#: object-store results folder, :func:`lsld_engine.commands.scale.run_parse_to_folder`), not here.
NEEDS_RAY = "object-store inputs need --ray for now (or copy the videos to a local folder)"

_WINDOW_ID = re.compile(r"^(?P<base>.+)@(?P<start>[0-9]+)$")


class InputError(LsldError, ValueError):
    """Inputs that cannot be processed as given (clashing ids, an unreadable list file)."""


@dataclass(frozen=True)
class VideoInput:
    """One video to process: ``path`` as the OS names it (may hold surrogate escapes), ``video_id``
    printable UTF-8 text."""

    path: str
    video_id: str

    @property
    def shown_path(self) -> str:
        """``path`` as UTF-8-safe text (see :func:`fs_text`), for records and messages."""
        return fs_text(self.path)


@dataclass
class Skipped:
    """What a folder walk left out: ``hidden`` and ``other`` (no video extension) counts, and the
    ``odd`` entries ``(path, reason)`` (symlink loops, dangling links, folders named like videos,
    unreadable folders)."""

    hidden: int = 0
    other: int = 0
    odd: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.hidden + self.other + len(self.odd)

    def format(self) -> str:
        """One line for the run summary (empty when nothing was skipped)."""
        if not self.total:
            return ""
        kinds = Counter(reason for _, reason in self.odd)
        parts = [f"{n} {k}" for k, n in sorted(kinds.items())]
        if self.hidden:
            parts.append(f"{self.hidden} hidden")
        if self.other:
            parts.append(f"{self.other} without a video extension")
        return f"walk skipped {self.total} entries: {', '.join(parts)}"


def list_lines(path: str | os.PathLike) -> list[str]:
    """The entries of a list file as written, one per line (stripped; blank lines and ``#`` comments
    skipped). Lines are file-system bytes (``os.fsdecode``): any name is allowed. Shared by
    :func:`read_list` and :func:`lsld_engine.scale.sources.read_uri_list`."""
    if is_uri(path):  # (kept as written: Path() would fold "s3://b/x" into "s3:/b/x")
        raise InputError(f"{path}: a --list file is read from this machine; copy it to a local file "
                         "(its lines may name object-store URIs with --ray)")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}")
    lines = (os.fsdecode(raw.strip()) for raw in path.read_bytes().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def read_list(path: str | os.PathLike) -> list[Path]:
    """Paths listed one per line in ``path`` (:func:`list_lines`; relative paths are relative to
    the list file's folder)."""
    lines = list_lines(path)
    path = Path(path)
    out = []
    for line in lines:
        if is_uri(line):
            raise InputError(f"{line} (in {path}): {NEEDS_RAY}")
        p = Path(line).expanduser()
        out.append(p if p.is_absolute() else path.parent / p)
    return out


def find_videos(inputs: Iterable[str | os.PathLike], extensions: Iterable[str] = VIDEO_EXTENSIONS,
                recursive: bool = True, skipped: Skipped | None = None) -> list[Path]:
    """Video files under ``inputs`` (folders walked, files taken as given), sorted, without duplicates.

    What a walk leaves out is counted into ``skipped`` (see :class:`Skipped`). Symlinks to files
    are followed; symlinked folders are not walked (no loops, no double counting). A missing input
    raises ``FileNotFoundError`` naming it.
    """
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    skipped = skipped if skipped is not None else Skipped()
    found: dict[str, Path] = {}
    for item in inputs:
        if is_uri(item):  # refused as written (Path() would fold "s3://b/x" into "s3:/b/x", a local name)
            raise InputError(f"{item}: {NEEDS_RAY}")
        p = Path(item).expanduser()
        if p.is_dir():
            for f in _walk(p, exts, recursive, skipped):
                found.setdefault(os.path.abspath(f), f)
        elif p.exists():
            found.setdefault(os.path.abspath(p), p)
        elif p.is_symlink():
            raise FileNotFoundError(f"input {fs_text(p)} is a dangling symlink (to {fs_text(os.readlink(p))})")
        else:
            raise FileNotFoundError(f"input not found: {fs_text(p)}")
    return [found[k] for k in sorted(found)]


def _walk(root: Path, exts: set[str], recursive: bool, skipped: Skipped) -> Iterable[Path]:
    """Video files under ``root`` (see :func:`find_videos`), one ``os.scandir`` per folder."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            skipped.odd.append((fs_text(folder), f"unreadable folder ({e.strerror})"))
            continue
        for e in entries:
            path = Path(e.path)
            if e.name.startswith("."):
                skipped.hidden += 1
                continue
            is_video_name = Path(e.name).suffix.lower() in exts
            try:
                st = os.stat(e.path)  # follows symlinks
            except OSError as err:
                if e.is_symlink():
                    reason = "symlink loop" if err.errno == 40 else "dangling symlink"  # ELOOP
                    skipped.odd.append((fs_text(path), reason))
                else:
                    skipped.odd.append((fs_text(path), f"unreadable ({err.strerror})"))
                continue
            if stat.S_ISDIR(st.st_mode):
                if e.is_symlink():
                    skipped.odd.append((fs_text(path), "symlinked folder (not walked)"))
                elif recursive:  # a folder named like a video (`x.mp4/`) too: walked, as when given directly
                    stack.append(path)
                continue
            if not is_video_name:
                skipped.other += 1
            elif not stat.S_ISREG(st.st_mode):
                skipped.odd.append((fs_text(path), "not a regular file"))
            else:
                yield path


def assign_ids(paths: list[Path]) -> list[VideoInput]:
    """:class:`VideoInput` per path with unique, printable ids (the rules of the module docstring).

    Raises :class:`InputError` when ids still clash after those rules.
    """
    ids = [fs_text(p.stem) for p in paths]
    # rule 1: same stem -> relative path without extension
    _rename_clashes(paths, ids, lambda p, base: fs_text(Path(os.path.relpath(os.path.abspath(p), base))
                                                         .with_suffix("").as_posix()))
    # rule 2: still the same -> keep the extension too
    _rename_clashes(paths, ids, lambda p, base: fs_text(Path(os.path.relpath(os.path.abspath(p), base)).as_posix()))
    # rule 3: an id that reads as another input's window id keeps its extension
    taken = set(ids)
    for i, vid in enumerate(ids):
        m = _WINDOW_ID.match(vid)
        if m and m.group("base") in taken:
            ids[i] = vid + fs_text(paths[i].suffix)
    # rule 4: anything left is refused
    groups = defaultdict(list)
    for p, vid in zip(paths, ids):
        groups[vid].append(fs_text(p))
    clashes = {vid: ps for vid, ps in groups.items() if len(ps) > 1}
    if clashes:
        vid, ps = next(iter(clashes.items()))
        raise InputError(f"{len(clashes)} video id(s) still clash after the id rules, e.g. {vid!r} for "
                         f"{', '.join(ps)}; rename one of the files")
    return [VideoInput(str(p), vid) for p, vid in zip(paths, ids)]


def _rename_clashes(paths: list[Path], ids: list[str], rename) -> None:
    """Give every input whose id is shared ``rename(path, common folder of the clashing inputs)``."""
    count = Counter(ids)
    clash = [i for i, vid in enumerate(ids) if count[vid] > 1]
    if not clash:
        return
    base = os.path.commonpath([os.path.abspath(paths[i].parent) for i in clash])
    for i in clash:
        ids[i] = rename(paths[i], base)


def collect_inputs(inputs: Iterable[str | os.PathLike], list_file: str | os.PathLike | None = None,
                   extensions: Iterable[str] = VIDEO_EXTENSIONS, skipped: Skipped | None = None) -> list[VideoInput]:
    """Videos from folders/files ``inputs`` plus ``list_file``, sorted by path, with unique ids;
    what folder walks left out is counted into ``skipped``."""
    items = list(inputs)
    if list_file is not None:
        items += read_list(list_file)
    return assign_ids(find_videos(items, extensions, skipped=skipped))
