"""``lsld-engine parse VIDEOS --out results.jsonl``: every audio, visual and audio-visual event of each video."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lsld_engine.commands.extract import (add_encoder_arguments, add_input_arguments, backend_options, collect,
                                          decode_function, default_workers, device_and_precision, media_limits,
                                          setup_logging)
from lsld_engine.commands.scale import add_ray_arguments
from lsld_engine.writers import WRITERS

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
    p.add_argument("--backend", choices=("torch", "onnx", "tensorrt"), default="torch",
                   help="inference backend (onnx / tensorrt run the files of `lsld-engine export`)")
    p.add_argument("--engine-dir", type=Path, default=None, help="onnx / tensorrt: the `lsld-engine export --out` folder")
    p.add_argument("--seg-threshold", type=float, default=0.5, help="segment probability threshold (default 0.5)")
    p.add_argument("--video-threshold", type=float, default=0.5,
                   help="modality video-level probability threshold, per 10-s window (default 0.5)")
    p.add_argument("--save-probs", action="store_true", help="add per-segment and per-window probabilities to each line")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip videos already in --out (default); --no-resume overwrites --out")
    p.add_argument("--ordered", action="store_true",
                   help="write lines in path order (default: completion order, which is faster)")
    add_encoder_arguments(p)
    add_ray_arguments(p)


def run(args: argparse.Namespace) -> int:
    from lsld_engine.outputs import OutputLock, check_writable
    from lsld_engine.results import is_uri
    from lsld_engine.writers import format_of

    setup_logging(args)
    if args.ray is not None:
        return _run_ray(args)
    if is_uri(args.out):  # an object store: a results folder of shards, as with --ray
        from lsld_engine.commands.folder_parse import run as run_to_folder

        return run_to_folder(args, PROG)
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
    from lsld_engine.results import done_ids
    from lsld_engine.video_inputs import read_records

    if out.stat().st_size == 0:
        return set()
    if fmt == "jsonl":
        return set(read_records(out, repair=repair))
    return done_ids(out, fmt)


def _run_ray(args: argparse.Namespace) -> int:
    from lsld_engine.commands.scale import actor_backend_options, run_parse

    # the actors' device follows their GPUs (lsld_engine.scale.engine), not this machine's
    opts = backend_options(args, args.device or "cpu", args.precision or "fp32")
    if not _weights_ok(args, opts):
        return 2
    return run_parse(args, PROG, actor_backend_options(args, opts))


def _weights_ok(args, opts: dict) -> bool:
    """Check the networks' weight files (or --engine-dir) exist; print the error and return False if not."""
    if args.backend == "torch":
        from lsld_engine.backends.torch_backend import MissingWeightsError, check_weights

        try:
            check_weights(["clip_image", "clap_audio", "han"], **opts)
        except MissingWeightsError as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return False
    elif args.engine_dir is None:
        print(f"{PROG}: error: --backend {args.backend} needs --engine-dir (the folder of `lsld-engine export`)",
              file=sys.stderr)
        return False
    return True


def _run_locked(args, items, walk, done: set, lock, fmt: str) -> int:
    from lsld_engine.outputs import OutputError, is_disk_full
    from lsld_engine.parse import Thresholds, parse_videos
    from lsld_engine.pipeline import Summary
    from lsld_engine.writers import get_writer

    device, precision = device_and_precision(args)
    opts = backend_options(args, device, precision)
    if not _weights_ok(args, opts):
        return 2

    todo = [i for i in items if i.video_id not in done]
    if args.limit is not None:
        todo = todo[: args.limit]
    summary = Summary(total=len(items), skipped=len(items) - len(todo) if args.limit is None
                      else sum(i.video_id in done for i in items), walk=walk)
    if done:
        log.info("resuming %s: %d of %d videos already there", args.out, summary.skipped, len(items))
    if not todo:
        print(summary.format(verbose=args.verbose), file=sys.stderr)
        return 0

    from lsld_engine.backends import create_backend

    try:
        backend = create_backend(args.backend, **opts)
        if hasattr(backend, "warm_up"):
            backend.warm_up()
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    workers = default_workers(device) if args.workers is None else args.workers
    thresholds = Thresholds(args.seg_threshold, args.video_threshold)
    # JSONL / CSV: written through the locked descriptor; Parquet: a temporary file renamed on close
    writer = (get_writer(fmt, args.out, append=args.resume and args.out.stat().st_size > 0) if fmt == "parquet"
              else get_writer(fmt, lock.text(), append=True))
    try:
        with writer:
            parse_videos(todo, backend, writer, workers=workers, ordered=args.ordered, thresholds=thresholds,
                         save_probs=args.save_probs, progress=not args.quiet, summary=summary,
                         decode_timeout=args.decode_timeout, decode_fn=decode_function(args),
                         limits=media_limits(args))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished videos are in {args.out}, run again to resume\n"
              + summary.format(verbose=args.verbose), file=sys.stderr)
        return 130
    except OSError as e:
        if not is_disk_full(e):
            raise
        written = getattr(writer, "written", 0)
        raise OutputError(f"{args.out}: {e.strerror} after writing {written} lines this run "
                          f"({len(done) + written} videos in the file, each line complete; a cut last "
                          "line is dropped on resume): free space, then run the same command again to resume") from None
    finally:
        backend.close()
    print(summary.format(verbose=args.verbose), file=sys.stderr)
    return 1 if summary.failed else 0
