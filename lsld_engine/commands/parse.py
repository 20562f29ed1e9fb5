"""``lsld-engine parse VIDEOS --out results.jsonl``: every audio, visual and audio-visual event of each video."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lsld_engine.commands.common import (add_encoder_arguments, add_input_arguments, add_ray_arguments, collect,
                                         engine_options, int8_summary_line, setup_logging)
from lsld_engine.records.events import DEFAULT_THRESHOLD, ThresholdError, check_threshold
from lsld_engine.records.writers import WRITERS

log = logging.getLogger("lsld_engine")
PROG = "lsld-engine parse"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input_arguments(p)
    p.add_argument("--out", required=True,
                   help="predictions file (one record per video; with --ray or an s3://... URI a results "
                        "folder of shards)")
    p.add_argument("--format", choices=list(WRITERS), default=None,
                   help="results format (default: from the --out suffix, else jsonl; docs/formats.md)")
    p.add_argument("--model", help="HAN checkpoint: from `python -m train.lsld` (.safetensors) or the official LSLD.pt")
    p.add_argument("--seg-threshold", type=probability("--seg-threshold"), default=DEFAULT_THRESHOLD,
                   help=f"segment probability threshold in [0, 1] (default {DEFAULT_THRESHOLD})")
    p.add_argument("--video-threshold", type=probability("--video-threshold"), default=DEFAULT_THRESHOLD,
                   help=f"modality video-level probability threshold in [0, 1], per 10-s window "
                        f"(default {DEFAULT_THRESHOLD})")
    p.add_argument("--save-probs", action="store_true", help="add per-segment and per-window probabilities to each line")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip videos already in --out (default); --no-resume overwrites --out")
    p.add_argument("--ordered", action="store_true",
                   help="write lines in path order (default: completion order, which is faster)")
    add_encoder_arguments(p)
    add_ray_arguments(p)


def probability(flag: str):
    """argparse type: a threshold in [0, 1] (:func:`lsld_engine.records.events.check_threshold`)."""
    def parse(text: str) -> float:
        try:
            return check_threshold(flag, text)
        except ThresholdError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{flag} ")) from None
    parse.__name__ = "probability"
    return parse


def run(args: argparse.Namespace) -> int:
    from lsld_engine.records.outputs import OutputLock, check_writable
    from lsld_engine.records.uris import is_uri
    from lsld_engine.records.writers import format_of

    setup_logging(args)
    if args.ray is not None:
        from lsld_engine.commands.scale import run_parse

        return run_parse(args, PROG)
    if is_uri(args.out):  # an object store: a results folder of shards, as with --ray
        from lsld_engine.commands.scale import run_parse_to_folder

        return run_parse_to_folder(args, PROG)
    items, walk = collect(args, PROG)
    fmt = args.format or format_of(args.out)
    args.out = Path(args.out)
    # The output first (cheap): locked, validated and known writable before any network loads.
    check_writable(args.out)
    with OutputLock(args.out) as lock:
        done = _done_ids(args.out, fmt, repair=args.resume)  # validates the whole file before changing it
        if not args.resume and done:
            lock.truncate()
            done = set()
        return _run_locked(args, items, walk, done, lock, fmt)


def _done_ids(out: Path, fmt: str, repair: bool) -> set[str]:
    """Ids already in ``out``; a JSONL file is validated whole before a cut last line is repaired."""
    from lsld_engine.records.results import done_ids
    from lsld_engine.records.readers import read_records

    if out.stat().st_size == 0:
        return set()
    if fmt == "jsonl":
        return set(read_records(out, repair=repair))
    return done_ids(out, fmt)


def _run_locked(args, items, walk, done: set, lock, fmt: str) -> int:
    from dataclasses import replace

    from lsld_engine.api import PARSE_NETWORKS, Engine, check_weights
    from lsld_engine.parsing.run_plan import RunPlan
    from lsld_engine.records.writers import get_writer

    options = engine_options(args)
    device, precision = options.resolved()
    # resolved once (one bf16 warning); an unset precision stays unset (torch on CPU picks it per tower)
    options = replace(options, device=device, precision=options.precision and precision)
    check_weights(options, PARSE_NETWORKS, options.backend_options(device, precision))
    plan = RunPlan.make(items, done, limit=args.limit, walk=walk, prog=PROG, what="parsed",
                        kept=f"finished videos are in {args.out}", verbose=args.verbose)
    if done:
        log.info("resuming %s: %d of %d videos already there", args.out, plan.summary.skipped, len(items))
    if not plan.todo:
        return plan.report()
    engine = Engine.open(options, PARSE_NETWORKS)
    # JSONL / CSV: written through the locked descriptor; Parquet: a temporary file renamed on close
    writer = (get_writer(fmt, args.out, append=args.resume and args.out.stat().st_size > 0) if fmt == "parquet"
              else get_writer(fmt, lock.text(), append=True))

    def work() -> None:
        with writer:
            engine.parse_into(plan.todo, writer, progress=not args.quiet, summary=plan.summary)

    def disk_full(e: OSError) -> str:
        written = getattr(writer, "written", 0)
        return (f"{args.out}: {e.strerror} after writing {written} lines this run "
                f"({len(done) + written} videos in the file, each line complete; a cut last "
                "line is dropped on resume): free space, then run the same command again to resume")

    int8_line = int8_summary_line(engine.backend)
    status = plan.execute(work, cleanup=engine.close, disk_full=disk_full)
    if int8_line:
        print(int8_line, file=sys.stderr)
    return status
