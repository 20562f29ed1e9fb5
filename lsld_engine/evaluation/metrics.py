"""The official LLP audio-visual video parsing metrics (Tian et al., ECCV 2020), compiled with Numba.

Inputs are dense 0/1 tracks ``(N, T, C)`` (videos x segments x classes). Per video and class:

- the audio-visual tracks are the products ``a * v`` of prediction and of ground truth;
- segment level counts segments: TP = p & g, FP = p & ~g, FN = ~p & g;
- event level takes each maximal run of positive segments as an event; a predicted event is a TP
  when its IoU with some ground-truth event of the class is >= 0.5 (else an FP), a ground-truth
  event is an FN when no predicted event reaches IoU >= 0.5 with it;
- per video, F = mean over the classes with TP+FP > 0 or TP+FN > 0 of 2TP / (2TP+FP+FN), and 1.0
  when no class qualifies (all true negatives);
- ``Event@AV`` scores the audio+visual counts summed per class, ``Type@AV`` is mean(A, V, AV);
- every reported number is 100 x the mean over videos.

:func:`evaluate` is the public entry; the kernels beneath it are private: videos are scored
independently (threads over chunks of videos for large inputs), each class track as an int64 bit
mask when ``T <= 62`` (runs and counts by bit tricks) and by segment scans otherwise.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Result keys, in the paper's order (segment level, then event level).
METRIC_KEYS: tuple[str, ...] = (
    "seg_a", "seg_v", "seg_av", "seg_type", "seg_event",
    "evt_a", "evt_v", "evt_av", "evt_type", "evt_event",
)
_COLUMNS = ("Audio", "Visual", "Audio-Visual", "Type@AV", "Event@AV")


def evaluate(pred_a, pred_v, gt_a, gt_v, *, parallel: bool | None = None) -> dict[str, float]:
    """The ten official LLP numbers in percent (unrounded), keyed by :data:`METRIC_KEYS`.

    ``pred_a``, ``pred_v``, ``gt_a``, ``gt_v``: ``(N, T, C)`` 0/1 arrays of any integer or bool dtype.
    ``parallel``: threads over videos; default: only from :data:`PARALLEL_MIN_VIDEOS` videos up.
    """
    scores = per_video(pred_a, pred_v, gt_a, gt_v, parallel=parallel)
    means = scores.mean(axis=0)
    return {k: float(means[i]) for i, k in enumerate(METRIC_KEYS)}


def per_video(pred_a, pred_v, gt_a, gt_v, *, parallel: bool | None = None) -> np.ndarray:
    """Per-video scores ``(N, 10)`` float64 in percent, columns in :data:`METRIC_KEYS` order."""
    arrays = [_as_binary(x, name) for x, name in
              ((pred_a, "pred_a"), (pred_v, "pred_v"), (gt_a, "gt_a"), (gt_v, "gt_v"))]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError("pred_a, pred_v, gt_a, gt_v must have the same (N, T, C) shape, got "
                         + ", ".join(str(a.shape) for a in arrays))
    if arrays[0].shape[0] == 0:
        raise ValueError("no videos to evaluate (N = 0)")
    if parallel is None:
        parallel = arrays[0].shape[0] >= PARALLEL_MIN_VIDEOS
    return (_kernel_parallel if parallel else _kernel_serial)(*arrays) * 100.0


def format_table(results: dict[str, float], digits: int = 2) -> str:
    """The ten numbers as a two-row table in the paper's order (segment level, event level)."""
    missing = [k for k in METRIC_KEYS if k not in results]
    if missing:
        raise KeyError(f"results lack {missing}: expected the keys of metrics.METRIC_KEYS")
    width = max(len(c) for c in _COLUMNS) + 2
    lines = ["".ljust(15) + "".join(c.rjust(width) for c in _COLUMNS)]
    for name, prefix in (("Segment-level", "seg_"), ("Event-level", "evt_")):
        keys = [k for k in METRIC_KEYS if k.startswith(prefix)]
        lines.append(name.ljust(15) + "".join(f"{results[k]:.{digits}f}".rjust(width) for k in keys))
    return "\n".join(lines)


