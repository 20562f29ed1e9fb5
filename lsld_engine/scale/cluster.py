"""Connect to a Ray cluster, or start a local Ray instance, for the scale-out engine."""
from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from typing import Iterator

from lsld_engine.errors import LsldError

log = logging.getLogger(__name__)

#: Modules every worker node needs for the decode tasks and encoder actors (the ``[ray]`` and
#: ``[encoders]`` extras and this package), checked by :func:`check_workers`.
WORKER_MODULES = ("lsld_engine", "numpy", "pyarrow", "av", "torch")

#: ``--ray`` given without an address: connect to ``$RAY_ADDRESS`` when set, else start a local instance.
LOCAL = "local"


class RayUnavailableError(RuntimeError):
    """Ray is not installed; the message says how to install it."""


class ClusterError(LsldError, RuntimeError):
    """The cluster cannot run this job (no answer, other Ray version, modules missing on the
    workers, inputs the workers cannot see, no node left for the encoders); one line says which."""


def check_address(address: str, timeout: float) -> None:
    """Raise :class:`ClusterError` unless something answers at ``host:port`` (or ``ray://host:port``)
    within ``timeout`` s; Ray itself retries an unanswered address for a long time."""
    if address in ("auto", LOCAL) or not address:
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # not host:port: left to Ray
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ClusterError(f"no Ray cluster answers at {address} within {timeout:g} s ({e.strerror or e}); "
                           "check the address (`ray status` on the head node) or raise --ray-timeout") from None


def import_ray():
    """The ``ray`` module (with Ray Data), or :class:`RayUnavailableError` naming the extra."""
    # Local instances must not phone home (no network in CI, and none asked for).
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data  # noqa: F401 - the engine is built on Ray Data
    except ModuleNotFoundError as e:
        raise RayUnavailableError(f"--ray needs Ray Data (missing module {e.name!r}): "
                                  "pip install 'lsld-engine[ray]'") from None
    return ray


def connect(address: str | None = LOCAL, *, num_cpus: int | None = None, num_gpus: int | None = None,
            object_store_mb: int | None = None, verbose: bool = False,
            timeout: float = 30.0) -> tuple[dict[str, float], bool]:
    """Join the cluster at ``address`` (``auto``, ``ray://host:10001``, ``host:6379``) or, for
    ``None`` / ``"local"`` without ``$RAY_ADDRESS``, start a local instance with ``num_cpus``,
    ``num_gpus`` and an object store of ``object_store_mb`` MiB. Returns the cluster's resources
    (``{"CPU": ..., "GPU": ..., ...}``) and whether this call connected (a session already
    connected, e.g. by a test or a notebook, is reused and left open)."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        kwargs: dict = {"include_dashboard": False, "log_to_driver": verbose,
                        "logging_level": logging.INFO if verbose else logging.WARNING}
        if address in (None, LOCAL):
            if os.environ.get("RAY_ADDRESS"):
                log.info("joining the Ray cluster at $RAY_ADDRESS=%s", os.environ["RAY_ADDRESS"])
            else:
                kwargs.update(num_cpus=num_cpus, num_gpus=num_gpus,
                              object_store_memory=object_store_mb * 2**20 if object_store_mb else None)
                log.info("starting a local Ray instance")
        else:
            check_address(address, timeout)
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except RuntimeError as e:
            if "version mismatch" in str(e).lower():
                raise ClusterError(_version_line(address, str(e))) from None
            raise
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = verbose  # the driver shows one bar of its own
    if hasattr(ctx, "print_on_execution_start"):
        ctx.print_on_execution_start = verbose
    return dict(ray.cluster_resources()), started


def shutdown() -> None:
    """Leave the cluster (stops a local instance this process started)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _version_line(address: str | None, text: str) -> str:
    import ray

    first = " ".join(text.split())
    cluster = first.split("was started with:", 1)[-1].split("This process", 1)[0].strip(" .;") \
        if "was started with:" in first else "another version"
    return (f"the Ray cluster at {address or '$RAY_ADDRESS'} runs {cluster}; this driver has Ray {ray.__version__}: "
            "install the same Ray (and Python) version on the driver and every node")


