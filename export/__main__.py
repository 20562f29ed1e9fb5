"""``python -m export ...``: an alias of ``lsld-engine export ...``."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from lsld_engine.cli import main as cli_main
    return cli_main(["export", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
