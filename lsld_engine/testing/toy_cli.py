"""``python -m lsld_engine.testing.toy_cli parse|extract ...``: the CLI with the toy backend, for
tests that need a real second process (locks, kill -9, resource limits).

``LSLD_TOY_DELAY`` (seconds) sleeps in every image-embedding call, so a test can catch the run
in the middle; ``LSLD_TOY_GATE`` (a path) holds every image-embedding call while that file exists,
so a test decides when the run may go on.
"""
from __future__ import annotations

import os
import sys
import time


def main(cli_main, argv: list[str]) -> int:
    """``cli_main(argv)`` with the toy backend patched in (the CLI is passed in: the library never
    imports it)."""
    from lsld_engine import backends
    from lsld_engine.testing.backends import ToyBackend

    delay = float(os.environ.get("LSLD_TOY_DELAY", "0") or 0)
    gate = os.environ.get("LSLD_TOY_GATE")

    class SlowToy(ToyBackend):
        def embed_images(self, images):
            time.sleep(delay)
            while gate and os.path.exists(gate):
                time.sleep(0.05)
            return super().embed_images(images)

    backends.create_backend = lambda name, **options: SlowToy(model=options.get("model"))
    return cli_main(argv)


if __name__ == "__main__":
    from lsld_engine.cli import main as lsld_main

    sys.exit(main(lsld_main, sys.argv[1:]))
