"""Figures are checked for what they must show (bars per event, labels, marks), not only written."""
import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib (the [plot] extra)")

from lsld_engine.cli import main  # noqa: E402
from lsld_engine.records.events import track_events  # noqa: E402
from lsld_engine.data.llp import CLASSES  # noqa: E402
from lsld_engine.evaluation.metrics import METRIC_KEYS  # noqa: E402
from lsld_engine.viz import common  # noqa: E402
from lsld_engine.viz.common import PlotError, pretty  # noqa: E402
from lsld_engine.viz.timeline import count_bars, record_timeline  # noqa: E402
from lsld_engine.records.writers import error_record, get_writer, ok_record  # noqa: E402


def _record(length, n_classes, duration, seed=0, video_id="vid"):
    """A predictions record with random runs and scores, plus its masks ``(L, C)``."""
    rng = np.random.default_rng(seed)
    ma = np.zeros((length, 25), np.uint8)
    mv = np.zeros_like(ma)
    for c in rng.choice(25, n_classes, replace=False):
        for m in (ma, mv):
            s = int(rng.integers(0, length - 1))
            m[s:int(rng.integers(s + 1, min(length, s + 12) + 1)), c] = 1
            if length > 20:  # a second run of the class, apart from the first
                s2 = min(length - 1, s + 15)
                m[s2:s2 + 2, c] = 1
    pa = np.where(ma, 0.5 + rng.random(ma.shape) / 2, 0.0)
    pv = np.where(mv, 0.5 + rng.random(mv.shape) / 2, 0.0)
    return ok_record(video_id, track_events(ma, mv, pa, pv, duration=duration), duration, length), ma, mv


def _ylabels(fig):
    return [[t.get_text() for t in ax.get_yticklabels()] for ax in fig.axes[:3]]   # the three track panels


def test_timeline_draws_one_bar_per_event_and_the_ground_truth():
    rec, ma, mv = _record(10, 3, 10.0)
    gt_a = ma.copy()
    gt_a[:, :] = np.roll(ma, 2, axis=0)  # a different truth, so prediction and truth bars differ
    fig = record_timeline(rec, gt_a, mv)
    for track in ("audio", "visual", "audio_visual"):
        assert count_bars(fig, "pred", track) == len(rec["events"][track]) > 0
    from lsld_engine.viz.timeline import gt_events
    truth = gt_events(gt_a, mv)
    assert count_bars(fig, "gt") == sum(len(v) for v in truth.values()) > 0
    shown = sorted({e["label"] for v in rec["events"].values() for e in v} | {e["label"] for v in truth.values() for e in v},
                   key=CLASSES.index)
    for labels in _ylabels(fig):
        assert labels == [pretty(c) for c in shown]     # every class named, same order in every panel
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert any("ground truth" in t for t in legend) and any("score" in t for t in legend)
    # Bars are shaded by score: a higher score is a darker bar.
    bars = [p for ax in fig.axes for p in ax.patches if (p.get_gid() or "").startswith("pred/audio/")]
    scores = [e["score"] for e in rec["events"]["audio"]]
    lum = [sum(p.get_facecolor()[:3]) for p in bars]
    assert len(bars) == len(scores) and len(set(scores)) > 1  # else the shading check below says nothing
    assert np.corrcoef(scores, lum)[0, 1] < 0


def test_timeline_of_a_long_video_lays_windows_end_to_end():
    rec, _, _ = _record(60, 12, 57.3, seed=1)
    fig = record_timeline(rec)
    assert count_bars(fig, "pred") == sum(len(v) for v in rec["events"].values())
    assert count_bars(fig, "gt") == 0
    ax = fig.axes[0]
    assert fig.axes[2].get_xlim() == (0, 60)
    assert max(e["offset"] for v in rec["events"].values() for e in v) <= 57.3
    assert len(_ylabels(fig)[0]) == 12 and all(_ylabels(fig)[0])
    # the windows' 10-s boundaries are drawn (thick lines at 10, 20, ..., 50)
    thick = [c for c in ax.collections if c.get_linewidths()[0] > 1.0]
    xs = sorted({round(float(seg[0][0])) for c in thick for seg in c.get_segments()})
    assert xs == [10, 20, 30, 40, 50]


