"""Score figures: per-class F1 bars, the missed/confused-classes view, and similarity distributions
of segments with and without each class (the paper's Fig. 2 view).

Bars carry ``gid`` ``"f1/<key>/<class>"``; histogram panels ``"sim/<class>"`` (tests count them).
"""
from __future__ import annotations

import numpy as np

from lsld_engine.evaluation.class_metrics import TRACK_KEYS
from lsld_engine.data.llp import CLASSES
from lsld_engine.viz.common import pretty, pyplot

TRACK_NAMES = {"a": "Audio", "v": "Visual", "av": "Audio-visual"}
TRACK_COLORS = {"a": "#1f77b4", "v": "#ff7f0e", "av": "#2ca02c"}


def per_class_figure(scores: dict[str, np.ndarray], support: dict[str, np.ndarray] | None = None,
                     classes: tuple[str, ...] = CLASSES):
    """Two panels (segment level, event level), one group of audio / visual / audio-visual bars per class.

    ``scores``: ``{key: (C,)}`` F1 in percent for :data:`~lsld_engine.evaluation.class_metrics.CLASS_KEYS`
    (NaN: class absent on that track, no bar); ``support``: true events per class, shown in the labels.
    """
    plt = pyplot()
    c = len(classes)
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.36 * c + 1.6), sharey=True, layout="constrained")
    y = np.arange(c)
    h = 0.27
    names = [pretty(n) for n in classes]
    if support is not None:
        names = [f"{n}  ({int(support['evt_a'][i])}/{int(support['evt_v'][i])})" for i, n in enumerate(names)]
    for ax, lvl, title in zip(axes, ("seg", "evt"), ("Segment-level F1 (%)", "Event-level F1 (%)")):
        for j, t in enumerate(TRACK_KEYS):
            vals = scores[f"{lvl}_{t}"]
            ok = ~np.isnan(vals)
            bars = ax.barh(y[ok] + (j - 1) * h, vals[ok], height=h, color=TRACK_COLORS[t], label=TRACK_NAMES[t])
            for bar, i in zip(bars, np.flatnonzero(ok)):
                bar.set_gid(f"f1/{lvl}_{t}/{classes[i]}")
        ax.set_xlim(0, 100)
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(axis="x", color="0.9")
        ax.set_axisbelow(True)
        ax.tick_params(axis="y", length=0)
    axes[0].set_yticks(y, names, fontsize=9)
    axes[0].set_ylim(c - 0.5, -0.6)
    if support is not None:
        axes[0].set_ylabel("class  (true audio / visual events)", fontsize=9)
    fig.legend(*axes[1].get_legend_handles_labels(), loc="outside upper right", ncol=3, fontsize=9, frameon=False)
    return fig


def confusion_figure(conf: dict[str, np.ndarray], classes: tuple[str, ...] = CLASSES):
    """Missed segments per true class (rows) and what was predicted there instead (columns; the last
    column: nothing), one heatmap per track. ``conf``: ``{"audio": (C, C+1), "visual": (C, C+1)}``
    from :func:`lsld_engine.evaluation.class_metrics.confusion`."""
    plt = pyplot()
    from matplotlib.colors import LogNorm, Normalize

    c = len(classes)
    # One panel per row: side by side, 2 x 26 columns would shrink the labels below reading size.
    fig, axes = plt.subplots(len(conf), 1, figsize=(12, len(conf) * (0.3 * c + 2.9)), layout="constrained")
    axes = np.atleast_1d(axes)
    cols = [pretty(n) for n in classes] + ["(nothing)"]
    vmax = max(1, max(int(m.max()) for m in conf.values()))
    for ax, (track, m) in zip(axes, conf.items()):
        shown = np.where(m > 0, m, np.nan)
        # A log scale only helps when counts span decades; small counts read better on a linear one.
        norm = LogNorm(1, vmax) if vmax > 20 else Normalize(0, vmax)
        im = ax.imshow(shown, cmap="magma_r", norm=norm, aspect="auto", interpolation="nearest")
        for (i, j), v in np.ndenumerate(m):
            if v:
                r, g, b, _ = im.cmap(im.norm(v))
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                        color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black")
        ax.set_xticks(range(c + 1), cols, rotation=90, fontsize=8)
        ax.set_yticks(range(c), [pretty(n) for n in classes], fontsize=8)
        ax.axvline(c - 0.5, color="0.3", lw=1)
        ax.set_xlabel("predicted instead (false positive on the same segment)", fontsize=9)
        ax.set_ylabel("true class, missed", fontsize=9)
        ax.set_title(f"{track.capitalize()}: true classes missed, and what was predicted there instead "
                     f"({int(m[:, -1].sum())} segments with nothing instead)", fontsize=10, loc="left")
        fig.colorbar(im, ax=ax, shrink=0.7, pad=0.01).set_label(
            "segments" + (" (log scale)" if vmax > 20 else ""), fontsize=8)
    return fig


def similarity_figure(sim: np.ndarray, with_: np.ndarray, classes: tuple[str, ...] = CLASSES,
                      what: str = "visual segment and class name"):
    """Per class, histograms of ``sim`` for segments with the class and without it (Fig. 2 view).

    ``sim``: ``(N, T, C)`` cosine similarities; ``with_``: ``(N, T, C)`` bool, which segments have
    the class (e.g. DeN labels > 0.5). "Without" segments are those of videos whose weak labels hold
    the class but where it is off, plus all others; a class with no "with" segment gets no panel.
    """
    plt = pyplot()
    c = len(classes)
    cols = 5
    rows = -(-c // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.1 * rows + 0.8), layout="constrained")
    flat_s = sim.reshape(-1, c)
    flat_w = with_.reshape(-1, c).astype(bool)
    bins = np.linspace(float(np.nanmin(flat_s)), float(np.nanmax(flat_s)), 41)
    for i, ax in enumerate(axes.ravel()):
        if i >= c:
            ax.set_axis_off()
            continue
        w, wo = flat_s[flat_w[:, i], i], flat_s[~flat_w[:, i], i]
        ax.set_title(pretty(classes[i]), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
        if len(w) == 0:
            ax.text(0.5, 0.5, "no segment with it", ha="center", va="center", fontsize=8, color="0.4",
                    transform=ax.transAxes)
            continue
        ax.hist(wo, bins=bins, density=True, color="0.55", alpha=0.6, label="without")
        ax.hist(w, bins=bins, density=True, color="#d62728", alpha=0.6, label="with")
        ax.set_gid(f"sim/{classes[i]}")
    handles, labels = next((a.get_legend_handles_labels() for a in axes.ravel() if a.get_gid()), ([], []))
    fig.legend(handles, [f"segments {x} the class" for x in labels], loc="outside upper right", ncol=2, fontsize=9,
               frameon=False)
    fig.suptitle(f"Cosine similarity of {what} (density)", x=0.01, ha="left", fontsize=11)
    return fig


__all__ = ["confusion_figure", "per_class_figure", "similarity_figure"]
