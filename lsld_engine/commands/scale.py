"""The ``--ray [ADDRESS]`` options of ``lsld-engine parse`` / ``extract`` and their runs on Ray
(the command layer of :mod:`lsld_engine.scale`).

The commands call :func:`add_ray_arguments` and, when ``--ray`` is given, :func:`run_parse` /
:func:`run_extract` instead of the single-machine loop: inputs, resume, weights and error lines
follow the single-machine rules; only the engine and the shape of ``--out`` differ (parse: a
results folder of shards).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lsld_engine.cli import at_least

log = logging.getLogger("lsld_engine")

#: extract's --out on an object store: refused (numpy feature files are written in place, appended to a log)
EXTRACT_NEEDS_FILESYSTEM = ("extract writes the dataset layout (feature files + a log) to a folder every node sees "
                            "(a local or shared filesystem path such as NFS), not to an object store URI")


def add_ray_arguments(p: argparse.ArgumentParser, shards: bool = True) -> None:
    """The ``--ray`` flags; ``shards``: also the results-folder flags (parse)."""
    g = p.add_argument_group("scale out on Ray (pip install 'lsld-engine[ray]'; README: Scale out)")
    g.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray Data: without ADDRESS, join $RAY_ADDRESS or start a local instance; "
                        "'auto' joins the cluster of `ray start --head` on this node; or host:6379 / "
                        "ray://host:10001. Inputs may also be globs and URIs (s3://, gs://, ...)")
    g.add_argument("--ray-cpus", type=at_least(1), default=None, help="local instance: CPUs (default: all)")
    g.add_argument("--ray-gpus", type=at_least(0), default=None, help="local instance: GPUs (default: all)")
    g.add_argument("--ray-object-store-mb", type=at_least(64), default=None,
                   help="local instance: object store size in MiB (default: Ray's, 30%% of memory)")
    g.add_argument("--ray-actors", type=at_least(1), default=None,
                   help="most encoder actors (default: one per GPU, else CPUs / 2)")
    g.add_argument("--ray-actor-cpus", type=at_least(0, float, strict=True), default=None,
                   help="CPUs per encoder actor (default 1)")
    g.add_argument("--ray-actor-gpus", type=at_least(0, float), default=None,
                   help="GPUs per encoder actor (default: 1 on clusters with GPUs, else 0 = CPU actors)")
    g.add_argument("--ray-encode-batch", type=at_least(1), default=None,
                   help="videos per encoder call, batched across videos (default: 8 on GPU, 2 on CPU)")
    g.add_argument("--ray-decode-cpus", type=at_least(0, float, strict=True), default=None,
                   help="CPUs per decode task (default 1)")
    g.add_argument("--ray-decode-batch", type=at_least(1), default=2,
                   help="videos per decode task, the unit Ray retries (default 2)")
    g.add_argument("--ray-retries", type=at_least(0), default=3,
                   help="retries of a decode task whose worker process died (default 3)")
    g.add_argument("--ray-timeout", type=at_least(0, float, strict=True), default=30.0,
                   help="seconds for the cluster's ADDRESS to answer (default 30)")
    g.add_argument("--ray-node-wait", type=at_least(0, float, strict=True), default=300.0,
                   help="stop when for this long no node can run an encoder actor, e.g. its GPU nodes were "
                        "lost (default 300 s; the finished videos stay, the same command resumes)")
    g.add_argument("--ray-restarts", type=at_least(0), default=2,
                   help="when Ray gives up on the job after losing a node, actor or object, run the videos not "
                        "yet written again, at most this many times (default 2)")
    add_store_arguments(p)
    if shards:
        g.add_argument("--shard-rows", dest="rows_per_shard", type=at_least(1), default=1000,
                       help="results folder: videos per shard (default 1000)")
        g.add_argument("--shard-seconds", type=at_least(0, float, strict=True), default=60.0,
                       help="results folder: write a shard at least this often (default 60 s; a killed "
                            "run loses at most the videos of its unwritten shard)")


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    """``--s3-endpoint`` (with or without ``--ray``)."""
    g = p.add_argument_group("object stores (inputs / results as s3://... URIs)")
    g.add_argument("--s3-endpoint", default=None, metavar="URL",
                   help="S3-compatible endpoint, e.g. http://minio:9000 (default: $AWS_ENDPOINT_URL_S3 / "
                        "$AWS_ENDPOINT_URL, else AWS); used by this process and every Ray task. Credentials "
                        "come from the usual AWS variables / files on each machine, never from options")


def apply_store_arguments(args) -> None:
    """Make ``--s3-endpoint`` (else the environment's) the object-store settings of this process."""
    from lsld_engine.objectstore import apply, from_environment

    apply(from_environment(getattr(args, "s3_endpoint", None)))


def ray_options(args):
    from lsld_engine.objectstore import current
    from lsld_engine.scale.engine import RayOptions
    from lsld_engine.scale.trace import trace_path

    apply_store_arguments(args)
    return RayOptions(store=current(), trace=trace_path(), connect_timeout=args.ray_timeout,
                      node_wait=args.ray_node_wait, restarts=args.ray_restarts, address=args.ray, num_cpus=args.ray_cpus, num_gpus=args.ray_gpus,
                      object_store_mb=args.ray_object_store_mb, decode_cpus=args.ray_decode_cpus,
                      decode_batch=args.ray_decode_batch, decode_retries=args.ray_retries,
                      decode_timeout=args.decode_timeout, actors=args.ray_actors, actor_cpus=args.ray_actor_cpus,
                      actor_gpus=args.ray_actor_gpus, encode_batch=args.ray_encode_batch,
                      rows_per_shard=getattr(args, "rows_per_shard", 1000),
                      shard_seconds=getattr(args, "shard_seconds", 60.0), verbose=bool(args.verbose))


def actor_backend_options(args, opts: dict) -> dict:
    """``opts`` without the device and precision the user left unset: with ``--ray`` the encoder
    actors pick them from their own GPUs (:mod:`lsld_engine.scale.engine`), not from this machine's."""
    return {k: v for k, v in opts.items()
            if not (k == "device" and args.device is None or k == "precision" and args.precision is None)}


def _unsupported(args, prog: str) -> str | None:
    if getattr(args, "pixels", "cpu") != "cpu" or getattr(args, "decoder", "cpu") != "cpu":
        return "--ray decodes with the CPU reference path; --pixels device / --decoder nvdec are single-machine only"
    if getattr(args, "ordered", False):
        return "--ordered is single-machine only (a results folder has no order; sort when reading)"
    return None


def _decode_fn(args):
    """The decode tasks' per-video function: the CPU reference path with ``--frame-rule`` /
    ``--jpeg-roundtrip`` bound (:func:`lsld_engine.commands.extract.decode_function`)."""
    from lsld_engine.commands.extract import decode_function

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


def run_parse(args, prog: str, backend_opts: dict) -> int:
    """``lsld-engine parse --ray``: weights already checked by the command; writes a results folder."""
    from lsld_engine.pipeline import Summary
    from lsld_engine.results import done_ids, is_uri
    from lsld_engine.scale.cluster import ClusterError, RayUnavailableError, shutdown
    from lsld_engine.scale.engine import run_parse as run
    from lsld_engine.scale.sinks import ShardSink

    apply_store_arguments(args)
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
    todo = [i for i in items if i.video_id not in done]
    if args.limit is not None:
        todo = todo[: args.limit]
    summary = Summary(total=len(items), skipped=sum(i.video_id in done for i in items))
    if done:
        log.info("resuming %s: %d of %d videos already there", out, summary.skipped, len(items))
    started = False
    if todo:  # (a resumed run with nothing left to do needs no cluster)
        try:
            opts, started = _connect(args, prog)
        except (RayUnavailableError, ClusterError, ValueError, ConnectionError) as e:
            return _error(prog, str(e))
    sink = ShardSink(out, fmt, rows_per_shard=args.rows_per_shard, shard_seconds=args.shard_seconds)
    try:
        if todo:
            run(todo, sink, args.backend, backend_opts, opts, seg_threshold=args.seg_threshold,
                video_threshold=args.video_threshold, save_probs=args.save_probs, progress=not args.quiet,
                summary=summary, decode_fn=_decode_fn(args))
    except KeyboardInterrupt:
        sink.abort()
        print(f"{prog}: interrupted; finished videos are in {out}, run again to resume\n" + summary.format(),
              file=sys.stderr)
        return 130
    except BaseException as e:
        sink.abort()
        if isinstance(e, ClusterError):
            return _error(prog, f"{e}; finished videos are in {out}, run the same command again to resume")
        if _is_ray_error(e):
            return _error(prog, f"the Ray job failed ({_first_line(e)}); finished videos are in {out}, run "
                                "again to resume (--decode-timeout turns decoder crashes into error records)")
        raise
    finally:
        if started:
            shutdown()
    manifest = sink.close(inputs=len(items), skipped=summary.skipped)
    print(summary.format(), file=sys.stderr)
    log.info("%s: %d videos (%d ok, %d errors) in %d shards; manifest %s/_SUCCESS", out, manifest["videos"],
             manifest["ok"], manifest["error"], manifest["shards"], out)
    return 1 if summary.failed else 0


def run_extract(args, prog: str, backend_opts: dict) -> int:
    """``lsld-engine extract --ray``: the dataset layout of one machine, written by the encoder actors."""
    from lsld_engine.extract import FeatureStore, pending
    from lsld_engine.pipeline import Summary
    from lsld_engine.results import is_uri
    from lsld_engine.scale.cluster import ClusterError, RayUnavailableError, shutdown
    from lsld_engine.scale.engine import run_extract as run

    apply_store_arguments(args)
    why = _unsupported(args, prog)
    if why:
        return _error(prog, why)
    if is_uri(args.out):
        return _error(prog, f"--out {args.out}: {EXTRACT_NEEDS_FILESYSTEM}")
    items = _collect(args, prog)
    store = FeatureStore(args.out, args.dtype)
    todo, skipped = pending(items, store)
    if args.limit is not None:
        todo = todo[: args.limit]
    summary = Summary(total=len(items), skipped=skipped)
    if todo:
        try:
            opts, started = _connect(args, prog)
        except (RayUnavailableError, ClusterError, ValueError, ConnectionError) as e:
            return _error(prog, str(e))
        try:
            with open(store.log_path, "a", encoding="utf-8") as logf:
                run(todo, logf, backend_opts, opts, root=str(store.root.resolve()), dtype=args.dtype,
                    progress=not args.quiet, summary=summary, decode_fn=_decode_fn(args))
        except KeyboardInterrupt:
            print(f"{prog}: interrupted; finished videos are kept, run again to resume\n"
                  + summary.format("extracted"), file=sys.stderr)
            return 130
        except Exception as e:
            if isinstance(e, ClusterError):
                return _error(prog, f"{e}; finished videos are kept, run the same command again to resume")
            if _is_ray_error(e):
                return _error(prog, f"the Ray job failed ({_first_line(e)}); finished videos are kept, run "
                                    "again to resume (--decode-timeout turns decoder crashes into error records)")
            raise
        finally:
            if started:
                shutdown()
    print(summary.format("extracted"), file=sys.stderr)
    return 1 if summary.failed else 0
