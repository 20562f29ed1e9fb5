"""The inference rule and events: probabilities -> segment masks (``predict_masks``) <-> timed events.

An event is a maximal run of positive segments of one class: ``{"label", "onset", "offset",
"score"}`` with ``onset``/``offset`` in seconds on segment boundaries (half-open, ``offset`` is the
end of the last segment) and ``score`` the mean segment probability over the run (1.0 without
probabilities). Long videos are parsed as consecutive 10-s windows ``(W, T, C)``; their segments are
laid end to end before runs are taken, so an event crossing a window boundary stays one event with
absolute times. Audio-visual events come from the product of the audio and visual tracks (masks
and probabilities alike).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import math

import numpy as np
from numba import njit

from lsld_engine.data.llp import CLASS_INDEX, CLASSES, NUM_CLASSES, T
from lsld_engine.errors import LsldError

TRACKS: tuple[str, ...] = ("audio", "visual", "audio_visual")
#: The paper's fixed threshold, for segment and video probabilities alike.
DEFAULT_THRESHOLD = 0.5


class ThresholdError(LsldError, ValueError):
    """A probability threshold outside [0, 1] or NaN (one line naming it)."""


def check_threshold(name: str, value) -> float:
    """``value`` as a float when it is a probability in [0, 1]; else :class:`ThresholdError` naming
    ``name`` (e.g. ``--seg-threshold``). Every entry point of a threshold (flags, the API, the Ray
    actors, thresholds read from a checkpoint) goes through here: a typo such as 50 for 50 % would
    otherwise empty every record of a run without a word. Thresholds a checkpoint will carry go
    through here too."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ThresholdError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if math.isnan(v) or not 0.0 <= v <= 1.0:
        hint = f" (a percentage? use {v / 100:g})" if 1 < v <= 100 else ""
        raise ThresholdError(f"{name} must be a probability in [0, 1], got {value!r}{hint}")
    return v


def predict_masks(seg_prob, a_prob, v_prob, seg_threshold: float = DEFAULT_THRESHOLD,
                  video_threshold: float = DEFAULT_THRESHOLD):
    """The inference rule: segment ``t`` is positive for class ``c`` in a modality when its segment
    probability ``>= seg_threshold`` and that modality's video-level probability ``>= video_threshold``.

    ``seg_prob`` ``(N, T, 2, C)`` (modality 0 audio, 1 visual), ``a_prob`` / ``v_prob`` ``(N, C)``
    (numpy or torch) -> ``pred_a``, ``pred_v`` ``(N, T, C)`` uint8 numpy arrays.
    """
    # torch tensors are accepted without importing torch here (``lsld-engine eval`` stays torch-free)
    as_np = lambda x: x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)  # noqa: E731
    seg, a, v = as_np(seg_prob), as_np(a_prob), as_np(v_prob)
    seg_threshold = check_threshold("seg_threshold", seg_threshold)
    video_threshold = check_threshold("video_threshold", video_threshold)
    if seg.ndim != 4 or seg.shape[2] != 2 or a.shape != (seg.shape[0], seg.shape[3]) or v.shape != a.shape:
        raise ValueError(f"expected seg_prob (N, T, 2, C) and a_prob, v_prob (N, C); got {seg.shape}, {a.shape}, {v.shape}")
    pred_a = (seg[:, :, 0] >= seg_threshold) & (a[:, None, :] >= video_threshold)
    pred_v = (seg[:, :, 1] >= seg_threshold) & (v[:, None, :] >= video_threshold)
    return pred_a.astype(np.uint8), pred_v.astype(np.uint8)


