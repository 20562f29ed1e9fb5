"""``python -m export ...``: the same command as ``lsld-engine export ...``."""
from __future__ import annotations

import argparse
import sys

from lsld_engine.commands import export as command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=command.__doc__.splitlines()[0])
    command.add_arguments(parser)
    args = parser.parse_args(argv)
    from lsld_engine.cli import report_user_errors
    return report_user_errors("python -m export", lambda: command.run(args))


if __name__ == "__main__":
    sys.exit(main())
