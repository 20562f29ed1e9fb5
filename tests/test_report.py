"""``lsld-engine eval --per-class`` and ``--report``: numbers, page content, and the page in real headless Chromium."""
import json
import re

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the report needs matplotlib (the [plot] extra)")

from lsld_engine.evaluation.class_metrics import class_counts, per_class_f1  # noqa: E402
from lsld_engine.cli import main  # noqa: E402
from lsld_engine.records.events import track_events  # noqa: E402
from lsld_engine.data.llp import CLASSES, load_split  # noqa: E402
from lsld_engine.evaluation.metrics import METRIC_KEYS, evaluate  # noqa: E402
from lsld_engine.testing.browser import find_chromium, open_page  # noqa: E402
from lsld_engine.records.writers import get_writer, ok_record  # noqa: E402


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A small synthetic world, its DeN labels, and predictions = perturbed test truth (with scores)."""
    from lsld_engine.synthetic import synth
    from train.lsld import stage_denoise

    root = tmp_path_factory.mktemp("world")
    synth.make_world(root, n_train=48, n_val=16, n_test=24, seed=7, llp_dir=None, progress=False)
    labels = root / "labels.npz"
    assert stage_denoise(root, labels) == 0
    split = load_split(root, "test")
    rng = np.random.default_rng(0)
    pa = split.gt_audio ^ (rng.random(split.gt_audio.shape) < 0.04).astype(np.uint8)
    pv = split.gt_visual ^ (rng.random(split.gt_visual.shape) < 0.04).astype(np.uint8)
    pred = root / "results.jsonl"
    with get_writer("jsonl", pred) as w:
        for i, v in enumerate(split.video_ids):
            probs_a = np.where(pa[i], rng.uniform(0.5, 1, pa[i].shape), 0.1)
            probs_v = np.where(pv[i], rng.uniform(0.5, 1, pv[i].shape), 0.1)
            w.write(ok_record(v, track_events(pa[i], pv[i], probs_a, probs_v), 10.0, 10))
    return root, labels, split, pa, pv, pred


def test_per_class_table_and_json(scored, capsys):
    root, _, split, pa, pv, pred = scored
    assert main(["eval", "--pred", str(pred), "--annotations", str(root), "--per-class"]) == 0
    out = capsys.readouterr().out
    assert "Segment-level" in out and "F1 per class" in out
    assert sum(1 for line in out.splitlines() if line.split() and line.split()[0] in CLASSES) == 25

    assert main(["eval", "--pred", str(pred), "--annotations", str(root), "--per-class", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = evaluate(pa, pv, split.gt_audio, split.gt_visual)
    assert {k: got[k] for k in METRIC_KEYS} == pytest.approx(want)
    f1 = per_class_f1(class_counts(pa, pv, split.gt_audio, split.gt_visual))
    for i, c in enumerate(CLASSES):
        for k, v in f1.items():
            assert got["per_class"][c][k] == (None if np.isnan(v[i]) else pytest.approx(v[i]))


@pytest.fixture(scope="module")
def report(scored, tmp_path_factory):
    root, labels, _, _, _, pred = scored
    out = tmp_path_factory.mktemp("report")
    assert main(["eval", "--pred", str(pred), "--annotations", str(root), "--report", str(out),
                 "--labels", str(labels), "--data", str(root)]) == 0
    return out / "index.html"


def test_report_content_is_self_contained(report, scored):
    _, _, split, pa, pv, _ = scored
    page = report.read_text(encoding="utf-8")
    want = evaluate(pa, pv, split.gt_audio, split.gt_visual)
    for k in METRIC_KEYS:
        assert f"<td>{want[k]:.2f}</td>" in page, k
    # Nothing is fetched: no http(s) URLs, every image is an embedded PNG.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    ids = re.findall(r'<figure id="([^"]+)"', page)
    assert ids[:2] == ["per-class", "confusion"] and ids[-1] == "similarity"
    assert ids.count("timeline-best") == 3 and ids.count("timeline-worst") == 3
    assert page.count("<tr>") >= 25 + 2                         # per-class rows + the ten-number table


needs_chromium = pytest.mark.skipif(find_chromium() is None,
                                    reason="Chromium not installed (apt-get install chromium; .ci/run installs it)")


def _blankness(png: bytes):
    import io

    from PIL import Image
    im = np.asarray(Image.open(io.BytesIO(png)).convert("L"), np.float64)
    return im.shape, im.std(), (im < 200).mean()


@needs_chromium
def test_report_opens_in_headless_chromium_without_errors(report, tmp_path):
    res = open_page(report, width=1280, max_height=3000)
    assert res.errors == []
    assert res.ready == "1"                 # the page's script (sortable table) ran
    (h, w), std, dark = _blankness(res.png)
    assert w == 1280 and h == min(res.height, 3000) and res.height > 2000
    assert std > 20 and dark > 0.02         # text, tables and figures, not a blank page
    (tmp_path / "shot.png").write_bytes(res.png)


@needs_chromium
def test_console_error_check_catches_a_broken_page(report, tmp_path):
    page = report.read_text(encoding="utf-8")
    broken = tmp_path / "broken.html"
    broken.write_text(page.replace("</body>", "<script>undefinedPlotFunction();</script></body>"), encoding="utf-8")
    res = open_page(broken)
    assert any("undefinedPlotFunction" in e for e in res.errors), res.errors

    missing = tmp_path / "missing.html"
    missing.write_text("<!DOCTYPE html><html><body><p>x</p><img src='absent.png'>"
                       "<script>console.error('drawn wrong')</script></body></html>", encoding="utf-8")
    res = open_page(missing)
    assert any("drawn wrong" in e for e in res.errors), res.errors
    assert any("absent.png" in e for e in res.errors), res.errors
    _, std, _ = _blankness(res.png)
    assert std < 20                          # a nearly empty page reads as blank


def test_plain_eval_does_not_import_matplotlib(scored):
    import subprocess
    import sys

    root, _, _, _, _, pred = scored
    code = ("import sys; from lsld_engine.cli import main; "
            f"rc = main(['eval', '--pred', {str(pred)!r}, '--annotations', {str(root)!r}, '--per-class']); "
            "print('MPL', 'matplotlib' in sys.modules, rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "MPL False 0" in out


def test_per_class_and_report_on_the_real_test_split(llp_dir, tmp_path, capsys):
    from lsld_engine.evaluation.class_metrics import overall_from_counts

    split = load_split(llp_dir, "test")
    rng = np.random.default_rng(3)
    pa = split.gt_audio ^ (rng.random(split.gt_audio.shape) < 0.03).astype(np.uint8)
    pv = split.gt_visual ^ (rng.random(split.gt_visual.shape) < 0.03).astype(np.uint8)
    counts = class_counts(pa, pv, split.gt_audio, split.gt_visual)
    assert overall_from_counts(counts) == pytest.approx(evaluate(pa, pv, split.gt_audio, split.gt_visual), abs=1e-9)
    pred = tmp_path / "p.jsonl"
    with get_writer("jsonl", pred) as w:
        for i, v in enumerate(split.video_ids):
            w.write(ok_record(v, track_events(pa[i], pv[i]), 10.0, 10))
    assert main(["eval", "--pred", str(pred), "--annotations", str(llp_dir), "--per-class",
                 "--report", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    speech = next(line for line in out.splitlines() if line.startswith("Speech "))
    assert float(speech.split()[1]) == pytest.approx(per_class_f1(counts)["seg_a"][0], abs=0.05)
    page = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert page.count('<figure id="timeline-') == 6


def test_similarity_options_go_together(scored, tmp_path, capsys):
    root, labels, _, _, _, pred = scored
    assert main(["eval", "--pred", str(pred), "--annotations", str(root), "--labels", str(labels),
                 "--report", str(tmp_path / "r")]) == 2
    assert main(["eval", "--pred", str(pred), "--annotations", str(root), "--labels", str(labels),
                 "--data", str(root)]) == 2
    assert "go together" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
