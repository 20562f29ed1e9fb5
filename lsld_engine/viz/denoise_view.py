"""How LSLD relabelled one training video (the paper's Fig. 4 view): weak labels, the cosine of
each segment with each prompt and the prompt DeN chose, the DeN labels, and the soft labels after ReW.

:func:`denoise_view_data` recomputes the similarities from the video's features and the prompt
caches with the same helpers as :mod:`lsld_engine.labels.denoise`, and reads the labels from ``labels.npz``;
it says whether the recomputed choices reproduce the file's DeN labels (they do when both come from
the same features and prompts). :func:`denoise_figure` draws it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsld_engine.data.llp import CLASSES
from lsld_engine.labels.prompts import AUDIO_PREFIX
from lsld_engine.viz.common import PlotError, pretty, pyplot

#: At most this many prompt rows are drawn (videos with many labels have 2**k prompts); the chosen
#: prompts are always among them.
MAX_PROMPT_ROWS = 16
#: Classes outside the weak labels are drawn when ReW raised them to at least this soft label.
MIN_SHOWN_LABEL = 0.05


@dataclass
class DenoiseView:
    """One training video's denoising, restricted to its weak classes ``classes`` (k,).

    ``*_prompts`` (P,) texts; ``*_sims`` (T, P) cosine of each segment with each prompt;
    ``*_choice`` (T,) index of the prompt DeN takes. The label panels cover ``label_classes`` (K,):
    the weak classes plus any other class ReW raised to ``>= MIN_SHOWN_LABEL``. ``class_sim`` (T, K)
    cosine of each visual segment with the class-name embeddings (ReW's input); ``audio``,
    ``visual_den``, ``visual`` (T, K) the labels of ``labels.npz``; ``consistent``: the choices
    reproduce the file's DeN labels.
    """

    video_id: str
    classes: tuple[int, ...]
    label_classes: tuple[int, ...]
    audio_prompts: list[str]
    audio_sims: np.ndarray
    audio_choice: np.ndarray
    visual_prompts: list[str]
    visual_sims: np.ndarray
    visual_choice: np.ndarray
    class_sim: np.ndarray
    audio: np.ndarray
    visual_den: np.ndarray
    visual: np.ndarray
    consistent: bool
    hidden_classes: int = 0   # non-weak classes with soft labels in (0, MIN_SHOWN_LABEL), not drawn


def read_labels_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a ``labels.npz`` (``video_ids``, ``audio``, ``visual_den``, ``visual``), checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    from lsld_engine.labels.denoise import load_labels

    try:
        _, out = load_labels(path)
    except (ValueError, OSError) as e:
        raise PlotError(f"{path}: not a labels file ({e})") from None
    need = ("video_ids", "audio", "visual_den", "visual")
    missing = [k for k in need if k not in out]
    if missing:
        raise PlotError(f"{path}: a labels file needs arrays {list(need)}, lacks {missing} "
                        "(write it with python -m train.lsld denoise)")
    n = len(out["video_ids"])
    for k in need[1:]:
        if out[k].ndim != 3 or out[k].shape[0] != n or out[k].shape[2] != len(CLASSES):
            raise PlotError(f"{path}: '{k}' must be (N={n}, T, {len(CLASSES)}), got {out[k].shape}")
    return out


def denoise_view_data(data_root: str | os.PathLike, labels_path: str | os.PathLike, video_id: str, *,
                      clip_dir=None, clap_dir=None, prompts_dir=None, class_names: str = "raw") -> DenoiseView:
    """Everything :func:`denoise_figure` draws for training video ``video_id``."""
    from lsld_engine.data.dataset import dataset_paths, load_features, load_split_labels
    from lsld_engine.labels.denoise import class_similarity, l2_normalize, segment_features, softmax_argmax
    from lsld_engine.labels.prompts import class_name_texts, load_prompt_cache, membership, prompt_texts

    labels = read_labels_file(labels_path)
    ids = [str(v) for v in labels["video_ids"]]
    if video_id not in ids:
        raise PlotError(f"{labels_path}: no labels for video {video_id!r} (it has {len(ids)} training videos, "
                        f"e.g. {', '.join(ids[:5])})")
    row = ids.index(video_id)
    paths = dataset_paths(data_root, clip_dir, clap_dir, prompts_dir)
    split = load_split_labels(paths, "train")
    if video_id not in split.video_ids:
        raise PlotError(f"{paths.root}: {video_id!r} is not in AVVP_train.csv; labels file and dataset differ?")
    classes = tuple(np.flatnonzero(split.weak[split.video_ids.index(video_id)]).tolist())
    feats = load_features(paths, [video_id], workers=1, progress=False)
    seg_a = l2_normalize(feats.audio[0])                                    # (T, D)
    seg_v = l2_normalize(segment_features(feats.frames[:1])[0])             # (T, D)

    def sims(modality: str, seg: np.ndarray, cache_path: Path):
        texts = prompt_texts(classes, modality) if classes else []
        if not texts:
            return texts, np.zeros((seg.shape[0], 0), np.float32), np.zeros(seg.shape[0], np.int64)
        table = load_prompt_cache(cache_path)
        # the same arithmetic as denoise.den (einsum + softmax_argmax), so near-ties resolve alike
        s = np.einsum("td,pd->tp", seg, l2_normalize(table.lookup(texts)))  # (T, P)
        return texts, s, softmax_argmax(s)

    a_texts, a_sims, a_choice = sims("audio", seg_a, paths.clap_cache)
    v_texts, v_sims, v_choice = sims("visual", seg_v, paths.clip_cache)
    cls = np.array(classes, np.int64)
    # ReW can also raise classes outside the weak set ("without" segments above Min_w): show those
    # it raised to a visible value (the rest are counted in the title).
    raised = np.maximum(labels["visual"][row], labels["audio"][row]).max(0)
    others = np.flatnonzero(raised >= MIN_SHOWN_LABEL)
    faint = (raised > 0) & (raised < MIN_SHOWN_LABEL)
    faint[list(classes)] = False
    hidden = int(faint.sum())
    label_cls = np.array(list(classes) + [c for c in others.tolist() if c not in classes], np.int64)
    names = load_prompt_cache(paths.clip_cache).lookup(class_name_texts(class_names))
    class_sim = class_similarity(seg_v[None], names, normalized=True)[0][:, label_cls]
    if classes:
        member = membership(len(classes))
        consistent = bool(np.array_equal(member[a_choice], labels["audio"][row][:, cls] > 0.5)
                          and np.array_equal(member[v_choice], labels["visual_den"][row][:, cls] > 0.5))
    else:
        consistent = True
    return DenoiseView(video_id, classes, tuple(label_cls.tolist()), a_texts, a_sims, a_choice, v_texts, v_sims,
                       v_choice, class_sim, labels["audio"][row][:, label_cls],
                       labels["visual_den"][row][:, label_cls], labels["visual"][row][:, label_cls], consistent,
                       hidden)


def _shown_prompts(sims: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Prompt rows to draw, in prompt order: all when few, else the chosen ones plus the most similar."""
    p = sims.shape[1]
    if p <= MAX_PROMPT_ROWS:
        return np.arange(p)
    keep = list(dict.fromkeys(choice.tolist()))
    for i in np.argsort(-sims.max(axis=0), kind="stable"):
        if len(keep) >= MAX_PROMPT_ROWS:
            break
        if int(i) not in keep:
            keep.append(int(i))
    return np.sort(np.array(keep))


def _short(text: str, limit: int = 52) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def denoise_figure(view: DenoiseView):
    """Three rows x two columns: prompt similarities (chosen prompt boxed) for audio and visual; the
    DeN labels of both; the class-name similarities and the final soft visual labels after ReW."""
    plt = pyplot()
    from matplotlib.patches import Rectangle

    t = view.audio.shape[0]
    k = len(view.label_classes)
    shown = {m: _shown_prompts(getattr(view, f"{m}_sims"), getattr(view, f"{m}_choice")) for m in ("audio", "visual")}
    p_rows = max(len(shown["audio"]), len(shown["visual"]), 1)
    heights = [0.34 * p_rows + 0.6, 0.34 * max(k, 1) + 0.6, 0.34 * max(k, 1) + 0.6]
    fig, axes = plt.subplots(3, 2, figsize=(15, sum(heights) + 1.4), layout="constrained",
                             gridspec_kw={"height_ratios": heights})
    weak = ", ".join(pretty(CLASSES[c]) for c in view.classes) or "none (only 'other')"
    class_labels = [pretty(CLASSES[c]) + ("" if c in view.classes else " (not weak)") for c in view.label_classes]
    flag = "" if view.consistent else "   [recomputed choices differ from labels.npz: other features or prompts?]"
    more = (f"; {view.hidden_classes} other class(es) below {MIN_SHOWN_LABEL:g} after ReW not drawn"
            if view.hidden_classes else "")
    fig.suptitle(f"{view.video_id}: weak labels {weak}{more}{flag}", x=0.01, ha="left", fontsize=11)

    for col, modality in enumerate(("audio", "visual")):
        ax = axes[0, col]
        texts = getattr(view, f"{modality}_prompts")
        sims = getattr(view, f"{modality}_sims")
        choice = getattr(view, f"{modality}_choice")
        rows = shown[modality]
        if len(rows) == 0:
            ax.set_axis_off()
            ax.text(0.5, 0.5, "no prompts (no weak labels)", ha="center", va="center", transform=ax.transAxes)
            continue
        sub = sims[:, rows].T                                                   # (P', T)
        im = ax.imshow(sub, aspect="auto", cmap="viridis", interpolation="nearest")
        pos = {int(r): i for i, r in enumerate(rows)}
        for seg, c in enumerate(choice.tolist()):
            box = Rectangle((seg - 0.5, pos[c] - 0.5), 1, 1, fill=False, edgecolor="#ff2d2d", linewidth=2.2)
            box.set_gid(f"choice/{modality}/{seg}")
            ax.add_patch(box)
        prefix = AUDIO_PREFIX if modality == "audio" else ""
        # The audio prefix is the same on every prompt: said once in the title, not on each row.
        ax.set_yticks(range(len(rows)), [_short(texts[r][len(prefix):] if texts[r].startswith(prefix) else texts[r])
                                         for r in rows], fontsize=8)
        ax.set_xticks(range(t))
        ax.set_xlabel("segment (s)", fontsize=8)
        note = "" if len(rows) == len(texts) else f" ({len(rows)} of {len(texts)} prompts shown)"
        said = f" ('{AUDIO_PREFIX}...')" if prefix else ""
        ax.set_title(f"{modality.capitalize()} DeN: cosine(segment, prompt{said}); red box = chosen{note}",
                     fontsize=9, loc="left")
        fig.colorbar(im, ax=ax, shrink=0.9, pad=0.01).set_label("cosine", fontsize=8)

    panels = [(axes[1, 0], view.audio, "Audio labels after DeN (final audio labels)", "Greens", True),
              (axes[1, 1], view.visual_den, "Visual labels after DeN", "Oranges", True),
              (axes[2, 0], view.class_sim, "Visual: cosine(segment, class name), ReW's input", "viridis", False),
              (axes[2, 1], view.visual, "Visual soft labels after DeN + ReW (final visual labels)", "Oranges", True)]
    for ax, values, title, cmap, unit in panels:
        if k == 0:
            ax.set_axis_off()
            continue
        im = ax.imshow(values.T, aspect="auto", cmap=cmap, interpolation="nearest",
                       vmin=0 if unit else None, vmax=1 if unit else None)
        for (seg, j), v in np.ndenumerate(values):
            r, g, b, _ = im.cmap(im.norm(v))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5    # white text on dark cells
            ax.text(seg, j, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
        ax.set_yticks(range(k), class_labels, fontsize=9)
        ax.set_xticks(range(t))
        ax.set_xlabel("segment (s)", fontsize=8)
        ax.set_title(title, fontsize=9, loc="left")
        fig.colorbar(im, ax=ax, shrink=0.9, pad=0.01)
    return fig
