"""Text prompts for LSLD label denoising: class phrases, the prompt grammar and embedding caches.

The grammar (paper Sec. 3.2): for a video with label set ``S`` (class indices ascending) there is
one prompt per non-empty subset of ``S``, in the official code's order: the full set first, then
the smaller subsets by size, ascending (singles, pairs, ...), each size in
``itertools.combinations`` order, then ``other``. For ``|S| <= 3`` this is exactly the official
list (``1 and 2 and 3``, ``1``, ``2``, ``3``, ``1 and 2``, ``1 and 3``, ``2 and 3``, ``other``);
the official code stops at three labels, and larger sets follow the same pattern. The order only
matters when two prompts tie exactly (the first maximum wins). A subset's text is its class phrases joined by
``" and "``; visual prompts are the bare text, audio prompts are prefixed with
``"This is a sound of "``.

A prompt-embedding cache is an ``.npz`` with ``texts`` (M,) unicode and ``embeddings`` (M, D)
float32; it is read without pickles. :func:`resolve_prompts` takes embeddings from the cache first
and from an optional text-tower callable ``encode_texts(list[str]) -> (M, D)`` for the rest.
"""
from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from lsld_engine.errors import LsldError
from lsld_engine.files import atomic_path
from lsld_engine.data.llp import CLASSES, NUM_CLASSES

#: Text for each class in prompts, in class order (index = class id).
CLASS_PHRASES: tuple[str, ...] = (
    "Speeching", "Car", "Cheering", "Dog", "Cat", "Frying food", "playing basketball",
    "Fire alarm ringing", "Chainsaw", "playing the Cello", "playing the Banjo", "Singing", "Chicken",
    "playing the Violin", "Vacuum cleaner", "Baby laughter", "playing the Accordion", "Lawn-mower",
    "Motorcycle", "Helicopter", "playing the guitar", "Telephone bell ringing", "Baby cry", "Blender",
    "Clapping",
)
assert len(CLASS_PHRASES) == NUM_CLASSES
AUDIO_PREFIX = "This is a sound of "
OTHER = "other"
JOIN = " and "
MODALITIES = ("audio", "visual")
#: Default cap on the label-set size (2**|S| prompts per video).
DEFAULT_MAX_LABELS = 8

TextEncoder = Callable[[list[str]], np.ndarray]


class PromptError(LsldError, ValueError):
    """A prompt cannot be built or embedded; the message says which and what to do."""


def check_label_set(label_set: Sequence[int], max_labels: int = DEFAULT_MAX_LABELS, where: str = "") -> tuple[int, ...]:
    """``label_set`` as an ascending tuple; refuse more than ``max_labels`` classes."""
    s = tuple(sorted(int(c) for c in label_set))
    if len(set(s)) != len(s) or any(c < 0 or c >= NUM_CLASSES for c in s):
        raise PromptError(f"{where}bad label set {s}: expected distinct class ids in 0..{NUM_CLASSES - 1}")
    if len(s) > max_labels:
        raise PromptError(f"{where}label set has {len(s)} classes, above the cap of {max_labels} "
                          f"(2**{len(s)} prompts per video); raise --max-labels if this is intended")
    return s


@lru_cache(maxsize=None)
def subset_positions(k: int) -> tuple[tuple[int, ...], ...]:
    """Positions (into a size-``k`` label set) of each prompt's classes, in prompt order.

    Length ``2**k``: the full set, then the other non-empty subsets by size ascending
    (``itertools.combinations`` order within a size), then the empty tuple for ``other`` -- the
    official LSLD order (see the module docstring).
    """
    if k == 0:
        return ((),)
    out = [tuple(range(k))] + [c for r in range(1, k) for c in itertools.combinations(range(k), r)]
    return tuple(out) + ((),)


@lru_cache(maxsize=None)
def membership(k: int) -> np.ndarray:
    """``(2**k, k)`` bool: prompt ``p`` contains the label set's ``j``-th class."""
    m = np.zeros((2 ** k, k), bool)
    for p, pos in enumerate(subset_positions(k)):
        m[p, list(pos)] = True
    return m


