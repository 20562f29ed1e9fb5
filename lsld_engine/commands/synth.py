"""``lsld-engine synth``: write a synthetic LLP dataset root, or score denoised labels against its truth."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from lsld_engine.synthetic.synth import SIZES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="synth_command", metavar="ACTION", required=True)
    mk = sub.add_parser("make", help="write a synthetic dataset root")
    mk.add_argument("--out", required=True, help="dataset root to write")
    mk.add_argument("--size", choices=sorted(SIZES), default="small",
                    help="world size: " + ", ".join(f"{k}={v[0]}/{v[1]}/{v[2]}" for k, v in SIZES.items()))
    mk.add_argument("--n-train", type=int, help="override the train size")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--llp-dir", default="auto",
                    help="official annotation folder to borrow label sets and val/test truth from; "
                         "'auto' (default): ../shared/llp when present; 'none': sample everything")
    mk.add_argument("--float32", action="store_true", help="write float32 features (default float16)")
    q = sub.add_parser("quality", help="F1 of weak / DeN / DeN+ReW labels against the hidden truth")
    q.add_argument("--data", required=True, help="synthetic dataset root")
    q.add_argument("--labels", required=True, help="labels.npz from `python -m train.lsld denoise`")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from lsld_engine.synthetic import synth, synth_quality
    from lsld_engine.data.llp import WEAK_FILES, default_llp_dir

    if args.synth_command == "make":
        n_train, n_val, n_test = SIZES[args.size]
        llp = {"auto": default_llp_dir(), "none": None}.get(args.llp_dir, args.llp_dir)
        if llp is not None and not (Path(llp) / WEAK_FILES["train"]).is_file():
            raise SystemExit(f"--llp-dir {llp}: {WEAK_FILES['train']} not found there")
        synth.make_world(args.out, n_train=args.n_train or n_train, n_val=n_val, n_test=n_test, seed=args.seed,
                         llp_dir=llp, dtype="float32" if args.float32 else "float16")
        print(args.out)
        return 0
    res = synth_quality.label_quality(args.data, args.labels)
    print(json.dumps(res, indent=2) if args.json else synth_quality.format_quality(res))
    return 0
