"""How good are denoised labels on a synthetic world: precision / recall / F1 against its hidden truth."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lsld_engine.labels.denoise import load_labels
from lsld_engine.data.llp import load_split
from lsld_engine.synthetic.synth import TRUTH_FILE


def _f1(pred: np.ndarray, truth: np.ndarray, soft: bool) -> tuple[float, float, float]:
    y = truth.astype(np.float64)
    p = pred.astype(np.float64) if soft else (pred >= 0.5).astype(np.float64)
    tp, fp, fn = (p * y).sum(), (p * (1 - y)).sum(), ((1 - p) * y).sum()
    prec = tp / max(tp + fp, 1e-12)
    rec = tp / max(tp + fn, 1e-12)
    return 100 * prec, 100 * rec, 100 * 2 * tp / max(2 * tp + fp + fn, 1e-12)


def label_quality(root: str | os.PathLike, labels_path: str | os.PathLike) -> dict:
    """Precision / recall / F1 (percent) of weak, DeN and DeN+ReW labels against the hidden truth.

    ``F1`` binarizes labels at 0.5; ``soft_F1`` uses the label values as weights.
    """
    from lsld_engine.records.untrusted import InputFileError

    root = Path(root)
    tp = root / TRUTH_FILE
    if not tp.is_file():
        raise FileNotFoundError(f"{tp} not found: quality needs a synthetic world (lsld-engine synth make)")
    with np.load(tp, allow_pickle=False) as z:
        t_ids, gt = list(z["video_ids"]), {"audio": z["audio"], "visual": z["visual"]}
    l_ids, lab = load_labels(labels_path)  # one-line errors for object arrays and other non-npz files
    for k in ("audio", "visual_den", "visual"):
        a = lab.get(k)
        if a is None or a.shape != gt["audio"].shape or a.dtype.kind not in "fiub":
            got = "missing" if a is None else f"{a.dtype} {a.shape}"
            raise InputFileError(f"{labels_path}: {k!r} must be a numeric {gt['audio'].shape} array, got {got}")
    if l_ids != t_ids:
        raise InputFileError(f"{labels_path}: video_ids do not match {tp} (labels for another root?)")
    weak = load_split(root, "train").weak
    wb = np.broadcast_to(weak[:, None, :], gt["audio"].shape)
    rows = {
        "audio": {"weak": wb, "DeN": lab["audio"]},
        "visual": {"weak": wb, "DeN": lab["visual_den"], "DeN+ReW": lab["visual"]},
    }
    out: dict = {}
    for m, kinds in rows.items():
        for kind, pred in kinds.items():
            p, r, f = _f1(pred, gt[m], soft=False)
            out.setdefault(m, {})[kind] = {"precision": p, "recall": r, "F1": f,
                                           "soft_F1": _f1(pred, gt[m], soft=True)[2]}
    return out


def format_quality(q: dict) -> str:
    lines = [f"{'modality':8s} {'labels':8s} {'prec':>6s} {'recall':>6s} {'F1':>6s} {'soft_F1':>7s}"]
    for m, kinds in q.items():
        for kind, v in kinds.items():
            lines.append(f"{m:8s} {kind:8s} {v['precision']:6.1f} {v['recall']:6.1f} {v['F1']:6.1f} {v['soft_F1']:7.1f}")
    return "\n".join(lines)
