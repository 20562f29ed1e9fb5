"""``lsld-engine eval``: score predictions (a JSONL or Parquet file, or a results folder of shards)
against LLP segment annotations (official metrics).

Only the ``audio`` and ``visual`` tracks of each record are scored: the audio-visual track is, by
the official definition, their product (a file's ``audio_visual`` events are not read).

Events that reach past the clip (an LLP clip is ``T`` = 10 one-second segments: ``onset 50, offset
60``, or ``offset 1e6``) are a sign of predictions for other videos or of a unit mix-up. They are
scored clipped to the clip (what lies past it is dropped), and each is warned about with its
``file:line``; ``--strict`` refuses the file instead (exit status 2).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lsld_engine.records.events import events_to_masks
from lsld_engine.data.llp import CLASSES, EVAL_SPLITS, T, AnnotationError, default_llp_dir, load_split
from lsld_engine.evaluation.metrics import evaluate, format_table
from lsld_engine.records.results import read_results
from lsld_engine.records.readers import PredictionsError

_SHOWN = 20  # ids listed in a missing-videos error before "... and N more"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True,
                        help="predictions: a JSONL or Parquet file, or a results folder (parse --ray)")
    parser.add_argument("--annotations", type=Path, default=None,
                        help="folder with the LLP annotation files (AVVP_*.csv); default: $LSLD_LLP_DIR "
                             "or ../shared/llp when present")
    parser.add_argument("--split", choices=EVAL_SPLITS, default="test", help="annotated split to score (default: test)")
    parser.add_argument("--json", action="store_true", help="print the ten numbers as one JSON object")
    parser.add_argument("--allow-missing", action="store_true",
                        help="score split videos without a prediction (or with an error line) as empty predictions")
    parser.add_argument("--per-class", action="store_true",
                        help="also print per-class segment- and event-level F1 per modality (with --json: "
                             "under the key per_class)")
    parser.add_argument("--report", type=Path, metavar="DIR",
                        help="write a static HTML report (DIR/index.html; opens offline; needs matplotlib)")
    parser.add_argument("--labels", type=Path, metavar="NPZ",
                        help="with --report and --data: a labels.npz, to add the similarity distributions of "
                             "training segments with and without each class")
    parser.add_argument("--data", type=Path, metavar="ROOT",
                        help="with --report and --labels: the dataset root the labels were made from")
    parser.add_argument("--strict", action="store_true",
                        help="refuse predictions with events past the 10-s clip (default: warn with file:line "
                             "and score them clipped)")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (AnnotationError, PredictionsError, FileNotFoundError, ModuleNotFoundError) as e:
        print(f"lsld-engine eval: error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if (args.labels or args.data) and not (args.labels and args.data and args.report):
        print("lsld-engine eval: error: --labels NPZ and --data ROOT go together, with --report DIR "
              "(they add the similarity view to the report)", file=sys.stderr)
        return 2
    ann = args.annotations or default_llp_dir()
    if ann is None:
        print("lsld-engine eval: error: no LLP annotations found; pass --annotations DIR "
              "(the folder with AVVP_test_pd.csv, AVVP_eval_audio.csv, ...) or set LSLD_LLP_DIR", file=sys.stderr)
        return 2
    split = load_split(ann, args.split)
    where: dict[str, str] = {}  # each video's FILE:LINE (any JSONL file or shard), for the warnings below
    preds = read_results(args.pred, where)

    absent = [v for v in split.video_ids if v not in preds]
    failed = [v for v in split.video_ids if v in preds and preds[v]["status"] != "ok"]
    if (absent or failed) and not args.allow_missing:
        print(f"lsld-engine eval: error: {len(absent) + len(failed)} of {len(split)} {args.split} videos "
              f"(annotations: {ann}) have no usable prediction in {args.pred}", file=sys.stderr)
        if preds and len(absent) == len(split):
            print(f"  none of its {len(preds)} video ids is in this split: predictions for another dataset? "
                  "pass --annotations DIR (or --split)", file=sys.stderr)
        for kind, ids in (("no prediction line", absent), ("error line", failed)):
            if ids:
                more = f" ... and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
                print(f"  {kind} ({len(ids)}): {', '.join(ids[:_SHOWN])}{more}", file=sys.stderr)
        print("  (pass --allow-missing to score them as empty predictions)", file=sys.stderr)
        return 2
    if absent or failed:
        print(f"lsld-engine eval: scoring {len(absent)} missing and {len(failed)} failed videos as empty "
              "predictions", file=sys.stderr)
    extra = len(preds) - (len(split) - len(absent))
    if extra:
        print(f"lsld-engine eval: ignoring {extra} predictions for videos outside the {args.split} split",
              file=sys.stderr)

    failed_set = set(failed)
    usable = [None if v in failed_set else preds.get(v) for v in split.video_ids]
    outside = events_past_clip([r for r in usable if r], where, args.pred)
    if outside:
        kind = "error" if args.strict else "warning"
        for msg in outside[:_SHOWN]:
            print(f"lsld-engine eval: {kind}: {msg}", file=sys.stderr)
        if len(outside) > _SHOWN:
            print(f"lsld-engine eval: {kind}: ... and {len(outside) - _SHOWN} more events past the clip",
                  file=sys.stderr)
        if args.strict:
            print(f"lsld-engine eval: error: {len(outside)} events lie past the {T}-s clip (--strict)", file=sys.stderr)
            return 2
        print(f"lsld-engine eval: {len(outside)} events past the clip are scored clipped to it "
              "(--strict refuses them)", file=sys.stderr)
    tracks = {}
    for track in ("audio", "visual"):
        tracks[track] = events_to_masks([r["events"][track] if r else [] for r in usable], num_segments=T)
    results = evaluate(tracks["audio"], tracks["visual"], split.gt_audio, split.gt_visual)
    per_class = None
    if args.per_class:
        from lsld_engine.evaluation.class_metrics import class_counts, class_support, format_per_class, per_class_f1
        counts = class_counts(tracks["audio"], tracks["visual"], split.gt_audio, split.gt_visual)
        per_class = (per_class_f1(counts), class_support(counts))
    if args.json:
        out = dict(results)
        if per_class:
            out["per_class"] = {c: {k: (None if v[i] != v[i] else float(v[i])) for k, v in per_class[0].items()}
                                for i, c in enumerate(CLASSES)}
        print(json.dumps(out))
    else:
        print(f"LLP {args.split} ({len(split)} videos), official metrics, %")
        print(format_table(results))
        if per_class:
            print()
            print(format_per_class(*per_class))
    if args.report:
        _write_report(args, split, tracks, usable, results)
    return 0


def _write_report(args, split, tracks, records, results) -> None:
    """The HTML report of this evaluation (matplotlib is imported only here)."""
    from lsld_engine.viz.report import build_report, training_similarity, write_report

    similarity = None
    if args.labels:
        similarity = training_similarity(args.data, args.labels, progress=not args.json)
    name = str(args.pred).rstrip("/").rsplit("/", 1)[-1]  # a path, a folder or a pyarrow URI
    page = build_report(title=f"LLP {args.split}: {name}", results=results, pred_a=tracks["audio"],
                        pred_v=tracks["visual"], gt_a=split.gt_audio, gt_v=split.gt_visual,
                        video_ids=split.video_ids, records=records, similarity=similarity,
                        note=f"{len(split)} videos; predictions {args.pred}")
    path = write_report(args.report, page)
    print(f"lsld-engine eval: report written to {path}", file=sys.stderr)


def events_past_clip(records: list[dict], where: dict[str, str], path) -> list[str]:
    """One message ``"FILE:LINE: video V: TRACK event LABEL ON-OFF s lies past the 10-s clip"`` per
    event of ``records`` whose offset exceeds the clip (``T`` seconds; 1e-6 s of rounding allowed);
    ``where``: each video's ``FILE:LINE`` (:func:`lsld_engine.records.results.read_results`; a Parquet file has
    no lines: its name), else ``path``."""
    out = []
    for rec in records:
        for track in ("audio", "visual", "audio_visual"):
            for e in rec["events"].get(track, []):
                if e["offset"] > T + 1e-6:
                    out.append(f"{where.get(rec['video_id'], path)}: video {rec['video_id']!r}: {track} "
                               f"event {e['label']} {e['onset']:g}-{e['offset']:g} s lies past the {T}-s clip")
    return out
