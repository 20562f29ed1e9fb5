"""The LLP dataset contract: class list, segment count, and readers for the annotation files.

Annotation files are tab-separated with a header row:

- weak labels ``AVVP_train.csv`` / ``AVVP_val_pd.csv`` / ``AVVP_test_pd.csv``:
  ``filename<TAB>event_labels`` (comma-separated class names);
- segment annotations ``AVVP_eval_audio.csv`` / ``AVVP_eval_visual.csv``:
  ``filename<TAB>onset<TAB>offset<TAB>event_labels`` (integer seconds).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsld_engine.errors import LsldError

#: The 25 LLP event classes in the official order (index = class id).
CLASSES: tuple[str, ...] = (
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying_(food)", "Basketball_bounce", "Fire_alarm",
    "Chainsaw", "Cello", "Banjo", "Singing", "Chicken_rooster", "Violin_fiddle", "Vacuum_cleaner",
    "Baby_laughter", "Accordion", "Lawn_mower", "Motorcycle", "Helicopter", "Acoustic_guitar",
    "Telephone_bell_ringing", "Baby_cry_infant_cry", "Blender", "Clapping",
)
NUM_CLASSES: int = len(CLASSES)
CLASS_INDEX: dict[str, int] = {c: i for i, c in enumerate(CLASSES)}
#: One-second segments per LLP clip.
T: int = 10

#: File names of the official annotation files, by role.
WEAK_FILES: dict[str, str] = {
    "train": "AVVP_train.csv",
    "val": "AVVP_val_pd.csv",
    "test": "AVVP_test_pd.csv",
    "full": "AVVP_dataset_full.csv",
}
SEGMENT_FILES: dict[str, str] = {"audio": "AVVP_eval_audio.csv", "visual": "AVVP_eval_visual.csv"}
#: Splits that have segment-level annotations.
EVAL_SPLITS: tuple[str, ...] = ("val", "test")


class AnnotationError(LsldError, ValueError):
    """A malformed annotation file; the message names the file and line."""


def default_llp_dir() -> Path | None:
    """The real LLP annotations, if present: ``$LSLD_LLP_DIR`` or ``../shared/llp`` near the repo."""
    env = os.environ.get("LSLD_LLP_DIR")
    if env:
        # A folder the user names explicitly is never silently replaced by another one.
        if not (Path(env) / WEAK_FILES["test"]).is_file():
            raise FileNotFoundError(f"LSLD_LLP_DIR={env!r} does not hold {WEAK_FILES['test']}")
        return Path(env)
    here = Path(__file__).resolve().parents[2]  # the checkout (lsld_engine/data/llp.py)
    candidates = [here.parent / "shared" / "llp", Path.cwd().parent / "shared" / "llp"]
    for c in candidates:
        if (c / WEAK_FILES["test"]).is_file():
            return c
    return None


def parse_labels(text: str, where: str) -> list[int]:
    """Class indices of a comma-separated label list; unknown names raise naming ``where``."""
    out = []
    for name in (s.strip() for s in text.split(",")):
        if not name:
            continue
        if name not in CLASS_INDEX:
            raise AnnotationError(f"{where}: unknown class {name!r} (expected one of the 25 LLP classes)")
        out.append(CLASS_INDEX[name])
    return out


def _rows(path: Path, header: tuple[str, ...]):
    """Yield ``(line_number, fields)`` of a tab-separated file after checking its header."""
    path = Path(path)
    if path.parent.is_file():
        raise NotADirectoryError(f"{path.parent} is a file; give the folder that holds the annotation files "
                                 f"({path.name}, ...)")
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    header_seen = False
    with open(path, "rb") as f:  # decoded per line, so a bad byte is reported with its line number
        for lineno, raw in enumerate(f, start=1):
            try:  # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the header
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise AnnotationError(f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start})") from None
            if lineno == 1:
                header_seen = True
                first = line.split("\t")
                if tuple(first) != header:
                    raise AnnotationError(f"{path}:1: expected header {'<TAB>'.join(header)!r}, got {first!r}")
                continue
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != len(header):
                raise AnnotationError(f"{path}:{lineno}: expected {len(header)} tab-separated fields, got {len(fields)}")
            yield lineno, fields
    if not header_seen:
        raise AnnotationError(f"{path}: empty file; expected the header {'<TAB>'.join(header)!r}")


@dataclass(frozen=True)
class WeakLabels:
    """Video-level labels of one split, in file order."""

    video_ids: list[str]   # (N,)
    labels: np.ndarray     # (N, C) uint8

    def __len__(self) -> int:
        return len(self.video_ids)


def read_weak_labels(path: str | os.PathLike) -> WeakLabels:
    """Read a weak-label file (``filename``, ``event_labels``) into ``(N, C)`` uint8."""
    ids, rows = [], []
    seen: set[str] = set()
    for lineno, (vid, labels) in _rows(Path(path), ("filename", "event_labels")):
        where = f"{path}:{lineno}"
        if not vid:
            raise AnnotationError(f"{where}: empty filename")
        if vid in seen:
            raise AnnotationError(f"{where}: duplicate video {vid!r}")
        seen.add(vid)
        ids.append(vid)
        rows.append(parse_labels(labels, where))
    out = np.zeros((len(ids), NUM_CLASSES), np.uint8)
    for i, r in enumerate(rows):
        out[i, r] = 1
    return WeakLabels(ids, out)


def read_segment_labels(path: str | os.PathLike, video_ids: list[str], num_segments: int = T) -> np.ndarray:
    """Dense segment ground truth ``(N, T, C)`` uint8 for ``video_ids`` from a segment file.

    A row sets segments ``onset <= t < offset``; a row with ``offset <= onset`` sets nothing; a
    video without rows has an all-zero track; rows for videos not in ``video_ids`` are ignored.
    """
    index = {v: i for i, v in enumerate(video_ids)}
    gt = np.zeros((len(video_ids), num_segments, NUM_CLASSES), np.uint8)
    for lineno, (vid, onset, offset, labels) in _rows(Path(path), ("filename", "onset", "offset", "event_labels")):
        where = f"{path}:{lineno}"
        try:
            on, off = int(onset), int(offset)
        except ValueError:
            raise AnnotationError(f"{where}: onset/offset must be integers, got {onset!r}, {offset!r}") from None
        if on < 0 or off < 0 or on > num_segments or off > num_segments:
            raise AnnotationError(f"{where}: onset/offset {on}/{off} outside 0..{num_segments}")
        cls = parse_labels(labels, where)
        i = index.get(vid)
        if i is not None and off > on:
            gt[i, on:off, cls] = 1
    return gt


@dataclass(frozen=True)
class Split:
    """One split: ids, weak labels and, for val/test, dense segment truth."""

    name: str
    video_ids: list[str]            # (N,)
    weak: np.ndarray                # (N, C) uint8
    gt_audio: np.ndarray | None     # (N, T, C) uint8, val/test only
    gt_visual: np.ndarray | None    # (N, T, C) uint8, val/test only

    def __len__(self) -> int:
        return len(self.video_ids)


def load_split(annotation_dir: str | os.PathLike, split: str) -> Split:
    """Load ``split`` (train/val/test) from a folder holding the official annotation files."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}: expected train, val or test")
    d = Path(annotation_dir)
    weak = read_weak_labels(d / WEAK_FILES[split])
    gt_a = gt_v = None
    if split in EVAL_SPLITS:
        gt_a = read_segment_labels(d / SEGMENT_FILES["audio"], weak.video_ids)
        gt_v = read_segment_labels(d / SEGMENT_FILES["visual"], weak.video_ids)
    return Split(split, weak.video_ids, weak.labels, gt_a, gt_v)
