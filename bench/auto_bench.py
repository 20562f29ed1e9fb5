"""End-to-end ``lsld-engine parse`` clips/s: the old default (torch eager fp32) vs ``--backend auto``.

    python -m bench.auto_bench                    # 8 generated 10-s clips, real-size random towers
    python -m bench.auto_bench --clips 4 --small  # quick check of the script itself

Each configuration is one ``lsld-engine parse`` process over the same clips (``--random-weights``:
the same networks on every backend), rows in one run:

- ``torch fp32 (old default)``: ``--backend torch --precision fp32 --batch-size 64`` (the default
  before ``auto``, with its CPU batches: 64 images, 16 segments a call); the ratios are to this row;
- ``torch fp32``: the same with today's CPU batches for torch (16 / 16);
- ``auto``: no flags, what a user gets (on a native-bf16 CPU: torch, CLIP with bf16 weights; else
  ONNX Runtime fp32);
- ``auto fp32``: ``--precision fp32``: ONNX Runtime over an export cache made beforehand (its
  first-use export is timed separately: that cost is paid once per checkpoint and version);
- ``auto int8``: ``--precision int8``: the cache's int8 engine, built beforehand from those files
  (quantization, fidelity report and gate; timed separately, also paid once).

clips/s is the parse summary's (decode + encoders + HAN, after the networks are loaded); the
process's wall time (start-up and network loading included) is shown beside it. Events of each row
are compared with the torch row (share of equal segment cells). The configurations run one after
another on a possibly shared machine: read ratios as indications. Never asserts.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_clips(folder: Path, n: int) -> Path:
    from lsld_engine.testing.videos import VideoSpec, make_video

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        make_video(folder / f"clip{i}.mp4", VideoSpec(freq=300.0 + 150 * i))
    return folder


def export_first_use(cache: Path, small: bool, precision: str = "fp32") -> dict[str, float]:
    """Seconds each network's first-use export took (parity check included)."""
    from lsld_engine.exporting.cache import ensure, spec_for

    out = {}
    for net in ("clip_image", "clap_audio", "han"):
        spec = spec_for(net, {"random_weights": True, "size": "small" if small else "real"}, precision)
        t = time.perf_counter()
        res = ensure(spec, cache)
        out[net] = time.perf_counter() - t if res.exported else 0.0
    return out


def run_parse(clips: Path, out: Path, flags: list[str], cache: Path) -> tuple[float, float, str]:
    """``(clips/s from the summary, wall seconds, stderr)`` of one parse process."""
    cmd = [sys.executable, "-m", "lsld_engine.cli", "parse", str(clips), "--out", str(out), "--random-weights",
           "--no-resume", "--ordered", *flags]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LSLD_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    # from the summary's seconds, not its videos/s (printed with 2 decimals: 0.01 for a slow run)
    m = re.search(r"parsed (\d+) videos .* in ([\d.]+) s \(", p.stderr)
    return (int(m.group(1)) / float(m.group(2)) if m else float("nan")), wall, p.stderr


def segment_cells(path: Path) -> dict:
    """``{(video, modality, label, second)}`` of every event's segments."""
    cells = set()
    for line in path.read_text().splitlines():
        r = json.loads(line)
        for mod, events in r.get("events", {}).items():
            for e in events:
                for s in range(int(e["onset"]), int(e["offset"])):
                    cells.add((r["video_id"], mod, e["label"], s))
    return cells


def agreement(a: set, b: set, n_clips: int, n_classes: int = 25) -> float:
    """Share of all (clip, modality, class, second) cells on which ``a`` and ``b`` agree."""
    total = n_clips * 3 * n_classes * 10
    return 1.0 - len(a ^ b) / total


def build_int8(cache: Path, small: bool) -> float:
    """Seconds the cache's first-use int8 engine took (quantization + fidelity report on generated
    clips; the fp32 entries exist already); prints its report."""
    from lsld_engine.backends.int8_report import read_report
    from lsld_engine.exporting.cache import ensure_int8, spec_for

    specs = [spec_for(n, {"random_weights": True, "size": "small" if small else "real"})
             for n in ("clip_image", "clap_audio", "han")]
    t = time.perf_counter()
    res = ensure_int8(specs, cache)
    print(read_report(res.path).format_text())
    return time.perf_counter() - t if res.exported else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--small", action="store_true", help="small towers (checks the script, not the speed)")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="auto_bench_"))
    clips = make_clips(work / "clips", args.clips)
    cache = work / "cache"
    size = ["--small"] if args.small else []
    from lsld_engine.doctor import facts

    f = facts()
    print(f"machine: {f.cpu_model}, {f.usable_cores} cores; AVX-512 {f.cpu_features['AVX-512']}, "
          f"VNNI {f.cpu_features['VNNI']}, BF16 {f.cpu_features['BF16']}; torch {f.torch}, ORT {f.onnxruntime}")
    print(f"{args.clips} generated 10-s clips, {'small' if args.small else 'real-size'} random towers; cache {cache}")

    t = export_first_use(cache, args.small)
    print("first-use export (once per checkpoint / version; parity checked): "
          + ", ".join(f"{k} {v:.0f} s" for k, v in t.items()) + f"; total {sum(t.values()):.0f} s")

    t8 = build_int8(cache, args.small)
    print(f"first-use int8 engine (quantization + fidelity report): {t8:.0f} s, once")
    from lsld_engine.backends.auto import choose

    print(f"auto without --precision here: {choose('cpu').describe()}")
    rows = [("torch fp32 (old default)", ["--backend", "torch", "--precision", "fp32", "--batch-size", "64"]),
            ("torch fp32", ["--backend", "torch", "--precision", "fp32"]),
            ("auto (no flags)", []),
            ("auto --precision fp32", ["--precision", "fp32"]),
            ("auto --precision int8", ["--precision", "int8"])]

    results = []
    for name, flags in rows:
        out = work / f"{re.sub(r'[^a-z0-9]+', '_', name)}.jsonl"
        cps, wall, err = run_parse(clips, out, [*flags, *size], cache)
        if "exporting" in err or "building the int8" in err:
            print(f"  warning: {name} exported during the timed run")
        results.append((name, cps, wall, segment_cells(out)))
    base = results[0][1]
    print(f"\n{'configuration':<26} {'clips/s':>8} {'ratio':>6} {'wall s':>7} {'cells = torch':>14}")
    for name, cps, wall, cells in results:
        agree = agreement(cells, results[0][3], args.clips)
        print(f"{name:<26} {cps:>8.4f} {cps / base:>5.2f}x {wall:>7.0f} {agree:>13.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
