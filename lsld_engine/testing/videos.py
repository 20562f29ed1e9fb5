"""Synthetic test videos written with PyAV: frames that encode their own index, and tones.

Frame content ("code" pattern): three horizontal bands of flat grey; band ``b`` (top to bottom)
has level ``16 * d_b + 8`` where ``d_b`` is base-16 digit ``b`` of the frame index (least
significant first), so :func:`read_frame_index` recovers the index (< 4096) from a decoded,
resized, centre-cropped frame despite lossy coding. The spec's :func:`frame_times` gives every
frame's presentation time, so a test knows which frame must be shown at any time.

Audio: channel ``c`` carries ``amps[c] * sin(2 pi freq t)`` from ``audio_onset`` seconds on
(silence before), so channel averaging, resampling and alignment can be checked.

``make_video(path, spec)`` writes one file; ``make_videos(folder)`` writes the standard set
(:data:`STANDARD_SPECS`, a few seconds in total on 2 cores) plus broken files.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
import os
from pathlib import Path

import numpy as np

from lsld_engine.contract import SAMPLE_RATE


@dataclass(frozen=True)
class VideoSpec:
    """What to write. ``fps`` may be a Fraction (30000/1001); ``vfr`` alternates frame intervals of
    0.5x and 1.5x the nominal one (variable frame rate, exact pts)."""

    container: str = "mp4"  # file extension / muxer
    vcodec: str = "libx264"
    acodec: str | None = "aac"  # None: no audio stream
    fps: Fraction = Fraction(25)
    duration: float = 10.0
    width: int = 160
    height: int = 96
    sample_rate: int = SAMPLE_RATE
    layout: str = "stereo"
    amps: tuple[float, ...] = (0.5, 0.25)
    freq: float = 440.0
    audio_onset: float = 0.0
    vfr: bool = False
    video_start: float = 0.0  # pts (s) of the first video frame, rounded to the time base; audio from 0
    rotation: int = 0  # display rotation, counter-clockwise degrees
    pattern: str = "code"  # "code" (index bands) or "texture" (bench: moving noise, realistic bitrate)
    options: dict = field(default_factory=dict)


def _time_base(spec: VideoSpec) -> Fraction:
    return Fraction(1, 1000) if spec.vfr else 1 / Fraction(spec.fps)


def _start(spec: VideoSpec) -> float:
    """``video_start`` rounded to the video time base (s)."""
    tb = _time_base(spec)
    return float(round(spec.video_start / tb) * tb)


def frame_times(spec: VideoSpec) -> np.ndarray:
    """Presentation time (s) of every frame the spec writes, ``(F,)`` float64 (from ``video_start``)."""
    step = 1 / float(spec.fps)
    if not spec.vfr:
        n = int(round(spec.duration * float(spec.fps)))
        return _start(spec) + np.arange(n) * step
    # alternate short/long intervals: 0.5*step, 1.5*step (in ms, the vfr time base)
    times, t = [], 0.0
    while t < spec.duration - 1e-9:
        times.append(t)
        t = round(t + step * (0.5 if len(times) % 2 else 1.5), 3)
    return _start(spec) + np.array(times)


def encode_index(index: int, width: int, height: int) -> np.ndarray:
    """``(height, width, 3)`` uint8 frame showing ``index`` as three grey bands."""
    img = np.empty((height, width, 3), np.uint8)
    edges = np.linspace(0, height, 4).astype(int)
    for b in range(3):
        img[edges[b]: edges[b + 1]] = 16 * ((index >> (4 * b)) & 15) + 8
    return img


def read_frame_index(img: np.ndarray) -> int:
    """Inverse of :func:`encode_index` on a decoded ``(H, W, 3)`` frame (bands along the height)."""
    h, w = img.shape[:2]
    grey = img.astype(np.float32).mean(axis=2)
    index = 0
    for b in range(3):
        y = int((b + 0.5) * h / 3)
        patch = grey[max(0, y - h // 12): y + h // 12 + 1, w // 4: 3 * w // 4]
        index |= int(np.clip(round((float(np.median(patch)) - 8) / 16), 0, 15)) << (4 * b)
    return index


def _texture_frames(spec: VideoSpec, n: int):
    rng = np.random.default_rng(0)
    h, w = spec.height, spec.width
    base = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)[:h, :w]
    xx = np.arange(w)[None, :]
    for f in range(n):
        img = np.roll(base, f * 3, axis=1).astype(np.int16)
        img[..., 0] += (40 * np.sin((xx + f * 5) / 17.0)).astype(np.int16)
        yield np.clip(img + rng.integers(-12, 12, img.shape, dtype=np.int16), 0, 255).astype(np.uint8)


def _audio_signal(spec: VideoSpec) -> np.ndarray:
    """``(channels, samples)`` float32 for the whole duration."""
    import av

    nch = av.AudioLayout(spec.layout).nb_channels
    t = np.arange(int(round(spec.duration * spec.sample_rate))) / spec.sample_rate
    tone = np.sin(2 * np.pi * spec.freq * t) * (t >= spec.audio_onset)
    amps = (list(spec.amps) * nch)[:nch]
    return np.stack([a * tone for a in amps]).astype(np.float32)


def _mux(container, stream, frame):
    for p in stream.encode(frame):
        container.mux(p)


def make_video(path: str | Path, spec: VideoSpec = VideoSpec()) -> Path:
    """Write ``spec`` to ``path`` with PyAV; returns the path."""
    import av

    path = Path(path)
    times = frame_times(spec)
    with av.open(str(path), "w", format=None) as c:
        vs = c.add_stream(spec.vcodec, rate=spec.fps)
        vs.width, vs.height = spec.width, spec.height
        vs.pix_fmt = "yuvj420p" if spec.vcodec == "mjpeg" else "yuv420p"
        opts = {"libx264": {"crf": "18", "preset": "ultrafast"},
                "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"},
                "mpeg4": {"qscale": "2"}, "mjpeg": {"qscale": "2"}}.get(spec.vcodec, {})
        vs.options = {**opts, **spec.options}
        if spec.vcodec in ("mpeg4", "mjpeg"):
            vs.codec_context.qmax = 3
        tb = _time_base(spec)
        vs.codec_context.time_base = tb
        if spec.rotation:
            vs.set_display_rotation(spec.rotation)
        aus = None
        if spec.acodec:
            aus = c.add_stream(spec.acodec, rate=spec.sample_rate)
            aus.layout = spec.layout
        frames = _texture_frames(spec, len(times)) if spec.pattern == "texture" else \
            (encode_index(i, spec.width, spec.height) for i in range(len(times)))
        for i, img in enumerate(frames):
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            fr.pts = int(round((times[i] - _start(spec)) / tb)) + int(round(_start(spec) / tb))
            fr.time_base = tb
            _mux(c, vs, fr)
        _mux(c, vs, None)
        if aus is not None:
            sig = _audio_signal(spec)
            fmt = aus.codec_context.format.name if aus.codec_context.format else "fltp"
            chunk = aus.codec_context.frame_size or 1024
            for k in range(0, sig.shape[1], chunk):
                part = sig[:, k: k + chunk]
                fr = av.AudioFrame.from_ndarray(_as_format(part, fmt), format=fmt, layout=spec.layout)
                fr.sample_rate = spec.sample_rate
                fr.pts = k
                fr.time_base = Fraction(1, spec.sample_rate)
                _mux(c, aus, fr)
            _mux(c, aus, None)
    return path


def _as_format(x: np.ndarray, fmt: str) -> np.ndarray:
    """``(channels, n)`` float32 in [-1, 1] -> the array layout PyAV wants for sample format ``fmt``."""
    planar = fmt.endswith("p")
    base = fmt.rstrip("p")
    if base == "s16":
        x = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
    elif base == "s32":
        x = np.clip(np.round(x * 2147483647.0), -2147483648, 2147483647).astype(np.int32)
    elif base == "dbl":
        x = x.astype(np.float64)
    return np.ascontiguousarray(x if planar else x.T.reshape(1, -1))


#: The standard set: name -> spec (file name = name + "." + container).
STANDARD_SPECS: dict[str, VideoSpec] = {
    # LLP-like: 10 s H.264 + AAC stereo 44.1 kHz, 25 fps
    "h264_aac_25fps": VideoSpec(sample_rate=44100),
    # long: 25 s at 29.97 fps, AAC mono 48 kHz starting at 2 s (3 windows, last one padded)
    "h264_aac_2997_long": VideoSpec(fps=Fraction(30000, 1001), duration=25.0, layout="mono", amps=(0.5,),
                                    audio_onset=2.0),
    # short: 3 s MPEG-4 part 2 in Matroska, 5.1 PCM 48 kHz (audio starts at 1 s)
    "mpeg4_pcm51_short": VideoSpec(container="mkv", vcodec="mpeg4", acodec="pcm_s16le", fps=Fraction(30),
                                   duration=3.0, layout="5.1", amps=(0.6, 0.3, 0.3, 0.0, 0.15, 0.15),
                                   audio_onset=1.0),
    # WebM: VP9 + Opus (48 kHz stereo), 24 fps
    "vp9_opus_webm": VideoSpec(container="webm", vcodec="libvpx-vp9", acodec="libopus", fps=Fraction(24)),
    # AVI: MJPEG + PCM mono 16 kHz, 15 fps (fewer source frames than wanted: repeats), 4 s
    "mjpeg_pcm16k_avi": VideoSpec(container="avi", vcodec="mjpeg", acodec="pcm_s16le", fps=Fraction(15),
                                  duration=4.0, sample_rate=16000, layout="mono", amps=(0.5,)),
    # variable frame rate H.264 + FLAC stereo 44.1 kHz in Matroska (lossless audio: exact averaging)
    "h264_flac_vfr": VideoSpec(container="mkv", acodec="flac", fps=Fraction(20), vfr=True,
                               sample_rate=44100, amps=(0.6, 0.2)),
    # no audio track, 5 s
    "h264_noaudio": VideoSpec(acodec=None, duration=5.0),
    # display rotation 90 degrees (phone video), 3 s
    "h264_rotated": VideoSpec(duration=3.0, rotation=90),
}


def make_videos(folder: str | Path, names: list[str] | None = None, broken: bool = True) -> dict[str, Path]:
    """Write the standard set (and, with ``broken``, a truncated MP4 ``truncated.mp4``, a garbage
    file ``garbage.mp4`` and an audio-only ``audio_only.wav``) into ``folder``; name -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names or list(STANDARD_SPECS):
        spec = STANDARD_SPECS[name]
        out[name] = make_video(folder / f"{name}.{spec.container}", spec)
    if broken:
        good = make_video(folder / "_whole.mp4", VideoSpec(duration=2.0))
        data = good.read_bytes()
        (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
        good.unlink()
        (folder / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(20000))
        out["truncated"], out["garbage"] = folder / "truncated.mp4", folder / "garbage.mp4"
        out["audio_only"] = make_audio_only(folder / "audio_only.wav")
    return out


def make_audio_only(path: str | Path, duration: float = 1.0) -> Path:
    """A WAV file (no video stream)."""
    import av

    spec = VideoSpec(duration=duration, layout="mono", amps=(0.5,))
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=spec.sample_rate)
        s.layout = "mono"
        sig = _audio_signal(spec)
        fr = av.AudioFrame.from_ndarray(_as_format(sig, "s16"), format="s16", layout="mono")
        fr.sample_rate = spec.sample_rate
        _mux(c, s, fr)
        _mux(c, s, None)
    return Path(path)