def test_failed_record_is_refused():
    with pytest.raises(PlotError, match="failed to parse"):
        record_timeline(error_record("bad", "no video stream"))


def _write_annotations(d, ids, gt_a, gt_v):
    d.mkdir(parents=True, exist_ok=True)
    weak = ["filename\tevent_labels"]
    rows = {"audio": ["filename\tonset\toffset\tevent_labels"], "visual": ["filename\tonset\toffset\tevent_labels"]}
    from lsld_engine.records.events import masks_to_events
    for i, v in enumerate(ids):
        classes = sorted(set(np.flatnonzero(gt_a[i].any(0) | gt_v[i].any(0)).tolist()))
        weak.append(f"{v}\t{','.join(CLASSES[c] for c in classes)}")
        for track, gt in (("audio", gt_a), ("visual", gt_v)):
            for e in masks_to_events(gt[i]):
                rows[track].append(f"{v}\t{int(e['onset'])}\t{int(e['offset'])}\t{e['label']}")
    (d / "AVVP_test_pd.csv").write_text("\n".join(weak) + "\n")
    (d / "AVVP_eval_audio.csv").write_text("\n".join(rows["audio"]) + "\n")
    (d / "AVVP_eval_visual.csv").write_text("\n".join(rows["visual"]) + "\n")
    return d