def _as_binary(x, name: str) -> np.ndarray:
    """``x`` as a C-contiguous uint8 ``(N, T, C)`` array, after checking it is 0/1 integer/bool."""
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"{name} must be (N, T, C) = videos x segments x classes, got shape {x.shape}")
    if x.dtype == np.bool_:
        return np.ascontiguousarray(x).view(np.uint8)
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name} must be a 0/1 array of integer or bool dtype, got {x.dtype} "
                        "(threshold probabilities first, e.g. probs >= 0.5)")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{name} must hold only 0 and 1, found values in [{x.min()}, {x.max()}]")
    return np.ascontiguousarray(x, dtype=np.uint8)


@njit(cache=True, inline="always")
def _f_add(tp, fp, fn, acc, col):
    # Classes with neither predictions nor truth are skipped (official definition).
    if tp + fp > 0 or tp + fn > 0:
        acc[col, 0] += 2.0 * tp / (2.0 * tp + fp + fn)
        acc[col, 1] += 1.0


@njit(cache=True)
def _runs(seq, starts, ends):
    """Maximal runs of ones in ``seq`` (T,) into ``starts``/``ends`` (half-open); returns the count."""
    k = 0
    inside = False
    for t in range(seq.shape[0]):
        if seq[t] and not inside:
            starts[k] = t
            inside = True
        elif not seq[t] and inside:
            ends[k] = t
            k += 1
            inside = False
    if inside:
        ends[k] = seq.shape[0]
        k += 1
    return k


@njit(cache=True)
def _event_counts(p, g, ps, pe, gs, ge, hit_g):
    """Event-level (TP, FP, FN) of one class track: prediction ``p`` vs truth ``g``, both (T,)."""
    n_p = _runs(p, ps, pe)
    n_g = _runs(g, gs, ge)
    for j in range(n_g):
        hit_g[j] = False
    tp = 0
    for i in range(n_p):
        hit = False
        for j in range(n_g):
            inter = min(pe[i], ge[j]) - max(ps[i], gs[j])
            if inter < 0:
                inter = 0
            union = (pe[i] - ps[i]) + (ge[j] - gs[j]) - inter
            if 2 * inter >= union:  # IoU >= 0.5, exactly
                hit = True
                hit_g[j] = True
        if hit:
            tp += 1
    fn = 0
    for j in range(n_g):
        if not hit_g[j]:
            fn += 1
    return tp, n_p - tp, fn


_CHUNK = 32  # videos per parallel task: buffers are allocated once per chunk, not per video
#: Below this many videos :func:`per_video` runs single-threaded: a parallel region must wait for
#: every worker thread, and on a loaded 2-core machine one of them can wait a whole scheduler
#: slice (~8 ms measured) for a core, while the full LLP test split (1,200 videos) takes ~0.5 ms on
#: one thread. Above it the work dwarfs that wait.
PARALLEL_MIN_VIDEOS = 8192


@njit(cache=True, parallel=True)
def _kernel_parallel(pa, pv, ga, gv):
    """Per-video F scores in [0, 1]: ``(N, T, C)`` uint8 x4 -> ``(N, 10)``, threads over video chunks."""
    n = pa.shape[0]
    out = np.empty((n, 10))
    n_chunks = (n + _CHUNK - 1) // _CHUNK
    for chunk in prange(n_chunks):
        _score_videos(chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK), pa, pv, ga, gv, out)
    return out


@njit(cache=True)
def _kernel_serial(pa, pv, ga, gv):
    """As :func:`_kernel_parallel`, on the calling thread."""
    out = np.empty((pa.shape[0], 10))
    _score_videos(0, pa.shape[0], pa, pv, ga, gv, out)
    return out


