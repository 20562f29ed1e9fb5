"""``lsld-engine`` command line: argument parsing only; each subcommand lives in its own module.

A subcommand module under ``lsld_engine/commands/`` exposes ``add_arguments(parser)`` and
``run(args) -> int``; it is imported only when chosen, so ``lsld-engine eval`` never loads the
encoder or media stacks.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "eval": ("lsld_engine.commands.eval", "score a predictions JSONL with the official LLP metrics"),
    "extract": ("lsld_engine.commands.extract", "decode videos and write CLIP/CLAP features (dataset layout)"),
    "parse": ("lsld_engine.commands.parse", "parse videos into audio / visual / audio-visual events (JSONL)"),
    "export": ("lsld_engine.commands.export", "export CLIP, CLAP and HAN to ONNX / TensorRT"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lsld-engine", description=__doc__.splitlines()[0])
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
