"""The scale-out run: the Ray Data pipeline of parse / extract and the driver loop that writes results.

::

    from_items(rows path, video_id)                      one block per ``decode_batch`` videos
      .map_batches(decode_batch, num_cpus=decode_cpus,     CPU tasks, retried when a worker dies
                   max_retries=decode_retries)
      .map_batches(ParseActor | ExtractActor,              actor pool of 1..actors; num_gpus per
                   batch_size=encode_batch, ...)           actor on GPU clusters
      .iter_rows()  -> the driver: ShardSink (parse) or the extract log (extract)

Nothing is hard-coded for one cluster shape: :func:`plan` derives defaults from the cluster's
resources (one GPU actor per GPU; on CPUs, half the CPUs for encoder actors, half for decoding),
and every value can be set (:class:`RayOptions`, the ``--ray-*`` flags).
"""
from __future__ import annotations

import json
import logging
import math
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable

from lsld_engine.records.events import DEFAULT_THRESHOLD, check_threshold
from lsld_engine.records.objectstore import StoreSettings, current as current_store

from lsld_engine.data.llp import T
from lsld_engine.parsing.pipeline import Summary
from lsld_engine.parsing.video_inputs import VideoInput

log = logging.getLogger(__name__)

#: Most blocks the input list is cut into (each is one decode task, the unit Ray retries).
MAX_INPUT_BLOCKS = 20_000


@dataclass
class RayOptions:
    """How to run on Ray. ``None`` fields are derived from the cluster by :func:`plan`."""

    address: str | None = "local"
    num_cpus: int | None = None          # local instance only
    num_gpus: int | None = None          # local instance only
    object_store_mb: int | None = None   # local instance only
    decode_cpus: float | None = None     # CPUs reserved per decode task
    decode_batch: int = 2                # videos per decode task (the retry unit)
    decode_retries: int = 3              # retries of a decode task whose worker process died
    decode_timeout: float | None = None  # seconds per file (a child process per task when set)
    actors: int | None = None            # most encoder actors
    actor_cpus: float | None = None      # CPUs per encoder actor
    actor_gpus: float | None = None      # GPUs per encoder actor (0 = CPU actors)
    encode_batch: int | None = None      # videos per encoder call (batched across videos)
    rows_per_shard: int = 1000
    shard_seconds: float = 60.0
    verbose: bool = False
    connect_timeout: float = 30.0        # seconds for the cluster's address to answer
    node_wait: float = 300.0             # seconds without any node that can run an encoder actor -> stop
    restarts: int = 2                    # new datasets of the unwritten videos after a lost node / actor
    store: StoreSettings = field(default_factory=current_store)  # object-store endpoint for every task
    trace: str | None = None             # scale.trace file (where each stage ran), for tests and benches


