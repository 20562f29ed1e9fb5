"""``lsld-engine parse ... --out s3://bucket/results/`` on one machine: a results folder on an object store.

Without ``--ray`` a local ``--out`` is one predictions file; an object-store ``--out`` (where a
file cannot be appended to) is the results folder of ``--ray`` instead (docs/formats.md: shards of
``--shard-rows`` videos + ``_SUCCESS``), written by this machine's own decode processes and
encoders. Inputs may be local paths, globs or URIs (copied to a temporary file to decode); resume
and ``--no-resume`` follow the ``--ray`` rules, so the two can take turns on one folder.
"""
from __future__ import annotations

from lsld_engine.commands.common import apply_store_arguments, engine_options


def run(args, prog: str) -> int:
    from lsld_engine.api import PARSE_NETWORKS, Engine
    from lsld_engine.commands.scale import _collect, _error
    from lsld_engine.results import done_ids
    from lsld_engine.run_plan import RunPlan
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
    plan = RunPlan.make(items, done, limit=args.limit, prog=prog, what="parsed", kept=f"finished videos are in {out}",
                        verbose=args.verbose)
    if not plan.todo:
        return plan.report()
    engine = Engine.open(engine_options(args), PARSE_NETWORKS)
    sink = ShardSink(out, args.format or "jsonl", rows_per_shard=args.rows_per_shard, shard_seconds=args.shard_seconds)

    def work() -> None:
        records = engine.parse(plan.todo, progress=not args.quiet, summary=plan.summary)
        try:
            for record in records:
                sink.write(record)
        finally:
            records.close()

    rc = plan.execute(work, abort=sink.abort, cleanup=engine.close, report=False)
    if rc is not None:
        return rc
    sink.close(inputs=len(items), skipped=plan.summary.skipped)
    return plan.report()
