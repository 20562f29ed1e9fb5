"""The dataset root layout (official LSLD features) and fast feature loading.

```
ROOT/AVVP_train.csv AVVP_val_pd.csv AVVP_test_pd.csv AVVP_eval_audio.csv AVVP_eval_visual.csv
ROOT/feats/clip_16/<video_id>.npy        (80, 512)  CLIP ViT-B/16 frame embeddings, 8 fps
ROOT/feats/clap_audioset/<video_id>.npy  (10, 512)  LAION-CLAP embeddings, one per second
ROOT/prompts/clip.npz  ROOT/prompts/clap.npz   optional prompt-embedding caches
```

Feature file names: ``<video_id>.npy`` (the CSV's full ``filename``, e.g. ``BjCEufrlXm4_20_30.npy``)
first; when that file is absent, the official LSLD / HAN loaders' name, the 11-character YouTube id
``<filename[:11]>.npy`` (``BjCEufrlXm4.npy``), which is how the released feature folders are named
(:func:`feature_files`). Two rows whose official names are the same file are refused: they are
different clips, and one file cannot hold both.

:func:`load_features` reads every file once, with a thread pool (file reads release the GIL; the
``.npy`` header is parsed once per distinct header, not per file), into one preallocated contiguous
array per modality; training then indexes memory only. No packed copy is written: the per-video
files are the store, so a dataset root can stay read-only.
Audio is kept as float32 (small); frames keep the dtype of the files (float16 files stay float16,
halving memory: 0.8 GB instead of 1.6 GB for the 10,000 LLP training videos), and segment
averaging upcasts to float32.
"""
from __future__ import annotations

import ast
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from lsld_engine.errors import LsldError
from lsld_engine.data.llp import T, Split, load_split

#: Length of a YouTube id: the official loaders read ``feats/<dir>/<filename[:11]>.npy``.
OFFICIAL_ID_LENGTH = 11
CLIP_SUBDIR = "feats/clip_16"
CLAP_SUBDIR = "feats/clap_audioset"
PROMPTS_SUBDIR = "prompts"
FRAMES_PER_VIDEO = 80
FEATURE_DIM = 512


class FeatureError(LsldError, ValueError):
    """A feature file is missing, has the wrong shape or holds non-finite values (names video and file)."""


@dataclass(frozen=True)
class DatasetPaths:
    """Where a dataset root's parts live (each folder can be overridden)."""

    root: Path
    clip_dir: Path
    clap_dir: Path
    prompts_dir: Path

    @property
    def clip_cache(self) -> Path:
        return self.prompts_dir / "clip.npz"

    @property
    def clap_cache(self) -> Path:
        return self.prompts_dir / "clap.npz"

    def feature_dir(self, modality: str) -> Path:
        """The CLAP folder for ``modality`` audio, the CLIP folder for visual."""
        return self.clap_dir if modality == "audio" else self.clip_dir

    def feature_file(self, modality: str, video_id: str) -> Path:
        """``<clap_dir|clip_dir>/<video_id>.npy`` for ``modality`` audio / visual (the name written)."""
        return self.feature_dir(modality) / f"{video_id}.npy"


def official_name(video_id: str) -> str:
    """The official loaders' file stem of a row: the 11-character YouTube id (``filename[:11]``)."""
    return video_id[:OFFICIAL_ID_LENGTH]


def feature_files(paths: DatasetPaths, modality: str, video_ids: Sequence[str]) -> list[Path]:
    """The feature file of each of ``video_ids``: ``<id>.npy`` when present, else the official
    ``<id[:11]>.npy``; a file found under neither name is returned under the full name (the reader
    then reports it missing, naming both). One folder listing, not a stat per file.

    Raises :class:`FeatureError` when two ids would read the same official-name file.
    """
    folder = paths.feature_dir(modality)
    try:
        present = set(os.listdir(folder))
    except OSError:
        present = set()  # the reader reports the folder
    out: list[Path] = []
    short_owner: dict[str, str] = {}
    for vid in video_ids:
        name = f"{vid}.npy"
        if name not in present:
            short = f"{official_name(vid)}.npy"
            if short != name and short in present:
                other = short_owner.setdefault(short, vid)
                if other != vid:
                    raise FeatureError(f"videos {other} and {vid} would both read {folder / short} (official "
                                       f"11-character names); give each its own {other}.npy / {vid}.npy")
                name = short
        out.append(folder / name)
    return out


def dataset_paths(root: str | os.PathLike, clip_dir: str | os.PathLike | None = None,
                  clap_dir: str | os.PathLike | None = None,
                  prompts_dir: str | os.PathLike | None = None) -> DatasetPaths:
    """Paths of a dataset root with optional folder overrides."""
    root = Path(root)
    return DatasetPaths(root, Path(clip_dir) if clip_dir else root / CLIP_SUBDIR,
                        Path(clap_dir) if clap_dir else root / CLAP_SUBDIR,
                        Path(prompts_dir) if prompts_dir else root / PROMPTS_SUBDIR)


def load_split_labels(paths: DatasetPaths | str | os.PathLike, split: str) -> Split:
    """Weak labels (and, for val/test, segment truth) of ``split`` from the dataset root."""
    root = paths.root if isinstance(paths, DatasetPaths) else Path(paths)
    return load_split(root, split)


@dataclass(frozen=True)
class Features:
    """Features of ``video_ids`` in order: ``audio`` (N, 10, 512) float32, ``frames`` (N, 80, 512)."""

    video_ids: list[str]
    audio: np.ndarray
    frames: np.ndarray

    def __len__(self) -> int:
        return len(self.video_ids)


