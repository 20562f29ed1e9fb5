"""Media windows: the decoded-video result types and the ids and count of a video's 10-second windows.

Ids: ``video_id`` is the file stem. A video of ``W`` windows yields ``window_ids(video_id, W)``:
the plain stem when ``W == 1`` (so LLP's 10-s clips keep LLP's ``filename``), otherwise
``<stem>@<start_s>`` with ``start_s`` = 0, 10, 20, ...
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsld_engine.contract import WINDOW_SECONDS


@dataclass
class DecodedMedia:
    """Output of the decode step (no pixel work done yet).

    ``frames``: ``W * 80`` items in window order, ``frame_fn(av.VideoFrame, rotation)`` of each
    chosen frame (by default the decoded frame itself); the same object repeats where one source
    frame covers several wanted times, and for padding.
    ``audio``: ``(W, 10, 48000)`` float32 mono.
    ``rotation``: counter-clockwise degrees (multiple of 90) to apply for display.
    ``grid``: ``(N,)`` int64 source frame numbers (decode order) of the frame rule's grid, e.g. the
    ``N`` images of ``ffmpeg -r 8`` for ``official`` (:mod:`lsld_engine.media.frame_rule`).
    """

    path: str
    video_id: str
    duration: float
    has_audio: bool
    num_windows: int
    frames: list
    audio: np.ndarray
    rotation: int = 0
    grid: np.ndarray | None = None


@dataclass
class Windowed:
    """A video's per-window arrays (``frames`` / ``audio`` lead with the window axis ``W``) and what
    says where they sit in the video: ``first_window`` (index of the first of these windows) and
    ``final`` (these are the video's last windows). A whole video has ``first_window`` 0 and ``final``."""

    path: str
    video_id: str
    duration: float
    has_audio: bool
    frames: np.ndarray
    audio: np.ndarray
    first_window: int = 0
    final: bool = True

    @property
    def num_windows(self) -> int:
        return int(self.frames.shape[0])

    @property
    def window_ids(self) -> list[str]:
        """Entry ids of these windows (a part of a streamed video: :func:`part_window_ids`)."""
        return part_window_ids(self.video_id, self.first_window, self.num_windows, self.final)


@dataclass
class DecodedVideo(Windowed):
    """A decoded video ready for the encoders.

    ``frames``: ``(W, 80, 224, 224, 3)`` uint8 RGB, not normalised.
    ``audio``: ``(W, 10, 48000)`` float32 mono in [-1, 1] (zeros when ``has_audio`` is False).
    ``duration``: true length of the video stream in seconds (before padding).
    """


@dataclass
class DecodedPart(DecodedVideo):
    """A run of consecutive windows of a video decoded as a stream (:func:`lsld_engine.media.parts.decode_parts`).

    ``frames`` / ``audio`` as in :class:`DecodedVideo` for this part's windows only;
    ``first_window``: index of its first window in the video; ``final``: the video's last part,
    the only one whose ``duration`` is the true length (earlier parts carry the time decoded so far).
    """


def part_window_ids(video_id: str, first_window: int, num_windows: int, final: bool) -> list[str]:
    """Entry ids of windows ``first_window ..`` of a video: :func:`window_ids` when the part is the
    whole video, else always ``video_id@<start_s>`` (a video with several parts has several windows)."""
    if first_window == 0 and final:
        return window_ids(video_id, num_windows)
    return [f"{video_id}@{(first_window + w) * WINDOW_SECONDS}" for w in range(num_windows)]


def video_id_of(path: str | Path) -> str:
    """The id of a video file: its stem (LLP's ``filename`` for ``<filename>.mp4``)."""
    return Path(path).stem


def window_ids(video_id: str, num_windows: int) -> list[str]:
    """Entry ids of a video's windows: ``[video_id]`` for one window, else ``video_id@0``, ``@10``, ..."""
    if num_windows == 1:
        return [video_id]
    return [f"{video_id}@{w * WINDOW_SECONDS}" for w in range(num_windows)]


#: A trailing part shorter than this does not open a window of its own: clips cut from longer
#: videos often run a frame or two past 10 s, and a second, all-padding window would cost a HAN
#: pass and give stray events.
WINDOW_TOLERANCE_SECONDS = 0.1


def num_windows_for(duration: float) -> int:
    """Windows covering ``duration`` seconds (at least one; a partial last window counts when it is
    longer than :data:`WINDOW_TOLERANCE_SECONDS`)."""
    return max(1, math.ceil((duration - WINDOW_TOLERANCE_SECONDS) / WINDOW_SECONDS))
