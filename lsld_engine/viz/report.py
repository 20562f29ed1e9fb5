"""The static HTML report of ``lsld-engine eval --report DIR``: one self-contained ``index.html``.

No server and no network: figures are embedded as base64 PNG data URIs, the style sheet and the one
small script (click a column header to sort the per-class table) are inline. Sections: the ten
official numbers, per-class F1 (table and bars), the missed/confused-classes view, timelines of the
best and worst videos, and, when given, the similarity distributions of segments with and without
each class (the paper's Fig. 2 view).
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsld_engine.evaluation.class_metrics import (CLASS_KEYS, class_counts, class_support, confusion, per_class_f1)
from lsld_engine.files import atomic_path
from lsld_engine.data.llp import CLASSES
from lsld_engine.evaluation.metrics import METRIC_KEYS, per_video
from lsld_engine.viz.common import png_data_uri, pretty

#: Videos shown at each end of the ranking (best, worst).
SHOWN_VIDEOS = 3

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:24px auto;
max-width:1500px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:34px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#666;font-size:13px}table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 9px;text-align:right}th{background:#f3f5f8;cursor:default}
td:first-child,th:first-child{text-align:left}table.sortable th{cursor:pointer}
table.sortable th:hover{background:#e3e8ef}img{max-width:100%;height:auto;display:block;margin:8px 0}
.scores{font-size:12px;color:#555}.na{color:#aaa}figure{margin:0 0 18px 0}figcaption{font-size:13px;color:#444}
"""

