"""Media decoding (lsld_engine.media) and the decode pool, on synthetic videos made with PyAV."""
import glob
import os
import subprocess
import sys
import time

import numpy as np
import pytest

av = pytest.importorskip("av")

from lsld_engine.media import cpu_pixels, decode as media  # noqa: E402
from lsld_engine.errors import EngineError  # noqa: E402
from lsld_engine.media import worker_process  # noqa: E402
from lsld_engine.media.pool import DecodeFailure, decode_stream  # noqa: E402
from lsld_engine.testing.faults import FailsToStart  # noqa: E402
from lsld_engine.data.llp import T  # noqa: E402
from lsld_engine.media import (FPS, FRAMES_PER_WINDOW, IMAGE_SIZE, SAMPLE_RATE, SAMPLES_PER_SEGMENT,  # noqa: E402
                               SEGMENTS_PER_WINDOW, WINDOW_SECONDS, DecodedVideo, MediaError, decode_media, decode_video,
                               window_ids)
from lsld_engine.testing.videos import (STANDARD_SPECS, VideoSpec, frame_times, make_video,  # noqa: E402
                                        make_videos, read_frame_index)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="module")
def decoded(videos):
    """Every standard video decoded once (in-process)."""
    return {name: decode_video(videos[name], frame_rule="hold") for name in STANDARD_SPECS}


