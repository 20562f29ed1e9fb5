"""The frame rule (lsld_engine.media.frame_rule): FFmpeg's ``-r 8`` grid + the official linspace pick, and
sample-and-hold; checked by frame identity against the real ffmpeg of the ``imageio-ffmpeg`` wheel."""
from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av")

from lsld_engine import media  # noqa: E402
from lsld_engine.media import frame_rule  # noqa: E402
from lsld_engine.media.frame_rule import CfrGrid, cfr_grid, hold_indices, linspace_pick, picks  # noqa: E402
from lsld_engine.media import FPS, FRAMES_PER_WINDOW, IMAGE_SIZE, TIME_EPS, decode_media, decode_video  # noqa: E402
from lsld_engine.testing import ffmpeg_oracle  # noqa: E402
from lsld_engine.testing.videos import (VideoSpec, bench_spec, frame_times, make_video, read_frame_index,  # noqa: E402
                                        with_)

K = FRAMES_PER_WINDOW


def _index(frame, rotation):
    """``frame_fn`` reading the frame counter drawn into each frame."""
    return read_frame_index(frame.to_ndarray(format="rgb24"))


# --- the rule on timestamps alone ------------------------------------------------------------

def official_pick(n: int) -> np.ndarray:
    """The official LLP preprocessing's choice of 80 of ``n`` images, written out as it is there."""
    return np.round(np.linspace(0, n - 1, 80)).astype(int)


def official_windows(ref: np.ndarray, windows: int) -> np.ndarray:
    """What the docs promise a long video shows, from ffmpeg's images ``ref``: each full window its
    own 80 images in order; the last window its remaining images, picked like a clip when there
    are 80 or more, else all of them followed by the last one repeated."""
    full, last = ref[:(windows - 1) * K], ref[(windows - 1) * K:]
    tail = last[official_pick(len(last))] if len(last) >= K else np.concatenate([last, np.repeat(last[-1:], K - len(last))])
    return np.concatenate([full, tail])


def test_linspace_pick_is_the_official_expression():
    for n in (7, 80, 81, 82, 83, 200):
        np.testing.assert_array_equal(linspace_pick(n, K), official_pick(n))
    # by hand: 81 images -> 80 steps of 80/79; slot 40 lands on 40.506 -> image 41: image 40 is left out
    np.testing.assert_array_equal(linspace_pick(81, K), [*range(40), *range(41, 81)])
    # 82 images: steps of 81/79, the rounding passes over images 20 (slot 20 -> 20.51) and 61 (slot 60 -> 61.52)
    np.testing.assert_array_equal(linspace_pick(82, K), [i for i in range(82) if i not in (20, 61)])
    # 7 images over 80 slots (steps of 6/79): boundaries at slots 6.58, 19.75, 32.92, 46.08, 59.25, 72.42
    np.testing.assert_array_equal(np.bincount(linspace_pick(7, K)), [7, 13, 13, 14, 13, 13, 7])
    np.testing.assert_array_equal(linspace_pick(80, K), np.arange(80))  # 80 images: each once


def test_cfr_grid_25fps_lags_and_drops_like_ffmpeg():
    """25 fps from 0: outputs 1 and 2 repeat inputs 1 and 2 (within 1.1 slots), then ~every third;
    10 s give 82 images, the last one being the last frame."""
    tb, n = Fraction(1, 12800), 250
    g = cfr_grid([i * 512 for i in range(n)], [512] * n, tb, 0, False, FPS)
    assert list(g[:6]) == [0, 1, 2, 5, 9, 12] and len(g) == 82 and g[-1] == n - 1
    assert np.all(np.diff(g) >= 0)
    # the file's start time shifts the grid: audio starting 21.3 ms earlier (AAC priming)
    g2 = cfr_grid([i * 512 for i in range(n)], [512] * n, tb, -21333, False, FPS)
    assert (g2 != g).any() and len(g2) == 82


def test_cfr_grid_fills_a_late_start_and_gaps_with_held_frames():
    tb = Fraction(1, 3)
    pts = list(range(3, 33))  # 3 fps, video starts at 1 s, the file at 0 (audio first)
    g = cfr_grid(pts, [1] * len(pts), tb, 0, False, FPS)
    assert list(g[:11]) == [0] * 11 and g[11] == 1  # slots before the video show its first frame
    # a single-stream file starting late is not duplicated back (vscfr)
    solo = cfr_grid(pts, [1] * len(pts), tb, 1_000_000, True, FPS)
    assert list(solo[:3]) == [0, 0, 0] and len(solo) == len(g) - 8
    # a gap: frames 0..9 at 10 fps, then 10..19 one second later; the gap (8 slots) holds frame 9
    tb = Fraction(1, 10)
    pts = list(range(10)) + list(range(20, 30))
    g = cfr_grid(pts, [1] * 20, tb, 0, False, FPS)
    assert (g == 9).sum() == 6 and len(g) == 26 and np.all(np.diff(g) >= 0)


