"""``lsld-engine plot-denoise``: a training video's weak labels, DeN prompt choices and ReW soft labels (PNG)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True,
                        help="dataset root (AVVP_train.csv, feats/clip_16, feats/clap_audioset, prompts/)")
    parser.add_argument("--labels", type=Path, required=True, help="labels.npz written by python -m train.lsld denoise")
    parser.add_argument("--video", required=True, help="training video id")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--clip-dir", type=Path, help="CLIP frame features folder (default ROOT/feats/clip_16)")
    parser.add_argument("--clap-dir", type=Path, help="CLAP audio features folder (default ROOT/feats/clap_audioset)")
    parser.add_argument("--prompts-dir", type=Path, help="prompt caches clip.npz / clap.npz (default ROOT/prompts)")
    parser.add_argument("--class-names", default="raw",
                        help="class-name texts ReW used: raw (default), phrases, or a file of 25 lines")


def run(args: argparse.Namespace) -> int:
    from lsld_engine.viz.common import save_png
    from lsld_engine.viz.denoise_view import denoise_figure, denoise_view_data

    view = denoise_view_data(args.data, args.labels, args.video, clip_dir=args.clip_dir, clap_dir=args.clap_dir,
                             prompts_dir=args.prompts_dir, class_names=args.class_names)
    if not view.consistent:
        print(f"lsld-engine plot-denoise: note: the prompt choices recomputed from {args.data} do not reproduce "
              f"the DeN labels in {args.labels} (other features, prompts or settings?)", file=sys.stderr)
    out = save_png(denoise_figure(view), args.out)
    print(f"wrote {out}", file=sys.stderr)
    return 0
