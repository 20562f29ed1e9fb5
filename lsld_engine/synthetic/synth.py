"""A synthetic LLP world: a complete dataset root whose weak labels are noisy at segment level.

Generative model (all vectors in R^512, "unit" = L2-normalized Gaussian direction):

- **Concepts.** Per modality ``m`` (audio = CLAP-like, visual = CLIP-like) each class ``c`` has a
  concept ``u_c^m = normalize(sqrt(1-phi) e_c + sqrt(phi) f_family(c))``: classes of one family
  (string instruments, engines, babies, voices, animals, bells, appliances) share a component, so
  they are confusable. Each modality also has a background concept ``b^m`` and a constant offset
  ``g^m`` (the "modality gap": image/audio embeddings share a direction that text lacks).
- **Text.** The text tower sees class ``c`` as ``t_c^m = normalize(rho_c u_c^m + sqrt(1-rho_c^2) z_c)``
  (per-class fidelity ``rho_c``). A prompt naming subset ``A`` embeds as
  ``normalize(sum_{c in A} t_c^m + sigma_text xi_text)`` with ``xi_text`` a unit vector seeded by
  the text itself (the same text always gets the same embedding); ``other`` embeds near ``b^m``.
  Class names for ReW (``Frying_(food)``...) embed as ``normalize(rho_name u_c^v + ...)``.
- **Truth.** For each class of a video's label set: audible with probability ``p_audible[c]``,
  visible with ``p_visible[c]`` (speech is heard far more than seen; fire alarms and telephone
  bells are rarely visible; a class is always in at least one modality); in each modality it spans
  all 10 segments, one random interval, or a sporadic set of segments.
- **Features.** Segment ``t`` of a video: ``sum_{c active} w_{c,t} u_c^m + beta_t b^m + s + g^m + n_t``
  with log-normal event strengths ``w`` (weak events lose to the background), background level
  ``beta_t``, a per-video scene vector ``s`` and segment noise ``n_t``; the 8 visual frames of a
  second add independent frame noise to that second's visual vector.

So the weak labels (the video's label set broadcast to every segment and both modalities) are wrong
wherever an event is absent, and text prompts recover much of the truth, but not all of it.

``lsld-engine synth make --out ROOT [--size small|medium|llp] [--seed S]`` writes the root;
``lsld-engine synth quality --data ROOT --labels labels.npz`` scores weak / DeN / DeN+ReW
labels against the hidden truth in ``ROOT/synth_truth.npz``.
"""
from __future__ import annotations

import json
import os
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lsld_engine.contract import FRAMES_PER_SEGMENT
from lsld_engine.data.dataset import dataset_paths
from lsld_engine.data.llp import (CLASSES, CLASS_INDEX, NUM_CLASSES, SEGMENT_FILES, WEAK_FILES, T,
                             load_split)
from lsld_engine.labels.prompts import (DEFAULT_MAX_LABELS, PromptTable, prompt_subsets, save_prompt_cache,
                                 subset_text)

TRUTH_FILE = "synth_truth.npz"
#: Named world sizes: (train, val, test) videos. ``llp`` matches the real LLP splits.
SIZES: dict[str, tuple[int, int, int]] = {
    "small": (240, 60, 60),
    "medium": (2000, 300, 300),
    "llp": (10000, 649, 1200),
}

# Class families whose concepts share a component (confusable in both modalities).
_FAMILIES = {
    "voice": ("Speech", "Singing", "Cheering"),
    "animal": ("Dog", "Cat", "Chicken_rooster"),
    "strings": ("Cello", "Banjo", "Violin_fiddle", "Acoustic_guitar", "Accordion"),
    "engine": ("Car", "Chainsaw", "Lawn_mower", "Motorcycle", "Helicopter"),
    "baby": ("Baby_laughter", "Baby_cry_infant_cry"),
    "bell": ("Fire_alarm", "Telephone_bell_ringing"),
    "home": ("Frying_(food)", "Vacuum_cleaner", "Blender"),
    "sport": ("Basketball_bounce", "Clapping"),
}
# (p_audible, p_visible) per class: sounds that are rarely seen, sights that are often silent.
_PRESENCE = {
    "Speech": (0.98, 0.25), "Car": (0.75, 0.9), "Cheering": (0.95, 0.45), "Dog": (0.8, 0.85),
    "Cat": (0.7, 0.85), "Frying_(food)": (0.9, 0.75), "Basketball_bounce": (0.85, 0.9),
    "Fire_alarm": (0.98, 0.2), "Chainsaw": (0.9, 0.75), "Cello": (0.95, 0.8), "Banjo": (0.95, 0.75),
    "Singing": (0.95, 0.55), "Chicken_rooster": (0.85, 0.7), "Violin_fiddle": (0.95, 0.8),
    "Vacuum_cleaner": (0.9, 0.75), "Baby_laughter": (0.9, 0.75), "Accordion": (0.95, 0.8),
    "Lawn_mower": (0.9, 0.8), "Motorcycle": (0.85, 0.85), "Helicopter": (0.9, 0.6),
    "Acoustic_guitar": (0.95, 0.8), "Telephone_bell_ringing": (0.98, 0.3),
    "Baby_cry_infant_cry": (0.95, 0.7), "Blender": (0.9, 0.7), "Clapping": (0.9, 0.55),
}


