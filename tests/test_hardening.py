"""Hostile archives, a second process, a full disk, malformed files: what still has to hold.

Every case runs on generated media. `parse` / `extract` run with the toy backend (cheap encoders,
a small random HAN), in this process or, where a real second process is the point (locks, kill -9),
through ``python -m lsld_engine.testing.toy_cli``.
"""
from __future__ import annotations

import errno
import fcntl
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lsld_engine import backends
from lsld_engine.cli import main
from lsld_engine.outputs import OutputLock
from lsld_engine.testing.backends import ToyBackend
from lsld_engine.testing.hostile import write_long_claim
from lsld_engine.testing.videos import VideoSpec, make_video
from lsld_engine.writers import read_predictions

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def toy(monkeypatch):
    made = []

    def create(name, **options):
        made.append(ToyBackend())
        return made[-1]

    monkeypatch.setattr(backends, "create_backend", create)
    return made


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """One 3-s clip to copy around (3 s keeps decoding cheap)."""
    return make_video(tmp_path_factory.mktemp("src") / "clip.mp4", VideoSpec(duration=3.0))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A small synthetic dataset root (LLP-style annotation CSVs + features)."""
    root = tmp_path_factory.mktemp("world")
    assert main(["synth", "make", "--out", str(root), "--size", "small"]) == 0
    return root


def parse(inputs, out, *extra) -> int:
    return main(["parse", *map(str, inputs if isinstance(inputs, list) else [inputs]), "--out", str(out),
                 "--random-weights", "--quiet", "--workers", "0", *extra])


def extract(inputs, root, *extra) -> int:
    return main(["extract", *map(str, inputs if isinstance(inputs, list) else [inputs]), "--out", str(root),
                 "--random-weights", "--quiet", "--workers", "0", *extra])


def one_error_line(err: str, *needles: str) -> str:
    """The stderr of a refused run: one ``error:`` line, no traceback, naming ``needles``."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def copy(src: Path, dst: Path | bytes) -> None:
    data = Path(src).read_bytes()
    with open(dst, "wb") as f:
        f.write(data)


