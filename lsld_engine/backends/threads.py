"""How the cores are split between decode workers (processes) and the encoders' intra-op threads.

On a CPU the towers cost ~10x the decoding of the same clip (real-size ViT-B/16 + HTSAT, ONNX
Runtime fp32: ~4 s per 10-s clip on 2 Zen 5 cores, decoding well under 1 s), so most cores go to
intra-op threads: ``workers = max(1, cores // 4)`` decode processes and the rest as threads. On
two cores or fewer the one decode worker mostly waits for the encoder, so the encoder gets every
core (ONNX Runtime's idle threads do not spin, see ``onnx_backend.session_options``). On CUDA the
CPUs only decode: ``cores - 1`` workers, intra-op threads left to the runtime.

``--workers`` / ``--threads`` override either side; the plan is printed once at start.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ThreadPlan:
    """``workers`` decode processes, ``threads`` intra-op threads (``None``: the runtime's default)."""

    cores: int
    workers: int
    threads: int | None
    reason: str

    def describe(self) -> str:
        t = "runtime default" if self.threads is None else str(self.threads)
        return f"{self.workers} decode workers + {t} intra-op threads on {self.cores} cores ({self.reason})"


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's cpuset), else ``os.cpu_count``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def plan_threads(device: str = "cpu", *, cores: int | None = None, workers: int | None = None,
                 threads: int | None = None) -> ThreadPlan:
    """The split for ``device`` on ``cores`` (default :func:`available_cores`); ``workers`` /
    ``threads`` are the user's overrides (kept as given)."""
    n = cores or available_cores()
    if str(device).startswith("cuda"):
        w = max(1, n - 1) if workers is None else workers
        return ThreadPlan(n, w, threads, "CUDA: the CPUs decode")
    if n <= 2:
        w, t, why = 1, n, "<= 2 cores: the decode worker mostly waits, the encoder gets every core"
    else:
        w = max(1, n // 4)
        t, why = max(1, n - w), "CPU: the encoder costs ~10x the decoding"
    if workers is not None or threads is not None:
        why = "--workers / --threads given" if workers is not None and threads is not None else why + "; flags override"
    return ThreadPlan(n, w if workers is None else workers, t if threads is None else threads, why)
