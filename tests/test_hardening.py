"""Hostile inputs: names that are not UTF-8, long videos as a stream of parts, caps, id collisions,
what a folder walk skips, CPU portability. Outputs, locks, full disks and malformed files:
test_hardening_outputs.py.

Every case runs on generated media. `parse` / `extract` run with the toy backend (cheap encoders,
a small random HAN), in this process or, where a real second process is the point (locks, kill -9),
through ``python -m lsld_engine.testing.toy_cli``.
"""
from __future__ import annotations

import io
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest

from lsld_engine.cli import main
from lsld_engine.testing.backends import ToyBackend
from lsld_engine.testing.hostile import write_long_claim
from lsld_engine.testing.videos import VideoSpec, make_video
from lsld_engine.records.writers import read_predictions

# the shared fixtures (toy, clip) are used by name
from rule_helpers import event_keys
from hardening_helpers import clip, copy, extract, one_error_line, parse, toy, toy_cli  # noqa: F401


# --- 1. names that are not UTF-8 -------------------------------------------------------------------

def test_non_utf8_names_are_parsed_extracted_and_resumed(clip, tmp_path, toy, capsys):
    d = tmp_path / "archive"
    d.mkdir()
    copy(clip, os.fsencode(d) + b"/caf\xe9.mp4")  # Latin-1 bytes: not UTF-8
    copy(clip, d / "plain.mp4")
    out = tmp_path / "r.jsonl"
    assert parse(d, out) == 0
    preds = read_predictions(out)
    assert sorted(preds) == ["caf\\xe9", "plain"]  # the byte is written as \xNN (documented)
    assert preds["caf\\xe9"]["status"] == "ok" and preds["caf\\xe9"]["path"].endswith("caf\\xe9.mp4")
    out.read_bytes().decode("utf-8")  # the file is valid UTF-8
    capsys.readouterr()
    assert parse(d, out) == 0  # resume: same ids, nothing redone
    assert "skipped 2 already done" in capsys.readouterr().err
    root = tmp_path / "root"
    assert extract(d, root) == 0
    assert (root / "feats" / "clip_16" / "caf\\xe9.npy").is_file()
    log = [json.loads(x) for x in (root / "feats" / "extract_log.jsonl").read_text("utf-8").splitlines()]
    assert {r["video_id"] for r in log} == {"caf\\xe9", "plain"}


def test_list_file_with_non_utf8_names(clip, tmp_path, toy):
    copy(clip, os.fsencode(tmp_path) + b"/\xff\xfe.mp4")
    lst = tmp_path / "list.txt"
    lst.write_bytes(b"# videos\n\xff\xfe.mp4\n")
    out = tmp_path / "r.jsonl"
    assert main(["parse", "--list", str(lst), "--out", str(out), "--random-weights", "--quiet", "--workers", "0"]) == 0
    assert list(read_predictions(out)) == ["\\xff\\xfe"]



def test_scale_list_files_share_the_local_list_parser(tmp_path):
    """``--ray --list`` reads a list file as ``--list`` does (same lines, same bytes), keeping URIs."""
    from lsld_engine.scale.sources import read_uri_list
    from lsld_engine.parsing.video_inputs import InputError, read_list

    lst = tmp_path / "videos.txt"
    lst.write_bytes(b"# a comment\n\n  a.mp4  \nsub/b.mp4\n/abs/c.mp4\ns3://bucket/d.mp4\ncaf\xe9.mp4\n")
    latin1 = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.mp4")
    local = [str(tmp_path / "a.mp4"), str(tmp_path / "sub" / "b.mp4"), "/abs/c.mp4"]
    assert read_uri_list(lst) == [*local, "s3://bucket/d.mp4", latin1]
    # the single-machine list refuses a URI as written (a Path() would have made it "s3:/bucket/d.mp4")
    with pytest.raises(InputError, match=r"^s3://bucket/d\.mp4 \(in .*\): object-store inputs need --ray"):
        read_list(lst)
    lst.write_bytes(lst.read_bytes().replace(b"s3://bucket/d.mp4\n", b""))
    assert [str(p) for p in read_list(lst)] == [*local, latin1]

# --- 2. memory: long videos as a stream of parts, caps on duration and resolution ----------------

def parts_of(windows_per_part):
    import functools

    from lsld_engine.media import decode_parts

    return functools.partial(decode_parts, windows_per_part=windows_per_part)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("long") / "long.mp4", VideoSpec(duration=45.0, freq=660.0,
                                                                                pattern="texture"))


