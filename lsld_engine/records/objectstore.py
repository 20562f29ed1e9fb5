"""Object-store settings that every process of a run must share: the S3 endpoint (and region).

``pyarrow.fs.FileSystem.from_uri("s3://...")`` finds AWS itself; an S3-compatible store on
premises (MinIO, Ceph, moto, ...) needs its endpoint in *every* process that opens a file: the
driver that lists inputs and writes results, and the Ray tasks and actors that read the videos,
which run on other nodes with their own environment. So the endpoint is a setting of the run
(:class:`StoreSettings`): taken on the driver from ``--s3-endpoint`` or the standard
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` variables, handed to each task and actor, and
applied there with :func:`apply` before any file is opened.

Credentials are never part of it: each process takes them from its own environment
(``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``), ``~/.aws`` files or an
instance role, through pyarrow's default AWS credential chain, so they are never shipped to the
cluster, printed, or written to results or logs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

#: Environment variables that name the S3 endpoint, in the order the AWS SDKs read them.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


@dataclass(frozen=True)
class StoreSettings:
    """The non-secret object-store settings of a run (plain strings: sent to Ray tasks as-is)."""

    s3_endpoint: str | None = None  # e.g. "http://minio.local:9000"; None: AWS (or the URI's own options)
    s3_region: str | None = None    # None: $AWS_REGION / $AWS_DEFAULT_REGION, else us-east-1 with an endpoint


_current: StoreSettings | None = None  # None: from this process's environment, read when used


def from_environment(endpoint: str | None = None, region: str | None = None) -> StoreSettings:
    """The settings of this process: ``endpoint`` / ``region`` when given, else the standard variables."""
    endpoint = endpoint or next((os.environ[v] for v in ENDPOINT_VARIABLES if os.environ.get(v)), None)
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    return StoreSettings(endpoint.rstrip("/") if endpoint else None, region)


def apply(settings: StoreSettings | None) -> None:
    """Use ``settings`` for every later :func:`filesystem` call in this process (a task or actor
    calls it with the driver's settings; ``None`` keeps what is set)."""
    global _current
    if settings is not None:
        _current = settings


def current() -> StoreSettings:
    """The settings in use in this process (what the driver hands to its tasks)."""
    return _current if _current is not None else from_environment()


def filesystem(uri: str):
    """``(pyarrow.fs.FileSystem, path inside it)`` of ``uri``; ``s3://`` URIs use the run's endpoint
    (a URI that carries its own ``?endpoint_override=`` keeps it)."""
    import pyarrow.fs as pafs

    scheme, _, rest = uri.partition("://")
    settings = current()
    if scheme.lower() == "s3" and settings.s3_endpoint and "endpoint_override=" not in rest:
        path = rest.split("?", 1)[0].rstrip("/")
        # an explicit region: no HeadBucket to "resolve" it (AWS-only; on-premises stores lack it)
        fs = pafs.S3FileSystem(endpoint_override=settings.s3_endpoint, region=settings.s3_region or "us-east-1")
        return fs, path
    return pafs.FileSystem.from_uri(uri)
