"""A multi-node Ray cluster on one machine for tests and benchmarks (``ray.cluster_utils.Cluster``).

Each node has its own raylet, object store and worker processes; the cluster lives under its own
short temporary folder (``RAY_TMPDIR``), so it never touches another Ray instance's ``/tmp/ray``.
:func:`local_cluster` tears it down even when the body fails and then checks that none of its
raylets is left; :func:`kill_node` SIGKILLs a node's worker processes and raylet (a lost machine).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Iterator

MB = 2**20
#: The head node's name: a driver in this process attaches to the head's raylet (Ray would pick
#: any raylet on this machine, and a test must not kill the one its driver uses).
HEAD_NAME = "lsld-test-head"


def _children(pid: int) -> list[int]:
    """All descendants of ``pid`` (from /proc: no psutil needed)."""
    parents: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def processes_under(folder: str) -> list[int]:
    """Pids of live processes whose command line mentions ``folder`` (a cluster's temp dir)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if folder in cmd and state != "Z" and int(d.name) != os.getpid():
                out.append(int(d.name))
    return out


@contextlib.contextmanager
def env_vars(**values: str | None) -> Iterator[None]:
    """Set (``None``: unset) environment variables while nodes are started (they inherit them)."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def local_cluster(workers: int = 2, *, head_cpus: float = 0, cpus: float = 1, store_mb: int = 100,
                  worker_env: dict[str, str | None] | None = None) -> Iterator:
    """A head node (``head_cpus`` CPUs: 0 keeps the work off the driver's node) and ``workers``
    nodes of ``cpus`` CPUs and a ``store_mb`` MiB object store each; yields the Cluster
    (``.address`` for ``ray.init`` / ``--ray``, ``.worker_nodes``)."""
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="lsldray", dir="/tmp")  # short: Ray's socket paths have a length limit
    cluster = None
    try:
        with env_vars(RAY_TMPDIR=tmp, RAY_USAGE_STATS_ENABLED="0"):
            cluster = Cluster(initialize_head=True, connect=False,
                              head_node_args={"num_cpus": head_cpus, "object_store_memory": store_mb * MB,
                                              "include_dashboard": False, "node_name": HEAD_NAME})
            with env_vars(**(worker_env or {})):
                for _ in range(workers):
                    add_node(cluster, cpus=cpus, store_mb=store_mb)
            cluster.tmp = tmp
            yield cluster
    finally:
        import ray

        ray.shutdown()  # (also clears a driver left half-connected by a failed test)
        try:
            if cluster is not None:
                cluster.shutdown()
        except Exception as e:  # noqa: BLE001 - whatever Ray left is killed below
            import logging

            logging.getLogger(__name__).warning("Cluster.shutdown failed (%s); killing its processes", e)
        deadline = time.monotonic() + 30
        while processes_under(tmp) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = processes_under(tmp)
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
        assert not left, f"processes of the test cluster left after shutdown: {left}"


def add_node(cluster, *, cpus: float = 1, gpus: float = 0, store_mb: int = 100, **env: str | None):
    """Start one more node (``env``: its own environment variables; ``gpus``: logical GPUs)."""
    with env_vars(**env):
        return cluster.add_node(num_cpus=cpus, num_gpus=gpus, object_store_memory=store_mb * MB, wait=True)


def connect(cluster) -> None:
    """Make this process a driver of ``cluster`` attached to its head node (no-op when connected)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING")
    assert ray.get_runtime_context().get_node_id() == cluster.head_node.node_id


def kill_node(cluster, node) -> None:
    """SIGKILL ``node``'s worker processes and raylet (and its other daemons), as a lost machine."""
    raylet = node.all_processes["raylet"][0].process.pid
    for pid in _children(raylet):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    cluster.remove_node(node, allow_graceful=False)


def pss_mb(pids) -> float:
    """Proportional set size of ``pids`` in MiB (shared object-store pages counted once, split
    between the processes that map them), from ``/proc/<pid>/smaps_rollup``."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
    return total / 1024


def spilled_mb(folder: str) -> float:
    """MiB of object-store spill files under a cluster's folder (Ray spills into its temp dir)."""
    total = 0
    for p in Path(folder).rglob("*"):
        if "spill" in str(p.relative_to(folder)):
            with contextlib.suppress(OSError):
                if p.is_file():
                    total += p.stat().st_size
    return total / MB


class MemorySampler:
    """Peak memory of a cluster's processes (every node's raylet, store and workers) and peak
    size of its spill files while a block runs: ``with MemorySampler(cluster.tmp) as m: ...`` then
    ``m.peak_mb`` / ``m.peak_spilled_mb``, sampled every ``interval`` seconds in a thread."""

    def __init__(self, folder: str, interval: float = 0.25):
        self.folder, self.interval = folder, interval
        self.peak_mb = self.peak_spilled_mb = 0.0
        self.peak_processes = 0  # processes counted at the peak
        self.samples = 0
        self._stop = None

    def __enter__(self) -> "MemorySampler":
        import threading

        self._stop = threading.Event()

        def loop() -> None:
            while not self._stop.is_set():
                # workers retitle themselves ("ray::..."): found as the daemons' descendants
                daemons = processes_under(self.folder)
                pids = set(daemons).union(*(_children(p) for p in daemons))
                now = pss_mb(pids)
                if now > self.peak_mb:
                    self.peak_mb, self.peak_processes = now, len(pids)
                self.peak_spilled_mb = max(self.peak_spilled_mb, spilled_mb(self.folder))
                self.samples += 1
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, name="lsld-memory-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