def find_runs(masks: np.ndarray, probs: np.ndarray | None = None):
    """Maximal runs of each class in a batch of masks.

    ``masks``: ``(N, L, C)`` 0/1 or bool; ``probs``: ``(N, L, C)`` float or None.
    Returns ``(video, cls, start, end, score)``, each ``(R,)``, sorted by video, then start, then
    class; ``start``/``end`` are segment indices (half-open), ``score`` the mean probability (1.0
    without ``probs``).
    """
    m = _as_mask(masks, "masks")
    if m.ndim != 3:
        raise ValueError(f"masks must be (N, T, C), got shape {m.shape}")
    if probs is None:
        pr = np.ones((1, 1, 1), np.float64)  # broadcast sentinel, see _runs_kernel
    else:
        pr = np.asarray(probs, dtype=np.float64)
        if pr.shape != m.shape:
            raise ValueError(f"probs shape {pr.shape} differs from masks shape {m.shape}")
        pr = np.ascontiguousarray(pr)
    vid, cls, start, end, score = _runs_kernel(m, pr, probs is not None)
    order = np.lexsort((cls, start, vid))
    return vid[order], cls[order], start[order], end[order], score[order]


def batch_masks_to_events(masks: np.ndarray, probs: np.ndarray | None = None, segment_seconds: float = 1.0,
                          offset_s: float = 0.0, durations: Sequence[float] | np.ndarray | None = None
                          ) -> list[list[dict]]:
    """Events of each video: ``masks``/``probs`` ``(N, T, C)`` -> N lists of event dicts.

    ``durations`` (N,) clips offsets to each video's real length and drops events that start at or
    after it (padding of the last window).
    """
    if np.shape(masks)[-1] != NUM_CLASSES:
        raise ValueError(f"masks must have C = {NUM_CLASSES} LLP classes last, got shape {np.shape(masks)}")
    vid, cls, start, end, score = find_runs(masks, probs)
    onset = start * segment_seconds + offset_s
    offset = end * segment_seconds + offset_s
    n = np.asarray(masks).shape[0]
    if durations is not None:
        dur = np.broadcast_to(np.asarray(durations, dtype=np.float64), (n,))[vid]
        keep = onset < dur
        vid, cls, onset, score = vid[keep], cls[keep], onset[keep], score[keep]
        offset = np.minimum(offset[keep], dur[keep])
    bounds = np.searchsorted(vid, np.arange(n + 1))
    # Building the dicts is inherently per event; everything before it is vectorised.
    labels = [CLASSES[c] for c in cls.tolist()]
    on, off, sc = onset.tolist(), offset.tolist(), score.tolist()
    return [[{"label": labels[r], "onset": on[r], "offset": off[r], "score": sc[r]}
             for r in range(bounds[i], bounds[i + 1])] for i in range(n)]


def masks_to_events(mask: np.ndarray, probs: np.ndarray | None = None, segment_seconds: float = 1.0,
                    offset_s: float = 0.0, duration: float | None = None) -> list[dict]:
    """Events of one video: ``mask`` ``(T, C)`` (or windows ``(W, T, C)``, laid end to end)."""
    mask = np.asarray(mask)
    if mask.ndim not in (2, 3):
        raise ValueError(f"mask must be (T, C) or (W, T, C), got shape {mask.shape}")
    if probs is not None and np.asarray(probs).shape != mask.shape:
        raise ValueError(f"probs shape {np.asarray(probs).shape} differs from mask shape {mask.shape}")
    flat = mask.reshape(1, -1, mask.shape[-1])
    fprobs = None if probs is None else np.asarray(probs).reshape(flat.shape)
    return batch_masks_to_events(flat, fprobs, segment_seconds, offset_s,
                                 None if duration is None else [duration])[0]


def track_events(mask_a: np.ndarray, mask_v: np.ndarray, prob_a: np.ndarray | None = None,
                 prob_v: np.ndarray | None = None, segment_seconds: float = 1.0,
                 duration: float | None = None) -> dict[str, list[dict]]:
    """``{"audio", "visual", "audio_visual"}`` events of one video from ``(T, C)`` or ``(W, T, C)`` masks.

    The audio-visual track is ``mask_a * mask_v`` with score the mean of ``prob_a * prob_v``.
    """
    mask_a, mask_v = np.asarray(mask_a), np.asarray(mask_v)
    if mask_a.shape != mask_v.shape:
        raise ValueError(f"audio mask {mask_a.shape} and visual mask {mask_v.shape} differ in shape")
    prob_av = None
    if prob_a is not None and prob_v is not None:
        prob_av = np.asarray(prob_a, np.float64) * np.asarray(prob_v, np.float64)
    mask_av = _as_mask(mask_a, "mask_a") & _as_mask(mask_v, "mask_v")
    return {
        "audio": masks_to_events(mask_a, prob_a, segment_seconds, duration=duration),
        "visual": masks_to_events(mask_v, prob_v, segment_seconds, duration=duration),
        "audio_visual": masks_to_events(mask_av, prob_av, segment_seconds, duration=duration),
    }


