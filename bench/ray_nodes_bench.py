"""Per-node cost of a Ray cluster on one machine: 1, 2 and 3 worker nodes (each its own raylet and store).

    python -m bench.ray_nodes_bench [--nodes 1 2 3] [--videos 6] [--store-mb 150]

For each cluster size: a head node without CPUs (the driver's) plus N worker nodes of 1 CPU each
(``lsld_engine.testing.raycluster``), then one ``parse`` job (:func:`lsld_engine.scale.engine.run_parse`,
random-weight small towers, 0.5-CPU encoder actors and decode tasks) over the same short generated
clips. Printed per size: cluster start (s), time to the first record (s), job total (s), videos/s,
and the nodes that ran decode tasks / encoder calls (``LSLD_RAY_TRACE``). All nodes share this
machine's cores, so more nodes add raylets and actors, not CPU: the figures are the fixed cost of
a node, not a scaling curve. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


class _Clock:
    def __init__(self):
        self.first: float | None = None
        self.n = 0

    def write(self, record: dict) -> None:
        self.first = self.first or time.perf_counter()
        self.n += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--store-mb", type=int, default=150)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = Path(__file__).resolve().parents[1]
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))

    import ray

    from lsld_engine.parsing.pipeline import Summary
    from lsld_engine.scale import cluster as rc, trace
    from lsld_engine.scale.engine import RayOptions, plan, run_parse
    from lsld_engine.testing import raycluster
    from lsld_engine.testing.videos import VideoSpec, make_video
    from lsld_engine.parsing.video_inputs import VideoInput

    tmp = Path(tempfile.mkdtemp(prefix="lsld-nodes-bench-"))
    items = [VideoInput(str(make_video(tmp / f"v{i}.mp4", VideoSpec(freq=300.0 + 50 * i, duration=4.0))), f"v{i}")
             for i in range(a.videos)]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"{a.videos} clips of 4 s, small random towers")
    print("| worker nodes | cluster start s | first record s | job s | videos/s | nodes decoding / encoding |")
    print("|---|---|---|---|---|---|")
    for n in a.nodes:
        t0 = time.perf_counter()
        with raycluster.local_cluster(workers=n, cpus=1, store_mb=a.store_mb) as c:
            raycluster.connect(c)
            started = time.perf_counter() - t0
            tr = tmp / f"trace{n}.jsonl"
            resources, _ = rc.connect(c.address)
            opts = plan(RayOptions(address=c.address, actor_cpus=0.5, decode_cpus=0.5, decode_batch=1,
                                   encode_batch=1, trace=str(tr)), resources)
            clock = _Clock()
            t1 = time.perf_counter()
            run_parse(items, clock, "torch", {"random_weights": True, "size": "small"}, opts, progress=False,
                      summary=Summary())
            total = time.perf_counter() - t1
            where: dict[str, set] = {}
            for line in trace.read(tr):
                where.setdefault(line["stage"], set()).add(line["node"])
            ray.shutdown()
        print(f"| {n} | {started:.1f} | {clock.first - t1:.1f} | {total:.1f} | {clock.n / total:.3f} | "
              f"{len(where.get('decode', ()))} / {len(where.get('encode', ()))} |")


if __name__ == "__main__":
    main()
