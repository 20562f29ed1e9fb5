"""The Python API (lsld_engine.api): the same records as the CLI, events for arrays in memory, LsldErrors."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lsld_engine
from lsld_engine.cli import main
from lsld_engine.errors import LsldError
from lsld_engine.media import decode_video
from lsld_engine.records.readers import read_predictions
from lsld_engine.testing.videos import VideoSpec, make_video

ROOT = Path(__file__).resolve().parents[1]
PROB_TOL = 2e-3  # probabilities compared across different encoder batches (BLAS order), rounded to 1e-4
CLIPS = {"tone": VideoSpec(duration=3.0, freq=440.0),
         "chirp": VideoSpec(duration=4.0, freq=1500.0, amps=(0.1, 0.1), pattern="texture")}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("api_videos")
    for name, spec in CLIPS.items():
        make_video(d / f"{name}.mp4", spec)
    (d / "garbage.mp4").write_bytes(b"\x00not a video" * 100)
    return d


@pytest.fixture(scope="module")
def engine():
    with lsld_engine.load_engine(random_weights=True, small=True, workers=0, save_probs=True) as e:
        yield e


def _plain(record: dict) -> dict:
    """A record as its JSONL line reads back."""
    return json.loads(json.dumps(record))


def _same_record(a: dict, b: dict, exact_probs: bool) -> None:
    a, b = dict(a), dict(b)
    pa, pb = a.pop("probs", None), b.pop("probs", None)
    wa, wb = a.pop("window_probs", None), b.pop("window_probs", None)
    if not exact_probs:  # events exactly, each score within the tolerance
        for track in ("audio", "visual", "audio_visual"):
            for ea, eb in zip(a["events"][track], b["events"][track]):
                assert abs(ea.pop("score") - eb.pop("score")) < PROB_TOL
    assert a == b
    for x, y in ((pa, pb), (wa, wb)):
        assert (x is None) == (y is None)
        if x is not None:
            for track in ("audio", "visual"):
                assert np.asarray(x[track]).shape == np.asarray(y[track]).shape
                if exact_probs:
                    assert x[track] == y[track]
                else:
                    np.testing.assert_allclose(x[track], y[track], atol=PROB_TOL)


def test_parse_records_equal_the_lines_the_cli_writes(engine, videos, tmp_path):
    out = tmp_path / "cli.jsonl"
    rc = main(["parse", str(videos), "--out", str(out), "--random-weights", "--small", "--workers", "0",
               "--save-probs", "--quiet"])
    assert rc == 1  # the garbage file failed
    cli = read_predictions(out)
    records = engine.parse(videos)
    assert not isinstance(records, (list, tuple))  # an iterator: a caller can stream
    api = {r["video_id"]: _plain(r) for r in records}
    assert sorted(api) == sorted(cli) == ["chirp", "garbage", "tone"]
    assert api["garbage"]["status"] == "error" and api["garbage"] == cli["garbage"]
    for vid in CLIPS:
        assert api[vid]["status"] == "ok" and api[vid]["probs"]
        _same_record(api[vid], cli[vid], exact_probs=True)  # same batches, same process: the same numbers


def test_events_of_arrays_in_memory_equal_parse_of_the_file(engine, videos):
    path = videos / "chirp.mp4"
    (parsed,) = engine.parse([path])
    dv = decode_video(str(path))
    assert dv.frames.shape == (1, 80, 224, 224, 3) and dv.audio.shape == (1, 10, 48000)
    rec = engine.events(dv.frames, dv.audio, duration=dv.duration, has_audio=dv.has_audio, video_id="chirp",
                        path=str(path))
    _same_record(_plain(rec), _plain(parsed), exact_probs=False)
    # one window given without its window axis, audio flat: the same record
    flat = engine.events(dv.frames[0], dv.audio.reshape(-1), duration=dv.duration, video_id="chirp", path=str(path))
    _same_record(_plain(flat), _plain(rec), exact_probs=True)
    # a different video's arrays give different probabilities (the record follows the arrays)
    other = engine.events(np.zeros_like(dv.frames), np.zeros_like(dv.audio), duration=dv.duration)
    assert not np.allclose(other["probs"]["visual"], rec["probs"]["visual"], atol=PROB_TOL)


def test_bad_input_is_an_lsld_error(engine, videos, tmp_path):
    frames = np.zeros((1, 80, 224, 224, 3), np.uint8)
    audio = np.zeros((1, 10, 48000), np.float32)
    with pytest.raises(LsldError, match="frames: expected"):
        engine.events(frames.astype(np.float32), audio)
    with pytest.raises(LsldError, match="frames: expected"):
        engine.events(frames[:, :40], audio)
    with pytest.raises(LsldError, match="audio: expected"):
        engine.events(frames, audio[:, :5])
    with pytest.raises(LsldError, match="not found"):
        list(engine.parse([tmp_path / "missing.mp4"]))
    with pytest.raises(LsldError, match="unknown engine options: seg_treshold"):
        lsld_engine.load_engine(random_weights=True, small=True, seg_treshold=0.3)
    with pytest.raises(LsldError, match="--clip-checkpoint .*: not given"):
        lsld_engine.load_engine()  # no weights and no random_weights: nothing is downloaded
    with pytest.raises(LsldError, match="--backend onnx needs --engine-dir"):
        lsld_engine.load_engine(random_weights=True, backend="onnx")


def test_the_engine_closes_its_backend():
    with lsld_engine.load_engine(random_weights=True, small=True, networks=("han",)) as e:
        backend = e.backend
        closed = []
        real = backend.close
        backend.close = lambda: (closed.append(True), real())
    assert closed == [True] and e.backend is None


def test_import_lsld_engine_stays_light():
    code = ("import sys, lsld_engine; assert callable(lsld_engine.load_engine); "
            "print(sorted(m for m in ('torch', 'av', 'open_clip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _readme_python_api_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _readme_example(workers: int) -> str:
    """The README's first Python API block, with ``workers`` decode processes (else as written)."""
    code = _readme_python_api_block()
    call = "load_engine(random_weights=True, small=True"
    assert code.count(call) == 1, "the README example no longer loads the engine the way this test expects"
    return code.replace(call, f"{call}, workers={workers}")


