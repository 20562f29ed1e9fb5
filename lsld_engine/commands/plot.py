"""``lsld-engine plot``: draw one video's timeline from a predictions file (PNG)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

_SHOWN = 10  # ids suggested when --video is not in the file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # a str: a results folder may be an s3:// URI, which Path() would fold into "s3:/..."
    parser.add_argument("results", help="predictions: JSONL, Parquet or a results folder (lsld-engine parse --out)")
    parser.add_argument("--video", required=True, help="video id to draw (the record's video_id)")
    parser.add_argument("--annotations", type=Path, default=None,
                        help="LLP annotation folder (AVVP_eval_*.csv): draw the ground truth beside the predictions")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")


def run(args: argparse.Namespace) -> int:
    from lsld_engine.viz.common import PlotError, save_png
    from lsld_engine.viz.timeline import find_ground_truth, record_timeline
    from lsld_engine.records.results import read_results

    preds = read_results(args.results)
    if args.video not in preds:
        ids = list(preds)
        more = f" ... and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
        raise PlotError(f"{args.results}: no line for video {args.video!r}; it has {len(ids)} video(s): "
                        f"{', '.join(ids[:_SHOWN])}{more}")
    gt_a = gt_v = None
    if args.annotations is not None:
        found = find_ground_truth(args.annotations, args.video)
        if found is None:
            print(f"lsld-engine plot: {args.video} is not in the annotated splits of {args.annotations}; "
                  "drawing predictions only", file=sys.stderr)
        else:
            gt_a, gt_v, split = found
            record = preds[args.video]
            if int(record.get("segments") or 0) > gt_a.shape[0]:
                raise PlotError(f"{args.video}: {record.get('segments')} predicted segments but the "
                                f"{split} annotations have {gt_a.shape[0]}; not the same clip?")
    out = save_png(record_timeline(preds[args.video], gt_a, gt_v), args.out)
    print(f"wrote {out}", file=sys.stderr)
    return 0