@dataclass
class WorldConfig:
    """Knobs of the generative model (see the module docstring)."""

    dim: int = 512
    family_share: float = 0.3          # phi
    text_fidelity: tuple[float, float] = (0.7, 0.95)   # rho_c range
    text_noise: float = 0.35           # sigma_text
    text_bias: float = 0.25            # scale of each class text's (half-normal) pull toward the modality offset
    name_bias: float = 0.05            # same for the raw class names used by ReW
    name_fidelity: float = 0.8         # rho_name for raw class names
    strength_sigma: float = 0.4        # log-normal sigma of event strengths (per video and class)
    strength_jitter: float = 0.25      # log-normal sigma per segment
    background: tuple[float, float] = (0.3, 0.8)
    scene: float = 1.2                 # norm of the per-video scene vector
    gap: float = 1.5                   # norm of the modality offset
    noise: float = 0.8                 # norm of per-segment noise
    frame_noise: float = 1.5           # norm of per-frame noise (visual)
    extent_audio: tuple[float, float, float] = (0.35, 0.4, 0.25)   # full, interval, sporadic
    extent_visual: tuple[float, float, float] = (0.5, 0.4, 0.1)
    label_set_sizes: tuple[float, float, float] = (0.4, 0.5, 0.1)  # P(|S| = 1, 2, 3) when sampling
    speech_rate: float = 0.5


@dataclass
class Space:
    """The world's fixed vectors: concepts ``(C, D)``, background / offset ``(D,)``, text concepts."""

    cfg: WorldConfig
    seed: int
    concepts: dict[str, np.ndarray] = field(default_factory=dict)     # modality -> (C, D)
    background: dict[str, np.ndarray] = field(default_factory=dict)   # modality -> (D,)
    offset: dict[str, np.ndarray] = field(default_factory=dict)       # modality -> (D,)
    text: dict[str, np.ndarray] = field(default_factory=dict)         # modality -> (C+1, D); row C = other
    names: np.ndarray | None = None                                   # (C, D) raw-name concepts

    def embed_text(self, classes: tuple[int, ...], modality: str, text: str) -> np.ndarray:
        """Embedding ``(D,)`` of a prompt naming ``classes`` (``()`` = other); noise seeded by ``text``."""
        rows = list(classes) if classes else [NUM_CLASSES]
        v = self.text[modality][rows].sum(0)
        return _unit(v + self.cfg.text_noise * _text_noise(self.seed, text, self.cfg.dim))


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _text_noise(seed: int, text: str, dim: int) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(text.encode("utf-8"))])
    return _unit(rng.standard_normal(dim))