def prompt_subsets(label_set: Sequence[int], max_labels: int = DEFAULT_MAX_LABELS) -> list[tuple[int, ...]]:
    """Class-id subsets of each prompt, in prompt order; ``()`` is ``other``."""
    s = check_label_set(label_set, max_labels)
    return [tuple(s[i] for i in pos) for pos in subset_positions(len(s))]


def subset_text(classes: Sequence[int], modality: str) -> str:
    """The prompt text of a class subset (``()`` -> ``other``) for ``modality``."""
    if modality not in MODALITIES:
        raise PromptError(f"unknown modality {modality!r}: expected audio or visual")
    text = JOIN.join(CLASS_PHRASES[c] for c in classes) if classes else OTHER
    return AUDIO_PREFIX + text if modality == "audio" else text


def prompt_texts(label_set: Sequence[int], modality: str, max_labels: int = DEFAULT_MAX_LABELS) -> list[str]:
    """All prompt texts of one video, in prompt order (length ``2**|S|``)."""
    return [subset_text(sub, modality) for sub in prompt_subsets(label_set, max_labels)]


def label_sets(weak: np.ndarray) -> list[tuple[int, ...]]:
    """Ascending class tuples of each row of a ``(N, C)`` 0/1 weak-label matrix."""
    return [tuple(np.flatnonzero(row).tolist()) for row in np.asarray(weak)]


def required_prompts(weak: np.ndarray, modality: str, max_labels: int = DEFAULT_MAX_LABELS) -> list[str]:
    """Unique prompt texts that the rules need for a ``(N, C)`` weak-label matrix (first-seen order)."""
    uniq = np.unique(np.asarray(weak, np.uint8), axis=0) if len(weak) else np.zeros((0, NUM_CLASSES), np.uint8)
    seen: dict[str, None] = {}
    for s in label_sets(uniq):
        for t in prompt_texts(s, modality, max_labels):
            seen.setdefault(t, None)
    return list(seen)


def class_name_texts(names: str | Sequence[str] = "raw") -> list[str]:
    """Class-name texts for ReW: ``"raw"`` (LLP names, e.g. ``Frying_(food)``), ``"phrases"``
    (:data:`CLASS_PHRASES`), a path to a text file with one name per line, or a list of 25 names."""
    if isinstance(names, str):
        if names == "raw":
            return list(CLASSES)
        if names == "phrases":
            return list(CLASS_PHRASES)
        p = Path(names)
        if not p.is_file():
            raise PromptError(f"class names: {names!r} is neither 'raw', 'phrases' nor a file")
        out = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
        where = str(p)
    else:
        out, where = [str(n) for n in names], "class names"
    if len(out) != NUM_CLASSES:
        raise PromptError(f"{where}: expected {NUM_CLASSES} class names (one per class, class order), got {len(out)}")
    return out


