"""Start a decode worker: a fresh Python process that runs only the engine's code, never the caller's script.

:func:`start` launches ``sys.executable -c BOOTSTRAP`` with one end of a socket pair (a
:class:`multiprocessing.connection.Connection`) and sends it, in this order, the caller's
``sys.path`` and the pickled ``(target, args)``; the child imports ``target`` (and whatever its
arguments need, e.g. PyAV for the decode function), answers ``("ready",)`` and calls
``target(conn, *args)``. A start-up that fails answers ``("failed", why)`` instead and exits 1.

Why not ``multiprocessing``'s *spawn* (or *forkserver*) start method: each child first re-runs the
parent's main module (``__main__.__file__`` / ``__main__.__spec__``) as ``__mp_main__``, so a
script without an ``if __name__ == "__main__":`` guard runs again in every worker -- it loads the
engine, starts its own workers, and the child dies before it decodes anything. A plain
subprocess runs only this bootstrap, whatever started the parent (a script, ``python -c``, stdin,
a notebook, a thread), and is as fresh as spawn's (no fork: the parent may hold a CUDA context).
The one difference: ``target`` and its arguments must be importable by name (a function defined
in a notebook or in the script itself is not; the worker then fails to start, saying so).

POSIX only (``pass_fds``); death shows as end-of-file on the connection, as the child's end of the
socket pair lives in the child alone (the parent closes its copy right after the start).
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from multiprocessing.connection import Connection, Pipe
from typing import Any, Callable

#: The child's whole main program: ignore Ctrl-C (the parent stops it), take the parent's import
#: path, then hand over to :func:`serve`. Only the standard library until ``sys.path`` is set.
BOOTSTRAP = """\
import signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
from multiprocessing.connection import Connection
conn = Connection(int(sys.argv[1]))
sys.path[:] = conn.recv()
try:
    from lsld_engine.media.worker_process import serve
except BaseException as e:
    conn.send(("failed", f"cannot import lsld_engine: {type(e).__name__}: {e}"))
    sys.exit(1)
serve(conn)
"""


class StartError(RuntimeError):
    """The worker could not be launched or set up in this process (its arguments do not pickle, no
    Python to run); the pool turns it into an ``EngineError``."""


class WorkerProcess:
    """A started worker (the parts of ``multiprocessing.Process`` the pool uses)."""

    def __init__(self, popen: subprocess.Popen):
        self.popen = popen
        self.pid = popen.pid

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def exitcode(self) -> int | None:
        """The exit status (``-N``: killed by signal N), None while it runs."""
        return self.popen.poll()

    def kill(self) -> None:
        if self.popen.poll() is None:
            try:
                self.popen.kill()
            except ProcessLookupError:
                pass

    def join(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` s for it to exit (it is reaped then)."""
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass


def start(target: Callable, args: tuple) -> tuple[WorkerProcess, Connection]:
    """Launch a worker that will run ``target(conn, *args)``; returns it and the parent's end of the
    connection. Raises :class:`StartError` if it cannot be launched at all."""
    if os.name != "posix":
        raise StartError("decode worker processes need a POSIX system (Linux, macOS); use workers=0")
    try:
        payload = pickle.dumps((target, args), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # a lambda or a local function as decode_fn
        raise StartError(f"the decode function or its options cannot be sent to a worker process: "
                         f"{type(e).__name__}: {e}") from None
    if not sys.executable:
        raise StartError("no Python interpreter to start decode workers with (sys.executable is empty)")
    parent, child = Pipe(duplex=True)
    try:
        popen = subprocess.Popen([sys.executable, "-c", BOOTSTRAP, str(child.fileno())],
                                 pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL)
    except OSError as e:
        parent.close()
        raise StartError(f"cannot run {sys.executable}: {e}") from None
    finally:
        child.close()  # only the child holds its end now: its exit is end-of-file here
    try:
        parent.send([str(p) for p in sys.path])
        parent.send_bytes(payload)
    except OSError:
        pass  # it died already: the pool sees end-of-file and its exit status
    return WorkerProcess(popen), parent


def serve(conn: Connection) -> None:
    """The child's side: load ``(target, args)``, report ready (or why not) and run ``target``."""
    try:
        # the bytes come from the parent that started this process (one end of its own socket pair)
        target, args = pickle.loads(conn.recv_bytes())
    except BaseException as e:
        why = f"cannot load its decode function: {type(e).__name__}: {e}"
        if "__main__" in str(e):
            why += " (a decode_fn must be defined in an importable module, not in the main script)"
        conn.send(("failed", why))
        sys.exit(1)
    conn.send(("ready",))
    target(conn, *args)


def is_control(msg: Any) -> bool:
    """Whether ``msg`` is a start-up message (``("ready",)`` / ``("failed", why)``), not a result."""
    return isinstance(msg, tuple) and bool(msg) and msg[0] in ("ready", "failed")
