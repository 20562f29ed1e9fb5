"""``lsld-engine doctor``: one screen with what this machine has and what ``--backend auto`` picks (:mod:`lsld_engine.doctor`)."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="the same facts as one JSON object")


def run(args: argparse.Namespace) -> int:
    from lsld_engine.doctor import facts, report

    f = facts()
    print(json.dumps(asdict(f), indent=2) if args.json else report(f))
    return 0
