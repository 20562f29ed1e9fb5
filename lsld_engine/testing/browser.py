"""Open an HTML file in real headless Chromium: console errors and a screenshot (for the report tests).

Chromium is driven over the DevTools protocol through ``--remote-debugging-pipe`` (file descriptors
3 and 4, NUL-separated JSON messages), so no port, no WebSocket library and nothing from the network:
the page is loaded from ``file://``, and every uncaught exception, ``console.error`` and browser log
error (a broken image, a blocked request) is collected.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Flags that keep headless Chromium offline, quiet and runnable as root in a container.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio")


def find_chromium() -> str | None:
    """Path of a Chromium binary (``$LSLD_CHROMIUM``, then ``chromium``, ``chromium-browser``), or None."""
    env = os.environ.get("LSLD_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageResult:
    """What a page did: ``errors`` (console / exception / log error texts), ``png`` screenshot bytes,
    ``ready``: the value of ``document.body.dataset.ready`` after load (the page's own script ran)."""

    errors: list[str] = field(default_factory=list)
    png: bytes = b""
    ready: str | None = None
    height: int = 0


class _Pipe:
    """DevTools protocol over Chromium's debugging pipe."""

    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int):
        self.proc, self.out, self.inp = proc, to_browser, from_browser
        self.next_id = 0
        self.buf = b""
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.out, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"DevTools {method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            e = self._read(deadline)
            if e.get("method") == method:
                return e
            self.events.append(e)

    def _read(self, deadline: float) -> dict:
        import select

        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium over the DevTools pipe")
            ready, _, _ = select.select([self.inp], [], [], left)
            if ready:
                chunk = os.read(self.inp, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the DevTools pipe (exit status {self.proc.poll()})")
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)


def open_page(html_path: str | os.PathLike, *, width: int = 1280, max_height: int = 4000,
              chromium: str | None = None, settle_s: float = 0.5, timeout: float = 60.0) -> PageResult:
    """Load ``html_path`` in headless Chromium; return its errors and a screenshot of the top of the page
    (``width`` x min(page height, ``max_height``) CSS pixels)."""
    binary = chromium or find_chromium()
    if binary is None:
        raise FileNotFoundError("Chromium not found (apt-get install chromium, or set LSLD_CHROMIUM)")
    url = Path(html_path).resolve().as_uri()
    # Chromium's helper processes can still write to the profile for a moment after it exits.
    with tempfile.TemporaryDirectory(prefix="lsld-chromium-", ignore_cleanup_errors=True) as profile:
        # fd 3: Chromium reads commands; fd 4: Chromium writes replies and events.
        cmd_r, cmd_w = os.pipe()
        evt_r, evt_w = os.pipe()
        os.set_inheritable(cmd_r, True)
        os.set_inheritable(evt_w, True)

        def fds():  # in the child, before exec: put the pipe ends where Chromium expects them
            os.dup2(cmd_r, 3)
            os.dup2(evt_w, 4)

        proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                                 f"--window-size={width},900", "about:blank"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                preexec_fn=fds, close_fds=False)
        os.close(cmd_r)
        os.close(evt_w)
        pipe = _Pipe(proc, cmd_w, evt_r)
        try:
            return _drive(pipe, url, width, max_height, settle_s, timeout)
        finally:
            _close(pipe)
            os.close(cmd_w)
            os.close(evt_r)
            if proc.stderr:
                proc.stderr.close()


def _close(pipe: _Pipe) -> None:
    """Ask Chromium to quit (it then stops its helper processes), kill it if it does not."""
    try:
        pipe.send("Browser.close", timeout=5)
    except (OSError, RuntimeError, TimeoutError):
        pass  # already gone, or it closed the pipe while quitting
    try:
        pipe.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pipe.proc.kill()
        pipe.proc.wait(timeout=30)


def _drive(pipe: _Pipe, url: str, width: int, max_height: int, settle_s: float, timeout: float) -> PageResult:
    target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
    session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        pipe.send(f"{domain}.enable", session=session)
    pipe.send("Emulation.setDeviceMetricsOverride",
              {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
    pipe.send("Page.navigate", {"url": url}, session=session)
    pipe.wait_event("Page.loadEventFired", timeout=timeout)
    time.sleep(settle_s)  # late console messages (timers) arrive after load
    ready = pipe.send("Runtime.evaluate", {"expression": "document.body && document.body.dataset.ready || null",
                                           "returnByValue": True}, session=session)["result"].get("value")
    height = int(pipe.send("Runtime.evaluate", {"expression": "document.documentElement.scrollHeight",
                                                "returnByValue": True}, session=session)["result"].get("value") or 0)
    shot_h = max(1, min(height, max_height))
    pipe.send("Emulation.setDeviceMetricsOverride",
              {"width": width, "height": shot_h, "deviceScaleFactor": 1, "mobile": False}, session=session)
    png = base64.b64decode(pipe.send("Page.captureScreenshot", {"format": "png"}, session=session,
                                     timeout=timeout)["data"])
    return PageResult(errors=_errors(pipe.events), png=png, ready=ready, height=height)


def _errors(events: list[dict]) -> list[str]:
    out = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append("exception: " + (d.get("exception", {}).get("description") or d.get("text", "")))
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            out.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
    return out
