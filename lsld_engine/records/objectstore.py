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

A store that cannot be used (a dead or wrong endpoint, a missing bucket, refused credentials) is a
:class:`StoreError`: one line naming the endpoint and the URI as the user wrote it.
:func:`check_store` asks the store once, before a command decodes anything or loads a model; an
endpoint of the settings gets short timeouts and few retries (:data:`CONNECT_TIMEOUT`, ...) so
that a dead one fails within seconds instead of the SDK's minutes of retrying.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from lsld_engine.errors import LsldError

#: Environment variables that name the S3 endpoint, in the order the AWS SDKs read them.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


@dataclass(frozen=True)
class StoreSettings:
    """The non-secret object-store settings of a run (plain strings: sent to Ray tasks as-is)."""

    s3_endpoint: str | None = None  # e.g. "http://minio.local:9000"; None: AWS (or the URI's own options)
    s3_region: str | None = None    # None: $AWS_REGION / $AWS_DEFAULT_REGION, else us-east-1 with an endpoint


#: Seconds to open a connection to the endpoint, and without an answer on an open one (the SDK's
#: defaults retry for minutes); attempts per request, so a dropped connection is tried again.
CONNECT_TIMEOUT, REQUEST_TIMEOUT, ATTEMPTS = 5.0, 60.0, 3
#: :func:`check_store`'s wait for an answer (a bucket lookup is small; data requests get REQUEST_TIMEOUT)
CHECK_TIMEOUT = 5.0


class StoreError(LsldError, OSError):
    """An object store that cannot be used as given (unreachable, no such bucket, access refused);
    the message names the endpoint and the URI."""


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


def filesystem(uri: str, request_timeout: float = REQUEST_TIMEOUT, attempts: int = ATTEMPTS):
    """``(pyarrow.fs.FileSystem, path inside it)`` of ``uri``; ``s3://`` URIs use the run's endpoint
    (a URI that carries its own ``?endpoint_override=`` keeps it), waiting at most ``request_timeout``
    seconds for an answer, ``attempts`` tries per request."""
    import pyarrow.fs as pafs

    scheme, _, rest = uri.partition("://")
    settings = current()
    if scheme.lower() == "s3" and settings.s3_endpoint and "endpoint_override=" not in rest:
        path = rest.split("?", 1)[0].rstrip("/")
        # an explicit region: no HeadBucket to "resolve" it (AWS-only; on-premises stores lack it)
        fs = pafs.S3FileSystem(endpoint_override=settings.s3_endpoint, region=settings.s3_region or "us-east-1",
                               connect_timeout=CONNECT_TIMEOUT, request_timeout=request_timeout,
                               retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=attempts))
        return fs, path
    return pafs.FileSystem.from_uri(uri)


def endpoint_of(uri: str) -> str:
    """Where ``uri`` is served from, for messages: the run's endpoint, the URI's own
    ``endpoint_override``, or the scheme's default service."""
    scheme, _, rest = uri.partition("://")
    own = re.search(r"[?&]endpoint_override=([^&]+)", rest)
    if own:
        return own.group(1)
    if scheme.lower() == "s3":
        return current().s3_endpoint or "AWS S3 (no --s3-endpoint / $AWS_ENDPOINT_URL)"
    return f"{scheme}://"


def store_error(e: OSError, uri: str) -> StoreError:
    """The one-line :class:`StoreError` of a pyarrow error ``e`` met while using ``uri``."""
    text = str(e)
    code = re.search(r"AWS Error (\w+)", text)
    detail = re.search(r"Details?: ([^;\n]+)|curlCode: \d+, ([^;\n]+)", text)
    why = ", ".join(x for x in (code and code.group(1), detail and (detail.group(1) or detail.group(2))) if x)
    if not why:
        why = text.strip().splitlines()[0][:200] if text.strip() else type(e).__name__
    where = endpoint_of(uri)
    if code and code.group(1) in ("ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH") \
            or re.search(r"\b403\b|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch", text):
        return StoreError(f"the object store at {where} refused access to {uri} ({why}): check the "
                          "credentials ($AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY, ~/.aws) and --s3-endpoint")
    if code and code.group(1) in ("NO_SUCH_BUCKET",) or "NoSuchBucket" in text:
        return StoreError(f"{uri}: no such bucket at {where} ({why}): create it, or check the URI and --s3-endpoint")
    return StoreError(f"cannot reach the object store at {where} for {uri} ({why}): check --s3-endpoint "
                      "and credentials")


def check_store(uri: str) -> None:
    """Ask the store of ``uri`` once (its bucket, for ``s3://``), raising a one-line :class:`StoreError`
    when it cannot be reached or the bucket does not exist; local paths pass."""
    if "://" not in uri or uri.lower().startswith("file://"):
        return
    import pyarrow.fs as pafs

    try:
        fs, path = filesystem(uri, request_timeout=CHECK_TIMEOUT, attempts=2)  # a silent endpoint: seconds, not minutes
        bucket = path.lstrip("/").split("/", 1)[0]
        if uri.partition("://")[0].lower() == "s3" and bucket:
            if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise StoreError(f"{uri}: no bucket {bucket!r} at {endpoint_of(uri)}: create it, or check "
                                 "the URI and --s3-endpoint")
        fs.get_file_info(path)
    except StoreError:
        raise
    except OSError as e:
        raise store_error(e, uri) from None