@lru_cache(maxsize=64)
def _parse_npy_header(header: str) -> tuple[np.dtype, bool, tuple[int, ...]] | None:
    """``(dtype, fortran_order, shape)`` of an ``.npy`` v1 header (cached: all files share a few)."""
    try:
        d = ast.literal_eval(header)
        return np.dtype(d["descr"]), bool(d["fortran_order"]), tuple(d["shape"])
    except Exception:  # noqa: BLE001 - odd headers go through np.load
        return None


def _read_npy(path: Path) -> np.ndarray:
    """One ``.npy`` file; plain v1 files are read with one ``readinto`` (GIL released), others by np.load."""
    with open(path, "rb") as fh:
        head = fh.read(10)
        if head[:6] != b"\x93NUMPY":  # np.load would try it as a pickle and blame "pickled data"
            raise ValueError("not a .npy file (no NUMPY header); corrupt or another format?")
        if len(head) == 10 and head[6] == 1:
            meta = _parse_npy_header(fh.read(int.from_bytes(head[8:10], "little")).decode("latin1"))
            if meta is not None and not meta[1] and meta[0].kind == "f" and meta[0].isnative:
                arr = np.empty(meta[2], meta[0])
                if fh.readinto(memoryview(arr).cast("B")) != arr.nbytes:
                    raise ValueError(f"file is truncated (expected {arr.nbytes} data bytes)")
                return arr
    return np.load(path, allow_pickle=False)


def _all_finite(arr: np.ndarray) -> bool:
    if arr.dtype == np.float16:
        # Exponent bits all set = inf/NaN; 3x faster than np.isfinite on float16.
        return not ((arr.view(np.uint16) & 0x7C00) == 0x7C00).any()
    return bool(np.isfinite(arr).all())


def _read_one(path: Path, video_id: str, shape: tuple[int, int]) -> np.ndarray:
    if not path.is_file():
        also = official_name(video_id)
        tried = f" (nor the official name {also}.npy)" if also != video_id else ""
        raise FeatureError(f"video {video_id}: feature file not found: {path}{tried}")
    try:
        arr = _read_npy(path)
    except Exception as e:  # noqa: BLE001 - any decode failure is reported with the file name
        raise FeatureError(f"video {video_id}: cannot read {path}: {e}") from None
    if arr.shape != shape:
        raise FeatureError(f"video {video_id}: {path} has shape {arr.shape}, expected {shape}")
    if arr.dtype not in (np.float16, np.float32):
        raise FeatureError(f"video {video_id}: {path} has dtype {arr.dtype}, expected float16 or float32")
    if not _all_finite(arr):
        raise FeatureError(f"video {video_id}: {path} holds non-finite values (NaN/inf); re-extract it")
    return arr


def _load_modality(paths: DatasetPaths, modality: str, video_ids: Sequence[str], shape: tuple[int, int],
                   dtype: np.dtype | None, workers: int, progress: bool) -> np.ndarray:
    n = len(video_ids)
    files = feature_files(paths, modality, video_ids)
    if n == 0:
        return np.zeros((0, *shape), dtype or np.float32)
    folder = files[0].parent
    if not folder.is_dir():
        flag = "--clap-dir" if modality == "audio" else "--clip-dir"
        raise FeatureError(f"{modality} feature folder not found: {folder} (pass {flag}, or write it with "
                           f"`lsld-engine extract VIDEOS --out ROOT`)")
    first = _read_one(files[0], video_ids[0], shape)
    dt = np.dtype(dtype) if dtype is not None else first.dtype
    out = np.empty((n, *shape), dt)
    out[0] = first

    def work(i: int) -> None:
        arr = _read_one(files[i], video_ids[i], shape)
        if dt == np.float16 and arr.dtype != np.float16 and np.abs(arr).max() > np.finfo(np.float16).max:
            raise FeatureError(f"video {video_ids[i]}: {files[i]} overflows float16 (the store's dtype, "
                               f"taken from the first file); load with frames_dtype=float32")
        out[i] = arr

    bar = None
    if progress:
        from lsld_engine.progress import progress_bar
        bar = progress_bar(total=n, desc=f"load {modality} features", unit="video", leave=False,
                           mininterval=0.5, initial=1)
    chunk = 256
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(1, n, chunk):
                # list() re-raises the first worker error with its message intact.
                list(pool.map(work, range(start, min(n, start + chunk))))
                if bar is not None:
                    bar.update(min(n, start + chunk) - start)
    finally:  # also on an error, so its message does not land on the bar's line
        if bar is not None:
            bar.close()
    return out


def load_features(paths: DatasetPaths, video_ids: Sequence[str], *, workers: int | None = None,
                  progress: bool = True, frames_dtype: np.dtype | str | None = None) -> Features:
    """Read the CLAP and CLIP features of ``video_ids`` into contiguous arrays.

    ``audio`` (N, 10, 512) float32; ``frames`` (N, 80, 512) in the files' dtype unless
    ``frames_dtype`` is given. Raises :class:`FeatureError` naming the video and file for a missing
    file, a wrong shape or a non-finite value.
    """
    video_ids = list(video_ids)
    workers = workers or min(16, (os.cpu_count() or 1) * 4)
    audio = _load_modality(paths, "audio", video_ids, (T, FEATURE_DIM), np.float32, workers, progress)
    frames = _load_modality(paths, "visual", video_ids, (FRAMES_PER_VIDEO, FEATURE_DIM), frames_dtype,
                            workers, progress)
    return Features(video_ids, audio, frames)
