"""``lsld-engine eval`` end to end: in-process through ``cli.main`` and as the installed console script."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lsld_engine.cli import main
from lsld_engine.records.events import track_events
from lsld_engine.data.llp import CLASSES, load_split
from lsld_engine.evaluation.metrics import METRIC_KEYS, evaluate
from lsld_engine.records.writers import error_record, get_writer, ok_record


def _write_annotations(d: Path, n: int = 12, seed: int = 0) -> Path:
    """A small annotation folder in the official format (test split only)."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    ids = [f"vid{i:03d}_0_10" for i in range(n)]
    weak, audio, visual = ["filename\tevent_labels"], ["filename\tonset\toffset\tevent_labels"], \
        ["filename\tonset\toffset\tevent_labels"]
    for v in ids:
        classes = rng.choice(len(CLASSES), size=rng.integers(1, 4), replace=False)
        weak.append(f"{v}\t{','.join(CLASSES[c] for c in classes)}")
        for c in classes:
            for rows in (audio, visual):
                if rng.random() < 0.8:
                    on = int(rng.integers(0, 9))
                    rows.append(f"{v}\t{on}\t{int(rng.integers(on + 1, 11))}\t{CLASSES[c]}")
    (d / "AVVP_test_pd.csv").write_text("\n".join(weak) + "\n", encoding="utf-8")
    (d / "AVVP_eval_audio.csv").write_text("\n".join(audio) + "\n", encoding="utf-8")
    (d / "AVVP_eval_visual.csv").write_text("\n".join(visual) + "\n", encoding="utf-8")
    return d


def _perturb(gt, rng):
    return gt ^ (rng.random(gt.shape) < 0.05).astype(np.uint8)


def _write_predictions(path, ids, pred_a, pred_v, skip=(), errors=()):
    with get_writer("jsonl", path) as w:
        for i, v in enumerate(ids):
            if v in skip:
                continue
            if v in errors:
                w.write(error_record(v, "decode failed"))
            else:
                w.write(ok_record(v, track_events(pred_a[i], pred_v[i]), 10.0, 10))
    return path


@pytest.fixture()
def world(tmp_path):
    ann = _write_annotations(tmp_path / "ann")
    split = load_split(ann, "test")
    rng = np.random.default_rng(1)
    pa, pv = _perturb(split.gt_audio, rng), _perturb(split.gt_visual, rng)
    return ann, split, pa, pv


def _run_json(capsys, *args):
    rc = main(["eval", *map(str, args), "--json"])
    out = capsys.readouterr()
    return rc, out


def test_json_output_equals_evaluate(world, tmp_path, capsys):
    ann, split, pa, pv = world
    pred = _write_predictions(tmp_path / "p.jsonl", split.video_ids, pa, pv)
    rc, out = _run_json(capsys, "--pred", pred, "--annotations", ann, "--split", "test")
    assert rc == 0
    got = json.loads(out.out)
    assert list(got) == list(METRIC_KEYS)
    want = evaluate(pa, pv, split.gt_audio, split.gt_visual)
    for k in METRIC_KEYS:
        assert got[k] == pytest.approx(want[k], abs=1e-12)
    assert 0 < got["seg_a"] < 100


def test_table_output(world, tmp_path, capsys):
    ann, split, pa, pv = world
    pred = _write_predictions(tmp_path / "p.jsonl", split.video_ids, split.gt_audio, split.gt_visual)
    assert main(["eval", "--pred", str(pred), "--annotations", str(ann)]) == 0
    out = capsys.readouterr().out.splitlines()
    seg = next(ln for ln in out if ln.startswith("Segment-level"))
    evt = next(ln for ln in out if ln.startswith("Event-level"))
    assert seg.split()[1:] == ["100.00"] * 5 and evt.split()[1:] == ["100.00"] * 5


def test_missing_and_error_videos_are_an_error_listing_them(world, tmp_path, capsys):
    ann, split, pa, pv = world
    missing, failed = split.video_ids[2], split.video_ids[5]
    pred = _write_predictions(tmp_path / "p.jsonl", split.video_ids, pa, pv, skip={missing}, errors={failed})
    rc, out = _run_json(capsys, "--pred", pred, "--annotations", ann)
    assert rc == 2 and out.out == ""
    assert missing in out.err and failed in out.err and "--allow-missing" in out.err
    assert "no prediction line (1)" in out.err and "error line (1)" in out.err
    assert str(ann) in out.err  # which annotations were used (the default may be implicit)
    assert "another dataset" not in out.err


