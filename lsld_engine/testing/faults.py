"""Fault injection for tests of the scale-out engine: decoders that kill their own process."""
from __future__ import annotations

import os
import signal
from pathlib import Path

from lsld_engine.media import decode_video


class KillOnce:
    """A per-video decoder (``decode_fn``) that SIGKILLs its own process on its first call
    anywhere (claimed through the ``marker`` file, atomically), then decodes normally.

    Picklable, so Ray ships it to its decode tasks: the task's worker process dies mid-batch,
    and the test checks that Ray ran the task again and no video was lost.
    """

    def __init__(self, marker: str | os.PathLike):
        self.marker = str(marker)

    def __call__(self, path: str, video_id: str | None = None, **kwargs):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return decode_video(path, video_id, **kwargs)
        os.write(fd, f"{os.getpid()} {path}\n".encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


def killed(marker: str | os.PathLike) -> bool:
    """Whether a :class:`KillOnce` has fired."""
    return Path(marker).is_file()
