"""Decode inputs that live on an object store (``s3://``, ``gs://``, ...) with a local decoder.

PyAV reads local files, so :class:`FetchFirst` copies a URI's object to a temporary local file,
runs the wrapped per-video decoder on it, and removes the file; results, parts and errors name the
URI, not the temporary file. It carries the run's :class:`~lsld_engine.records.objectstore.StoreSettings`
(the S3 endpoint) into the decode processes, which may not share the driver's environment.
"""
from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Callable

from lsld_engine.records.objectstore import StoreSettings, apply as apply_store
from lsld_engine.records.uris import is_uri, local_copy


class FetchFirst:
    """``decode_fn`` for :func:`lsld_engine.media.pool.decode_stream` that also takes URIs
    (picklable; has the wrapped function's signature, so a streaming decoder stays streaming)."""

    def __init__(self, fn: Callable, store: StoreSettings | None = None):
        self.fn, self.store = fn, store

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self.fn)

    def __call__(self, path: str, video_id: str | None = None, **kwargs):
        from lsld_engine.media import MediaError

        if not is_uri(str(path)):
            return self.fn(path, video_id, **kwargs)
        apply_store(self.store)
        try:
            tmp = local_copy(str(path))
        except OSError as e:
            raise MediaError(f"{path}: cannot read: {e}") from None
        rename = (lambda item: dataclasses.replace(item, path=str(path))
                  if dataclasses.is_dataclass(item) and hasattr(item, "path") else item)
        if kwargs.get("emit") is not None:
            emit = kwargs["emit"]
            kwargs["emit"] = lambda part: emit(rename(part))
        try:
            return rename(self.fn(tmp, video_id, **kwargs))
        except MediaError as e:
            raise MediaError(str(e).replace(tmp, str(path))) from None
        finally:
            Path(tmp).unlink(missing_ok=True)