@njit(cache=True)
def _score_videos(lo, hi, pa, pv, ga, gv, out):
    """Write the ten per-video F scores of videos ``lo..hi-1`` into ``out[i]``."""
    if pa.shape[1] <= _MAX_BITS:
        _score_videos_bits(lo, hi, pa, pv, ga, gv, out)
    else:
        _score_videos_scan(lo, hi, pa, pv, ga, gv, out)


@njit(cache=True, inline="always")
def _store_scores(f, out, i):
    for lvl in range(2):
        b = 4 * lvl
        o = 5 * lvl
        out[i, o] = f[b]
        out[i, o + 1] = f[b + 1]
        out[i, o + 2] = f[b + 2]
        out[i, o + 3] = (f[b] + f[b + 1] + f[b + 2]) / 3.0
        out[i, o + 4] = f[b + 3]


_MAX_BITS = 62  # tracks up to this many segments are scored as int64 bit masks


@njit(cache=True, inline="always")
def _popcount(x):
    # SWAR popcount of a non-negative int64 below 2**62 (no multiply, so no signed overflow).
    x = x - ((x >> 1) & 0x5555555555555555)
    x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0F
    x = x + (x >> 8)
    x = x + (x >> 16)
    x = x + (x >> 32)
    return x & 0x7F


@njit(cache=True)
def _event_counts_bits(p, g, pruns, gruns):
    """Event-level (TP, FP, FN) of one class track given as bit masks (bit t = segment t)."""
    n_p = 0
    while p:
        low = p & -p
        run = p & ~(p + low)  # the lowest maximal run of ones
        pruns[n_p] = run
        n_p += 1
        p ^= run
    n_g = 0
    while g:
        low = g & -g
        run = g & ~(g + low)
        gruns[n_g] = run
        n_g += 1
        g ^= run
    tp = 0
    fn = 0
    for i in range(n_p):
        for j in range(n_g):
            if (pruns[i] & gruns[j]) and 2 * _popcount(pruns[i] & gruns[j]) >= _popcount(pruns[i] | gruns[j]):
                tp += 1
                break
    for j in range(n_g):
        hit = False
        for i in range(n_p):
            if (pruns[i] & gruns[j]) and 2 * _popcount(pruns[i] & gruns[j]) >= _popcount(pruns[i] | gruns[j]):
                hit = True
                break
        if not hit:
            fn += 1
    return tp, n_p - tp, fn