def test_cfr_grid_streams_in_pieces():
    """Fed one frame at a time, the grid is the same as at once (decoders stream windows)."""
    tb, n = Fraction(1, 30000), 600
    pts, dur = [i * 1001 for i in range(n)], [1001] * n
    g = CfrGrid(tb, 0, False, FPS)
    out = []
    for p, d in zip(pts, dur):
        out += g.push(p, d)
    out += g.finish()
    np.testing.assert_array_equal(out, cfr_grid(pts, dur, tb, 0, False, FPS))


def test_picks_per_window():
    # one window: the official pick over all N grid images, however many
    np.testing.assert_array_equal(picks("official", 82, 1, K), linspace_pick(82, K))
    np.testing.assert_array_equal(picks("official", 7, 1, K), linspace_pick(7, K))  # < 1 s: stretched
    # three windows, 10 s + 10 s + 5 s: the middle windows own 80 images each, the short last one
    # keeps its 42 images at their times and repeats its last
    p = picks("official", 202, 3, K)
    np.testing.assert_array_equal(p[:160], np.arange(160))
    np.testing.assert_array_equal(p[160:202], np.arange(160, 202))
    assert (p[202:] == 201).all()
    # two windows, the last a full 10 s with the official tail (82 images): its linspace
    p = picks("official", 162, 2, K)
    np.testing.assert_array_equal(p[80:], 80 + linspace_pick(82, K))
    np.testing.assert_array_equal(picks("hold", 50, 1, K), np.minimum(np.arange(80), 49))
    with pytest.raises(ValueError, match="unknown frame rule"):
        picks("nearest", 82, 1, K)


def test_duration_estimate_follows_ffmpeg_order():
    est = frame_rule.estimate_duration
    assert est(512, 512, 0, 512, 0) == 512  # the packet's own duration
    assert est(0, 40, 33, 33, 0) == 40  # none stored: the pts step
    assert est(1, 40, 0, 33, 0) == 40  # 1 tick beside a long step: made up by the demuxer
    assert est(0, -1, 0, 33, 0) == 33  # first frame, nothing stored: the guessed rate
    assert est(512, 512, 600, 0, 0, ts_unreliable=True) == 600  # MPEG-TS: the codec's rate


def test_hold_rule_is_unchanged(tmp_path):
    """``hold`` still shows the frame on screen at each k/8 s (also its pure form, hold_indices)."""
    spec = VideoSpec(fps=Fraction(20), vfr=True, container="mkv", acodec=None)
    p = make_video(tmp_path / "vfr.mkv", spec)
    m = decode_media(p, audio=False, frame_rule="hold", frame_fn=_index)
    want = hold_indices(frame_times(spec) - frame_times(spec)[0], 1, TIME_EPS, FPS, K)
    np.testing.assert_array_equal(m.frames, want)


# --- against the real ffmpeg ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def ffmpeg():
    exe = ffmpeg_oracle.ffmpeg_exe()
    if exe is None:
        pytest.skip("imageio-ffmpeg is not installed (pip install -e '.[dev]'): no ffmpeg to compare with")
    return exe


ORACLE_CASES = {
    "23.976fps": VideoSpec(fps=Fraction(24000, 1001), acodec=None),
    "24fps": VideoSpec(fps=Fraction(24)),
    "25fps": VideoSpec(),
    "29.97fps": VideoSpec(fps=Fraction(30000, 1001)),
    "30fps": VideoSpec(fps=Fraction(30)),
    "50fps": VideoSpec(fps=Fraction(50)),
    "60fps": VideoSpec(fps=Fraction(60)),
    "vfr": VideoSpec(container="mkv", acodec="flac", fps=Fraction(20), vfr=True, sample_rate=44100),
    "late_start": VideoSpec(video_start=0.48),  # the video starts 0.48 s after the audio
    "late_start_mkv_vfr": VideoSpec(container="mkv", acodec="flac", fps=Fraction(20), vfr=True, video_start=0.8),
    "3_frames_short": VideoSpec(duration=10 - 3 / 25),
    "2_frames_long": VideoSpec(duration=10 + 2 / 25),  # within the 0.1-s window tolerance: one window
    "3_frames_long_30fps": VideoSpec(fps=Fraction(30), duration=10 + 3 / 30),
    "under_1s": VideoSpec(duration=0.72),
    "5fps_late": VideoSpec(fps=Fraction(5), video_start=0.6),  # slower than 8 fps: the grid repeats frames
    "mpegts": VideoSpec(container="ts"),  # timestamp discontinuities: ffmpeg starts the grid at the video
    "mpegts_late": VideoSpec(container="ts", fps=Fraction(30000, 1001), video_start=0.48),
    "webm_vp9": VideoSpec(container="webm", vcodec="libvpx-vp9", acodec="libopus", fps=Fraction(24)),
}