@pytest.mark.parametrize("workers", [0, 1])
def test_a_video_parsed_in_parts_gives_the_whole_video_result(long_video, tmp_path, workers):
    from lsld_engine.parsing.video_inputs import VideoInput
    from lsld_engine.parsing.parse import parse_videos
    from lsld_engine.records.writers import JsonlWriter

    be = ToyBackend()
    recs = {}
    for k in (1, 100):  # five parts of one window, or the whole video in one part
        out = tmp_path / f"r{k}.jsonl"
        with JsonlWriter(out) as w:
            s = parse_videos([VideoInput(str(long_video), "long")], be, w, workers=workers, progress=False,
                             save_probs=True, decode_fn=parts_of(k))
        assert s.done == 1 and s.windows == 5
        recs[k] = read_predictions(out)["long"]
    a, b = recs[1], recs[100]
    assert a["segments"] == b["segments"] == 50 and a["duration"] == b["duration"]
    np.testing.assert_allclose(a["probs"]["audio"], b["probs"]["audio"], atol=1e-3)
    np.testing.assert_allclose(a["window_probs"]["visual"], b["window_probs"]["visual"], atol=1e-3)
    # the same events, exactly (splitting changes probabilities by float noise, ~1e-6; the data's
    # closest probability to the 0.5 thresholds is ~2e-4 away); scores are means of probabilities
    assert event_keys(a["events"]) == event_keys(b["events"])
    assert all(a["events"].values())  # events on every track: the comparison is not vacuous
    for t in a["events"]:
        np.testing.assert_allclose([e["score"] for e in a["events"][t]], [e["score"] for e in b["events"][t]], atol=1e-3)


def test_parts_of_several_videos_in_order_across_two_workers(long_video, clip, tmp_path):
    from lsld_engine.parsing.parse import parse_videos
    from lsld_engine.parsing.video_inputs import VideoInput
    from lsld_engine.records.writers import JsonlWriter

    second = make_video(tmp_path / "second.mp4", VideoSpec(duration=32.0))
    inputs = [VideoInput(str(long_video), "long"), VideoInput(str(clip), "clip"), VideoInput(str(second), "second")]
    out = tmp_path / "r.jsonl"
    with JsonlWriter(out) as w:
        s = parse_videos(inputs, ToyBackend(), w, workers=2, ordered=True, progress=False, decode_fn=parts_of(1))
    preds = read_predictions(out)
    assert list(preds) == ["long", "clip", "second"]  # --ordered: input order, each video once
    assert [preds[v]["segments"] for v in preds] == [50, 10, 40] and s.windows == 10 and s.done == 3


class GatedFirstVideo:
    """Streaming decoder (picklable, for the pool's worker processes): the video ``slow`` emits
    part ``k`` (k >= 1) only once the file ``gates/k`` exists; other videos decode freely. Waiting
    on a file is an event, not a guess at how long something takes."""

    def __init__(self, gates: Path):
        self.gates = gates

    def __call__(self, path, video_id, *, emit, **kw):
        from lsld_engine.media import decode_parts

        count = [0]

        def gated(part):
            k = count[0]
            t0 = time.monotonic()
            while k and not (self.gates / str(k)).exists():
                if time.monotonic() - t0 > 300:
                    raise RuntimeError(f"gate {k} never opened")  # the test's bookkeeping is broken
                time.sleep(0.01)
            count[0] += 1
            emit(part)
        return decode_parts(path, video_id, emit=gated if video_id == "slow" else emit, windows_per_part=1, **kw)