def test_plot_command(tmp_path, monkeypatch, capsys):
    recs = [_record(10, 2, 10.0, seed=s, video_id=f"v{s}") for s in range(3)]
    results = tmp_path / "results.jsonl"
    with get_writer("jsonl", results) as w:
        for rec, _, _ in recs:
            w.write(rec)
    ann = _write_annotations(tmp_path / "ann", ["v0", "v1", "v2"], np.stack([r[1] for r in recs]),
                             np.stack([r[2] for r in recs]))
    drawn = []
    real_save = common.save_png
    monkeypatch.setattr(common, "save_png", lambda fig, path: (drawn.append(
        (count_bars(fig, "pred"), count_bars(fig, "gt"))), real_save(fig, path))[1])
    out = tmp_path / "fig.png"
    assert main(["plot", str(results), "--video", "v1", "--annotations", str(ann), "--out", str(out)]) == 0
    n_events = sum(len(v) for v in recs[1][0]["events"].values())
    assert drawn == [(n_events, n_events)]          # the truth here equals the prediction
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image
    with Image.open(out) as im:
        assert im.width > 600 and im.height > 300
    assert main(["plot", str(results), "--video", "nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "results.jsonl" in err and "'nope'" in err and "v0" in err


# ---------------------------------------------------------------------------------------- denoising view
@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from lsld_engine.synthetic import synth
    from train.lsld import stage_denoise

    root = tmp_path_factory.mktemp("world")
    synth.make_world(root, n_train=48, n_val=16, n_test=16, seed=5, progress=False)
    labels = root / "labels.npz"
    assert stage_denoise(root, labels) == 0
    return root, labels


def test_denoise_view_reproduces_the_labels_file(tiny_world):
    from lsld_engine.data.llp import load_split
    from lsld_engine.viz.denoise_view import denoise_figure, denoise_view_data

    root, labels = tiny_world
    split = load_split(root, "train")
    k = split.weak.sum(1)
    vid = split.video_ids[int(np.flatnonzero(k >= 2)[0])]
    view = denoise_view_data(root, labels, vid)
    assert view.consistent
    assert len(view.classes) >= 2 and len(view.audio_prompts) == 2 ** len(view.classes)
    assert view.audio_sims.shape == (10, len(view.audio_prompts))
    fig = denoise_figure(view)
    boxes = [p.get_gid() for ax in fig.axes for p in ax.patches if (p.get_gid() or "").startswith("choice/")]
    assert sorted(boxes) == sorted(f"choice/{m}/{t}" for m in ("audio", "visual") for t in range(10))
    ylabels = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    for c in view.classes:
        assert pretty(CLASSES[c]) in ylabels
    assert "other" in ylabels                       # the 'other' prompt row
    assert "weak labels" in fig._suptitle.get_text()

    # labels made from other features are flagged: flip the file's DeN audio labels
    with np.load(labels) as z:
        arrays = {n: z[n] for n in z.files}
    arrays["audio"] = 1 - arrays["audio"]
    bad = labels.parent / "flipped.npz"
    np.savez(bad, **arrays)
    assert not denoise_view_data(root, bad, vid).consistent


def test_plot_denoise_command(tiny_world, tmp_path, capsys):
    root, labels = tiny_world
    from lsld_engine.data.llp import load_split

    vid = load_split(root, "train").video_ids[0]
    out = tmp_path / "den.png"
    assert main(["plot-denoise", "--data", str(root), "--labels", str(labels), "--video", vid, "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert main(["plot-denoise", "--data", str(root), "--labels", str(labels), "--video", "nope",
                 "--out", str(out)]) == 2
    assert "labels.npz" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- score figures
def test_per_class_bars_and_similarity_panels():
    from lsld_engine.viz.scores import per_class_figure, similarity_figure

    scores = {k: np.full(25, np.nan) for k in ("seg_a", "seg_v", "seg_av", "evt_a", "evt_v", "evt_av")}
    scores["seg_a"][[0, 3, 7]] = [90.0, 50.0, 10.0]
    scores["evt_v"][[3]] = [42.0]
    fig = per_class_figure(scores)
    gids = {p.get_gid(): p.get_width() for ax in fig.axes for p in ax.patches if p.get_gid()}
    assert gids == {"f1/seg_a/Speech": 90.0, "f1/seg_a/Dog": 50.0, "f1/seg_a/Fire_alarm": 10.0, "f1/evt_v/Dog": 42.0}

    rng = np.random.default_rng(0)
    sim = rng.normal(0.2, 0.05, (20, 10, 25))
    with_ = np.zeros(sim.shape, bool)
    with_[:5, :, [1, 4, 9]] = True
    fig = similarity_figure(sim, with_)
    assert sorted(ax.get_gid() for ax in fig.axes if ax.get_gid()) == ["sim/Car", "sim/Cat", "sim/Cello"]


def test_curves_mark_the_chosen_epoch_and_ablation_bars_match_the_table():
    from lsld_engine.viz.curves import ablation_figure, curves_figure

    rng = np.random.default_rng(0)
    val = [{"epoch": e, "loss": 1.0 / e, **{k: float(rng.uniform(20, 80)) for k in METRIC_KEYS}} for e in range(1, 8)]
    fig = curves_figure({"val": val, "val_initial": {k: 5.0 for k in METRIC_KEYS}, "best_epoch": 5}, "evt_type")
    marks = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == "best-epoch"]
    assert len(marks) == 3 and all(ln.get_xdata()[0] == 5 for ln in marks)
    curves = {ln.get_gid(): ln for ax in fig.axes for ln in ax.get_lines() if (ln.get_gid() or "").startswith("val/")}
    assert set(curves) == {f"val/{k}" for k in METRIC_KEYS}
    np.testing.assert_allclose(curves["val/evt_type"].get_ydata(), [5.0] + [r["evt_type"] for r in val])
    assert any("chosen epoch 5" in t.get_text() for t in fig.axes[0].texts)

    rows = {o: {k: float(rng.uniform(30, 90)) for k in METRIC_KEYS} for o in ("weak", "den", "den+rew")}
    fig = ablation_figure(rows)
    bars = {p.get_gid(): p.get_height() for p in fig.axes[0].patches if p.get_gid()}
    assert bars == {f"ablation/{o}/{k}": rows[o][k] for o in rows for k in METRIC_KEYS}
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["HAN (weak labels)", "+ DeN", "+ DeN + ReW"]
