"""Denoise a dataset root in one call: the train split's weak labels -> LSLD segment labels (``labels.npz``).

:func:`denoise_root` reads the train split's weak labels and CLIP / CLAP features of a dataset root,
embeds the prompts (cache first, then the text towers for what the cache lacks), runs DeN (audio,
visual) and ReW (visual) (:func:`lsld_engine.labels.denoise.denoise_labels`) and writes ``labels.npz``
(:func:`lsld_engine.labels.denoise.save_labels`). ``python -m train.lsld denoise`` and the main training
job both call it.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

from lsld_engine.errors import LsldError
from lsld_engine.labels.prompts import DEFAULT_MAX_LABELS, PromptTable, TextEncoder

#: ``tower(kind)`` for ``kind`` in ``clip`` / ``clap``: the text encoder, or None when none is given.
TowerFactory = Callable[[str], "TextEncoder | None"]


class DenoiseOptionsError(LsldError, ValueError):
    """Options of a denoise run that cannot work (one line)."""


def checkpoint_towers(clip_checkpoint: str | None = None, clap_checkpoint: str | None = None,
                      clap_text_dir: str | None = None) -> TowerFactory:
    """Text towers built from checkpoints when asked for (imported lazily; None without a checkpoint)."""
    def tower(kind: str) -> TextEncoder | None:
        if kind == "clip":
            if not clip_checkpoint:
                return None
            from lsld_engine.encoders.clip import build_clip_text_encoder
            return build_clip_text_encoder(clip_checkpoint).encode_texts
        if not clap_checkpoint:
            return None
        from lsld_engine.encoders.clap import build_clap_text_encoder
        return build_clap_text_encoder(clap_checkpoint, clap_text_dir).encode_texts
    return tower


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def denoise_root(root: str | os.PathLike, out: str | os.PathLike = "labels.npz", *, clip_dir=None, clap_dir=None,
                 prompts_dir=None, alpha: float | None = None, beta: float | None = None,
                 max_labels: int = DEFAULT_MAX_LABELS, class_names: str = "raw", write_prompt_cache: bool = False,
                 rew_clamp: bool = False, workers: int | None = None, text_tower: TowerFactory | None = None,
                 say: Callable[[str], None] = _say):
    """Denoise the train split of dataset ``root`` and write ``out``; returns the
    :class:`~lsld_engine.labels.denoise.DenoiseResult`.

    ``clip_dir`` / ``clap_dir`` / ``prompts_dir``: the root's folders unless given; ``alpha`` /
    ``beta``: ReW's weights (default: :data:`~lsld_engine.labels.denoise.DEFAULT_ALPHA` / ``DEFAULT_BETA``);
    ``max_labels``: refuse videos with more labels; ``class_names``: ReW's class-name texts (``raw``,
    ``phrases`` or a file of 25 lines); ``write_prompt_cache``: merge the prompt embeddings used into
    the caches; ``rew_clamp``: ReW's clamped variant instead of the official rule
    (:func:`~lsld_engine.labels.denoise.rew`); ``text_tower``: the text encoders for prompts the caches lack (default: none, see
    :func:`checkpoint_towers`); ``say``: progress lines (default: stderr). A bad cache, prompt or
    dataset raises an :class:`~lsld_engine.errors.LsldError`.
    """
    from lsld_engine.data.dataset import dataset_paths, load_features, load_split_labels
    from lsld_engine.labels.denoise import DEFAULT_ALPHA, DEFAULT_BETA, denoise_labels, save_labels
    from lsld_engine.labels.prompts import class_name_texts, required_prompts, save_prompt_cache

    if Path(out).is_dir():
        raise DenoiseOptionsError(f"{out} is a folder; give the labels file to write (e.g. "
                                  f"{Path(out) / 'labels.npz'})")
    tower = text_tower or checkpoint_towers()
    t0 = time.perf_counter()
    paths = dataset_paths(root, clip_dir, clap_dir, prompts_dir)
    split = load_split_labels(paths, "train")
    say(f"[denoise] {len(split)} training videos from {paths.root}")
    names = class_name_texts(class_names)
    clap, clap_cache = _table("clap", paths.clap_cache, required_prompts(split.weak, "audio", max_labels), tower)
    clip, clip_cache = _table("clip", paths.clip_cache, required_prompts(split.weak, "visual", max_labels) + names,
                              tower)
    t1 = time.perf_counter()
    feats = load_features(paths, split.video_ids, workers=workers)
    t2 = time.perf_counter()
    say(f"[denoise] features loaded in {t2 - t1:.1f}s")
    res = denoise_labels(feats.audio, feats.frames, split.weak, clap, clip, clip.lookup(names),
                         alpha=DEFAULT_ALPHA if alpha is None else alpha, beta=DEFAULT_BETA if beta is None else beta,
                         max_labels=max_labels, rew_clamp=rew_clamp)
    t3 = time.perf_counter()
    written = save_labels(out, split.video_ids, res)
    if write_prompt_cache:
        for table, cache, path in ((clap, clap_cache, paths.clap_cache), (clip, clip_cache, paths.clip_cache)):
            save_prompt_cache(path, cache.merged(table) if cache is not None else table)
        say(f"[denoise] prompt caches written to {paths.prompts_dir}")
    say(res.summary())
    say(f"[denoise] wrote {written} (denoise {t3 - t2:.2f}s, total {time.perf_counter() - t0:.1f}s)")
    return res


def _table(kind: str, path: Path, texts: list[str], tower: TowerFactory) -> tuple[PromptTable, PromptTable | None]:
    """``(table for texts, cache as loaded or None)``; the tower is built only for texts the cache lacks."""
    from lsld_engine.labels.prompts import load_prompt_cache, resolve_prompts

    cache = load_prompt_cache(path) if path.is_file() else None
    flag = "--clip-checkpoint" if kind == "clip" else "--clap-checkpoint"
    hint = f" (cache {path}{'' if cache else ' absent'}; give {flag} to embed them)"
    encoder = tower(kind) if cache is None or any(t not in cache for t in texts) else None
    return resolve_prompts(texts, cache, encoder, what=kind.upper(), hint=hint), cache