def _ran_ok(stdout: str, stderr: str) -> None:
    assert "clip status ok" in stdout, (stdout, stderr[-3000:])
    assert "failed" not in stdout and "decoder worker" not in stderr, (stdout, stderr[-3000:])


@pytest.mark.parametrize("how", ["script", pytest.param("-c", marks=pytest.mark.slow),
                                 pytest.param("stdin", marks=pytest.mark.slow)])
def test_the_readme_python_api_example_runs_as_written(tmp_path, how):
    """The README's first Python API code block, run from the repository root as a user would: saved
    as a script (no ``if __name__ == "__main__":`` guard), with ``python -c`` or piped to ``python -``;
    with 2 decode worker processes (multiprocessing's spawn re-ran the script in each, which died)."""
    code = _readme_example(workers=2)
    script = tmp_path / "example.py"
    script.write_text(code)
    args = {"script": [str(script)], "-c": ["-c", code], "stdin": ["-"]}[how]
    out = subprocess.run([sys.executable, *args], input=code if how == "stdin" else None, capture_output=True,
                         text=True, cwd=ROOT, timeout=600,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-3000:]
    _ran_ok(out.stdout, out.stderr)


@pytest.mark.parametrize("in_thread", [False, True], ids=["main-thread", "thread"])
def test_the_readme_example_runs_where_main_has_no_file(tmp_path, monkeypatch, capsys, in_thread):
    """A notebook stand-in: the example exec()'d in this running interpreter as the code of a
    ``__main__`` without ``__file__`` or ``__spec__`` (a cell), with 2 decode workers; also from a thread."""
    import tempfile
    import threading
    import types

    main_module = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main_module)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = compile(_readme_example(workers=2), "<cell>", "exec")
    errors = []

    def run() -> None:
        try:
            exec(code, main_module.__dict__)
        except BaseException as e:  # noqa: BLE001  (shown by the assert below)
            errors.append(e)

    if in_thread:
        t = threading.Thread(target=run)
        t.start()
        t.join(600)
        assert not t.is_alive()
    else:
        run()
    assert not errors, errors
    _ran_ok(capsys.readouterr().out, "")


def test_decode_workers_that_cannot_start_are_one_engine_error_and_no_records(engine, videos, monkeypatch, caplog):
    """Not a video's fault: one EngineError naming the cause, no error record (the garbage file is not
    reached either), no "failed:" line for a video."""
    from dataclasses import replace

    from lsld_engine.api import Engine, EngineOptions
    from lsld_engine.errors import EngineError
    from lsld_engine.testing.faults import FailsToStart

    monkeypatch.setattr(EngineOptions, "decode_fn", lambda self, whole=False: FailsToStart(exit_code=3))
    two_workers = Engine(engine.backend, replace(engine.options, workers=2), engine.device)  # shares the backend
    records = []
    with pytest.raises(EngineError, match="decoder worker could not start: its process exited with code 3"):
        for record in two_workers.parse(videos):
            records.append(record)
    assert records == []
    assert issubclass(EngineError, LsldError) and lsld_engine.api.EngineError is EngineError
    assert not [r for r in caplog.records if "failed:" in r.getMessage()]