class _VirtualClock:
    """Stands in for the pool's ``time`` module: ``monotonic()`` moves only when the test says."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


@pytest.mark.slow
def test_a_worker_waiting_for_its_turn_is_not_a_decode_timeout(long_video, tmp_path, monkeypatch):
    """In input order, the parts of a second video wait while a first video decodes; its worker,
    blocked on the consumer for longer than --decode-timeout, is not stuck: the timeout counts
    only decoding time. The pool's clock is virtual: it moves 4 s each time a part of the first
    video arrives, and the first video's next part is released only after the second video's
    worker is known to wait (both of its read-ahead parts arrived) -- so the second worker waits
    20 virtual seconds against a 15-s timeout, while the first makes progress every 4 s, whatever
    the machine's load."""
    from lsld_engine.media import pool
    from lsld_engine.media.pool import DecodeFailure, decode_stream

    slow = make_video(tmp_path / "slow.mp4", VideoSpec(duration=60.0))
    gates = tmp_path / "gates"
    gates.mkdir()
    clock = _VirtualClock()
    monkeypatch.setattr(pool, "time", clock)
    seen = {"slow": 0, "fast": 0}
    real_finish = pool._finish

    def finish(idx, result, *rest):  # the consumer side receiving a part (or a whole video)
        real_finish(idx, result, *rest)
        if getattr(result, "video_id", None) in seen:
            seen[result.video_id] += 1
        # release the next part of "slow" once "fast" is parked with its two parts ahead
        while seen["fast"] >= 2 and 0 < seen["slow"] < 6 and not (gates / str(seen["slow"])).exists():
            clock.now += 4.0
            (gates / str(seen["slow"])).touch()

    monkeypatch.setattr(pool, "_finish", finish)
    items = [(str(slow), "slow"), (str(long_video), "fast")]
    got = list(decode_stream(items, workers=2, ordered=True, timeout=15.0, parts_ahead=1,
                             decode_fn=GatedFirstVideo(gates)))
    assert not [x.error for x in got if isinstance(x, DecodeFailure)]
    windows = [(x.video_id, x.first_window + k) for x in got for k in range(x.num_windows)]
    assert windows == [("slow", w) for w in range(6)] + [("fast", w) for w in range(5)]  # in order, all there
    assert clock.now == 20.0  # the second worker did wait past the timeout


def test_extract_writes_each_part_and_logs_the_video_after_its_last(long_video, tmp_path):
    from lsld_engine.parsing.extract import FeatureStore, extract_features
    from lsld_engine.parsing.video_inputs import VideoInput, read_records
    from lsld_engine.media import decode_video
    from lsld_engine.testing.compare import assert_embeddings_match

    store = FeatureStore(tmp_path / "root")
    be = ToyBackend()
    s = extract_features([VideoInput(str(long_video), "long")], be, store, workers=1, progress=False,
                         decode_fn=parts_of(2))
    assert s.done == 1 and s.windows == 5
    log = read_records(store.log_path)["long"]
    assert log["windows"] == [f"long@{10 * w}" for w in range(5)]
    d = decode_video(long_video)
    want = [be.embed_images(d.frames[w]) for w in range(5)]
    for w in range(5):
        assert_embeddings_match(np.load(store.clip_dir / f"long@{10 * w}.npy"), want[w],
                                wrong=[x for j, x in enumerate(want) if j != w])


def fail_after_one_part(path, video_id, *, emit, **kw):
    """A streaming decoder that breaks after its first part (like a file corrupt half-way)."""
    from lsld_engine.media import MediaError, decode_parts

    def once(part):
        emit(part)
        raise MediaError(f"{path}: corrupt after the first part")
    return decode_parts(path, video_id, emit=once, windows_per_part=1, **kw)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_video_failing_after_some_parts_gets_only_an_error_line(long_video, clip, tmp_path, workers):
    from lsld_engine.parsing.video_inputs import VideoInput
    from lsld_engine.parsing.parse import parse_videos
    from lsld_engine.records.writers import JsonlWriter

    out = tmp_path / "r.jsonl"
    with JsonlWriter(out) as w:
        s = parse_videos([VideoInput(str(long_video), "long"), VideoInput(str(clip), "clip")], ToyBackend(), w,
                         workers=workers, progress=False, decode_fn=fail_after_one_part)
    preds = read_predictions(out)
    assert preds["long"]["status"] == "error" and "corrupt after the first part" in preds["long"]["error"]
    assert preds["clip"]["status"] == "ok" and s.done == 1 and len(s.failed) == 1


def test_duration_and_resolution_caps_are_error_lines(tmp_path, toy):
    d = tmp_path / "archive"
    d.mkdir()
    write_long_claim(d / "hour.mp4", 3600)
    make_video(d / "wide.mp4", VideoSpec(duration=2.0, width=640, height=96))
    make_video(d / "fine.mp4", VideoSpec(duration=2.0))
    out = tmp_path / "r.jsonl"
    assert parse(d, out, "--max-duration", "600", "--max-resolution", "320x240") == 1
    preds = read_predictions(out)
    assert preds["fine"]["status"] == "ok"
    assert "more than the maximum duration 600 s (--max-duration)" in preds["hour"]["error"]
    assert "larger than the maximum resolution 320x240" in preds["wide"]["error"]