def toy_cli(*args, env=None, **kw) -> subprocess.Popen:
    e = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})}
    command, *rest = map(str, args)  # the defaults first: a later flag in ``args`` overrides them
    return subprocess.Popen([sys.executable, "-m", "lsld_engine.testing.toy_cli", command,
                             "--random-weights", "--quiet", "--workers", "0", *rest],
                            env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def locked(path: Path) -> bool:
    """Whether another process holds the output lock on ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def wait_for(cond, timeout=120.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out waiting"
        time.sleep(0.05)


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
    from lsld_engine.video_inputs import VideoInput
    from lsld_engine.parse import parse_videos
    from lsld_engine.writers import JsonlWriter

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
    assert a["events"] == b["events"] or all(len(a["events"][t]) == len(b["events"][t]) for t in a["events"])


def test_parts_of_several_videos_in_order_across_two_workers(long_video, clip, tmp_path):
    from lsld_engine.parse import parse_videos
    from lsld_engine.video_inputs import VideoInput
    from lsld_engine.writers import JsonlWriter

    second = make_video(tmp_path / "second.mp4", VideoSpec(duration=32.0))
    inputs = [VideoInput(str(long_video), "long"), VideoInput(str(clip), "clip"), VideoInput(str(second), "second")]
    out = tmp_path / "r.jsonl"
    with JsonlWriter(out) as w:
        s = parse_videos(inputs, ToyBackend(), w, workers=2, ordered=True, progress=False, decode_fn=parts_of(1))
    preds = read_predictions(out)
    assert list(preds) == ["long", "clip", "second"]  # --ordered: input order, each video once
    assert [preds[v]["segments"] for v in preds] == [50, 10, 40] and s.windows == 10 and s.done == 3


def slow_first_video(path, video_id, *, emit, **kw):
    """Streaming decoder that takes 2.5 s per part for the video ``slow`` (steady progress)."""
    from lsld_engine.media import decode_parts

    def paced(part):
        time.sleep(2.5)
        emit(part)
    return decode_parts(path, video_id, emit=paced if video_id == "slow" else emit, windows_per_part=1, **kw)


@pytest.mark.slow
def test_a_worker_waiting_for_its_turn_is_not_a_decode_timeout(long_video, tmp_path):
    """In input order, the parts of a second video wait while a slower first video decodes (10
    parts, 2.5 s each); its worker, blocked on the consumer for ~25 s, is not stuck: the 15-s
    --decode-timeout counts only decoding time. (The timeout also covers a worker's start-up, a
    few seconds on a loaded machine: hence the wide margins.)"""
    from lsld_engine.media.pool import DecodeFailure, decode_stream

    slow = make_video(tmp_path / "slow.mp4", VideoSpec(duration=100.0))
    items = [(str(slow), "slow"), (str(long_video), "fast")]
    got = list(decode_stream(items, workers=2, ordered=True, timeout=15.0, parts_ahead=1,
                             decode_fn=slow_first_video))
    assert not [x.error for x in got if isinstance(x, DecodeFailure)]
    windows = [(x.video_id, x.first_window + k) for x in got for k in range(x.num_windows)]
    assert windows == [("slow", w) for w in range(10)] + [("fast", w) for w in range(5)]  # in order, all there


def test_extract_writes_each_part_and_logs_the_video_after_its_last(long_video, tmp_path):
    from lsld_engine.extract import FeatureStore, extract_features
    from lsld_engine.video_inputs import VideoInput, read_records
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
    from lsld_engine.video_inputs import VideoInput
    from lsld_engine.parse import parse_videos
    from lsld_engine.writers import JsonlWriter

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


# --- 3. an --out that is not a predictions file --------------------------------------------------

@pytest.mark.parametrize("content", [
    b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 2000,                 # an MP4
    b"my notes, no final newline",                               # a text file without a final newline
    b"line one\nline two\n",                                     # a text file
    b'{"video_id": "a", "status": "ok"}\n[1, 2]\n{"video_id": "b", "sta',  # a bad line before a cut tail
], ids=["mp4", "text-no-newline", "text", "bad-line-then-cut-tail"])
@pytest.mark.parametrize("resume", [True, False], ids=["resume", "no-resume"])
def test_out_that_is_not_a_predictions_file_is_left_untouched(clip, tmp_path, toy, capsys, content, resume):
    out = tmp_path / "out.jsonl"
    out.write_bytes(content)
    code = parse(clip, out, *([] if resume else ["--no-resume"]))
    assert code == 2
    one_error_line(capsys.readouterr().err, str(out))
    assert out.read_bytes() == content
    assert not toy  # refused before any network was loaded


def test_a_csv_out_that_is_not_ours_is_left_untouched_and_ours_resumes(clip, tmp_path, toy, capsys):
    out = tmp_path / "events.csv"
    out.write_bytes(b"name,size\nfoo,1")
    assert parse(clip, out) == 2
    one_error_line(capsys.readouterr().err, str(out), "not an events CSV")
    assert out.read_bytes() == b"name,size\nfoo,1"
    out.unlink()
    assert parse(clip, out) == 0 and parse(clip, out) == 0  # written through the lock, then resumed
    assert out.read_text().count("clip,") >= 1 and out.read_text().splitlines()[0].startswith("video_id,status")
    assert "skipped 1 already done" in capsys.readouterr().err


def test_a_cut_last_line_is_repaired_only_after_the_whole_file_validated(clip, tmp_path, toy):
    out = tmp_path / "r.jsonl"
    assert parse(clip, out) == 0
    good = out.read_bytes()
    out.write_bytes(good + b'{"video_id": "other", "status": "o')  # a run killed mid-write
    assert parse(clip, out) == 0
    assert out.read_bytes() == good  # the cut line is gone, the video was already done
    # a complete record that only lacks its newline is kept, and the next line goes on a new line
    out.write_bytes(good.rstrip(b"\n"))
    copy(clip, tmp_path / "second.mp4")
    assert parse([clip, tmp_path / "second.mp4"], out) == 0
    assert sorted(read_predictions(out)) == ["clip", "second"]


# --- 4. one writer per output ----------------------------------------------------------------------

@pytest.mark.slow
def test_a_second_writer_is_refused_while_the_first_runs(clip, tmp_path):
    d = tmp_path / "archive"
    d.mkdir()
    for k in range(4):
        copy(clip, d / f"v{k}.mp4")
    out, gate = tmp_path / "r.jsonl", tmp_path / "gate"
    gate.touch()  # the first run holds in its encoder until the gate is removed
    first = toy_cli("parse", d, "--out", out, env={"LSLD_TOY_GATE": str(gate)})
    try:
        wait_for(lambda: out.exists() and locked(out))
        second = toy_cli("parse", d, "--out", out)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2
        one_error_line(err, str(out), "another process")
    finally:
        gate.unlink()
        _, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert sorted(read_predictions(out)) == [f"v{k}" for k in range(4)]  # each video once


@pytest.mark.slow
def test_two_writers_started_together_one_wins(clip, tmp_path):
    d = tmp_path / "archive"
    d.mkdir()
    for k in range(3):
        copy(clip, d / f"v{k}.mp4")
    out, gate = tmp_path / "r.jsonl", tmp_path / "gate"
    gate.touch()  # the winner holds in its encoder (and its lock) until the loser has been refused
    procs = [toy_cli("parse", d, "--out", out, env={"LSLD_TOY_GATE": str(gate)}) for _ in range(2)]
    try:
        wait_for(lambda: any(p.poll() is not None for p in procs))
    finally:
        gate.unlink()
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    one_error_line(next(err for code, err in results if code == 2), "another process")
    assert sorted(read_predictions(out)) == ["v0", "v1", "v2"]


def test_extract_root_is_locked(clip, tmp_path, toy, capsys):
    root = tmp_path / "root"
    root.mkdir()
    with OutputLock(root, folder=True):
        assert extract(clip, root) == 2
    one_error_line(capsys.readouterr().err, str(root), "another process")
    assert not toy
    assert extract(clip, root) == 0  # the lock goes with its holder


@pytest.mark.slow
def test_kill_9_mid_run_releases_the_lock_and_resume_is_exact(clip, tmp_path, toy):
    d = tmp_path / "archive"
    d.mkdir()
    for k in range(5):
        copy(clip, d / f"v{k}.mp4")
    out = tmp_path / "r.jsonl"
    p = toy_cli("parse", d, "--out", out, env={"LSLD_TOY_DELAY": "0.5"})
    wait_for(lambda: out.exists() and out.read_bytes().count(b"\n") >= 1)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    assert out.read_bytes().count(b"\n") < 5  # killed mid-run
    assert parse(d, out) == 0
    assert sorted(read_predictions(out)) == [f"v{k}" for k in range(5)]


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


# --- 6. outputs that cannot be written ------------------------------------------------------------

def test_unwritable_outputs_are_refused_before_networks_load(clip, tmp_path, toy, capsys):
    assert parse(clip, "/dev/full") == 2
    one_error_line(capsys.readouterr().err, "/dev/full", "not a regular file")
    assert parse(clip, tmp_path) == 2  # a folder
    one_error_line(capsys.readouterr().err, "folder")
    root = tmp_path / "root"
    (root / "feats").mkdir(parents=True)
    os.symlink("/dev/full", root / "feats" / "extract_log.jsonl")  # the log on a full device
    assert extract(clip, root) == 2
    one_error_line(capsys.readouterr().err, "extract_log.jsonl", "not a regular file")
    assert not toy


class _FillsUp(io.TextIOBase):
    """A text stream that takes ``room`` writes, then fails like a full disk."""

    def __init__(self, inner, room: int):
        self.inner, self.room = inner, room

    def write(self, s):
        if self.room <= 0:
            self.inner.write(s[: len(s) // 2])  # a partial line reaches the disk, as with a real ENOSPC
            self.inner.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= 1
        return self.inner.write(s)

    def flush(self):
        self.inner.flush()


def test_disk_full_mid_parse_says_what_was_written_and_resumes(clip, tmp_path, toy, monkeypatch, capsys):
    d = tmp_path / "archive"
    d.mkdir()
    for k in range(3):
        copy(clip, d / f"v{k}.mp4")
    out = tmp_path / "r.jsonl"
    real = OutputLock.text
    monkeypatch.setattr(OutputLock, "text", lambda self: _FillsUp(real(self), room=1))
    assert parse(d, out) == 2
    line = one_error_line(capsys.readouterr().err, str(out), "No space left", "after writing 1 lines",
                          "run the same command again to resume")
    assert "Traceback" not in line
    monkeypatch.setattr(OutputLock, "text", real)
    assert parse(d, out) == 0  # the cut line is dropped, the rest is redone
    assert sorted(read_predictions(out)) == ["v0", "v1", "v2"]


def test_disk_full_mid_extract_stops_cleanly_and_resumes(clip, tmp_path, toy, monkeypatch, capsys):
    import lsld_engine.extract as ex

    d = tmp_path / "archive"
    d.mkdir()
    for k in range(3):
        copy(clip, d / f"v{k}.mp4")
    root = tmp_path / "root"
    real, calls = ex.save_atomic, []

    def full(path, array):
        calls.append(path)
        if len(calls) > 2:  # the second video's first file hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, array)
    monkeypatch.setattr(ex, "save_atomic", full)
    assert extract(d, root) == 2
    one_error_line(capsys.readouterr().err, "No space left", "after 1 videos", "run the same command again")
    assert not list(root.rglob(".*tmp*"))
    monkeypatch.setattr(ex, "save_atomic", real)
    capsys.readouterr()
    assert extract(d, root) == 0
    assert "skipped 1 already done" in capsys.readouterr().err


# --- 7. malformed and hostile files ------------------------------------------------------------------

HOSTILE_LINES = {
    "5000-digit-int": '{"video_id": "a", "status": "ok", "segments": ' + "9" * 5000 + "}",
    "400-digit-float": '{"video_id": "a", "status": "ok", "duration": 1' + "0" * 400 + ".5}",
    "deep-nesting": '{"video_id": "a", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "nan": '{"video_id": "a", "status": "ok", "duration": NaN}',
    "video-id-list": '{"video_id": ["a", "b"], "status": "ok"}',
    "video-id-number": '{"video_id": 7, "status": "ok"}',
    "not-an-object": '[1, 2, 3]',
}


@pytest.mark.parametrize("name", list(HOSTILE_LINES))
def test_hostile_lines_in_a_resumed_out_are_one_line_errors(name, clip, tmp_path, toy, capsys):
    out = tmp_path / "r.jsonl"
    content = ('{"video_id": "ok0", "status": "error", "error": "x"}\n' + HOSTILE_LINES[name] + "\n").encode()
    out.write_bytes(content)
    assert parse(clip, out) == 2
    one_error_line(capsys.readouterr().err, f"{out}:2")
    assert out.read_bytes() == content


@pytest.mark.parametrize("name", list(HOSTILE_LINES))
def test_hostile_lines_in_eval_are_one_line_errors(name, world, tmp_path, capsys):
    pred = tmp_path / "p.jsonl"
    pred.write_text('{"video_id": "ok0", "status": "error", "error": "x"}\n' + HOSTILE_LINES[name] + "\n")
    assert main(["eval", "--pred", str(pred), "--annotations", str(world)]) == 2
    one_error_line(capsys.readouterr().err, f"{pred}:2")


def test_hostile_checkpoint_metadata_is_a_one_line_error(tmp_path):
    import torch
    from safetensors.torch import save_file

    from lsld_engine.checkpoint import CheckpointError, read_han_file

    for bad in ("[" * 100_000 + "]" * 100_000, "1" * 5000, "[1, 2]"):
        path = tmp_path / "han.safetensors"
        save_file({"w": torch.zeros(2)}, str(path), metadata={"han_config": bad})
        with pytest.raises(CheckpointError, match=str(path)):
            read_han_file(path)


def _object_npz(path: Path, ids) -> Path:
    arrays = {"video_ids": np.asarray(ids), "audio": np.empty(len(ids), dtype=object)}
    np.savez(path, **arrays)  # saving object arrays pickles them; loading must refuse
    return path


def test_labels_npz_with_object_arrays_is_refused_in_train_and_quality(world, tmp_path, capsys):
    from lsld_engine.dataset import dataset_paths, load_split_labels
    from train import lsld

    ids = load_split_labels(dataset_paths(world), "train").video_ids
    bad = _object_npz(tmp_path / "labels.npz", ids)
    code = lsld.main(["train", "--data", str(world), "--run-dir", str(tmp_path / "run"), "--labels-file", str(bad),
                      "--epochs", "1", "--no-progress"])
    assert code == 2
    one_error_line(capsys.readouterr().err, str(bad), "object array")
    assert main(["synth", "quality", "--data", str(world), "--labels", str(bad)]) == 2
    one_error_line(capsys.readouterr().err, str(bad), "object array")
    ids_obj = tmp_path / "ids.npz"
    np.savez(ids_obj, video_ids=np.asarray(list(ids), dtype=object))
    assert main(["synth", "quality", "--data", str(world), "--labels", str(ids_obj)]) == 2
    one_error_line(capsys.readouterr().err, str(ids_obj))


# --- 8. events past the clip --------------------------------------------------------------------------

def test_eval_warns_about_events_past_the_clip_and_strict_refuses(world, tmp_path, capsys):
    from lsld_engine.llp import load_split

    split = load_split(world, "test")
    recs = [{"video_id": v, "status": "ok", "duration": 10.0, "segments": 10,
             "events": {"audio": [], "visual": [], "audio_visual": []}} for v in split.video_ids]
    recs[1]["events"]["audio"] = [{"label": "Speech", "onset": 50, "offset": 60}]
    recs[3]["events"]["visual"] = [{"label": "Dog", "onset": 2, "offset": 1e6}]
    pred = tmp_path / "p.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in recs))
    base = ["eval", "--pred", str(pred), "--annotations", str(world), "--json"]
    assert main(base) == 0
    cap = capsys.readouterr()
    warnings = [x for x in cap.err.splitlines() if "warning:" in x]
    assert len(warnings) == 2
    assert f"{pred}:2:" in warnings[0] and "50-60" in warnings[0]
    assert f"{pred}:4:" in warnings[1] and "1e+06" in warnings[1]
    json.loads(cap.out)  # still scored
    assert main(base + ["--strict"]) == 2
    assert "--strict" in capsys.readouterr().err


# --- 9. what a folder walk skips -------------------------------------------------------------------------

def test_walk_skips_are_counted_and_listed_with_verbose(clip, tmp_path, toy, capsys):
    d = tmp_path / "archive"
    (d / "sub").mkdir(parents=True)
    copy(clip, d / "good.mp4")
    copy(clip, d / ".hidden.mp4")
    (d / "notes.txt").write_text("x")
    (d / "folder.mp4").mkdir()
    os.symlink(d / "sub" / "loop.mp4", d / "sub" / "loop.mp4")  # a link to itself: a loop
    os.symlink(d / "gone.mp4", d / "dangling.mp4")
    os.symlink(d, d / "sub" / "up")  # a symlinked folder pointing up: not walked
    out = tmp_path / "r.jsonl"
    assert parse(d, out) == 0
    err = capsys.readouterr().err
    assert list(read_predictions(out)) == ["good"]
    summary = next(x for x in err.splitlines() if x.startswith("walk skipped"))
    for part in ("1 dangling symlink", "1 symlink loop", "1 folder named like a video",
                 "1 symlinked folder", "1 hidden", "1 without a video extension"):
        assert part in summary, summary
    assert "--verbose" in summary and "skipped: " not in err
    out.unlink()
    assert parse(d, out, "--verbose") == 0
    listed = [x for x in capsys.readouterr().err.splitlines() if x.strip().startswith("skipped: ")]
    assert len(listed) == 4 and any("dangling.mp4 (dangling symlink)" in x for x in listed)


# --- portability -----------------------------------------------------------------------------------------

def test_bf16_only_with_native_cpu_support(monkeypatch, caplog):
    from lsld_engine import hardware
    from lsld_engine.training import TrainConfig

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