def build_space(cfg: WorldConfig, seed: int) -> Space:
    """Draw concepts, text concepts and class-name vectors for a world."""
    rng = np.random.default_rng([seed, 1])
    d, sp = cfg.dim, Space(cfg, seed)
    fam_of = {CLASS_INDEX[c]: i for i, members in enumerate(_FAMILIES.values()) for c in members}
    rho = rng.uniform(*cfg.text_fidelity, NUM_CLASSES)
    for m in ("audio", "visual"):
        fams = _unit(rng.standard_normal((len(_FAMILIES), d)))
        own = _unit(rng.standard_normal((NUM_CLASSES, d)))
        fam = fams[[fam_of[c] for c in range(NUM_CLASSES)]]
        u = _unit(np.sqrt(1 - cfg.family_share) * own + np.sqrt(cfg.family_share) * fam)
        sp.concepts[m] = u
        sp.background[m] = _unit(rng.standard_normal(d))
        sp.offset[m] = cfg.gap * _unit(rng.standard_normal(d))
        z = _unit(rng.standard_normal((NUM_CLASSES + 1, d)))
        base = np.concatenate([u, sp.background[m][None]])
        r = np.concatenate([rho, [0.9]])[:, None]
        # Some texts match every image/sound a little better or worse than others (a pull toward
        # the modality offset): systematic DeN errors that are specific to the prompt wording.
        # Hubs only pull one way (towards matching more), and "other" is no hub.
        hub = np.abs(rng.standard_normal((NUM_CLASSES + 1, 1)))
        hub[NUM_CLASSES] = 0.0
        bias = cfg.text_bias * hub * _unit(sp.offset[m])
        sp.text[m] = _unit(r * base + np.sqrt(1 - r ** 2) * z + bias)
    zn = _unit(rng.standard_normal((NUM_CLASSES, d)))
    nb = cfg.name_bias * rng.standard_normal((NUM_CLASSES, 1)) * _unit(sp.offset["visual"])
    sp.names = _unit(cfg.name_fidelity * sp.concepts["visual"] + np.sqrt(1 - cfg.name_fidelity ** 2) * zn + nb)
    return sp


# ----------------------------------------------------------------------------------------- labels
def sample_weak(rng: np.random.Generator, n: int, cfg: WorldConfig) -> np.ndarray:
    """``(n, C)`` uint8 label sets: size from ``label_set_sizes``, speech at ``speech_rate``."""
    pop = np.ones(NUM_CLASSES)
    pop[CLASS_INDEX["Speech"]] = 0
    pop[[CLASS_INDEX[c] for c in ("Singing", "Violin_fiddle", "Car", "Dog", "Cello")]] = 2.5
    pop /= pop.sum()
    sizes = rng.choice([1, 2, 3], n, p=cfg.label_set_sizes)
    speech = rng.random(n) < cfg.speech_rate
    weak = np.zeros((n, NUM_CLASSES), np.uint8)
    weak[speech, CLASS_INDEX["Speech"]] = 1
    # Gumbel top-k: a vectorized draw without replacement by popularity.
    keys = np.log(pop + 1e-12) + rng.gumbel(size=(n, NUM_CLASSES))
    order = np.argsort(-keys, axis=1)
    need = sizes - speech
    for k in range(3):
        sel = need > k
        weak[np.flatnonzero(sel), order[sel, k]] = 1
    return weak


def _extents(rng: np.random.Generator, on: np.ndarray, probs: tuple[float, float, float]) -> np.ndarray:
    """Segment masks ``(N, T, C)`` for events ``on`` (N, C): full, one interval, or sporadic."""
    n, c = on.shape
    mode = rng.choice(3, (n, c), p=probs)
    length = rng.integers(1, T + 1, (n, c))
    start = (rng.random((n, c)) * (T - length + 1)).astype(int)
    t = np.arange(T)
    interval = (t >= start[..., None]) & (t < (start + length)[..., None])
    sporadic = rng.random((n, c, T)) < rng.uniform(0.3, 0.7, (n, c))[..., None]
    empty = ~sporadic.any(-1)
    sporadic[empty, rng.integers(0, T, int(empty.sum()))] = True
    m = np.where((mode == 0)[..., None], True, np.where((mode == 1)[..., None], interval, sporadic))
    return (m & on[..., None]).transpose(0, 2, 1).astype(np.uint8)


def sample_truth(rng: np.random.Generator, weak: np.ndarray, cfg: WorldConfig) -> tuple[np.ndarray, np.ndarray]:
    """Hidden segment truth ``(gt_audio, gt_visual)``, each ``(N, T, C)`` uint8, inside ``weak``."""
    pa = np.array([_PRESENCE[c][0] for c in CLASSES])
    pv = np.array([_PRESENCE[c][1] for c in CLASSES])
    n = len(weak)
    aud = rng.random((n, NUM_CLASSES)) < pa
    vis = rng.random((n, NUM_CLASSES)) < pv
    neither = ~aud & ~vis
    aud |= neither & (pa >= pv)
    vis |= neither & (pa < pv)
    w = weak.astype(bool)
    return _extents(rng, aud & w, cfg.extent_audio), _extents(rng, vis & w, cfg.extent_visual)


