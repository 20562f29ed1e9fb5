"""Streamed decoding in parts: a video's windows handed out a few at a time, memory independent of its length.

``decode_parts(path, emit=...)`` runs the decode step of :mod:`lsld_engine.media.decode` (same frame
choice, same caps) with a streaming sink: every :data:`WINDOWS_PER_PART` complete windows go out as a
:class:`DecodedPart` as soon as they are chosen, with their audio decoded alongside; what ``parse``
and ``extract`` use. Parts equal :func:`lsld_engine.media.decode_video` bit for bit.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from lsld_engine.contract import (FRAMES_PER_WINDOW, IMAGE_SIZE, SAMPLE_RATE, SAMPLES_PER_SEGMENT,
                                  SEGMENTS_PER_WINDOW, WINDOW_SECONDS)
# the module, not its names: a test that patches ``decode._open`` patches what this module opens with
from lsld_engine.media import decode as _decode
from lsld_engine.media.audio import _AudioReader
from lsld_engine.media.cpu_pixels import _clip_frame
from lsld_engine.media.frame_rule import DEFAULT_FRAME_RULE
from lsld_engine.media.limits import MediaLimits, _checked
from lsld_engine.media.windows import DecodedPart, video_id_of

#: Windows per part when a video is decoded as a stream of parts (:func:`decode_parts`): 3 windows
#: of frames are ~36 MB of ``uint8`` crops, whatever the video's length.
WINDOWS_PER_PART: int = 3


def decode_parts(path: str | Path, video_id: str | None = None, *, emit=None,
                 windows_per_part: int = WINDOWS_PER_PART, max_windows: int | None = None, audio: bool = True,
                 threads: int = 0, limits: MediaLimits | None = None, frame_rule: str = DEFAULT_FRAME_RULE,
                 jpeg_roundtrip: bool = False) -> DecodedPart:
    """:func:`decode_video` as a stream: memory does not grow with the video's length.

    Every ``windows_per_part`` complete windows become a :class:`DecodedPart` (frames ``(K, 80,
    224, 224, 3)`` uint8, audio ``(K, 10, 48000)`` float32, its own audio decoded alongside) handed
    to ``emit(part)`` as soon as they are chosen; the last part (with the true duration, ``final``)
    is returned. Frames and audio are exactly those of :func:`decode_video`. ``emit=None``: one
    part holding the whole video. ``limits``: duration and resolution caps (:class:`MediaLimits`);
    ``frame_rule`` / ``jpeg_roundtrip``: see :func:`decode_media`. Raises :class:`MediaError` naming the file (also after some parts were emitted).
    """
    path = str(path)
    video_id = video_id or video_id_of(path)
    limits = limits or MediaLimits()
    state: dict = {"reader": None}

    with _decode.open_video(path, limits, threads) as (c, vs), \
            (_decode._open(path) if audio else contextlib.nullcontext()) as ca:
        has_audio = bool(audio and ca.streams.audio)

        def audio_for(num_windows: int) -> np.ndarray:
            if not has_audio:
                return np.zeros((num_windows, SEGMENTS_PER_WINDOW, SAMPLES_PER_SEGMENT), np.float32)
            if state["reader"] is None:  # the sink knows t0 once the first frame is decoded
                state["reader"] = _AudioReader(ca, ca.streams.audio[0], path, sink.t0)
            pcm = state["reader"].take(num_windows * WINDOW_SECONDS * SAMPLE_RATE)
            return pcm.reshape(num_windows, SEGMENTS_PER_WINDOW, SAMPLES_PER_SEGMENT)

        def part(frames: list, first: int, duration: float, final: bool) -> DecodedPart:
            w = len(frames) // FRAMES_PER_WINDOW
            pix = np.stack(frames).reshape(w, FRAMES_PER_WINDOW, IMAGE_SIZE, IMAGE_SIZE, 3)
            return DecodedPart(path, video_id, duration, has_audio, pix, audio_for(w), first, final)

        def on_part(frames: list, first: int) -> None:
            emit(part(frames, first, (first + len(frames) // FRAMES_PER_WINDOW) * WINDOW_SECONDS, False))

        roundtrip = _decode.jpeg_roundtrip_for(jpeg_roundtrip)
        sink = _decode._WindowSink(path, limits, windows_per_part, on_part if emit is not None else None, max_windows)
        frames, t0, duration, w, _, _ = _decode._select_frames(c, vs, path, max_windows,
                                                               _checked(_clip_frame, path, limits),
                                                               frame_rule, roundtrip, sink)
        first = sink.offset // FRAMES_PER_WINDOW
        if not frames:  # the video ended on a part boundary: an empty last part carries the duration
            return DecodedPart(path, video_id, float(duration), has_audio,
                               np.zeros((0, FRAMES_PER_WINDOW, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8),
                               np.zeros((0, SEGMENTS_PER_WINDOW, SAMPLES_PER_SEGMENT), np.float32), first, True)
        return part(frames, first, float(duration), True)
