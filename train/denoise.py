"""Stage ``python -m train.lsld denoise --data ROOT --out labels.npz``: LSLD segment-level labels.

The command line of :func:`lsld_engine.labels.denoise_root.denoise_root`: reads the train split's weak
labels and CLIP/CLAP features from a dataset root, embeds the prompts (cache first, then the text
towers when checkpoints are given), runs DeN (audio, visual) and ReW (visual) and writes ``labels.npz``: ``video_ids`` (N,) str, ``audio`` / ``visual_den`` / ``visual``
(N, T, C) float32 in ``AVVP_train.csv`` order, plus per-class counts ``removed_audio``,
``removed_visual``, ``reweighted`` (C,) int64. Also runnable as ``python -m train.denoise``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lsld_engine.labels.denoise import DEFAULT_ALPHA, DEFAULT_BETA
from lsld_engine.labels.denoise_root import checkpoint_towers, denoise_root
from lsld_engine.labels.prompts import DEFAULT_MAX_LABELS, TextEncoder


def add_arguments(p: argparse.ArgumentParser) -> None:
    from lsld_engine.cli import at_least

    p.add_argument("--data", help="dataset root (AVVP_*.csv, feats/clip_16, feats/clap_audioset, prompts/)")
    p.add_argument("--out", default="labels.npz", help="output labels file (default: labels.npz)")
    p.add_argument("--clip-dir", help="CLIP frame features folder (default ROOT/feats/clip_16)")
    p.add_argument("--clap-dir", help="CLAP audio features folder (default ROOT/feats/clap_audioset)")
    p.add_argument("--prompts-dir", help="prompt-embedding caches clip.npz / clap.npz (default ROOT/prompts)")
    p.add_argument("--clip-checkpoint", help="open_clip ViT-B-16 checkpoint for prompts missing from the cache")
    p.add_argument("--clap-checkpoint", help="laion_clap 630k-audioset-best.pt for prompts missing from the cache")
    p.add_argument("--clap-text-dir", help="local RoBERTa tokenizer folder for the CLAP text tower")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="ReW weight for 'with' segments (default 4)")
    p.add_argument("--beta", type=float, default=DEFAULT_BETA, help="ReW weight for 'without' segments (default 0.4)")
    p.add_argument("--rew-clamp", action="store_true",
                   help="ReW writes clip(alpha*s, 0, 1) / clip(beta*s, 0, 1) instead of the official rule "
                        "(replace only values strictly inside (0, 1); docs/denoise.md)")
    p.add_argument("--max-labels", type=at_least(1), default=DEFAULT_MAX_LABELS,
                   help="refuse videos with more labels (2**k prompts each; default 8)")
    p.add_argument("--write-prompt-cache", action="store_true",
                   help="write the prompt embeddings used to the prompts dir (merged with the cache)")
    p.add_argument("--class-names", default="raw",
                   help="class-name texts for ReW: raw (LLP names, default), phrases, or a file of 25 lines")
    p.add_argument("--workers", type=at_least(0), help="feature-reading threads (0: automatic)")


def options(data: str | Path, out: str | Path, **overrides) -> argparse.Namespace:
    """The options :func:`run` takes, as the command line would give them: every default, ``data``,
    ``out`` and ``overrides`` (keyword names are the option names with ``_``, e.g. ``clip_dir``)."""
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args([])  # every option has a default
    unknown = set(overrides) - set(vars(args))
    if unknown:
        raise TypeError(f"unknown denoise options: {sorted(unknown)}")
    vars(args).update(data=str(data), out=str(out), **overrides)
    return args


def _text_tower(kind: str, args) -> TextEncoder | None:
    """The text tower's ``encode_texts`` when its checkpoint is given (imported lazily)."""
    try:
        return checkpoint_towers(args.clip_checkpoint, args.clap_checkpoint, args.clap_text_dir)(kind)
    except ImportError as e:
        raise SystemExit(f"denoise: text tower not available ({e}); install the encoder extras "
                         f"(scripts/setup.sh full) or supply the prompt cache") from None


def run(args) -> int:
    """The stage on parsed options: :func:`lsld_engine.labels.denoise_root.denoise_root`."""
    if not args.data:
        raise SystemExit("denoise: --data ROOT is required (make a synthetic one: lsld-engine synth make --out ROOT)")
    if Path(args.out).is_dir():
        raise SystemExit(f"denoise: --out {args.out} is a folder; give the labels file to write (e.g. "
                         f"{Path(args.out) / 'labels.npz'})")
    denoise_root(args.data, args.out, clip_dir=args.clip_dir, clap_dir=args.clap_dir, prompts_dir=args.prompts_dir,
                 alpha=args.alpha, beta=args.beta, max_labels=args.max_labels, class_names=args.class_names,
                 write_prompt_cache=args.write_prompt_cache, rew_clamp=args.rew_clamp, workers=args.workers,
                 text_tower=lambda kind: _text_tower(kind, args))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.denoise", description=__doc__.splitlines()[0])
    add_arguments(p)
    args = p.parse_args(argv)
    from lsld_engine.cli import report_user_errors
    return report_user_errors(p.prog, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