def test_predictions_for_another_dataset_say_so(world, tmp_path, capsys):
    ann, split, pa, pv = world
    other = [f"other_{i}" for i in range(len(split))]
    pred = _write_predictions(tmp_path / "p.jsonl", other, pa, pv)
    rc, out = _run_json(capsys, "--pred", pred, "--annotations", ann)
    assert rc == 2 and "none of its" in out.err and "--annotations" in out.err


def test_allow_missing_scores_them_as_empty(world, tmp_path, capsys):
    ann, split, pa, pv = world
    missing, failed = split.video_ids[2], split.video_ids[5]
    pred = _write_predictions(tmp_path / "p.jsonl", split.video_ids, pa, pv, skip={missing}, errors={failed})
    rc, out = _run_json(capsys, "--pred", pred, "--annotations", ann, "--allow-missing")
    assert rc == 0
    ea, ev = pa.copy(), pv.copy()
    ea[[2, 5]] = 0
    ev[[2, 5]] = 0
    want = evaluate(ea, ev, split.gt_audio, split.gt_visual)
    got = json.loads(out.out)
    assert all(got[k] == pytest.approx(want[k], abs=1e-12) for k in METRIC_KEYS)
    assert got != evaluate(pa, pv, split.gt_audio, split.gt_visual)


def test_malformed_line_names_line_number(world, tmp_path, capsys):
    ann, split, pa, pv = world
    pred = _write_predictions(tmp_path / "p.jsonl", split.video_ids, pa, pv)
    lines = pred.read_text().splitlines()
    lines[2] = lines[2][:-5]  # truncated JSON on line 3
    pred.write_text("\n".join(lines) + "\n")
    rc, out = _run_json(capsys, "--pred", pred, "--annotations", ann)
    assert rc == 2 and f"{pred}:3: not valid JSON" in out.err


def test_missing_annotations_says_to_pass_them(tmp_path, capsys, monkeypatch):
    import lsld_engine.commands.eval as ev
    monkeypatch.setattr(ev, "default_llp_dir", lambda: None)
    (tmp_path / "p.jsonl").write_text("")
    assert main(["eval", "--pred", str(tmp_path / "p.jsonl")]) == 2
    assert "--annotations" in capsys.readouterr().err
    assert main(["eval", "--pred", str(tmp_path / "p.jsonl"), "--annotations", str(tmp_path / "none")]) == 2
    assert "AVVP_test_pd.csv" in capsys.readouterr().err


def test_extra_videos_are_ignored(world, tmp_path, capsys):
    ann, split, pa, pv = world
    pred = _write_predictions(tmp_path / "p.jsonl", split.video_ids, pa, pv)
    with open(pred, "a") as f:
        f.write(json.dumps(ok_record("someone_else", {}, 10.0, 10)) + "\n")
    rc, out = _run_json(capsys, "--pred", pred, "--annotations", ann)
    assert rc == 0 and "ignoring 1 predictions" in out.err


def _console_script():
    exe = Path(sys.executable).parent / "lsld-engine"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "lsld_engine.cli"]


def test_console_script_subprocess(world, tmp_path):
    ann, split, pa, pv = world
    pred = _write_predictions(tmp_path / "p.jsonl", split.video_ids, pa, pv)
    cmd = _console_script() + ["eval", "--pred", str(pred), "--annotations", str(ann), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    want = evaluate(pa, pv, split.gt_audio, split.gt_visual)
    assert all(got[k] == pytest.approx(want[k], abs=1e-12) for k in METRIC_KEYS)
    r = subprocess.run(_console_script() + ["eval", "--pred", str(tmp_path / "absent.jsonl"), "--annotations",
                                             str(ann)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "absent.jsonl" in r.stderr


def test_real_test_split_end_to_end(llp_dir, tmp_path, capsys):
    split = load_split(llp_dir, "test")
    rng = np.random.default_rng(2)
    pa, pv = _perturb(split.gt_audio, rng), np.roll(split.gt_visual, 1, axis=1)
    pred = _write_predictions(tmp_path / "p.jsonl", split.video_ids, pa, pv)
    rc, out = _run_json(capsys, "--pred", pred, "--annotations", llp_dir, "--split", "test")
    assert rc == 0
    got = json.loads(out.out)
    want = evaluate(pa, pv, split.gt_audio, split.gt_visual)
    assert all(got[k] == pytest.approx(want[k], abs=1e-12) for k in METRIC_KEYS)