def plan(opts: RayOptions, resources: dict[str, float]) -> RayOptions:
    """``opts`` with every ``None`` filled from the cluster's ``resources`` (``{"CPU": n, "GPU": m}``)."""
    cpus, gpus = float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
    actor_gpus = opts.actor_gpus if opts.actor_gpus is not None else (1.0 if gpus >= 1 else 0.0)
    if actor_gpus > gpus:
        raise ValueError(f"--ray-actor-gpus {actor_gpus:g}: the cluster has {gpus:g} GPUs "
                         "(the encoder actors would wait for them forever)")
    if actor_gpus > 0:
        actors = opts.actors or max(1, int(gpus // actor_gpus))
        actor_cpus = opts.actor_cpus if opts.actor_cpus is not None else 1.0
        encode_batch = opts.encode_batch or 8
    else:
        # CPU encoders and decoders share the CPUs: by default half each
        actor_cpus = opts.actor_cpus if opts.actor_cpus is not None else min(1.0, cpus / 2)
        actors = opts.actors or max(1, int(cpus / 2 // max(actor_cpus, 1e-9)))
        encode_batch = opts.encode_batch or 2
    decode_cpus = opts.decode_cpus if opts.decode_cpus is not None else min(1.0, cpus / 2)
    if actors * actor_cpus + decode_cpus > cpus + 1e-9:
        raise ValueError(f"the cluster has {cpus:g} CPUs: {actors} encoder actors x {actor_cpus:g} CPUs leave "
                         f"none for a decode task of {decode_cpus:g} CPUs; lower --ray-actors / --ray-actor-cpus")
    return replace(opts, actor_gpus=actor_gpus, actors=actors, actor_cpus=actor_cpus, encode_batch=encode_batch,
                   decode_cpus=decode_cpus)


def decoded_dataset(items: list[VideoInput], opts: RayOptions, decode_fn: Callable | None = None):
    """The Ray Dataset of decoded videos (the decode stage; ``opts`` already planned)."""
    import ray

    from lsld_engine.scale.stages import decode_batch

    rows = [{"path": i.path, "video_id": i.video_id} for i in items]
    blocks = max(1, min(MAX_INPUT_BLOCKS, math.ceil(len(rows) / opts.decode_batch)))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    # max_retries also keeps this stage a separate operator (Ray fuses stages with equal task
    # arguments into the actors, which would put decoding inside the encoder processes). Ray 2.60
    # marks task arguments passed this way deprecated (removal announced for 2.64; the [ray] extra
    # stays below it) without a named replacement yet.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return ds.map_batches(decode_batch, batch_size=opts.decode_batch, num_cpus=opts.decode_cpus,
                              max_retries=opts.decode_retries,
                              fn_kwargs={"timeout": opts.decode_timeout, "decode_fn": decode_fn,
                                         "threads": max(1, int(opts.decode_cpus)), "store": opts.store,
                                         "trace_to": opts.trace})


def encoded_dataset(decoded, actor_cls, constructor_kwargs: dict, opts: RayOptions):
    """The encode stage: ``actor_cls`` (a :mod:`~lsld_engine.scale.stages` actor) over ``decoded``."""
    import ray

    constructor_kwargs = {**constructor_kwargs, "store": opts.store, "trace_to": opts.trace}
    return decoded.map_batches(actor_cls, batch_size=opts.encode_batch, fn_constructor_kwargs=constructor_kwargs,
                               compute=ray.data.ActorPoolStrategy(min_size=1, max_size=opts.actors),
                               num_cpus=opts.actor_cpus, num_gpus=opts.actor_gpus or None)


def backend_options_for(options: dict, opts: RayOptions) -> dict:
    """The backend options of an encoder actor: its device follows the actor's GPUs, torch
    threads its CPUs."""
    out = dict(options)
    out.setdefault("device", "cuda" if opts.actor_gpus else "cpu")
    out.setdefault("precision", "fp16" if str(out["device"]).startswith("cuda") else "fp32")
    out.setdefault("threads", max(1, int(opts.actor_cpus)))
    return out


def run_parse(items: list[VideoInput], sink, backend: str, options: dict, opts: RayOptions, *,
              seg_threshold: float = DEFAULT_THRESHOLD, video_threshold: float = DEFAULT_THRESHOLD,
              save_probs: bool = False, progress: bool = True, summary: Summary | None = None,
              decode_fn: Callable | None = None) -> Summary:
    """Parse ``items`` on the connected cluster; every record goes to ``sink.write`` (a
    :class:`~lsld_engine.scale.sinks.ShardSink`). ``opts`` must be planned (:func:`plan`)."""
    from lsld_engine.scale.stages import ParseActor

    # refused here, on the driver, before any actor starts (the actors check again)
    seg_threshold = check_threshold("seg_threshold", seg_threshold)
    video_threshold = check_threshold("video_threshold", video_threshold)
    kwargs = {"backend": backend, "options": backend_options_for(options, opts), "seg_threshold": seg_threshold,
              "video_threshold": video_threshold, "save_probs": save_probs}

    def build(todo: list[VideoInput]):
        return encoded_dataset(decoded_dataset(todo, opts, decode_fn), ParseActor, kwargs, opts)

    return _drive_with_restarts(items, build, sink.write, progress, summary or Summary(), "parse", opts)


def run_extract(items: list[VideoInput], log_file, options: dict, opts: RayOptions, *, root: str,
                dtype: str = "float16", names: str = "full", progress: bool = True, summary: Summary | None = None,
                decode_fn: Callable | None = None, backend: str = "torch") -> Summary:
    """Extract features of ``items`` into the dataset ``root`` (a folder every node sees); each
    video's log line is appended to ``log_file`` after its files are in place."""
    from lsld_engine.scale.stages import ExtractActor

    kwargs = {"backend": backend, "options": backend_options_for(options, opts), "root": root, "dtype": dtype,
              "names": names}

    def build(todo: list[VideoInput]):
        return encoded_dataset(decoded_dataset(todo, opts, decode_fn), ExtractActor, kwargs, opts)

    def write(record: dict) -> None:
        log_file.write(json.dumps(record, ensure_ascii=False) + "\n")
        log_file.flush()

    return _drive_with_restarts(items, build, write, progress, summary or Summary(), "extract", opts)


def _system_failure(e: BaseException) -> bool:
    """A failure of the cluster rather than of the work: a node, an actor or an object was lost."""
    import ray.exceptions as rex

    kinds = tuple(getattr(rex, n) for n in ("ActorDiedError", "ActorUnavailableError", "NodeDiedError",
                                             "ObjectLostError", "OwnerDiedError", "WorkerCrashedError",
                                             "ObjectReconstructionFailedError") if hasattr(rex, n))
    return isinstance(e, kinds)


def _drive_with_restarts(items: list[VideoInput], build: Callable, write: Callable[[dict], None], progress: bool,
                         summary: Summary, what: str, opts: RayOptions) -> Summary:
    """:func:`_drive` the dataset of ``items``; when Ray gives up on it because the cluster lost
    a node, an actor or an object (e.g. an encoder actor whose replacement waited for a node that
    joined later), run a new dataset of the videos not yet written, at most ``opts.restarts``
    times. The driver is the only writer and skips what it wrote, so no video is written twice."""
    written: set[str] = set()

    def write_once(record: dict) -> None:
        write(record)
        written.add(record["video_id"])

    for attempt in range(opts.restarts + 1):
        todo = [i for i in items if i.video_id not in written]
        try:
            return _drive(build(todo), len(todo), write_once, progress, summary, what, opts)
        except Exception as e:
            if attempt == opts.restarts or not _system_failure(e):
                raise
            log.warning("the cluster lost work (%s: %s); running the %d videos not yet written again",
                        type(e).__name__, (str(e).strip().splitlines() or [""])[0],
                        len(items) - len(written))
    return summary


def _drive(ds, total: int, write: Callable[[dict], None], progress: bool, summary: Summary, what: str,
           opts: RayOptions) -> Summary:
    """Pull records from the running dataset and hand each to ``write``; fills ``summary``.

    Stops with :class:`~lsld_engine.scale.cluster.ClusterError` when a local input is not visible
    on a worker node, or when for ``opts.node_wait`` seconds no node of the cluster can run an
    encoder actor (its nodes were lost): Ray would wait for one forever."""
    from lsld_engine.progress import progress_bar
    from lsld_engine.scale.cluster import ClusterError, EncoderNodeWatch, iter_with_watch
    from lsld_engine.scale.stages import NOT_VISIBLE

    t0 = time.perf_counter()
    bar = progress_bar(total=total, unit="video", disable=not progress, dynamic_ncols=True, smoothing=0.1)
    watch = EncoderNodeWatch(opts.actor_cpus or 0.0, opts.actor_gpus or 0.0, opts.node_wait)
    rows = iter_with_watch(ds.iter_rows(), watch)
    try:
        for row in rows:
            rec = json.loads(row["record"])
            if rec["status"] != "ok" and NOT_VISIBLE in str(rec.get("error", "")):
                raise ClusterError(f"{rec['error']}: local inputs must be on a filesystem every node sees "
                                   "(a shared mount at the same path), or use object-store URIs (s3://...)")
            write(rec)
            if rec["status"] == "ok":
                summary.done += 1
                summary.windows += len(rec.get("windows", [])) if what == "extract" \
                    else int(rec.get("segments", 0)) // T
            else:
                log.warning("failed: %s", rec.get("error"))
                summary.failed.append((rec["video_id"], rec.get("error", "")))
                bar.set_postfix(failed=len(summary.failed), refresh=False)
            bar.update(1)
    finally:
        rows.close()
        bar.close()
        summary.seconds = time.perf_counter() - t0
    return summary
