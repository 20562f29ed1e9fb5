"""Thresholds and in-memory arrays are checked where they enter: the CLI, the API, the Ray driver."""
from __future__ import annotations

import math

import numpy as np
import pytest

import lsld_engine
from lsld_engine.cli import main
from lsld_engine.errors import LsldError
from lsld_engine.records.events import ThresholdError, check_threshold, predict_masks


@pytest.mark.parametrize("value", ["7", "50", "nan", "-0.1", "1.0001", "inf", "half"])
def test_the_cli_refuses_a_threshold_outside_0_1_in_one_line(value, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    for flag in ("--seg-threshold", "--video-threshold"):
        with pytest.raises(SystemExit) as e:
            main(["parse", str(tmp_path), "--out", str(out), "--random-weights", flag, value])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert f"argument {flag}:" in err[-1] and "[0, 1]" in err[-1] and "Traceback" not in "\n".join(err)
    assert not out.exists()


def test_a_percentage_gets_a_hint():
    with pytest.raises(ThresholdError, match=r"got 50.*a percentage\? use 0.5"):
        check_threshold("--seg-threshold", 50)


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 1, "1.0", "0"])
def test_the_closed_unit_interval_is_accepted(value):
    assert check_threshold("t", value) == float(value)


@pytest.mark.parametrize("kw", ["seg_threshold", "video_threshold"])
@pytest.mark.parametrize("value", [7, math.nan, -1e-9, 1.5])
def test_the_api_refuses_bad_thresholds_before_loading_anything(kw, value):
    with pytest.raises(LsldError, match=f"{kw} must be a probability in \\[0, 1\\]"):
        lsld_engine.load_engine(random_weights=True, small=True, **{kw: value})


def test_the_inference_rule_and_its_thresholds_refuse_bad_values():
    from lsld_engine.parsing.parse import Thresholds

    with pytest.raises(ThresholdError):
        Thresholds(0.5, 7)
    seg, a = np.full((1, 10, 2, 3), 0.6, np.float32), np.full((1, 3), 0.6, np.float32)
    with pytest.raises(ThresholdError, match="seg_threshold"):
        predict_masks(seg, a, a, seg_threshold=float("nan"))
    pa, pv = predict_masks(seg, a, a, seg_threshold=0.6, video_threshold=0.6)   # >=: inclusive
    assert pa.all() and pv.all()


def test_the_ray_driver_refuses_bad_thresholds_before_any_actor():
    pytest.importorskip("ray")
    from lsld_engine.scale.engine import run_parse

    with pytest.raises(ThresholdError, match="video_threshold"):
        run_parse([], None, "torch", {}, None, video_threshold=float("nan"))


@pytest.fixture(scope="module")
def engine():
    with lsld_engine.load_engine(random_weights=True, small=True, workers=0, backend="torch") as e:
        yield e


def test_events_refuse_nan_or_inf_audio_naming_the_first_bad_window(engine):
    frames = np.zeros((2, 80, 224, 224, 3), np.uint8)
    audio = np.zeros((2, 10, 48000), np.float32)
    audio[1, 3, 100] = np.nan
    audio[1, 7, 5] = np.inf
    with pytest.raises(LsldError) as e:
        engine.events(frames, audio)
    msg = str(e.value)
    assert msg.startswith("audio: NaN or inf") and "2 segment(s)" in msg and "window 1 segment 3 (13-14 s)" in msg
    with pytest.raises(LsldError, match="audio: NaN or inf .* window 0 segment 0"):
        engine.events(frames[0], np.full(480000, -np.inf, np.float32))


def test_events_refuse_float_frames_saying_they_hold_nan(engine):
    frames = np.zeros((2, 80, 224, 224, 3), np.float32)
    frames[1, 0, 0, 0, 0] = np.nan
    with pytest.raises(LsldError, match=r"frames: expected \(W, 80, 224, 224, 3\) uint8 .*NaN / inf, first in window 1"):
        engine.events(frames, np.zeros((2, 10, 48000), np.float32))


def test_one_window_without_the_window_axis_equals_the_window_axis(engine):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (80, 224, 224, 3), dtype=np.uint8)
    audio = (rng.standard_normal((10, 48000)) * 0.1).astype(np.float32)
    a = engine.events(frames, audio)
    b = engine.events(frames[None], audio[None])
    assert a["events"] == b["events"] and a["duration"] == b["duration"] == 10.0
