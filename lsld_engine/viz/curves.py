"""Training figures: loss and validation metrics per epoch (``curves.png``), and the Table-2 bar chart.

The chosen epoch is a vertical line with gid ``"best-epoch"``; ablation bars carry gid
``"ablation/<objective>/<metric key>"``.
"""
from __future__ import annotations

import numpy as np

from lsld_engine.evaluation.metrics import METRIC_KEYS
from lsld_engine.viz.common import pyplot

_LABELS = {"seg_a": "A", "seg_v": "V", "seg_av": "AV", "seg_type": "Type@AV", "seg_event": "Event@AV"}
#: Display names of the training objectives (Table 2 rows).
OBJECTIVE_NAMES = {"weak": "HAN (weak labels)", "den": "+ DeN", "den+rew": "+ DeN + ReW"}


def curves_figure(record: dict, select_metric: str | None = None, title: str | None = None):
    """Loss and the ten validation metrics per epoch, the chosen epoch marked.

    ``record``: a run's ``metrics.json`` (``val``: one dict per epoch with ``epoch``, ``loss`` and the
    ten metrics; ``val_initial``: before training, drawn at epoch 0; ``best_epoch``).
    """
    plt = pyplot()
    val = record.get("val") or []
    if not val:
        raise ValueError("metrics record has no epochs ('val' is empty): nothing to draw")
    epochs = np.array([r["epoch"] for r in val])
    best = int(record.get("best_epoch") or 0)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    axes[0].plot(epochs, [r["loss"] for r in val], "o-", color="0.2", ms=3, label="training loss")
    axes[0].set_title("Training loss", fontsize=10, loc="left")
    axes[0].set_ylabel("loss")
    initial = record.get("val_initial")
    for ax, prefix, name in ((axes[1], "seg_", "Segment level"), (axes[2], "evt_", "Event level")):
        for j, key in enumerate(k for k in METRIC_KEYS if k.startswith(prefix)):
            xs, ys = list(epochs), [r[key] for r in val]
            if initial:
                xs, ys = [0] + xs, [initial[key]] + ys
            style = "-" if key == select_metric else "--" if select_metric else "-"
            label = _LABELS[key.replace("evt_", "seg_")] + (" (selects the epoch)" if key == select_metric else "")
            ax.plot(xs, ys, style, marker="o", ms=3, lw=2.2 if key == select_metric else 1.3,
                    color=plt.get_cmap("tab10")(j), label=label, gid=f"val/{key}")
        ax.set_title(f"Validation, {name.lower()} F1 (%)", fontsize=10, loc="left")
        ax.legend(fontsize=8, loc="best")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(color="0.92")
        if best:
            ax.axvline(best, color="#d62728", lw=1.5, ls=":", gid="best-epoch")
    if best:
        sel = f"{select_metric} {val[best - 1][select_metric]:.2f}" if select_metric else ""
        right = best > (epochs.min() + epochs.max()) / 2   # keep the note inside the panel
        axes[0].text(best, 0.97, f" chosen epoch {best}: {sel} " if sel else f" chosen epoch {best} ",
                     color="#d62728", fontsize=9, va="top", ha="right" if right else "left",
                     transform=axes[0].get_xaxis_transform())
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    return fig


def ablation_figure(rows: dict[str, dict[str, float]], title: str | None = None):
    """Table 2 as grouped bars: the ten metrics, one bar per objective (``rows``: objective -> metrics)."""
    plt = pyplot()
    keys = list(METRIC_KEYS)
    x = np.arange(len(keys), dtype=float)
    x[5:] += 0.6  # a gap between segment and event level
    n = max(len(rows), 1)
    w = 0.8 / n
    fig, ax = plt.subplots(figsize=(14, 4.8), layout="constrained")
    colors = ["#9e9e9e", "#6baed6", "#08519c", "#fd8d3c", "#31a354"]
    for j, (obj, res) in enumerate(rows.items()):
        vals = [res[k] for k in keys]
        bars = ax.bar(x + (j - (n - 1) / 2) * w, vals, width=w, color=colors[j % len(colors)],
                      label=OBJECTIVE_NAMES.get(obj, obj))
        for bar, k, v in zip(bars, keys, vals):
            bar.set_gid(f"ablation/{obj}/{k}")
            ax.text(bar.get_x() + bar.get_width() / 2, v + 0.8, f"{v:.1f}", ha="center", va="bottom", fontsize=7,
                    rotation=90)
    ax.set_xticks(x, [("Seg " if k.startswith("seg") else "Evt ") + _LABELS[k.replace("evt_", "seg_")] for k in keys],
                  fontsize=9)
    top = max((max(r.values()) for r in rows.values()), default=100)
    ax.set_ylim(0, min(100, top + 12) if top < 88 else 108)
    ax.set_ylabel("F1 (%)")
    ax.grid(axis="y", color="0.92")
    ax.set_axisbelow(True)
    ax.legend(loc="upper right", fontsize=9, ncol=n)
    ax.set_title(title or "Table 2: training objectives (test split)", fontsize=11, loc="left")
    return fig