def bench_spec(width: int = 640, height: int = 360, duration: float = 10.0) -> VideoSpec:
    """Realistic-ish decode load (as ``shared/anchors/make_videos.py``): textured moving H.264
    (crf 23, veryfast) at 25 fps + AAC stereo 44.1 kHz."""
    return VideoSpec(width=width, height=height, duration=duration, sample_rate=44100, pattern="texture",
                     options={"crf": "23", "preset": "veryfast"})


def bench_clips(folder: str | os.PathLike, n: int, width: int = 640, height: int = 360, *, unique: int = 8,
                prefix: str = "clip") -> list[Path]:
    """``n`` cached :func:`bench_spec` clips in ``folder`` for benchmarks; at most ``unique`` are
    encoded and the rest are copies (decoding cost is the same). Existing clips are reused."""
    import shutil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = lambda i: folder / f"{prefix}{i:04d}_{width}x{height}.mp4"  # noqa: E731
    out = []
    for i in range(n):
        p = name(i)
        if not p.exists():
            tmp = folder / f".{p.stem}.part.mp4"
            if i < unique:
                make_video(tmp, bench_spec(width, height))
            else:
                shutil.copy(name(i % unique), tmp)
            tmp.rename(p)
        out.append(p)
    return out


def with_(spec: VideoSpec, **changes) -> VideoSpec:
    """A copy of ``spec`` with fields changed."""
    return replace(spec, **changes)