# --------------------------------------------------------------------------------------- features
def render(rng: np.random.Generator, gt_a: np.ndarray, gt_v: np.ndarray, sp: Space) -> tuple[np.ndarray, np.ndarray]:
    """Features from truth: audio ``(N, T, D)`` and frames ``(N, 8*T, D)``, float32."""
    cfg, d = sp.cfg, sp.cfg.dim
    n = len(gt_a)
    out = {}
    for m, gt in (("audio", gt_a), ("visual", gt_v)):
        w = rng.lognormal(0.0, cfg.strength_sigma, (n, 1, NUM_CLASSES))
        w = w * rng.lognormal(0.0, cfg.strength_jitter, (n, T, NUM_CLASSES))
        x = (gt * w).astype(np.float32) @ sp.concepts[m]
        x += rng.uniform(*cfg.background, (n, T, 1)).astype(np.float32) * sp.background[m]
        x += (cfg.scene / np.sqrt(d)) * rng.standard_normal((n, 1, d), dtype=np.float32)
        x += (cfg.noise / np.sqrt(d)) * rng.standard_normal((n, T, d), dtype=np.float32)
        x += sp.offset[m]
        out[m] = x
    frames = np.repeat(out["visual"], FRAMES_PER_SEGMENT, axis=1)
    frames += (cfg.frame_noise / np.sqrt(d)) * rng.standard_normal(frames.shape, dtype=np.float32)
    return out["audio"], frames


# ------------------------------------------------------------------------------------- writing it
def _write_weak(path: Path, ids: list[str], weak: np.ndarray) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("filename\tevent_labels\n")
        for vid, row in zip(ids, weak):
            f.write(f"{vid}\t{','.join(CLASSES[c] for c in np.flatnonzero(row))}\n")


def _write_segments(path: Path, ids: list[str], gt: np.ndarray) -> None:
    """One row per contiguous run of a class in ``gt`` (N, T, C)."""
    pad = np.zeros((gt.shape[0], 1, gt.shape[2]), np.int8)
    diff = np.diff(np.concatenate([pad, gt.astype(np.int8), pad], axis=1), axis=1)  # (N, T+1, C)
    on_v, on_t, on_c = np.nonzero(diff == 1)
    off_v, off_t, off_c = np.nonzero(diff == -1)
    # np.nonzero walks (v, t, c) in order; sorting by (v, c, t) pairs each onset with its offset.
    a = np.lexsort((on_t, on_c, on_v))
    b = np.lexsort((off_t, off_c, off_v))
    with open(path, "w", encoding="utf-8") as f:
        f.write("filename\tonset\toffset\tevent_labels\n")
        for v, t0, c, t1 in zip(on_v[a], on_t[a], on_c[a], off_t[b]):
            f.write(f"{ids[v]}\t{t0}\t{t1}\t{CLASSES[c]}\n")


def _save_npy(path: Path, arr: np.ndarray) -> None:
    np.save(path, arr)


def _write_features(paths, ids: list[str], audio: np.ndarray, frames: np.ndarray, dtype, pool) -> list:
    """Queue one ``.npy`` per video and modality; returns the futures (rendering goes on meanwhile)."""
    audio, frames = audio.astype(dtype), frames.astype(dtype)
    jobs = []
    for i, vid in enumerate(ids):
        jobs.append(pool.submit(_save_npy, paths.feature_file("audio", vid), audio[i]))
        jobs.append(pool.submit(_save_npy, paths.feature_file("visual", vid), frames[i]))
    return jobs


def world_prompts(sp: Space, weak_all: np.ndarray, max_labels: int = DEFAULT_MAX_LABELS) -> dict[str, PromptTable]:
    """Prompt caches ``{"clip", "clap"}`` covering every prompt of ``weak_all``'s label sets, plus
    the raw class names and class phrases in the CLIP cache (for ReW)."""
    uniq = np.unique(weak_all, axis=0)
    tables = {}
    for m, key in (("audio", "clap"), ("visual", "clip")):
        texts: dict[str, np.ndarray] = {}
        for row in uniq:
            s = tuple(np.flatnonzero(row).tolist())
            if len(s) > max_labels:
                continue
            for sub in prompt_subsets(s, max_labels):
                t = subset_text(sub, m)
                if t not in texts:
                    texts[t] = sp.embed_text(sub, m, t)
        for c in range(NUM_CLASSES):
            t = subset_text((c,), m)
            texts.setdefault(t, sp.embed_text((c,), m, t))
        if m == "visual":
            for c, name in enumerate(CLASSES):
                # A raw name equal to a phrase (e.g. "Car") is one text with one embedding.
                if name not in texts:
                    texts[name] = sp.names[c]
        tables[key] = PromptTable(list(texts), np.stack(list(texts.values())))
    return tables


