"""``lsld-engine extract VIDEOS --out ROOT``: decode videos and write CLIP / CLAP features (dataset layout)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# (the shared options lived here before lsld_engine.commands.common: old import paths keep working)
from lsld_engine.commands.common import (EXTRACT_NEEDS_FILESYSTEM, add_encoder_arguments, add_input_arguments,  # noqa: F401
                                         add_ray_arguments,
                                         backend_options, collect, decode_function, default_workers,
                                         device_and_precision, engine_options, int8_summary_line, media_limits,
                                         setup_logging)

from lsld_engine.parsing.extract import NAME_SCHEMES

log = logging.getLogger("lsld_engine")
PROG = "lsld-engine extract"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input_arguments(p)
    p.add_argument("--out", required=True, help="dataset root (writes ROOT/feats/...)")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="feature file dtype")
    p.add_argument("--names", choices=NAME_SCHEMES, default="full",
                   help="feature file names: full (<id>.npy, default) or official (<id[:11]>.npy, the 11-character "
                        "YouTube id the official LSLD loaders read; one 10-s window per video)")
    add_encoder_arguments(p)
    add_ray_arguments(p, shards=False)


def run(args: argparse.Namespace) -> int:
    from lsld_engine.parsing.extract import LOG_NAME
    from lsld_engine.records.outputs import OutputLock, check_writable

    setup_logging(args)
    if args.ray is not None:
        from lsld_engine.commands.scale import run_extract

        return run_extract(args, PROG)
    from lsld_engine.records.uris import is_uri

    if is_uri(args.out):
        print(f"{PROG}: error: --out {args.out}: {EXTRACT_NEEDS_FILESYSTEM}", file=sys.stderr)
        return 2
    items, walk = collect(args, PROG)
    args.out = Path(args.out)
    # The root first (cheap): locked and known writable before any network loads.
    check_writable(args.out, folder=True)
    check_writable(args.out / LOG_NAME)
    with OutputLock(args.out, folder=True, what="dataset root"):
        return _run_locked(args, items, walk)


def _run_locked(args, items, walk) -> int:
    from lsld_engine.api import EXTRACT_NETWORKS, Engine, check_weights
    from lsld_engine.parsing.extract import FeatureStore, pending
    from lsld_engine.parsing.run_plan import RunPlan

    from dataclasses import replace

    options = engine_options(args)
    device, precision = options.resolved()
    # resolved once (one bf16 warning); an unset precision stays unset (torch on CPU picks it per tower)
    options = replace(options, device=device, precision=options.precision and precision)
    check_weights(options, EXTRACT_NETWORKS, options.backend_options(device, precision))
    store = FeatureStore(args.out, args.dtype, args.names)
    left, _ = pending(items, store)  # validates the whole log before anything is written
    plan = RunPlan.make(items, {i.video_id for i in items} - {i.video_id for i in left}, limit=args.limit, walk=walk,
                        prog=PROG, what="extracted", kept="finished videos are kept", verbose=args.verbose)
    log.info("%d videos: %d to extract, %d already done (%s)", len(items), len(plan.todo), plan.summary.skipped,
             store.root)
    if not plan.todo:
        return plan.report()
    engine = Engine.open(options, EXTRACT_NETWORKS)

    def disk_full(e: OSError) -> str:
        return (f"{getattr(e, 'filename', None) or store.root}: {e.strerror} after {plan.summary.done} videos "
                "were extracted and logged this run (no half-written file is left); free space, "
                "then run the same command again to resume")

    int8_line = int8_summary_line(engine.backend)
    status = plan.execute(lambda: engine.extract_into(plan.todo, store, summary=plan.summary,
                                                      progress=not args.quiet),
                          cleanup=engine.close, disk_full=disk_full)
    if int8_line:
        print(int8_line, file=sys.stderr)
    return status