@njit(cache=True)
def _score_videos_bits(lo, hi, pa, pv, ga, gv, out):
    """:func:`_score_videos` for ``T <= 62``: each class track is an int64 bit mask."""
    t_len, n_cls = pa.shape[1], pa.shape[2]
    bits = np.empty((4, n_cls), np.int64)
    runs = np.empty((2, (t_len + 1) // 2 + 1), np.int64)
    acc = np.empty((8, 2))
    f = np.empty(8)
    for i in range(lo, hi):
        bits[:] = 0
        for t in range(t_len):
            for c in range(n_cls):
                bits[0, c] |= np.int64(pa[i, t, c]) << t
                bits[1, c] |= np.int64(pv[i, t, c]) << t
                bits[2, c] |= np.int64(ga[i, t, c]) << t
                bits[3, c] |= np.int64(gv[i, t, c]) << t
        acc[:] = 0.0
        for c in range(n_cls):
            xa, xv, ya, yv = bits[0, c], bits[1, c], bits[2, c], bits[3, c]
            # A class with no positive anywhere has TP = FP = FN = 0 on every track: skipped by
            # the definition (and most LLP classes are absent from a video).
            if (xa | xv | ya | yv) == 0:
                continue
            xav = xa & xv
            yav = ya & yv
            sa = (_popcount(xa & ya), _popcount(xa & ~ya), _popcount(~xa & ya))
            sv = (_popcount(xv & yv), _popcount(xv & ~yv), _popcount(~xv & yv))
            s_av = (_popcount(xav & yav), _popcount(xav & ~yav), _popcount(~xav & yav))
            ea = _event_counts_bits(xa, ya, runs[0], runs[1])
            ev = _event_counts_bits(xv, yv, runs[0], runs[1])
            e_av = _event_counts_bits(xav, yav, runs[0], runs[1])
            _f_add(sa[0], sa[1], sa[2], acc, 0)
            _f_add(sv[0], sv[1], sv[2], acc, 1)
            _f_add(s_av[0], s_av[1], s_av[2], acc, 2)
            _f_add(sa[0] + sv[0], sa[1] + sv[1], sa[2] + sv[2], acc, 3)
            _f_add(ea[0], ea[1], ea[2], acc, 4)
            _f_add(ev[0], ev[1], ev[2], acc, 5)
            _f_add(e_av[0], e_av[1], e_av[2], acc, 6)
            _f_add(ea[0] + ev[0], ea[1] + ev[1], ea[2] + ev[2], acc, 7)
        for col in range(8):
            f[col] = acc[col, 0] / acc[col, 1] if acc[col, 1] > 0 else 1.0
        _store_scores(f, out, i)


@njit(cache=True)
def _score_videos_scan(lo, hi, pa, pv, ga, gv, out):
    """:func:`_score_videos` for any ``T``: segment-by-segment scans."""
    t_len, n_cls = pa.shape[1], pa.shape[2]
    half = (t_len + 1) // 2 + 1
    # acc[col] = (sum of per-class F, number of qualifying classes); cols 0-3 segment a, v, av,
    # a+v; 4-7 the same at event level.
    acc = np.empty((8, 2))
    active = np.empty(n_cls, np.uint8)
    p = np.empty((3, t_len), np.uint8)
    g = np.empty((3, t_len), np.uint8)
    ps = np.empty(half, np.int64)
    pe = np.empty(half, np.int64)
    gs = np.empty(half, np.int64)
    ge = np.empty(half, np.int64)
    hit_g = np.empty(half, np.bool_)
    seg = np.empty((3, 3), np.int64)
    evt = np.empty((3, 3), np.int64)
    f = np.empty(8)
    for i in range(lo, hi):
        acc[:] = 0.0
        # A class with no positive anywhere has TP = FP = FN = 0 on every track and is skipped by
        # the definition; most LLP classes are absent from a video, so find the rest first.
        active[:] = 0
        for t in range(t_len):
            for c in range(n_cls):
                active[c] |= pa[i, t, c] | pv[i, t, c] | ga[i, t, c] | gv[i, t, c]
        for c in range(n_cls):
            if not active[c]:
                continue
            for t in range(t_len):
                p[0, t] = pa[i, t, c]
                p[1, t] = pv[i, t, c]
                p[2, t] = pa[i, t, c] & pv[i, t, c]
                g[0, t] = ga[i, t, c]
                g[1, t] = gv[i, t, c]
                g[2, t] = ga[i, t, c] & gv[i, t, c]
            for k in range(3):
                tp = 0
                fp = 0
                fn = 0
                for t in range(t_len):
                    tp += p[k, t] & g[k, t]
                    fp += p[k, t] & (1 - g[k, t])
                    fn += (1 - p[k, t]) & g[k, t]
                seg[k, 0] = tp
                seg[k, 1] = fp
                seg[k, 2] = fn
                etp, efp, efn = _event_counts(p[k], g[k], ps, pe, gs, ge, hit_g)
                evt[k, 0] = etp
                evt[k, 1] = efp
                evt[k, 2] = efn
                _f_add(tp, fp, fn, acc, k)
                _f_add(etp, efp, efn, acc, 4 + k)
            _f_add(seg[0, 0] + seg[1, 0], seg[0, 1] + seg[1, 1], seg[0, 2] + seg[1, 2], acc, 3)
            _f_add(evt[0, 0] + evt[1, 0], evt[0, 1] + evt[1, 1], evt[0, 2] + evt[1, 2], acc, 7)
        for col in range(8):
            f[col] = acc[col, 0] / acc[col, 1] if acc[col, 1] > 0 else 1.0
        _store_scores(f, out, i)