@dataclass
class PromptTable:
    """Text embeddings: ``texts`` (M,) and ``embeddings`` (M, D) float32, looked up by text."""

    texts: list[str]
    embeddings: np.ndarray
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.embeddings = np.ascontiguousarray(self.embeddings, np.float32)
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != len(self.texts):
            raise PromptError(f"prompt table: embeddings {self.embeddings.shape} do not match {len(self.texts)} texts")
        self.index = {t: i for i, t in enumerate(self.texts)}

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return len(self.texts)

    def __contains__(self, text: str) -> bool:
        return text in self.index

    def rows(self, texts: Iterable[str]) -> np.ndarray:
        """Row indices of ``texts``; a missing text raises :class:`PromptError`."""
        try:
            return np.fromiter((self.index[t] for t in texts), np.int64)
        except KeyError as e:
            raise PromptError(f"prompt {e.args[0]!r} is not in the prompt table") from None

    def lookup(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), D)`` embeddings."""
        return self.embeddings[self.rows(texts)]

    def merged(self, other: "PromptTable") -> "PromptTable":
        """This table plus the texts of ``other`` it lacks."""
        new = [i for i, t in enumerate(other.texts) if t not in self.index]
        if not new:
            return self
        if other.dim != self.dim and len(self):
            raise PromptError(f"cannot merge prompt tables of dims {self.dim} and {other.dim}")
        emb = np.concatenate([self.embeddings.reshape(-1, other.dim), other.embeddings[new]])
        return PromptTable(self.texts + [other.texts[i] for i in new], emb)


def load_prompt_cache(path: str | os.PathLike) -> PromptTable:
    """Read a prompt cache ``.npz`` (``texts`` unicode (M,), ``embeddings`` (M, D) float32)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt cache not found: {path}")
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":  # np.load would try a non-zip file as a pickle and say so
            raise PromptError(f"{path}: not a prompt cache (not an .npz archive); corrupt or another format?")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "texts" not in z or "embeddings" not in z:
                raise PromptError(f"{path}: a prompt cache needs arrays 'texts' and 'embeddings', has {sorted(z.files)}")
            texts, emb = z["texts"], z["embeddings"]
    except ValueError as e:
        if isinstance(e, PromptError):
            raise
        raise PromptError(f"{path}: not a prompt cache ({e}); 'texts' must be a unicode array (no pickles)") from None
    if texts.dtype.kind != "U" or texts.ndim != 1:
        raise PromptError(f"{path}: 'texts' must be a 1-D unicode array, got {texts.dtype} {texts.shape}")
    if emb.ndim != 2 or emb.shape[0] != texts.shape[0]:
        raise PromptError(f"{path}: 'embeddings' must be (M, D) with M={texts.shape[0]}, got {emb.shape}")
    if not np.isfinite(emb).all():
        raise PromptError(f"{path}: 'embeddings' has non-finite values")
    return PromptTable([str(t) for t in texts], emb.astype(np.float32))


def save_prompt_cache(path: str | os.PathLike, table: PromptTable) -> Path:
    """Write ``table`` as a prompt cache ``.npz`` (unicode texts, float32 embeddings)."""
    path = Path(path)
    texts = np.array(table.texts, dtype=str) if len(table) else np.zeros(0, "<U1")
    with atomic_path(path) as tmp:
        np.savez(tmp, texts=texts, embeddings=table.embeddings.astype(np.float32))
    return path


def resolve_prompts(texts: Sequence[str], cache: PromptTable | None = None,
                    encode_texts: TextEncoder | None = None, *, what: str = "prompt",
                    hint: str = "") -> PromptTable:
    """A table holding ``texts``: cached rows first, the rest from ``encode_texts``.

    With no tower and prompts missing from the cache, raises :class:`PromptError` listing the first
    missing prompts. ``what`` names the cache (e.g. ``"CLIP"``), ``hint`` says how to supply a tower.
    """
    texts = list(dict.fromkeys(texts))
    cache = cache if cache is not None else PromptTable([], np.zeros((0, 0), np.float32))
    missing = [t for t in texts if t not in cache]
    if missing:
        if encode_texts is None:
            shown = "\n  ".join(repr(t) for t in missing[:5])
            raise PromptError(f"{len(missing)} {what} prompt(s) have no cached embedding and no text tower was "
                              f"given{hint}; first missing:\n  {shown}")
        print(f"[prompts] encoding {len(missing)} {what} prompt(s) with the text tower", file=sys.stderr)
        emb = np.asarray(encode_texts(missing), np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(missing):
            raise PromptError(f"{what} text tower returned {emb.shape} for {len(missing)} prompts; expected (M, D)")
        if len(cache) and emb.shape[1] != cache.dim:
            raise PromptError(f"{what} text tower gives D={emb.shape[1]} but the cache has D={cache.dim}")
        cache = cache.merged(PromptTable(missing, emb))
    return PromptTable(texts, cache.lookup(texts))