_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var desc = th.getAttribute('data-order') !== 'desc';
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute('data-v'), y = b.cells[col].getAttribute('data-v');
        var nx = parseFloat(x), ny = parseFloat(y);
        var cmp = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
        return desc ? -cmp : cmp;
      });
      rows.forEach(function (r) { body.appendChild(r); });
      th.setAttribute('data-order', desc ? 'desc' : 'asc');
    });
  });
  document.body.setAttribute('data-ready', '1');
});
"""


@dataclass
class Similarity:
    """Fig. 2 input: ``sim`` (N, T, C) cosine of segments with class names, ``with_`` (N, T, C) bool."""

    sim: np.ndarray
    with_: np.ndarray
    what: str = "visual segment and class name"


def training_similarity(data_root: str | os.PathLike, labels_path: str | os.PathLike, *,
                        class_names: str = "raw", progress: bool = True) -> Similarity:
    """Fig. 2 input from a dataset root and its ``labels.npz``: the cosine of every training visual
    segment with the CLIP class-name embeddings; "with" = the DeN visual label is on (ReW's split)."""
    from lsld_engine.data.dataset import dataset_paths, load_features
    from lsld_engine.labels.denoise import class_similarity, l2_normalize, segment_features
    from lsld_engine.labels.prompts import class_name_texts, load_prompt_cache
    from lsld_engine.viz.denoise_view import read_labels_file

    labels = read_labels_file(labels_path)
    paths = dataset_paths(data_root)
    ids = [str(v) for v in labels["video_ids"]]
    feats = load_features(paths, ids, progress=progress)
    names = load_prompt_cache(paths.clip_cache).lookup(class_name_texts(class_names))
    seg = l2_normalize(segment_features(feats.frames))
    return Similarity(class_similarity(seg, names, normalized=True), labels["visual_den"] > 0.5)


def rank_videos(scores: np.ndarray) -> np.ndarray:
    """Video indices from best to worst by the mean of their ten per-video scores ``(N, 10)``
    (ties keep file order)."""
    return np.argsort(-scores.mean(axis=1), kind="stable")


def build_report(*, title: str, results: dict[str, float], pred_a: np.ndarray, pred_v: np.ndarray,
                 gt_a: np.ndarray, gt_v: np.ndarray, video_ids: list[str], records: list[dict | None],
                 similarity: Similarity | None = None, note: str = "") -> str:
    """The report page as one HTML string.

    ``pred_*``/``gt_*``: ``(N, T, C)`` 0/1; ``records``: each video's predictions record (or None
    for a missing one, drawn as an empty prediction) for the timelines.
    """
    from lsld_engine.viz.scores import confusion_figure, per_class_figure, similarity_figure
    from lsld_engine.viz.timeline import gt_events, timeline_figure

    counts = class_counts(pred_a, pred_v, gt_a, gt_v)
    f1 = per_class_f1(counts)
    support = class_support(counts)
    parts = [f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{html.escape(note)}</p>' if note else ""]

    parts.append("<h2>Official LLP metrics (%)</h2>" + _ten_table(results))

    parts.append("<h2>Per-class F1 (%)</h2><p class=\"meta\">Each class's TP / FP / FN pooled over all videos; "
                 "'&ndash;': class neither predicted nor present on that track. Click a header to sort.</p>")
    parts.append(_class_table(f1, support))
    parts.append(_img(per_class_figure(f1, support), "Per-class F1, audio / visual / audio-visual; in brackets "
                                                     "the true audio / visual events of the class", "per-class"))

    conf = {"audio": confusion(pred_a, gt_a), "visual": confusion(pred_v, gt_v)}
    parts.append("<h2>Missed and confused classes</h2>")
    parts.append(_img(confusion_figure(conf), "Rows: true classes on segments where they were missed; columns: "
                                              "classes wrongly predicted on those segments; last column: "
                                              "nothing predicted instead", "confusion"))

    scores = per_video(pred_a, pred_v, gt_a, gt_v)
    order = rank_videos(scores)
    n_show = min(SHOWN_VIDEOS, len(order))
    best = set(order[:n_show].tolist())
    picks = [("best", i) for i in order[:n_show]] + [("worst", i) for i in order[::-1][:n_show] if i not in best]
    parts.append("<h2>Best and worst videos</h2><p class=\"meta\">Ranked by the mean of their ten per-video "
                 "scores; hatched bars are the ground truth.</p>")
    for kind, i in picks:
        rec = records[i]
        t = gt_a.shape[1]
        events = rec["events"] if rec else {"audio": [], "visual": [], "audio_visual": []}
        duration = float(rec.get("duration") or t) if rec else float(t)
        fig = timeline_figure(video_ids[i], events, min(duration, t), t, gt_events(gt_a[i], gt_v[i]),
                              title=f"{kind}: {video_ids[i]}")
        cells = ", ".join(f"{k} {scores[i, j]:.0f}" for j, k in enumerate(METRIC_KEYS))
        parts.append(_img(fig, f"{kind}: {video_ids[i]}{'' if rec else ' (no prediction)'}", f"timeline-{kind}",
                          extra=f'<div class="scores">{html.escape(cells)}</div>'))

    if similarity is not None:
        parts.append("<h2>Similarity of segments with and without each class (Fig. 2 view)</h2>")
        parts.append(_img(similarity_figure(similarity.sim, similarity.with_, what=similarity.what),
                          "Training segments with the class (red) and without it (grey): "
                          "the gap ReW relies on", "similarity"))

    body = "\n".join(p for p in parts if p)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style></head>\n<body>\n{body}\n<script>{_SCRIPT}</script>\n</body></html>\n")


def write_report(out_dir: str | os.PathLike, page: str) -> Path:
    """Write ``page`` as ``out_dir/index.html`` (atomically); returns its path."""
    out = Path(out_dir)
    if out.is_file():
        raise NotADirectoryError(f"--report {out}: is a file; give a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def _img(fig, caption: str, ident: str, extra: str = "") -> str:
    return (f'<figure id="{html.escape(ident)}"><img alt="{html.escape(caption)}" src="{png_data_uri(fig)}">'
            f"<figcaption>{html.escape(caption)}</figcaption>{extra}</figure>")


def _ten_table(results: dict[str, float]) -> str:
    heads = ["Audio", "Visual", "Audio-Visual", "Type@AV", "Event@AV"]
    rows = []
    for name, prefix in (("Segment-level", "seg_"), ("Event-level", "evt_")):
        keys = [k for k in METRIC_KEYS if k.startswith(prefix)]
        rows.append(f"<tr><td>{name}</td>" + "".join(f"<td>{results[k]:.2f}</td>" for k in keys) + "</tr>")
    return ('<table id="ten"><thead><tr><th></th>' + "".join(f"<th>{h}</th>" for h in heads)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _class_table(f1: dict[str, np.ndarray], support: dict[str, np.ndarray]) -> str:
    heads = ["Class", "Seg A", "Seg V", "Seg AV", "Evt A", "Evt V", "Evt AV", "true events A", "true events V"]
    rows = []
    for i, name in enumerate(CLASSES):
        cells = [f'<td data-v="{html.escape(name)}">{html.escape(pretty(name))}</td>']
        for k in CLASS_KEYS:
            v = f1[k][i]
            cells.append('<td data-v="-1" class="na">&ndash;</td>' if np.isnan(v) else f'<td data-v="{v:.4f}">{v:.1f}</td>')
        for k in ("evt_a", "evt_v"):
            cells.append(f'<td data-v="{int(support[k][i])}">{int(support[k][i])}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ('<table id="per-class" class="sortable"><thead><tr>' + "".join(f"<th>{h}</th>" for h in heads)
            + "</tr></thead><tbody>" + "\n".join(rows) + "</tbody></table>")
