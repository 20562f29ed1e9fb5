"""Connect to a Ray cluster, or start a local Ray instance, for the scale-out engine."""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

#: ``--ray`` given without an address: connect to ``$RAY_ADDRESS`` when set, else start a local instance.
LOCAL = "local"


class RayUnavailableError(RuntimeError):
    """Ray is not installed; the message says how to install it."""


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
            object_store_mb: int | None = None, verbose: bool = False) -> tuple[dict[str, float], bool]:
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
            kwargs["address"] = address
        ray.init(**kwargs)
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
