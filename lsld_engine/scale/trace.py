"""Where the work of a scale-out run ran: an optional trace of (stage, node, process, videos).

Set ``LSLD_RAY_TRACE=/path/trace.jsonl`` on the driver: the path goes to every decode task and
encoder actor (:class:`~lsld_engine.scale.engine.RayOptions` ``trace``), which append one JSON
line per call, ``{"stage": "decode" | "actor" | "encode", "node": <Ray node id>, "pid": ...,
"videos": [...]}``. On one machine (tests, benchmarks) all nodes write the same file; on a real
cluster each node writes its own local file. Off by default; nothing of it goes into the results.
"""
from __future__ import annotations

import json
import os

#: Driver environment variable naming the trace file.
TRACE_VARIABLE = "LSLD_RAY_TRACE"


def trace_path() -> str | None:
    return os.environ.get(TRACE_VARIABLE) or None


def note(path: str | None, stage: str, videos: list[str] | None = None) -> None:
    """Append one line for this process (no-op without ``path``); one ``write`` of an O_APPEND
    file, so lines of concurrent processes do not interleave."""
    if not path:
        return
    import ray

    line = json.dumps({"stage": stage, "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                       "videos": list(videos or [])}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read(path: str | os.PathLike) -> list[dict]:
    """The lines of a trace file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
