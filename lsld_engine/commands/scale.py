"""The ``--ray [ADDRESS]`` runs of ``lsld-engine parse`` / ``extract``, and ``parse`` into a results
folder on an object store (the command layer of :mod:`lsld_engine.scale`; the ``--ray`` flags are in
:mod:`lsld_engine.commands.common`).

The commands call :func:`run_parse` / :func:`run_extract` instead of the single-machine run when
``--ray`` is given: inputs, resume, weights, messages and error lines follow the single-machine
rules (:class:`lsld_engine.parsing.run_plan.RunPlan`); only the engine and the shape of ``--out`` differ
(parse: a results folder of shards).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

# (these lived here before lsld_engine.commands.common: old import paths keep working)
from lsld_engine.commands.common import (EXTRACT_NEEDS_FILESYSTEM, actor_backend_options,  # noqa: F401
                                         add_ray_arguments, apply_store_arguments, decode_function,
                                         engine_options, ray_options)
from lsld_engine.records.objectstore import check_store

log = logging.getLogger("lsld_engine")


def _unsupported(args, prog: str) -> str | None:
    if getattr(args, "pixels", "cpu") != "cpu" or getattr(args, "decoder", "cpu") != "cpu":
        return "--ray decodes with the CPU reference path; --pixels device / --decoder nvdec are single-machine only"
    if getattr(args, "ordered", False):
        return "--ordered is single-machine only (a results folder has no order; sort when reading)"
    return None


def _decode_fn(args):
    """The decode tasks' per-video function: the CPU reference path with ``--frame-rule`` /
    ``--jpeg-roundtrip`` bound (:func:`lsld_engine.commands.common.decode_function`)."""
    return decode_function(args, whole=True)  # one row per video in the Ray dataset


def _collect(args, prog: str):
    """Inputs: folders, files, globs and URIs, plus --list (single-machine rules for local paths)."""
    from lsld_engine.scale.sources import list_inputs

    if not args.inputs and args.list_file is None:
        raise SystemExit(_error(prog, "give video files / folders / globs / URIs, or --list FILE"))
    try:
        items = list_inputs([str(i) for i in args.inputs], args.list_file)
    except FileNotFoundError as e:
        raise SystemExit(_error(prog, str(e))) from None
    if not items:
        raise SystemExit(_error(prog, f"no video files found in {', '.join(map(str, args.inputs)) or args.list_file}"))
    return items


def _is_ray_error(e: BaseException) -> bool:
    import ray.exceptions

    return isinstance(e, ray.exceptions.RayError)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _error(prog: str, msg: str) -> int:
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return 2


def _connect(args, prog: str):
    from lsld_engine.scale import cluster
    from lsld_engine.scale.engine import plan

    opts = ray_options(args)
    resources, started = cluster.connect(opts.address, num_cpus=opts.num_cpus, num_gpus=opts.num_gpus,
                                         object_store_mb=opts.object_store_mb, verbose=opts.verbose,
                                         timeout=opts.connect_timeout)
    try:
        if opts.address not in (None, cluster.LOCAL):  # a cluster's nodes have their own installs
            cluster.check_workers(timeout=max(60.0, opts.connect_timeout))
        opts = plan(opts, resources)
    except BaseException:
        if started:
            cluster.shutdown()
        raise
    log.info("Ray: %g CPUs, %g GPUs; encoder actors 1..%d (%g CPU, %g GPU each, %d videos a call), "
             "decode tasks of %d videos (%g CPU)", resources.get("CPU", 0), resources.get("GPU", 0), opts.actors,
             opts.actor_cpus, opts.actor_gpus, opts.encode_batch, opts.decode_batch, opts.decode_cpus)
    return opts, started


def _actor_options(args, networks) -> dict:
    """The encoder actors' backend options, weights checked here first (a missing file stops the
    command before any cluster starts). The actors' device and precision follow their own GPUs
    (:mod:`lsld_engine.scale.engine`) unless given, not this machine's."""
    from lsld_engine.api import check_weights

    options = engine_options(args)
    opts = options.backend_options(args.device or "cpu", args.precision or "fp32")
    check_weights(options, networks, opts)
    return actor_backend_options(args, opts)


def _ray_failed(kept: str):
    def message(e: BaseException) -> str | None:
        from lsld_engine.scale.cluster import ClusterError

        if isinstance(e, ClusterError):
            return f"{e}; {kept}, run the same command again to resume"
        if not _is_ray_error(e):
            return None
        return (f"the Ray job failed ({_first_line(e)}); {kept}, run again to resume (--decode-timeout turns "
                "decoder crashes into error records)")
    return message


