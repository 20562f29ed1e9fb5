"""Videos/s of `parse --ray` (local Ray, 1 and 2 CPUs) against the single-machine engine, side by side.

    python -m bench.ray_bench [--videos 8] [--size small|real] [--cpus 1 2] [--object-store-mb 512] [--repeat 2]

Clips: synthetic 10-s 640x360 textured H.264 + AAC (``lsld_engine.testing.videos.bench_clips``),
the same files for every side. Networks: random-weight small CLIP / CLAP towers and a random HAN
(the same seed in every process, so every side computes the same records; checked at the end).

Each side is one parse job over all clips, measured from the first call to the last record:

- **single machine**: :func:`lsld_engine.parsing.parse.parse_videos` with the command's defaults for this
  machine (``CPUs / 2`` decode processes; torch's default threads), backend built inside the job;
  and again with ``--single-threads`` torch threads (the threads of a 1-CPU Ray encoder actor), to
  tell what Ray does from what the thread count does;
- **Ray, N CPUs**: a local Ray instance started with ``num_cpus=N`` (started before the clock,
  reported apart), then :func:`lsld_engine.scale.engine.run_parse` with the default plan
  (:func:`lsld_engine.scale.engine.plan`); the job includes starting the encoder actors (each
  builds its networks) and Ray Data's scheduling.

Printed per side: job wall time and videos/s, the time to the first record (fixed cost of a job),
and the steady rate after it ((n - 1) / (last - first record)). Nothing is asserted: wall-clock
numbers depend on what else runs on the machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from lsld_engine.parsing.video_inputs import assign_ids
from lsld_engine.testing.videos import bench_clips


class _Clock:
    """A writer that keeps records and their arrival times."""

    def __init__(self, t0: float):
        self.t0, self.times, self.records = t0, [], {}

    def write(self, record: dict) -> None:
        self.times.append(time.perf_counter() - self.t0)
        self.records[record["video_id"]] = record


def single_machine(items, options: dict) -> _Clock:
    from lsld_engine.api import default_workers
    from lsld_engine.backends import create_backend
    from lsld_engine.parsing.parse import parse_videos

    import torch

    threads = torch.get_num_threads()
    clock = _Clock(time.perf_counter())
    backend = create_backend("torch", **options)
    try:
        parse_videos(items, backend, clock, workers=default_workers("cpu"), progress=False)
    finally:
        backend.close()
        torch.set_num_threads(threads)  # the backend's ``threads`` option is process-wide
    return clock


def ray_job(items, options: dict, cpus: int, object_store_mb: int) -> tuple[_Clock, float, str]:
    from lsld_engine.scale import cluster
    from lsld_engine.scale.engine import RayOptions, plan, run_parse

    t = time.perf_counter()
    resources, _ = cluster.connect("local", num_cpus=cpus, object_store_mb=object_store_mb)
    start = time.perf_counter() - t
    opts = plan(RayOptions(), resources)
    shape = (f"{opts.actors} encoder actor(s) x {opts.actor_cpus:g} CPU, decode tasks {opts.decode_cpus:g} CPU "
             f"x {opts.decode_batch} videos, encoder calls of {opts.encode_batch} videos")
    try:
        clock = _Clock(time.perf_counter())
        run_parse(items, clock, "torch", options, opts, progress=False)
    finally:
        cluster.shutdown()
    return clock, start, shape


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ray_bench", description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--size", choices=("small", "real"), default="small")
    p.add_argument("--cpus", type=int, nargs="+", default=[1, 2], help="CPUs of the local Ray instance, one run each")
    p.add_argument("--object-store-mb", type=int, default=512)
    p.add_argument("--single-threads", type=int, default=1,
                   help="also run the single-machine engine with this many torch threads, as many as a Ray "
                        "encoder actor of 1 CPU uses (0: skip)")
    p.add_argument("--repeat", type=int, default=2, help="alternate the sides N times, keep each side's best job "
                   "(noise on a shared machine only ever adds time)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "lsld-parse-bench")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's workers must import this checkout
    root = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.node()} {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"load average {load:.2f} at start; networks: random {args.size} CLIP/CLAP towers + random HAN; "
          f"{args.videos} clips of 10 s 640x360 H.264+AAC", flush=True)
    items = assign_ids(bench_clips(args.cache / "clips", args.videos))
    options = {"random_weights": True, "size": args.size}
    n = len(items)
    best: dict[str, tuple] = {}
    for r in range(max(1, args.repeat)):  # alternate the sides; keep each side's fastest job
        runs = [("single machine", (single_machine(items, options), float("nan"), "parse_videos, defaults"))]
        if args.single_threads:  # the encoder threads of a Ray actor: separates Ray from thread counts
            runs.append((f"single, {args.single_threads} thr",
                         (single_machine(items, {**options, "threads": args.single_threads}), float("nan"),
                          f"parse_videos, torch threads {args.single_threads}")))
        for cpus in args.cpus:
            name = f"Ray, {cpus} CPU{'s' if cpus > 1 else ''}"
            runs.append((name, ray_job(items, options, cpus, args.object_store_mb)))
        for name, res in runs:
            print(f"  round {r + 1}: {name}: {res[0].times[-1]:.1f} s", flush=True)
            if name not in best or res[0].times[-1] < best[name][0].times[-1]:
                best[name] = res
    rows = [(name, *res) for name, res in best.items()]
    single = best["single machine"][0]
    print(f"{'engine':<16} {'job s':>7} {'videos/s':>9} {'vs single':>9} {'first record s':>15} "
          f"{'steady videos/s':>16} {'ray start s':>12}  plan")
    base = n / single.times[-1]
    for name, clock, start, shape in rows:
        job = clock.times[-1]
        steady = (n - 1) / (clock.times[-1] - clock.times[0]) if n > 1 else float("nan")
        print(f"{name:<16} {job:7.1f} {n / job:9.3f} {n / job / base:8.2f}x {clock.times[0]:15.1f} "
              f"{steady:16.3f} {start:12.1f}  {shape}")
    # the same records on every side: videos, statuses and event spans (scores differ in the last bits)
    def spans(c: _Clock) -> dict:
        return {k: (r["status"], {t: [(e["label"], e["onset"], e["offset"]) for e in evs]
                                  for t, evs in r.get("events", {}).items()}) for k, r in c.records.items()}
    same = all(spans(c) == spans(single) for _, c, _, _ in rows)
    print(f"same videos and events on every side: {same}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
