"""Make the example figures of docs/plots.md from a trained run: predictions of the test split, one
timeline, the denoising view, the HTML report and its screenshot (headless Chromium).

    python -m train.lsld --run-dir runs/main                     # the README's main job
    python scripts/plot_examples.py --run-dir runs/main --out docs/img

The data root is read from the run's config.json. Predictions use the engine's inference rule
(thresholds 0.5) and the predictions JSONL format, so ``lsld-engine plot`` / ``eval`` read them as
they read ``lsld-engine parse`` output.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def write_predictions(run: Path, data: Path, split: str, out: Path) -> Path:
    """The run's best checkpoint applied to ``split`` of ``data``, as a predictions JSONL."""
    import torch

    from lsld_engine.han.checkpoint import load_han
    from lsld_engine.data.dataset import dataset_paths, load_features, load_split_labels
    from lsld_engine.records.events import predict_masks, track_events
    from lsld_engine.han.training import pooled_visual, predict
    from lsld_engine.records.writers import get_writer, ok_record

    paths = dataset_paths(data)
    sp = load_split_labels(paths, split)
    feats = load_features(paths, sp.video_ids)
    seg, a_prob, v_prob = predict(load_han(run / "best.safetensors"), torch.from_numpy(feats.audio),
                                  pooled_visual(feats.frames))
    pred_a, pred_v = predict_masks(seg, a_prob, v_prob)
    prob_a, prob_v = seg[:, :, 0], seg[:, :, 1]
    with get_writer("jsonl", out) as w:
        for i, vid in enumerate(sp.video_ids):
            w.write(ok_record(vid, track_events(pred_a[i], pred_v[i], prob_a[i], prob_v[i], duration=10.0), 10.0, 10))
    return out


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "lsld_engine.cli", *args], check=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path, required=True, help="a python -m train.lsld run folder")
    p.add_argument("--out", type=Path, default=Path("docs/img"), help="where the example PNGs go")
    p.add_argument("--video", help="test video for the timeline (default: the one with most events)")
    args = p.parse_args(argv)

    cfg = json.loads((args.run_dir / "config.json").read_text())
    data = Path(cfg["data"])
    work = args.run_dir / "examples"
    work.mkdir(parents=True, exist_ok=True)
    results = write_predictions(args.run_dir, data, "test", work / "results.jsonl")
    args.out.mkdir(parents=True, exist_ok=True)

    from lsld_engine.records.writers import read_predictions
    recs = read_predictions(results)
    def richness(v):  # events on every track first, then more classes, then more events
        ev = recs[v]["events"]
        return (all(ev[t] for t in ev), len({e["label"] for t in ev.values() for e in t}), sum(map(len, ev.values())))

    video = args.video or max(recs, key=richness)
    cli("plot", str(results), "--video", video, "--annotations", str(data), "--out", str(work / "timeline.png"))
    _write_small_png((work / "timeline.png").read_bytes(), args.out / "timeline.png")

    from lsld_engine.data.llp import load_split
    train = load_split(data, "train")
    k = train.weak.sum(1)
    den_video = train.video_ids[int(np.flatnonzero(k == 2)[0])]
    labels = Path(cfg.get("labels_file") or args.run_dir / "labels.npz")
    cli("plot-denoise", "--data", str(data), "--labels", str(labels), "--video", den_video,
        "--out", str(work / "denoise.png"))
    _write_small_png((work / "denoise.png").read_bytes(), args.out / "denoise.png")

    report = work / "report"
    cli("eval", "--pred", str(results), "--annotations", str(data), "--report", str(report),
        "--labels", str(labels), "--data", str(data))

    from lsld_engine.testing.browser import open_page
    page = open_page(report / "index.html", width=1100, max_height=1500)
    if page.errors:
        raise SystemExit(f"report has console errors: {page.errors}")
    shot = args.out / "report.png"
    _write_small_png(page.png, shot)
    print(f"wrote {args.out / 'timeline.png'}, {args.out / 'denoise.png'}, {shot}; report {report / 'index.html'}")
    return 0


def _write_small_png(png: bytes, path: Path, max_bytes: int = 300_000) -> None:
    """Save a PNG under ``max_bytes``: as is when small enough, else scaled down step by step (a
    palette would band the colour bars)."""
    import io

    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    scale = 1.0
    while True:
        small = im.resize((int(im.width * scale), int(im.height * scale)), Image.LANCZOS) if scale < 1 else im
        buf = io.BytesIO()
        small.save(buf, format="PNG", optimize=True)
        if buf.tell() <= max_bytes or scale < 0.3:
            path.write_bytes(buf.getvalue())
            return
        scale *= 0.9


if __name__ == "__main__":
    sys.exit(main())