def _borrow(llp_dir: Path, sizes: tuple[int, int, int], rng: np.random.Generator):
    """Real label sets (train) and real val/test annotations, subsampled to ``sizes``."""
    out = {}
    for split, n in zip(("train", "val", "test"), sizes):
        s = load_split(llp_dir, split)
        take = np.sort(rng.choice(len(s), size=min(n, len(s)), replace=False)) if n < len(s) else np.arange(len(s))
        ids = [s.video_ids[i] for i in take]
        gt = (s.gt_audio[take], s.gt_visual[take]) if s.gt_audio is not None else None
        out[split] = (ids, s.weak[take], gt)
    return out


def make_world(root: str | os.PathLike, *, n_train: int, n_val: int, n_test: int, seed: int = 0,
               llp_dir: str | os.PathLike | None = None, config: WorldConfig | None = None,
               dtype: str = "float16", workers: int = 8, progress: bool = True) -> Path:
    """Write a complete dataset root at ``root`` and return it.

    With ``llp_dir`` (a folder of official annotation files) the train label sets and the val/test
    annotations are real (subsampled to the sizes asked); otherwise everything is sampled.
    Train segment truth goes to ``root/synth_truth.npz`` (``video_ids``, ``audio``, ``visual``
    (N, T, C) uint8, ``config`` JSON).
    """
    t0 = time.perf_counter()
    cfg = config or WorldConfig()
    root = Path(root)
    paths = dataset_paths(root)
    for d in (paths.clip_dir, paths.clap_dir, paths.prompts_dir):
        d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 2])
    sp = build_space(cfg, seed)
    splits = {}
    if llp_dir is not None:
        borrowed = _borrow(Path(llp_dir), (n_train, n_val, n_test), rng)
        for split, (ids, weak, gt) in borrowed.items():
            if gt is None:
                gt = sample_truth(rng, weak, cfg)
            splits[split] = (ids, weak, gt)
    else:
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            weak = sample_weak(rng, n, cfg)
            ids = [f"syn_{split}_{i:06d}" for i in range(n)]
            splits[split] = (ids, weak, sample_truth(rng, weak, cfg))

    for split, (ids, weak, _) in splits.items():
        _write_weak(root / WEAK_FILES[split], ids, weak)
    eval_ids = splits["val"][0] + splits["test"][0]
    for k, mod in enumerate(("audio", "visual")):
        gt = np.concatenate([splits["val"][2][k], splits["test"][2][k]])
        _write_segments(root / SEGMENT_FILES[mod], eval_ids, gt)

    total = sum(len(s[0]) for s in splits.values())
    bar = None
    if progress:
        from lsld_engine.progress import progress_bar
        bar = progress_bar(total=total, desc="synth features", unit="video", leave=False)
    chunk = 512
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: list = []
        for split, (ids, _, (gt_a, gt_v)) in splits.items():
            for s in range(0, len(ids), chunk):
                a, f = render(rng, gt_a[s:s + chunk], gt_v[s:s + chunk], sp)
                # Keep at most one chunk in flight: render the next while this one is written.
                for j in pending:
                    j.result()
                pending = _write_features(paths, ids[s:s + chunk], a, f, np.dtype(dtype), pool)
                if bar is not None:
                    bar.update(len(a))
        for j in pending:
            j.result()
    if bar is not None:
        bar.close()

    weak_all = np.concatenate([s[1] for s in splits.values()])
    tables = world_prompts(sp, weak_all)
    save_prompt_cache(paths.clip_cache, tables["clip"])
    save_prompt_cache(paths.clap_cache, tables["clap"])
    ids, _, (gt_a, gt_v) = splits["train"]
    meta = {"seed": seed, "sizes": [len(s[0]) for s in splits.values()],
            "llp_dir": str(llp_dir) if llp_dir else None, "config": asdict(cfg)}
    np.savez_compressed(root / TRUTH_FILE, video_ids=np.array(ids, dtype=str), audio=gt_a, visual=gt_v,
                        config=np.array(json.dumps(meta)))
    print(f"[synth] wrote {total} videos to {root} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return root


if __name__ == "__main__":  # `python -m lsld_engine.synthetic.synth` is an alias of `lsld-engine synth`
    from lsld_engine.cli import main
    sys.exit(main(["synth", *sys.argv[1:]]))