def run_parse(args, prog: str) -> int:
    """``lsld-engine parse --ray``: writes a results folder."""
    from lsld_engine.api import PARSE_NETWORKS
    from lsld_engine.records.results import done_ids
    from lsld_engine.parsing.run_plan import RunPlan
    from lsld_engine.scale.cluster import ClusterError, RayUnavailableError, shutdown
    from lsld_engine.scale.engine import run_parse as run
    from lsld_engine.scale.sinks import ShardSink
    from lsld_engine.records.uris import is_uri

    apply_store_arguments(args)
    check_store(str(args.out))  # a dead endpoint or missing bucket: one line before weights, cluster or videos
    backend_opts = _actor_options(args, PARSE_NETWORKS)
    why = _unsupported(args, prog)
    if why:
        return _error(prog, why)
    fmt = args.format or "jsonl"
    out = str(args.out)
    if not is_uri(out) and Path(out).is_file():
        return _error(prog, f"--out {out} is a file; with --ray, --out is a results folder (shards + _SUCCESS)")
    items = _collect(args, prog)
    done = done_ids(out)
    if not args.resume and done:
        return _error(prog, f"--out {out} already holds results; --no-resume does not delete shards: "
                            "remove the folder or choose another")
    plan = RunPlan.make(items, done, limit=args.limit, prog=prog, what="parsed", kept=f"finished videos are in {out}")
    if done:
        log.info("resuming %s: %d of %d videos already there", out, plan.summary.skipped, len(items))
    started = False
    if plan.todo:  # (a resumed run with nothing left to do needs no cluster)
        try:
            opts, started = _connect(args, prog)
        except (RayUnavailableError, ClusterError, ValueError, ConnectionError) as e:
            return _error(prog, str(e))
    sink = ShardSink(out, fmt, rows_per_shard=args.rows_per_shard, shard_seconds=args.shard_seconds)

    def work() -> None:
        run(plan.todo, sink, args.backend, backend_opts, opts, seg_threshold=args.seg_threshold,
            video_threshold=args.video_threshold, save_probs=args.save_probs, progress=not args.quiet,
            summary=plan.summary, decode_fn=_decode_fn(args))

    rc = plan.execute(work, abort=sink.abort, cleanup=shutdown if started else None,
                      job_failed=_ray_failed(f"finished videos are in {out}"), report=False)
    if rc is not None:
        return rc
    manifest = sink.close(inputs=len(items), skipped=plan.summary.skipped)
    rc = plan.report()
    log.info("%s: %d videos (%d ok, %d errors) in %d shards; manifest %s/_SUCCESS", out, manifest["videos"],
             manifest["ok"], manifest["error"], manifest["shards"], out)
    return rc


def run_extract(args, prog: str) -> int:
    """``lsld-engine extract --ray``: the dataset layout of one machine, written by the encoder actors."""
    from lsld_engine.api import EXTRACT_NETWORKS
    from lsld_engine.parsing.extract import FeatureStore, pending
    from lsld_engine.parsing.run_plan import RunPlan
    from lsld_engine.scale.cluster import ClusterError, RayUnavailableError, shutdown
    from lsld_engine.scale.engine import run_extract as run
    from lsld_engine.records.uris import is_uri

    apply_store_arguments(args)
    backend_opts = _actor_options(args, EXTRACT_NETWORKS)
    why = _unsupported(args, prog)
    if why:
        return _error(prog, why)
    if is_uri(args.out):
        return _error(prog, f"--out {args.out}: {EXTRACT_NEEDS_FILESYSTEM}")
    items = _collect(args, prog)
    store = FeatureStore(args.out, args.dtype, args.names)
    left, _ = pending(items, store)
    plan = RunPlan.make(items, {i.video_id for i in items} - {i.video_id for i in left}, limit=args.limit,
                        prog=prog, what="extracted", kept="finished videos are kept")
    started = False
    if plan.todo:
        try:
            opts, started = _connect(args, prog)
        except (RayUnavailableError, ClusterError, ValueError, ConnectionError) as e:
            return _error(prog, str(e))

    def work() -> None:
        with open(store.log_path, "a", encoding="utf-8") as logf:
            run(plan.todo, logf, backend_opts, opts, root=str(store.root.resolve()), dtype=args.dtype, names=args.names,
                progress=not args.quiet, summary=plan.summary, decode_fn=_decode_fn(args), backend=args.backend)

    return plan.execute(work, cleanup=shutdown if started else None,
                        job_failed=_ray_failed("finished videos are kept"))


def run_parse_to_folder(args, prog: str) -> int:
    """``lsld-engine parse ... --out s3://bucket/results/`` on one machine (no ``--ray``): an object-store
    ``--out`` (where a file cannot be appended to) is the results folder of ``--ray``, written by this
    machine's own decode processes and encoders; inputs may be local paths, globs or URIs. Resume and
    ``--no-resume`` follow the ``--ray`` rules, so the two can take turns on one folder."""
    from lsld_engine.api import PARSE_NETWORKS, Engine
    from lsld_engine.records.results import done_ids
    from lsld_engine.parsing.run_plan import RunPlan
    from lsld_engine.scale.sinks import ShardSink

    apply_store_arguments(args)
    if getattr(args, "ordered", False):
        return _error(prog, "--ordered: a results folder has no order (sort when reading)")
    out = str(args.out)
    check_store(out)  # a dead endpoint or missing bucket: one line before any video is listed or decoded
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
        engine.parse_into(plan.todo, sink, progress=not args.quiet, summary=plan.summary)

    rc = plan.execute(work, abort=sink.abort, cleanup=engine.close, report=False)
    if rc is not None:
        return rc
    sink.close(inputs=len(items), skipped=plan.summary.skipped)
    return plan.report()