def shown_indices(d, spec):
    """Index encoded in each output frame, ``(W * 80,)``; rotation undone for reading."""
    imgs = d.frames.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3)
    return np.array([read_frame_index(np.rot90(im, -spec.rotation // 90)) for im in imgs])


def expected_indices(spec, num_windows):
    """The frame displayed at 10 w + k / 8 s: the last one with pts <= that time."""
    times = np.arange(num_windows * FRAMES_PER_WINDOW) / FPS
    return np.searchsorted(frame_times(spec), times + 1e-4, side="right") - 1


def test_contract_constants():
    assert (SAMPLE_RATE, FPS, WINDOW_SECONDS, IMAGE_SIZE) == (48000, 8, 10, 224)
    assert FRAMES_PER_WINDOW == 80 and SEGMENTS_PER_WINDOW == T == 10
    assert SAMPLES_PER_SEGMENT * SEGMENTS_PER_WINDOW == SAMPLE_RATE * WINDOW_SECONDS


@pytest.mark.parametrize("name", list(STANDARD_SPECS))
def test_shapes_and_frame_timing(decoded, name):
    spec, d = STANDARD_SPECS[name], decoded[name]
    w = max(1, int(np.ceil(spec.duration / WINDOW_SECONDS)))
    assert d.frames.shape == (w, FRAMES_PER_WINDOW, IMAGE_SIZE, IMAGE_SIZE, 3) and d.frames.dtype == np.uint8
    assert d.audio.shape == (w, SEGMENTS_PER_WINDOW, SAMPLES_PER_SEGMENT) and d.audio.dtype == np.float32
    np.testing.assert_array_equal(shown_indices(d, spec), expected_indices(spec, w))
    step = 1 / float(spec.fps)
    assert abs(d.duration - spec.duration) <= 1.5 * step
    assert d.video_id == name and d.has_audio == (spec.acodec is not None)


def test_frame_choice_is_not_nearest(tmp_path):
    """At 3 fps, t = 0.25 s shows frame 0 (pts 0, displayed until 0.333 s), not nearest frame 1."""
    spec = VideoSpec(fps=3, duration=2.0, acodec=None)
    d = decode_video(make_video(tmp_path / "f3.mp4", spec), frame_rule="hold")
    got = shown_indices(d, spec)
    assert got[2] == 0 and got[3] == 1  # 0.25 s -> frame 0; 0.375 s -> frame 1 (pts 1/3)


def test_rotation_is_applied(decoded):
    """The rotated video's source bands (horizontal) must come out vertical (portrait display)."""
    img = decoded["h264_rotated"].frames[0, 40].astype(np.float32).mean(axis=2)
    assert img.std(axis=1).mean() > 5 * img.std(axis=0).mean()  # varies along width, not height
    plain = decoded["h264_noaudio"].frames[0, 40].astype(np.float32).mean(axis=2)
    assert plain.std(axis=0).mean() > 5 * plain.std(axis=1).mean()


def test_short_video_is_padded(decoded):
    spec, d = STANDARD_SPECS["mpeg4_pcm51_short"], decoded["mpeg4_pcm51_short"]
    assert d.duration == pytest.approx(3.0, abs=1e-3)
    frames = d.frames.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3)
    n_real = int(3.0 * FPS)
    last = len(frame_times(spec)) - 1
    assert all(read_frame_index(f) == last for f in frames[n_real:])
    assert (frames[n_real:] == frames[n_real]).all()  # padding repeats the last frame exactly
    pcm = d.audio.reshape(-1)
    assert np.abs(pcm[int(3.0 * SAMPLE_RATE) + 10:]).max() == 0  # zero audio after the end
    assert np.abs(pcm[int(2.5 * SAMPLE_RATE): int(2.9 * SAMPLE_RATE)]).max() > 0.2


def test_long_video_windows(decoded):
    d = decoded["h264_aac_2997_long"]
    assert d.num_windows == 3 and d.duration == pytest.approx(749 * 1001 / 30000, abs=1e-3)
    assert d.window_ids == ["h264_aac_2997_long@0", "h264_aac_2997_long@10", "h264_aac_2997_long@20"]
    pcm = d.audio.reshape(-1)
    assert np.abs(pcm[int(25.1 * SAMPLE_RATE):]).max() == 0  # last window padded with silence
    assert np.abs(pcm[int(24.0 * SAMPLE_RATE): int(24.9 * SAMPLE_RATE)]).max() > 0.3


def test_window_ids():
    assert window_ids("abc", 1) == ["abc"]
    assert window_ids("abc", 3) == ["abc@0", "abc@10", "abc@20"]


def test_max_windows_stops_early_and_keeps_true_duration(videos, decoded):
    d = decode_video(videos["h264_aac_2997_long"], max_windows=1, frame_rule="hold")
    full = decoded["h264_aac_2997_long"]
    assert d.num_windows == 1 and d.duration == pytest.approx(full.duration)
    np.testing.assert_array_equal(d.frames[0], full.frames[0])
    np.testing.assert_array_equal(d.audio[0], full.audio[0])


def test_no_audio_is_silence(decoded):
    d = decoded["h264_noaudio"]
    assert d.has_audio is False and d.audio.shape == (1, 10, SAMPLES_PER_SEGMENT) and not d.audio.any()


@pytest.mark.parametrize("name,needle", [("truncated", "cannot open"), ("garbage", "cannot open"),
                                         ("audio_only", "no video stream")])
def test_broken_files_raise_media_error(videos, name, needle):
    with pytest.raises(MediaError, match=needle) as e:
        decode_video(videos[name])
    assert str(videos[name]) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        decode_video(tmp_path / "nope.mp4")


@pytest.mark.parametrize("name,amplitude", [("h264_flac_vfr", 0.4), ("mpeg4_pcm51_short", 0.25),
                                            ("h264_aac_25fps", 0.375)])
def test_channels_are_averaged(decoded, name, amplitude):
    """Mean of the channels (0.6/0.2 stereo -> 0.4; 5.1 -> 0.25), not FFmpeg's sum / sqrt(2)."""
    seg = decoded[name].audio.reshape(-1)[int(1.5 * SAMPLE_RATE): int(2.5 * SAMPLE_RATE)]
    tol = 0.01 if name != "h264_aac_25fps" else 0.03  # AAC is lossy
    assert np.sqrt(2) * seg.std() == pytest.approx(amplitude, rel=tol)


@pytest.mark.parametrize("name", ["mjpeg_pcm16k_avi", "h264_aac_25fps", "vp9_opus_webm"])
def test_resampled_to_48k(decoded, name):
    """A 440 Hz tone at 16 / 44.1 / 48 kHz comes out as a 440 Hz tone at 48 kHz."""
    seg = decoded[name].audio[0, 1]  # second 1..2, one second at 48 kHz
    spectrum = np.abs(np.fft.rfft(seg))
    assert np.argmax(spectrum) == pytest.approx(440, abs=1)  # 1 Hz bins


@pytest.mark.parametrize("name,onset", [("h264_aac_2997_long", 2.0), ("mpeg4_pcm51_short", 1.0)])
def test_audio_aligned_to_video(decoded, name, onset):
    pcm = decoded[name].audio.reshape(-1)
    first = np.argmax(np.abs(pcm) > 0.05) / SAMPLE_RATE
    assert first == pytest.approx(onset, abs=0.005)


def test_decode_step_and_pixel_step_compose(videos, decoded):
    """decode_media (raw frames) + clip_pixels gives exactly decode_video's frames."""
    m = decode_media(videos["h264_flac_vfr"], frame_rule="hold")
    assert isinstance(m.frames[0], av.VideoFrame) and len(m.frames) == FRAMES_PER_WINDOW
    np.testing.assert_array_equal(cpu_pixels.clip_pixels(m.frames, m.rotation),
                                  decoded["h264_flac_vfr"].frames[0])


@pytest.mark.parametrize("hw", [(170, 301), (301, 170), (224, 224), (225, 401), (100, 60)])
def test_clip_crop_matches_open_clip_transform(hw):
    """Same pixels as open_clip's ViT-B-16 eval transform (Resize + CenterCrop on a PIL image)."""
    open_clip = pytest.importorskip("open_clip")
    from PIL import Image

    tr = open_clip.image_transform(IMAGE_SIZE, is_train=False)
    img = np.random.default_rng(sum(hw)).integers(0, 256, (*hw, 3), dtype=np.uint8)
    ref = Image.fromarray(img)
    for t in tr.transforms[:2]:  # Resize(224, bicubic), CenterCrop(224); the rest is tensor + normalise
        ref = t(ref)
    np.testing.assert_array_equal(cpu_pixels.clip_crop(img), np.asarray(ref))


# --- decode pool -----------------------------------------------------------------------------

def crash_on_garbage(path, video_id, **kw):
    """decode_fn for tests: the worker process dies on 'garbage'."""
    if "garbage" in path:
        os._exit(3)
    return decode_video(path, video_id, **kw)


class HangOnTruncated:
    """decode_fn for tests (picklable): on 'truncated' the worker notes its pid in ``marks``, hangs
    for ``hang_s`` and then notes that it came back; other videos decode normally."""

    def __init__(self, marks, hang_s: float = 120.0):
        self.marks, self.hang_s = marks, hang_s

    def __call__(self, path, video_id, **kw):
        if "truncated" in path:
            (self.marks / "hung.pid").write_text(str(os.getpid()))
            time.sleep(self.hang_s)
            (self.marks / "came_back").touch()
        return decode_video(path, video_id, **kw)


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie not yet reaped counts as exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True


def _ids(results):
    return sorted(r.video_id for r in results)


def test_pool_in_process_reports_failures(videos):
    paths = [videos[n] for n in ("h264_noaudio", "garbage", "h264_rotated")]
    out = list(decode_stream(paths, workers=0))
    assert [isinstance(r, DecodedVideo) for r in out] == [True, False, True]  # (DecodedPart: a whole short video)
    assert isinstance(out[1], DecodeFailure)
    assert "garbage.mp4" in out[1].error and out[1].video_id == "garbage"


@pytest.mark.parametrize("transport", ["shm", "pipe"])
def test_pool_matches_in_process_and_keeps_order(videos, decoded, transport):
    names = ["h264_aac_25fps", "garbage", "h264_noaudio", "mjpeg_pcm16k_avi", "truncated", "h264_rotated"]
    out = list(decode_stream([videos[n] for n in names], workers=2, ordered=True, transport=transport,
                             frame_rule="hold"))
    assert [r.video_id for r in out] == names
    for r in out:
        if r.video_id in decoded:
            np.testing.assert_array_equal(r.frames, decoded[r.video_id].frames)
            np.testing.assert_array_equal(r.audio, decoded[r.video_id].audio)
        else:
            assert isinstance(r, DecodeFailure) and r.video_id in r.error
    assert not glob.glob("/dev/shm/lsld-decode-*")  # every shared-memory block unlinked


def test_pool_survives_worker_crash(videos):
    names = ["h264_noaudio", "garbage", "h264_rotated", "mpeg4_pcm51_short"]
    out = list(decode_stream([(videos[n], n) for n in names], workers=2, decode_fn=crash_on_garbage))
    assert _ids(out) == sorted(names)  # nothing lost, nothing duplicated
    fail = [r for r in out if isinstance(r, DecodeFailure)]
    assert [f.video_id for f in fail] == ["garbage"] and "died" in fail[0].error


def test_pool_times_out_hung_decode(videos, tmp_path):
    """A decode that hangs is cut short: its worker is killed (it never comes back from the hang)
    and the videos after it are decoded by a fresh worker."""
    names = ["truncated", "h264_rotated", "h264_noaudio"]
    out = list(decode_stream([videos[n] for n in names], workers=1, timeout=3, decode_fn=HangOnTruncated(tmp_path)))
    pid = int((tmp_path / "hung.pid").read_text())  # it did hang
    assert pid != os.getpid() and _gone(pid)  # in a worker process, killed
    assert not (tmp_path / "came_back").exists()  # before the hang ended: not waited out
    assert _ids(out) == sorted(names)
    fail = [r for r in out if isinstance(r, DecodeFailure)]
    assert [f.video_id for f in fail] == ["truncated"] and "no progress for 3 s" in fail[0].error


def test_pool_input_is_consumed_lazily_and_bounded(videos):
    pulled = []

    def gen():
        for i in range(12):
            pulled.append(i)
            yield videos["h264_rotated"], f"v{i}"

    it = decode_stream(gen(), workers=1, max_pending=3, prefetch=2)
    first = next(it)
    assert len(pulled) <= 4  # at most max_pending dispatched (+1 peeked) before the first result
    rest = list(it)
    assert sorted([first.video_id] + [r.video_id for r in rest]) == sorted(f"v{i}" for i in range(12))


@pytest.mark.parametrize("name,max_windows,n_decoded", [
    ("h264_aac_25fps", None, 248),  # declared 10 s: last wanted 9.875 s -> frame 246 (9.84), +1 to confirm
    ("h264_aac_2997_long", 1, 297),  # 9.875 s -> frame 295 (9.843), frame 296 (9.877) confirms
])
def test_decoding_stops_after_last_needed_frame(videos, monkeypatch, name, max_windows, n_decoded):
    counted = []
    real_open = media._open

    class Counting:
        def __init__(self, c):
            self.c = c

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.c.close()

        def __getattr__(self, k):
            return getattr(self.c, k)

        def decode(self, *a, **k):
            for f in self.c.decode(*a, **k):
                counted.append(f)
                yield f

    monkeypatch.setattr(media, "_open", lambda p: Counting(real_open(p)))
    decode_media(videos[name], max_windows=max_windows, audio=False, frame_rule="hold")
    assert len(counted) == n_decoded


def test_pool_closed_early_stops_workers_and_cleans_up(videos, monkeypatch):
    started = []  # (process, connection) of each worker
    real_start = worker_process.start
    monkeypatch.setattr(worker_process, "start", lambda *a: started.append(real_start(*a)) or started[-1])
    it = decode_stream([videos["h264_aac_25fps"]] * 6, workers=2)
    next(it)
    it.close()  # consumer gives up: busy workers are stopped, pending shared memory removed
    assert not glob.glob("/dev/shm/lsld-decode-*")
    assert len(started) == 2 and all(p.exitcode is not None and _gone(p.pid) for p, _ in started)


_SCRIPT = """\
import sys
from lsld_engine.media.pool import decode_stream
print("main ran", flush=True)
for r in decode_stream(sys.argv[1:], workers=2):
    print(r.video_id, type(r).__name__, flush=True)
"""


def test_workers_do_not_run_the_callers_script(videos, tmp_path):
    """A script without an ``if __name__ == "__main__":`` guard runs once: the workers run only the
    engine's code (multiprocessing's spawn re-ran the script in each worker, which then died)."""
    script = tmp_path / "decode_two.py"
    script.write_text(_SCRIPT)
    names = ["h264_noaudio", "h264_rotated"]
    out = subprocess.run([sys.executable, str(script), *(str(videos[n]) for n in names)], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines.count("main ran") == 1
    assert sorted(lines[1:]) == [f"{n} DecodedPart" for n in names]  # (short videos: one final part each)


@pytest.mark.parametrize("exit_code, why", [(None, "start-up fault injected"), (3, "exited with code 3")])
def test_a_worker_that_cannot_start_is_one_engine_error_not_a_failed_video(videos, exit_code, why):
    got = []
    with pytest.raises(EngineError, match=f"decoder worker could not start: .*{why}") as err:
        for r in decode_stream([videos[n] for n in ("h264_noaudio", "h264_rotated")], workers=2,
                               decode_fn=FailsToStart(exit_code)):
            got.append(r)
    assert got == []  # no video is blamed for it
    assert "h264" not in str(err.value)


def test_a_decode_function_of_the_main_script_is_refused_by_name(videos, monkeypatch):
    import __main__

    def user_decode(path, video_id, **kw):
        return decode_video(path, video_id, **kw)

    user_decode.__module__, user_decode.__qualname__ = "__main__", "user_decode"
    monkeypatch.setattr(__main__, "user_decode", user_decode, raising=False)
    with pytest.raises(EngineError, match="user_decode.*defined in an importable module"):
        list(decode_stream([videos["h264_noaudio"]], workers=1, decode_fn=user_decode))


def test_window_count_ignores_a_trailing_frame_or_two():
    from lsld_engine.media import num_windows_for
    assert [num_windows_for(d) for d in (0.2, 10.0, 10.02, 10.2, 24.5, 30.0, 30.05)] == [1, 1, 1, 2, 3, 3, 3]


def test_a_video_streamed_in_parts_opens_its_file_once_per_stream(tmp_path, monkeypatch):
    """Video and audio each open the file once; the audio of the first part starts at the first
    frame's time without a third open to find it (the audio starts 2 s before the first frame here)."""
    from lsld_engine.media import decode_parts

    path = make_video(tmp_path / "late.mp4", VideoSpec(duration=25.0, video_start=2.0, freq=700.0))
    whole = media.decode_video(str(path))
    opened = []
    real = media._open

    def counting(p, *a, **k):
        opened.append(p)
        return real(p, *a, **k)

    monkeypatch.setattr(media, "_open", counting)
    parts = []
    last = decode_parts(str(path), emit=parts.append, windows_per_part=1)
    assert len(opened) == 2
    parts.append(last)
    assert len(parts) > 1 and parts[0].num_windows == 1
    np.testing.assert_array_equal(np.concatenate([p.audio for p in parts]), whole.audio)
    np.testing.assert_array_equal(np.concatenate([p.frames for p in parts]), whole.frames)
