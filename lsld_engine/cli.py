"""``lsld-engine`` command line: argument parsing only; each subcommand lives in its own module.

Ordinary user mistakes (a missing file, a corrupt checkpoint, a malformed CSV) raise
:class:`lsld_engine.errors.LsldError` subclasses; :func:`report_user_errors` catches them by type and
turns them into one ``PROG: error: ...`` line and exit status 2 (set ``LSLD_DEBUG=1`` for the
traceback). Anything else is a bug and keeps its traceback.

A subcommand module under ``lsld_engine/commands/`` exposes ``add_arguments(parser)`` and
``run(args) -> int``; it is imported only when chosen, so ``lsld-engine eval`` never loads the
encoder or media stacks.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable

from lsld_engine.errors import is_user_error  # noqa: F401 - part of this module's API (tests, entry points)

#: name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "eval": ("lsld_engine.commands.eval", "score predictions (JSONL, Parquet, a results folder) with the official "
             "LLP metrics"),
    "extract": ("lsld_engine.commands.extract", "decode videos and write CLIP/CLAP features (dataset layout)"),
    "parse": ("lsld_engine.commands.parse", "parse videos into audio / visual / audio-visual events (JSONL, CSV, "
              "Parquet; --ray: on a Ray cluster)"),
    "export": ("lsld_engine.commands.export", "export CLIP, CLAP and HAN to ONNX / TensorRT"),
    "doctor": ("lsld_engine.commands.doctor", "what this machine has (CPU flags, runtimes, GPUs, export cache) "
               "and what --backend auto picks, and why"),
    "synth": ("lsld_engine.commands.synth", "write a synthetic LLP dataset root / score labels against its truth"),
    "plot": ("lsld_engine.commands.plot", "draw one video's audio / visual / audio-visual timeline (PNG)"),
    "plot-denoise": ("lsld_engine.commands.plot_denoise",
                     "draw a training video's weak labels, DeN prompt choices and ReW soft labels (PNG)"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lsld-engine", description="Audio-visual video parsing with LSLD: score, plot, extract features, "
        "parse videos, export, synthetic data. Training: python -m train.lsld --help.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        # Only the chosen command's module is imported (keeps `eval` free of torch-heavy imports).
        if name == wanted:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as e:
                if e.name and e.name.startswith("lsld_engine"):
                    raise SystemExit(f"lsld-engine {name}: not available in this version ({e.name} missing)")
                raise SystemExit(f"lsld-engine {name}: missing dependency {e.name!r}; "
                                 f"install the extras: scripts/setup.sh full")
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def at_least(minimum: float, type_: type = int, strict: bool = False) -> Callable[[str], float]:
    """argparse type: a number ``>= minimum`` (``> minimum`` with ``strict``), so ``--limit -1`` or
    ``--batch-size 0`` stop at parse time instead of misbehaving later."""
    def parse(text: str):
        try:
            value = type_(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if type_ is int else 'a number'}, "
                                             f"got {text!r}") from None
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum}, got {text}")
        return value
    parse.__name__ = type_.__name__  # argparse names the type in its messages
    return parse


def report_user_errors(prog: str, fn: Callable[[], int | None]) -> int:
    """``fn()``'s exit status; a user error becomes ``PROG: error: MESSAGE`` on stderr and status 2,
    Ctrl-C a one-line note and status 130."""
    try:
        return int(fn() or 0)
    except KeyboardInterrupt:
        if os.environ.get("LSLD_DEBUG"):
            raise
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - re-raised unless it is a user error
        if not is_user_error(e) or os.environ.get("LSLD_DEBUG"):
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    return report_user_errors(f"lsld-engine {args.command}", lambda: args._run(args))


if __name__ == "__main__":
    sys.exit(main())
