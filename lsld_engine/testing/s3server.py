"""A throw-away S3-compatible server for tests: moto's server mode on 127.0.0.1 (``pip install 'moto[server]'``).

:func:`s3_server` starts it on a free port of the loopback interface only (never a remote
address), waits (bounded) until it answers, and stops it; :func:`upload` copies local files into
a bucket through pyarrow's S3 filesystem. Credentials are dummy values the caller puts in the
environment (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``); moto accepts any.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def s3_server(timeout: float = 60.0, log: str | os.PathLike | None = None) -> Iterator[str]:
    """Run moto's S3 server on 127.0.0.1; yields its endpoint URL (``http://127.0.0.1:PORT``)."""
    port = free_port()
    out = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited ({proc.returncode}); is moto[server] installed?")
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
                break
            except OSError:
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"moto server did not answer at {url} within {timeout:g} s") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.kill()
        proc.wait()
        if log:
            out.close()


def make_bucket(endpoint: str, bucket: str) -> None:
    import pyarrow.fs as pafs

    pafs.S3FileSystem(endpoint_override=endpoint, region="us-east-1", allow_bucket_creation=True).create_dir(bucket)


def upload(endpoint: str, files: dict[str, str | os.PathLike]) -> None:
    """Copy local files to ``bucket/key`` paths (``{"bucket/archive/a.mp4": local_path}``)."""
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(endpoint_override=endpoint, region="us-east-1")
    for key, local in files.items():
        with fs.open_output_stream(key) as f:
            f.write(Path(local).read_bytes())
