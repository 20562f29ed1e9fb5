"""Hostile outputs and files: an --out that is not ours, one writer per output (a second process,
kill -9), outputs that cannot be written, a full disk, malformed and hostile files, events past
the clip. Inputs: test_hardening.py.

Every case runs on generated media, with the toy backend (cheap encoders, a small random HAN), in
this process or through ``python -m lsld_engine.testing.toy_cli``.
"""
from __future__ import annotations

import errno
import io
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from lsld_engine.cli import main
from lsld_engine.records.outputs import OutputLock
from lsld_engine.records.writers import read_predictions

# the shared fixtures (toy, clip, world) are used by name
from hardening_helpers import (archive_of, assert_records_equal, clip, copy, distinct_archive, extract,  # noqa: F401
                               locked, one_error_line, parse, toy, toy_cli, wait_for, world)


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
    d = archive_of(clip, tmp_path / "archive", 4)
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
    d = archive_of(clip, tmp_path / "archive", 3)
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
def test_kill_9_mid_run_releases_the_lock_and_resume_is_exact(tmp_path, toy):
    d = distinct_archive(tmp_path / "archive", 5)
    out, ref = tmp_path / "r.jsonl", tmp_path / "uninterrupted.jsonl"
    p = toy_cli("parse", d, "--out", out, "--save-probs", env={"LSLD_TOY_DELAY": "0.5"})
    wait_for(lambda: out.exists() and out.read_bytes().count(b"\n") >= 1)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    assert out.read_bytes().count(b"\n") < 5  # killed mid-run
    assert parse(d, out, "--save-probs") == 0
    assert parse(d, ref, "--save-probs") == 0
    got, want = read_predictions(out), read_predictions(ref)
    assert sorted(got) == [f"v{k}" for k in range(5)]
    # every record is the uninterrupted run's, field by field (probabilities to float noise)
    for vid in want:
        assert_records_equal(got[vid], want[vid], where=vid)
    # and the videos' records differ from each other, so a record under the wrong id would show
    keys = [json.dumps([r["duration"], r["events"]], sort_keys=True) for r in want.values()]
    assert len(set(keys)) == len(keys)


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
    d = archive_of(clip, tmp_path / "archive", 3)
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
    import lsld_engine.parsing.extract as ex

    d = archive_of(clip, tmp_path / "archive", 3)
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

    from lsld_engine.han.checkpoint import CheckpointError, read_han_file

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
    from lsld_engine.data.dataset import dataset_paths, load_split_labels
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
    from lsld_engine.data.llp import load_split

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


def test_eval_names_file_and_line_of_events_past_the_clip_in_any_jsonl(world, tmp_path, capsys):
    """The README promises `file:line`: also for a JSONL file named otherwise and for a results folder's shards."""
    from lsld_engine.data.llp import load_split

    split = load_split(world, "test")
    recs = [{"video_id": v, "status": "ok", "duration": 10.0, "segments": 10,
             "events": {"audio": [], "visual": [], "audio_visual": []}} for v in split.video_ids]
    recs[2]["events"]["audio"] = [{"label": "Speech", "onset": 50, "offset": 60}]
    text = [json.dumps(r) + "\n" for r in recs]
    named = tmp_path / "predictions.json"
    named.write_text("".join(text))
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "part-a-0.jsonl").write_text("".join(text[:2]))
    (folder / "part-a-1.jsonl").write_text("".join(text[2:]))
    for pred, where in ((named, f"{named}:3:"), (folder, f"{folder / 'part-a-1.jsonl'}:1:")):
        assert main(["eval", "--pred", str(pred), "--annotations", str(world), "--json"]) == 0
        warnings = [x for x in capsys.readouterr().err.splitlines() if "warning:" in x]
        assert len(warnings) == 1 and where in warnings[0] and "50-60" in warnings[0], (where, warnings)