def events_to_mask(events: Iterable[dict], num_segments: int = T, segment_seconds: float = 1.0) -> np.ndarray:
    """Dense ``(num_segments, C)`` uint8 mask of a list of events (the inverse of :func:`masks_to_events`)."""
    return events_to_masks([events], num_segments, segment_seconds)[0]


def events_to_masks(videos: Sequence[Iterable[dict]], num_segments: int = T,
                    segment_seconds: float = 1.0) -> np.ndarray:
    """Dense ``(N, num_segments, C)`` uint8 masks of N lists of events.

    An event sets segments ``floor(onset) <= t < ceil(offset)`` (in segment units, clipped to the
    clip), so an offset clipped to a video's non-integer duration keeps its partial last segment.
    Unknown labels raise ``ValueError``.
    """
    vid, cls, on, off = [], [], [], []
    for i, events in enumerate(videos):
        for e in events:
            label = e["label"]
            if label not in CLASS_INDEX:
                raise ValueError(f"video #{i}: unknown class {label!r} (expected one of the 25 LLP classes)")
            vid.append(i)
            cls.append(CLASS_INDEX[label])
            on.append(e["onset"])
            off.append(e["offset"])
    out = np.zeros((len(videos), num_segments, NUM_CLASSES), np.uint8)
    if vid:
        # Onsets sit on segment boundaries; offsets may be clipped to a non-integer duration (the
        # last, partial segment), so round the onset down and the offset up to whole segments.
        eps = 1e-6
        start = np.clip(np.floor(np.asarray(on, np.float64) / segment_seconds + eps), 0, num_segments).astype(np.int64)
        end = np.clip(np.ceil(np.asarray(off, np.float64) / segment_seconds - eps), 0, num_segments).astype(np.int64)
        _fill_kernel(out, np.asarray(vid, np.int64), np.asarray(cls, np.int64), start, end)
    return out


def _as_mask(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.bool_:
        return np.ascontiguousarray(x).view(np.uint8)
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name} must be a 0/1 integer or bool mask, got {x.dtype} (threshold probabilities first)")
    return np.ascontiguousarray(x != 0, dtype=np.uint8)


@njit(cache=True)
def _runs_kernel(m, pr, use_probs):
    """Runs of ``m`` ``(N, L, C)`` uint8 in (video, class, start) order with mean ``pr`` scores."""
    n, length, n_cls = m.shape
    count = 0
    for i in range(n):
        for c in range(n_cls):
            prev = 0
            for t in range(length):
                if m[i, t, c] and not prev:
                    count += 1
                prev = m[i, t, c]
    vid = np.empty(count, np.int64)
    cls = np.empty(count, np.int64)
    start = np.empty(count, np.int64)
    end = np.empty(count, np.int64)
    score = np.empty(count, np.float64)
    k = 0
    for i in range(n):
        for c in range(n_cls):
            t = 0
            while t < length:
                if not m[i, t, c]:
                    t += 1
                    continue
                s = t
                total = 0.0
                while t < length and m[i, t, c]:
                    if use_probs:
                        total += pr[i, t, c]
                    t += 1
                vid[k] = i
                cls[k] = c
                start[k] = s
                end[k] = t
                score[k] = total / (t - s) if use_probs else 1.0
                k += 1
    return vid, cls, start, end, score


@njit(cache=True)
def _fill_kernel(out, vid, cls, start, end):
    for r in range(vid.shape[0]):
        for t in range(start[r], end[r]):
            out[vid[r], t, cls[r]] = 1
