"""One video's timeline: audio, visual and audio-visual rows, predicted events shaded by score.

Each track (audio, visual, audio-visual) is a panel with one lane per class that occurs in the
predictions or the ground truth (the same classes, in class order, in every panel). Within a lane the
predicted events are bars coloured by their score; ground-truth events, when given, are hatched bars
just above them. Thin lines mark the one-second segments, thick lines the 10-s windows of long
videos (laid end to end, as :mod:`lsld_engine.records.events` lays them).

Every bar carries a ``gid`` ``"pred|gt/<track>/<class>/<k>"`` so a test can count what was drawn.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from lsld_engine.records.events import TRACKS, masks_to_events
from lsld_engine.data.llp import CLASS_INDEX, EVAL_SPLITS, T
from lsld_engine.viz.common import PlotError, pretty, pyplot

TRACK_TITLES = {"audio": "Audio", "visual": "Visual", "audio_visual": "Audio-visual"}
_SCORE_CMAP = "Blues"
_SCORE_FLOOR = 0.2          # lightest shade used (score 0): pale but visible on white
_LANE_IN = 0.36             # inches per class lane
_MAX_WIDTH_IN = 26.0        # wider than this and labels get too small to read on screen
_SEGMENT_LINES_MAX = 240    # seconds; longer videos get window lines only


def score_colormap():
    """The colormap of predicted-event scores (0 -> pale, 1 -> dark), floor-trimmed."""
    plt = pyplot()
    from matplotlib.colors import ListedColormap

    base = plt.get_cmap(_SCORE_CMAP)
    return ListedColormap(base(np.linspace(_SCORE_FLOOR, 1.0, 256)), name="lsld_score")


def gt_events(gt_audio: np.ndarray, gt_visual: np.ndarray, duration: float | None = None) -> dict[str, list[dict]]:
    """Ground-truth events of the three tracks from ``(L, C)`` 0/1 masks (audio-visual = product)."""
    a = np.asarray(gt_audio, np.uint8)
    v = np.asarray(gt_visual, np.uint8)
    if a.shape != v.shape or a.ndim != 2:
        raise PlotError(f"ground truth must be two (L, C) masks of one shape, got {a.shape} and {v.shape}")
    return {"audio": masks_to_events(a, duration=duration), "visual": masks_to_events(v, duration=duration),
            "audio_visual": masks_to_events(a & v, duration=duration)}


def find_ground_truth(annotations: str | os.PathLike, video_id: str):
    """``(gt_audio (T, C), gt_visual (T, C), split)`` of ``video_id`` from an LLP annotation folder,
    searching the annotated splits; ``None`` when the video is in none of them."""
    from lsld_engine.data.llp import load_split

    ann = Path(annotations)
    found_any = False
    for split in EVAL_SPLITS:
        try:
            sp = load_split(ann, split)
        except FileNotFoundError:
            continue
        found_any = True
        if video_id in sp.video_ids:
            i = sp.video_ids.index(video_id)
            return sp.gt_audio[i], sp.gt_visual[i], split
    if not found_any:
        raise FileNotFoundError(f"{ann}: no annotated split found (AVVP_val_pd.csv / AVVP_test_pd.csv "
                                "with AVVP_eval_audio.csv, AVVP_eval_visual.csv)")
    return None


def timeline_figure(video_id: str, events: dict[str, list[dict]], duration: float, segments: int | None = None,
                    gt: dict[str, list[dict]] | None = None, title: str | None = None):
    """The timeline figure of one video.

    ``events``: ``{"audio", "visual", "audio_visual": [{"label", "onset", "offset", "score"?}]}``
    (a predictions record's ``events``); ``duration`` seconds; ``segments``: segments parsed (default
    ``ceil(duration)``); ``gt``: ground-truth events in the same form (see :func:`gt_events`) or None.
    """
    plt = pyplot()
    from matplotlib.patches import Patch

    length = max(int(segments or 0), int(math.ceil(duration - 1e-9)), 1)
    classes = _shown_classes(events, gt)
    k = max(len(classes), 1)
    width = min(_MAX_WIDTH_IN, max(9.0, 3.5 + 0.55 * length))
    heights = [k * _LANE_IN + 0.45 for _ in TRACKS]
    fig, axes = plt.subplots(len(TRACKS), 1, figsize=(width, sum(heights) + 1.3), sharex=True,
                             gridspec_kw={"height_ratios": heights}, layout="constrained")
    cmap = score_colormap()
    lane = {c: i for i, c in enumerate(classes)}
    for ax, track in zip(axes, TRACKS):
        _draw_grid(ax, length, duration, k)
        pred = events.get(track, [])
        _draw_bars(ax, pred, lane, "pred", track, cmap)
        if gt is not None:
            _draw_bars(ax, gt.get(track, []), lane, "gt", track, cmap)
        ax.set_ylim(k - 0.5, -0.5)
        ax.set_yticks(range(len(classes)), [pretty(c) for c in classes], fontsize=9)
        ax.set_ylabel(TRACK_TITLES[track], fontsize=10, fontweight="bold", labelpad=8)
        if not classes:
            ax.set_yticks([])
            ax.text(length / 2, 0, "no events", ha="center", va="center", color="0.4", fontsize=10)
        n_pred = len(pred)
        n_gt = "" if gt is None else f", {len(gt.get(track, []))} true"
        ax.set_title(f"{TRACK_TITLES[track]}: {n_pred} predicted{n_gt}", fontsize=9, loc="left", color="0.25")
    axes[-1].set_xlim(0, length)
    _set_time_ticks(axes[-1], length)
    if length > _SEGMENT_LINES_MAX:
        grid = f"; lines: {T}-s windows"
    else:
        grid = "; thin lines: 1-s segments" + (f"; thick lines: {T}-s windows" if length > T else "")
    axes[-1].set_xlabel("time (s)" + grid, fontsize=9)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    cbar = fig.colorbar(sm, ax=list(axes), shrink=min(1.0, 4.0 / (sum(heights) + 0.1)), aspect=25, pad=0.01)
    cbar.set_label("predicted score", fontsize=9)
    handles = [Patch(facecolor=cmap(0.75), edgecolor="0.2", label="predicted event (shade = score)")]
    if gt is not None:
        handles.append(Patch(facecolor="white", edgecolor="0.15", hatch="////", label="ground truth"))
    if length > duration + 1e-6:
        handles.append(Patch(facecolor="0.88", label="padding past the end"))
    fig.legend(handles=handles, loc="outside upper right", ncol=len(handles), fontsize=9, frameon=False)
    fig.suptitle(title or f"{video_id}  ({duration:g} s)", x=0.01, ha="left", fontsize=11)
    return fig


def record_timeline(record: dict, gt_audio: np.ndarray | None = None, gt_visual: np.ndarray | None = None,
                    title: str | None = None):
    """:func:`timeline_figure` of a predictions record (``lsld_engine.records.writers`` format), with the
    ground truth from ``(L, C)`` masks when given."""
    if record.get("status") != "ok":
        raise PlotError(f"video {record.get('video_id')!r} failed to parse ({record.get('error', 'no events')}); "
                        "nothing to plot")
    duration = float(record.get("duration") or record.get("segments") or T)
    gt = None
    if gt_audio is not None and gt_visual is not None:
        gt = gt_events(gt_audio, gt_visual)
    return timeline_figure(record["video_id"], record["events"], duration, record.get("segments"), gt, title)


def _shown_classes(events: dict, gt: dict | None) -> list[str]:
    names = {e["label"] for track in TRACKS for e in events.get(track, [])}
    if gt is not None:
        names |= {e["label"] for track in TRACKS for e in gt.get(track, [])}
    unknown = names - set(CLASS_INDEX)
    if unknown:
        raise PlotError(f"unknown class(es) {sorted(unknown)}: expected LLP class names")
    return sorted(names, key=CLASS_INDEX.__getitem__)


def _draw_grid(ax, length: int, duration: float, lanes: int) -> None:
    # Segment lines are drawn only while they stay more than ~3 px apart; past that, the window
    # lines take their place (thin, or 60 of them would hide the bars).
    if length <= _SEGMENT_LINES_MAX:
        ax.vlines(np.arange(1, length), -0.5, lanes - 0.5, colors="0.86", linewidths=0.6, zorder=0)
        ax.vlines(np.arange(T, length, T), -0.5, lanes - 0.5, colors="0.45", linewidths=1.4, zorder=0.5)
    else:
        ax.vlines(np.arange(T, length, T), -0.5, lanes - 0.5, colors="0.8", linewidths=0.7, zorder=0.5)
    ax.hlines(np.arange(lanes - 1) + 0.5, 0, length, colors="0.93", linewidths=0.6, zorder=0)
    if length > duration + 1e-6:
        ax.axvspan(duration, length, color="0.88", zorder=0.2, lw=0)
    ax.tick_params(axis="y", length=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _draw_bars(ax, events: list[dict], lane: dict[str, int], kind: str, track: str, cmap) -> None:
    """Predicted bars fill the lower part of a lane, ground-truth bars (hatched) the upper part."""
    if not events:
        return
    y = np.array([lane[e["label"]] for e in events], float)
    on = np.array([e["onset"] for e in events], float)
    off = np.array([e["offset"] for e in events], float)
    if kind == "pred":
        scores = np.array([e.get("score", 1.0) for e in events], float)
        bars = ax.barh(y + 0.14, off - on, left=on, height=0.52, color=cmap(np.clip(scores, 0, 1)),
                       edgecolor="0.2", linewidth=0.6, zorder=3)
    else:
        bars = ax.barh(y - 0.3, off - on, left=on, height=0.22, color="white", edgecolor="0.15",
                       hatch="////", linewidth=0.8, zorder=2)
    counts: dict[str, int] = {}
    for bar, e in zip(bars, events):
        n = counts[e["label"]] = counts.get(e["label"], -1) + 1
        bar.set_gid(f"{kind}/{track}/{e['label']}/{n}")


def _set_time_ticks(ax, length: int) -> None:
    step = next(s for s in (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200) if length / s <= 30)
    ax.set_xticks(np.arange(0, length + 1, step))
    ax.tick_params(axis="x", labelsize=9)


def count_bars(fig, kind: str = "pred", track: str | None = None) -> int:
    """Bars of ``kind`` (``pred`` / ``gt``) drawn in ``fig``, optionally of one track (tests, checks)."""
    prefix = f"{kind}/" + (f"{track}/" if track else "")
    return sum(1 for ax in fig.axes for p in ax.patches if (p.get_gid() or "").startswith(prefix))


__all__ = ["count_bars", "find_ground_truth", "gt_events", "record_timeline", "score_colormap",
           "timeline_figure"]