@pytest.mark.parametrize("name", list(ORACLE_CASES))
def test_official_frames_are_ffmpegs(ffmpeg, tmp_path, name):
    """Our grid is, image for image, the frames ``ffmpeg -r 8 %06d.jpg`` writes, and the 80 CLIP
    frames are the official linspace pick of them (compared by the frame counter in the pixels)."""
    spec = ORACLE_CASES[name]
    p = make_video(tmp_path / f"v.{spec.container}", spec)
    ref = ffmpeg_oracle.frame_numbers(ffmpeg_oracle.official_frames(ffmpeg, p, tmp_path / "jpg"))
    d = decode_video(p)  # the default rule, through the reference pixel path
    m = decode_media(p, audio=False)
    np.testing.assert_array_equal(m.grid, ref)
    assert d.num_windows == 1
    shown = np.array([read_frame_index(f) for f in d.frames.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3)])
    np.testing.assert_array_equal(shown, ref[official_pick(len(ref))])


@pytest.mark.parametrize("fps,duration,windows", [(Fraction(30000, 1001), 25.0, 3), (Fraction(25), 10 + 3 / 25, 2)])
def test_official_windows_of_a_long_video(ffmpeg, tmp_path, fps, duration, windows):
    """The grid is ffmpeg's over the whole video; each full window owns 80 of its images (the
    identity pick), the short last window its remaining images, then its last image repeated.
    (10.12 s is past the 0.1-s window tolerance: two windows, the first being images 0..79.)"""
    p = make_video(tmp_path / "long.mp4", VideoSpec(fps=fps, duration=duration))
    ref = ffmpeg_oracle.frame_numbers(ffmpeg_oracle.official_frames(ffmpeg, p, tmp_path / "jpg"))
    m = decode_media(p, audio=False, frame_fn=_index)
    np.testing.assert_array_equal(m.grid, ref)
    assert m.num_windows == windows
    np.testing.assert_array_equal(m.frames, official_windows(ref, windows))
    # max_windows stops decoding early and keeps the same first windows
    m1 = decode_media(p, audio=False, max_windows=windows - 1, frame_fn=_index)
    np.testing.assert_array_equal(m1.frames, ref[:(windows - 1) * K])


def test_device_pixel_path_picks_the_same_frames(tmp_path):
    """raw_planes (device pixels; NVDEC shares its selection code) ships only the picked frames,
    and they are the reference path's."""
    from lsld_engine.media.raw_planes import decode_raw, raw_to_clip

    p = make_video(tmp_path / "v30.mp4", VideoSpec(fps=Fraction(30)))
    r = decode_raw(p)
    assert r.y.shape[0] == len(np.unique(r.index)) == r.index.max() + 1  # unpicked grid frames dropped
    crops = raw_to_clip([r], device="cpu")
    ref = decode_video(p).frames.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert [read_frame_index(c) for c in crops] == [read_frame_index(c) for c in ref]


def test_audio_does_not_depend_on_the_frame_rule(tmp_path):
    p = make_video(tmp_path / "late.mp4", VideoSpec(video_start=0.48, duration=4.0))
    a, b = decode_video(p, frame_rule="official"), decode_video(p, frame_rule="hold")
    np.testing.assert_array_equal(a.audio, b.audio)


@pytest.mark.slow
@pytest.mark.parametrize("duration,rotation", [(10.0, 0), (3.0, 90)])
def test_jpeg_roundtrip_reproduces_ffmpegs_jpegs(ffmpeg, tmp_path, duration, rotation):
    """Textured clip: every grid image re-coded in memory decodes to ffmpeg's JPEG file's pixels
    (max difference 0 with PyAV 18.1 against ffmpeg 9.0.2; 2 allowed for other builds), a
    display-rotated video turned before coding as ffmpeg does."""
    from lsld_engine.media.jpeg_roundtrip import JpegRoundTrip

    spec = with_(bench_spec(320, 180), duration=duration, rotation=rotation)
    p = make_video(tmp_path / "tex.mp4", spec)
    files = ffmpeg_oracle.official_frames(ffmpeg, p, tmp_path / "jpg")
    m = decode_media(p, audio=False, jpeg_roundtrip=True, frame_fn=media.rgb_frame)
    assert len(m.grid) == len(files)
    pick = linspace_pick(len(files), K)
    diffs = [np.abs(m.frames[i].astype(int) - ffmpeg_oracle.read_rgb(files[j]).astype(int)).max()
             for i, j in enumerate(pick)]
    assert max(diffs) <= 2
    # the files themselves: same size to within the encoder's version string
    rt = JpegRoundTrip(FPS)
    frames = list(av.open(str(p)).decode(video=0))
    sizes = [len(rt.encode(frames[s], m.rotation)) for s in m.grid]
    assert all(abs(a - f.stat().st_size) <= 4 for a, f in zip(sizes, files))
    # without the round trip the pixels do differ (the option does something)
    plain = decode_media(p, audio=False, frame_fn=media.rgb_frame)
    assert max(np.abs(plain.frames[i].astype(int) - ffmpeg_oracle.read_rgb(files[j]).astype(int)).max()
               for i, j in enumerate(pick)) > 10
