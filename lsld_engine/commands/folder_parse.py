"""``lsld-engine parse ... --out s3://bucket/results/`` on one machine: a results folder on an object store.

Without ``--ray`` a local ``--out`` is one predictions file; an object-store ``--out`` (where a
file cannot be appended to) is the results folder of ``--ray`` instead (docs/formats.md: shards of
``--shard-rows`` videos + ``_SUCCESS``), written by this machine's own decode processes and
encoders. Inputs may be local paths, globs or URIs (copied to a temporary file to decode); resume
and ``--no-resume`` follow the ``--ray`` rules, so the two can take turns on one folder.
"""
from __future__ import annotations

import sys

from lsld_engine.commands.extract import (backend_options, decode_function, default_workers, device_and_precision,
                                          media_limits)


def run(args, prog: str) -> int:
    from lsld_engine.backends import create_backend
    from lsld_engine.commands.parse import _weights_ok
    from lsld_engine.commands.scale import _collect, _error, _unsupported, apply_store_arguments
    from lsld_engine.objectstore import current
    from lsld_engine.parse import Thresholds, parse_videos
    from lsld_engine.pipeline import Summary
    from lsld_engine.remote_inputs import FetchFirst
    from lsld_engine.results import done_ids
    from lsld_engine.scale.sinks import ShardSink

    apply_store_arguments(args)
    if getattr(args, "ordered", False):
        return _error(prog, "--ordered: a results folder has no order (sort when reading)")
    out = str(args.out)
    items = _collect(args, prog)
    done = done_ids(out)
    if not args.resume and done:
        return _error(prog, f"--out {out} already holds results; --no-resume does not delete shards: "
                            "remove the folder or choose another")
    todo = [i for i in items if i.video_id not in done]
    if args.limit is not None:
        todo = todo[: args.limit]
    summary = Summary(total=len(items), skipped=sum(i.video_id in done for i in items))
    if not todo:
        print(summary.format(), file=sys.stderr)
        return 0
    device, precision = device_and_precision(args)
    opts = backend_options(args, device, precision)
    if not _weights_ok(args, opts):
        return 2
    try:
        backend = create_backend(args.backend, **opts)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        return _error(prog, str(e))
    sink = ShardSink(out, args.format or "jsonl", rows_per_shard=args.rows_per_shard, shard_seconds=args.shard_seconds)
    try:
        parse_videos(todo, backend, sink, workers=default_workers(device) if args.workers is None else args.workers,
                     thresholds=Thresholds(args.seg_threshold, args.video_threshold), save_probs=args.save_probs,
                     progress=not args.quiet, summary=summary, decode_timeout=args.decode_timeout,
                     decode_fn=FetchFirst(decode_function(args), current()), limits=media_limits(args))
    except KeyboardInterrupt:
        sink.abort()
        print(f"{prog}: interrupted; finished videos are in {out}, run again to resume\n" + summary.format(),
              file=sys.stderr)
        return 130
    except BaseException:
        sink.abort()
        raise
    finally:
        backend.close()
    sink.close(inputs=len(items), skipped=summary.skipped)
    print(summary.format(), file=sys.stderr)
    return 1 if summary.failed else 0