def check_workers(modules: tuple[str, ...] = WORKER_MODULES, timeout: float = 120.0) -> None:
    """One zero-CPU task on every alive node: its Ray version must be the driver's and it must
    import ``modules``; else :class:`ClusterError` naming the node and the problem."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = {n["NodeID"]: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(modules) for n in nodes}
    ready, pending = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout)
    if pending:
        raise ClusterError(f"{len(pending)} of {len(refs)} Ray nodes did not run a probe task within {timeout:g} s")
    for (node, ref), n in zip(refs.items(), nodes):
        try:
            version, missing = ray.get(ref)
        except ray.exceptions.TaskUnschedulableError:
            continue  # a node that died since ray.nodes() listed it: nothing will be scheduled there
        where = f"the Ray node {node[:12]} at {n.get('NodeManagerAddress', '?')}"
        if version != ray.__version__:
            raise ClusterError(f"{where} runs Ray {version}; this driver has Ray {ray.__version__}: install the "
                               "same Ray version on the driver and every node")
        if missing:
            name, why = missing[0]
            raise ClusterError(f"{where} cannot import {name!r} ({why}): install lsld-engine[ray] "
                               "(and the encoder extras) on every node")


def _probe(modules: tuple[str, ...]) -> tuple[str, list[tuple[str, str]]]:
    """(Ray version, [(module, first line of its import error)]) of the node it runs on."""
    import importlib

    import ray

    missing = []
    for m in modules:
        try:
            importlib.import_module(m)
        except Exception as e:  # noqa: BLE001 - any import failure makes the node unusable
            missing.append((m, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
    return ray.__version__, missing


class EncoderNodeWatch:
    """Whether some alive node can hold an encoder actor (``cpus`` CPUs, ``gpus`` GPUs); polled by
    the driver while it waits for records. ``expired()`` is true once none could for ``wait`` s."""

    def __init__(self, cpus: float, gpus: float, wait: float):
        self.cpus, self.gpus, self.wait = cpus, gpus, wait
        self._since: float | None = None

    def can_run(self) -> bool:
        import ray

        for n in ray.nodes():
            r = n.get("Resources", {})
            if n.get("Alive") and r.get("CPU", 0) + 1e-9 >= self.cpus and r.get("GPU", 0) + 1e-9 >= self.gpus:
                return True
        return False

    def expired(self) -> bool:
        if self.can_run():
            self._since = None
            return False
        now = time.monotonic()
        if self._since is None:
            self._since = now
            log.warning("no node of the cluster can run an encoder actor (%g CPU, %g GPU); waiting up to "
                        "%g s for one to join", self.cpus, self.gpus, self.wait)
        return now - self._since >= self.wait

    def message(self) -> str:
        return (f"no node of the Ray cluster could run an encoder actor ({self.cpus:g} CPU, {self.gpus:g} GPU) "
                f"for {self.wait:g} s (nodes lost?)")


class EncoderNodesLost(ClusterError):
    """No node could run an encoder actor for the watch's wait (raised by :func:`iter_with_watch`)."""


#: Name of the thread that pulls a dataset's rows for :func:`iter_with_watch`.
PULL_THREAD = "lsld-ray-rows"


def iter_with_watch(rows: Iterator, watch: EncoderNodeWatch, poll: float = 2.0) -> Iterator:
    """``rows`` (a Ray Data iterator) pulled in a thread; between rows, ``watch`` is polled and
    :class:`EncoderNodesLost` raised when it expires (Ray would wait for such a node forever).
    The pulling thread is then left blocked in Ray Data: leave the Ray session (``ray.shutdown()``,
    as the command does) before starting another run in the same process."""
    q: queue.Queue = queue.Queue(maxsize=256)

    def pull() -> None:
        try:
            for r in rows:
                q.put(("row", r))
            q.put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the driver's thread
            q.put(("error", e))

    threading.Thread(target=pull, name=PULL_THREAD, daemon=True).start()
    while True:
        try:
            kind, item = q.get(timeout=poll)
        except queue.Empty:
            if watch.expired():
                raise EncoderNodesLost(watch.message()) from None
            continue
        if kind == "row":
            yield item
        elif kind == "end":
            return
        else:
            raise item