def test_whole_video_decoder_of_ray_tasks_gets_the_caps(clip):
    """`--ray` decode tasks call `decode_function(args, whole=True)` directly: the flags' caps are bound in."""
    from argparse import Namespace

    from lsld_engine.commands.extract import decode_function
    from lsld_engine.media import MediaError

    fn = decode_function(Namespace(max_duration=1.0, max_resolution=None), whole=True)
    with pytest.raises(MediaError, match="--max-duration"):
        fn(str(clip))
    assert decode_function(Namespace(max_duration=None, max_resolution=None), whole=True)(str(clip)).num_windows == 1


def test_bad_max_resolution_is_a_usage_error(clip, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        parse(clip, tmp_path / "r.jsonl", "--max-resolution", "big")
    assert e.value.code == 2 and "WIDTHxHEIGHT" in capsys.readouterr().err


@pytest.mark.slow
def test_a_tiny_file_declaring_20_minutes_streams_in_bounded_memory(tmp_path):
    """A 1.6 KB MP4 that lasts 20 minutes: holding it whole takes 1.4 GB of crops (120 windows x 80 x
    224 x 224 x 3) in the decode worker, and as much again mapped in the main process. Streamed,
    the worker stays near 0.1 GB and the main process near its short-clip size plus a few parts
    (bench/memory_bench.py: worker 96 MB at 2 and at 8 minutes; main 0.7-1.1 GB with toy
    encoders). Peaks are each process's own VmHWM (lsld_engine.testing.memory)."""
    from lsld_engine.testing.memory import watch_peaks

    bomb = write_long_claim(tmp_path / "bomb.mp4", 1200)
    assert bomb.stat().st_size < 4096
    out = tmp_path / "r.jsonl"
    p = toy_cli("parse", bomb, "--out", out, "--workers", "1")
    peaks = watch_peaks(p)
    err = p.stderr.read()
    assert p.returncode == 0, err
    rec = read_predictions(out)["bomb"]
    # all of it went through (>= 120 windows: the official frame rule also counts the last frame's duration)
    assert rec["status"] == "ok" and rec["segments"] >= 1200
    main_mb = peaks.pop(p.pid)
    assert peaks, "the decode worker was not seen"
    assert max(peaks.values()) < 500, f"decode worker peak {max(peaks.values()):.0f} MB"
    assert main_mb < 1600, f"main process peak {main_mb:.0f} MB"


def test_ten_hours_declared_is_refused_before_decoding(tmp_path, toy):
    bomb = write_long_claim(tmp_path / "ten.mp4", 36000)
    out = tmp_path / "r.jsonl"
    assert parse(bomb, out) == 1
    assert "declares 36000 s, more than the maximum duration 14400 s" in read_predictions(out)["ten"]["error"]


# --- 5. id collisions ------------------------------------------------------------------------------

def test_colliding_ids_are_made_unique_before_work(clip, tmp_path, toy):
    d = tmp_path / "archive"
    d.mkdir()
    copy(clip, d / "x.mp4")
    make_video(d / "x.mkv", VideoSpec(container="mkv", duration=3.0))
    make_video(d / "long.mp4", VideoSpec(duration=25.0, freq=880.0))
    make_video(d / "long@10.mp4", VideoSpec(duration=10.0, pattern="texture"))
    out = tmp_path / "r.jsonl"
    assert parse(d, out) == 0
    assert sorted(read_predictions(out)) == ["long", "long@10.mp4", "x.mkv", "x.mp4"]
    root = tmp_path / "root"
    assert extract(d, root) == 0
    clip_dir = root / "feats" / "clip_16"
    assert sorted(p.stem for p in clip_dir.glob("*.npy")) == \
        ["long@0", "long@10", "long@10.mp4", "long@20", "x.mkv", "x.mp4"]
    # window long@10 holds long.mp4's second window, not the 10-s file's picture or sound
    from lsld_engine.media import decode_video
    from lsld_engine.testing.compare import assert_embeddings_match

    be = ToyBackend()
    want = be.embed_images(decode_video(d / "long.mp4").frames[1])
    other = be.embed_images(decode_video(d / "long@10.mp4").frames[0])
    assert_embeddings_match(np.load(clip_dir / "long@10.npy"), want, wrong=[other])
    assert_embeddings_match(np.load(clip_dir / "long@10.mp4.npy"), other, wrong=[want])


def test_a_file_named_like_a_window_of_an_extracted_video_is_refused(tmp_path, toy, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    make_video(a / "long.mp4", VideoSpec(duration=25.0))
    make_video(b / "long@10.mp4", VideoSpec(duration=10.0))
    root = tmp_path / "root"
    assert extract(a, root) == 0
    window = root / "feats" / "clip_16" / "long@10.npy"
    before = window.read_bytes()
    capsys.readouterr()
    assert extract(b, root) == 2
    one_error_line(capsys.readouterr().err, "long@10", "window")
    assert window.read_bytes() == before


# --- 9. what a folder walk skips -------------------------------------------------------------------------

def test_walk_skips_are_counted_and_listed_with_verbose(clip, tmp_path, toy, capsys):
    d = tmp_path / "archive"
    (d / "sub").mkdir(parents=True)
    copy(clip, d / "good.mp4")
    copy(clip, d / ".hidden.mp4")
    (d / "notes.txt").write_text("x")
    (d / "folder.mp4").mkdir()  # a folder named like a video is walked, as when given directly
    copy(clip, d / "folder.mp4" / "inner.mp4")
    os.symlink(d / "sub" / "loop.mp4", d / "sub" / "loop.mp4")  # a link to itself: a loop
    os.symlink(d / "gone.mp4", d / "dangling.mp4")
    os.symlink(d, d / "sub" / "up")  # a symlinked folder pointing up: not walked
    out = tmp_path / "r.jsonl"
    assert parse(d, out) == 0
    err = capsys.readouterr().err
    assert sorted(read_predictions(out)) == ["good", "inner"]
    summary = next(x for x in err.splitlines() if x.startswith("walk skipped"))
    for part in ("1 dangling symlink", "1 symlink loop", "1 symlinked folder", "1 hidden",
                 "1 without a video extension"):
        assert part in summary, summary
    assert "named like a video" not in err
    assert "--verbose" in summary and "skipped: " not in err
    out.unlink()
    assert parse(d, out, "--verbose") == 0
    listed = [x for x in capsys.readouterr().err.splitlines() if x.strip().startswith("skipped: ")]
    assert len(listed) == 3 and any("dangling.mp4 (dangling symlink)" in x for x in listed)


# --- portability -----------------------------------------------------------------------------------------

def test_bf16_only_with_native_cpu_support(monkeypatch, caplog):
    from lsld_engine import hardware
    from lsld_engine.han.training import TrainConfig

    monkeypatch.delenv("LSLD_ALLOW_SLOW_BF16", raising=False)
    monkeypatch.setattr(hardware, "cpu_bf16_support", lambda: (False, "no avx512_bf16/amx_bf16 flag (AVX2)"))
    with caplog.at_level(logging.WARNING):
        assert TrainConfig(precision="bf16").precision == "fp32"
    assert "no native bf16" in caplog.text and "AVX2" in caplog.text
    assert TrainConfig(precision="bf16", device="cuda").precision == "bf16"  # GPUs decide for themselves
    monkeypatch.setenv("LSLD_ALLOW_SLOW_BF16", "1")
    assert TrainConfig(precision="bf16").precision == "bf16"
    monkeypatch.delenv("LSLD_ALLOW_SLOW_BF16")
    monkeypatch.setattr(hardware, "cpu_bf16_support", lambda: (True, "CPU flags avx512_bf16"))
    assert TrainConfig(precision="bf16").precision == "bf16"


def test_cpu_flags_decide_bf16(monkeypatch):
    from lsld_engine import hardware

    for flags, native in (({"avx2", "fma"}, False), ({"avx512f", "avx512_bf16"}, True), ({"amx_bf16"}, True)):
        monkeypatch.setattr(hardware, "_cpu_flags", lambda f=flags: f)
        hardware.cpu_bf16_support.cache_clear()
        assert hardware.cpu_bf16_support()[0] is native
    hardware.cpu_bf16_support.cache_clear()


def test_progress_to_a_file_is_logged_at_an_interval(monkeypatch):
    from lsld_engine.progress import progress_bar

    buf = io.StringIO()  # not a terminal
    monkeypatch.setenv("LSLD_PROGRESS_INTERVAL", "3600")
    with progress_bar(file=buf, total=5000, desc="work", unit="video", leave=False) as bar:
        for _ in range(5000):
            bar.update(1)
    text = buf.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert 1 <= len(lines) <= 3, lines  # the first and the final state, not 5,000 updates
    assert lines[-1].startswith("work: 100% 5000/5000")
