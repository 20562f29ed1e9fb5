#!/usr/bin/env python
"""Mutation testing of the core rules with mutmut 3.x, one module at a time (not in CI: too slow).

Usage (from the repository root, with the dev venv)::

    python scripts/mutation.py                    # every module below, smallest first
    python scripts/mutation.py untrusted events   # some of them
    python scripts/mutation.py --list             # the modules and their fast tests
    python scripts/mutation.py --survivors events # diffs of the surviving mutants of the last run

Each module is mutated in its own scratch copy of the project (``.mutation/<module>/``, git-ignored):
mutmut 3 reads its ``[tool.mutmut]`` table from ``pyproject.toml`` and copies the code into
``./mutants``, so a per-module copy lets each module use only its own FAST tests without
touching the checkout's ``pyproject.toml``. The score per module is printed at the end
(killed / total, where total counts every mutant mutmut made, including survivors, timeouts and
mutants no test reached).

numba: mutmut skips every decorated function (it cannot put a trampoline around ``@njit``), so
the jitted kernels of ``metrics``, ``class_metrics`` and ``events`` would not be mutated at all.
For those modules the copy has its ``@njit(...)`` lines replaced by a comment (same line numbers)
and the kernels run as plain Python during the mutation run; ``numba.prange`` is a plain
``range`` outside a jitted function. For ``metrics`` the JIT is switched off everywhere
(``NUMBA_DISABLE_JIT=1``): jitted kernels of other modules call its kernels. The kernels are written in the numba subset, whose integer
and float semantics match Python's for the small inputs the fast tests use.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / ".mutation"

#: The random sweeps of the metrics tests (hundreds of videos each) take minutes per mutant once the
#: kernels run as plain Python; tests/test_rules_metrics.py checks the same agreement with an
#: independent oracle on a few dozen videos of both kernel paths.
SWEEPS = ["-k", "not agrees_with_both_oracles and not mixed_density_and_clustered and not other_segment_and_class"
                " and not counts_reproduce_the_ten"]

#: module -> (source file, its fast tests, strip @njit?). Tests are pytest arguments; slow tests
#: are deselected for every module (``-m 'not slow'``).
MODULES: dict[str, tuple[str, list[str], bool]] = {
    "untrusted": ("lsld_engine/records/untrusted.py", ["tests/test_rules_untrusted.py"], False),
    "parse": ("lsld_engine/parsing/parse.py", ["tests/test_rules_parse.py"], False),
    "class_metrics": ("lsld_engine/evaluation/class_metrics.py",
                      ["tests/test_class_metrics.py", "tests/test_rules_metrics.py"] + SWEEPS, True),
    "results": ("lsld_engine/records/results.py", ["tests/test_results.py", "tests/test_rules_results.py"], False),
    "events": ("lsld_engine/records/events.py", ["tests/test_events.py", "tests/test_rules_events.py"], True),
    "denoise": ("lsld_engine/labels/denoise.py", ["tests/test_denoise.py", "tests/test_rules_denoise.py"], False),
    "prompts": ("lsld_engine/labels/prompts.py", ["tests/test_prompts.py", "tests/test_rules_prompts.py"], False),
    "writers": ("lsld_engine/records/writers.py",
                ["tests/test_writers.py", "tests/test_results.py", "tests/test_rules_results.py"], False),
    # read_predictions / check_record (moved out of writers.py when the package was regrouped)
    "readers": ("lsld_engine/records/readers.py",
                ["tests/test_writers.py", "tests/test_results.py", "tests/test_rules_results.py",
                 "tests/test_rules_readers.py"], False),
    # the timestamp-only tests; the ffmpeg comparisons encode videos (seconds per test)
    "frame_rule": ("lsld_engine/media/frame_rule.py",
                   ["tests/test_frame_rule.py", "tests/test_rules_frame_rule.py", "-k",
                    "test_rules_frame_rule or linspace_pick or cfr_grid or picks_per_window or duration_estimate"],
                   False),
    "metrics": ("lsld_engine/evaluation/metrics.py",
                ["tests/test_metrics.py", "tests/test_class_metrics.py", "tests/test_rules_metrics.py"] + SWEEPS, True),
}

NJIT_LINE = re.compile(r"^(\s*)@njit\b.*$", re.M)


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(x) for x in items) + "]"


def prepare(name: str) -> Path:
    """A scratch copy of the project set up to mutate ``name`` with its fast tests."""
    source, tests, strip_jit = MODULES[name]
    tests = [t for t in tests if not t.startswith("tests/") or (ROOT / t.split("::")[0]).exists()]
    work = SCRATCH / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".numba_cache")
    shutil.copytree(ROOT / "lsld_engine", work / "lsld_engine", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    if strip_jit:
        path = work / source
        text, n = NJIT_LINE.subn(r"\1# @njit removed for the mutation run (plain Python kernel)", path.read_text())
        path.write_text(text)
        print(f"[{name}] {n} @njit decorators removed in the copy: kernels run as plain Python", flush=True)
    pyproject = (ROOT / "pyproject.toml").read_text()
    pyproject += (
        "\n[tool.mutmut]\n"
        'source_paths = ["lsld_engine"]\n'
        f"only_mutate = {_toml_list([source])}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
        'pytest_add_cli_args = ["-m", "not slow", "-p", "no:cacheprovider"]\n'
        "use_git_change_detection = false\n"
        # torch and numba threads are not fork-safe after the stats run
        'process_isolation = "forkserver"\n'
    )
    (work / "pyproject.toml").write_text(pyproject)
    return work


#: Modules whose plain-Python kernels are called from jitted code elsewhere (class_metrics'
#: ``_event_kernel`` calls ``metrics._event_counts``): numba cannot call a plain function, so these
#: runs switch the JIT off everywhere (``NUMBA_DISABLE_JIT=1``, numba's own switch). class_metrics
#: too: its buffers go to metrics' kernels, which only check bounds when they run as Python.
NO_JIT_ANYWHERE = {"metrics", "class_metrics"}


def _env(name: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if name in NO_JIT_ANYWHERE:
        env["NUMBA_DISABLE_JIT"] = "1"
    # The mutated copy must be what is imported: no PYTHONPATH pointing back at the checkout.
    env.pop("PYTHONPATH", None)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1")
    return env


def mutmut() -> list[str]:
    return [sys.executable, "-c", "import sys; from mutmut.__main__ import cli; sys.exit(cli())"]


def score(work: Path) -> dict[str, int]:
    """Counts by status from mutmut's per-file ``.meta`` (exit code per mutant)."""
    subprocess.run(mutmut() + ["export-cicd-stats"], cwd=work, env=_env(), check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text())


def run(name: str, max_children: int) -> dict[str, int]:
    work = prepare(name)
    cmd = ["nice", "-n", "10"] + mutmut() + ["run", "--max-children", str(max_children)]
    log = work / "mutmut.log"
    print(f"[{name}] nice mutmut run --max-children {max_children}  (in {work}, log {log.name})", flush=True)
    with open(log, "w") as f:  # mutmut draws a spinner: keep it out of the terminal
        rc = subprocess.run(cmd, cwd=work, env=_env(name), check=False, stdout=f, stderr=subprocess.STDOUT).returncode
    tail = [x for x in re.split(r"[\r\n]", log.read_text()) if x.strip()][-1:]
    print(f"[{name}] mutmut exit {rc}; {tail[0].strip() if tail else ''}", flush=True)
    return score(work)


def rerun_survivors(name: str, max_children: int) -> dict[str, int]:
    """Run the mutants the last run left alive again, with the checkout's current tests.

    mutmut 3 keeps every result in ``.mutation/<module>/mutants``; the tests are copied in anew,
    mutmut collects coverage for the new tests, and only the named (not killed) mutants run again.
    The killed ones stand: tests are only ever added or strengthened between runs.
    """
    work = SCRATCH / name
    if not (work / "mutants").is_dir():
        raise SystemExit(f"{name}: no previous run in {work}; run it first")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".numba_cache")
    tests = work / "tests"
    shutil.rmtree(tests)
    shutil.copytree(ROOT / "tests", tests, ignore=ignore)
    alive = _alive(work)
    print(f"[{name}] re-running {len(alive)} mutants that were not killed", flush=True)
    if alive:
        cmd = ["nice", "-n", "10"] + mutmut() + ["run", "--max-children", str(max_children)] + alive
        with open(work / "mutmut-rerun.log", "w") as f:
            rc = subprocess.run(cmd, cwd=work, env=_env(name), check=False, stdout=f,
                                stderr=subprocess.STDOUT).returncode
        print(f"[{name}] mutmut exit {rc}", flush=True)
    return score(work)


def _alive(work: Path) -> list[str]:
    out = subprocess.run(mutmut() + ["results"], cwd=work, env=_env(), check=True,
                         capture_output=True, text=True).stdout
    return [row.strip().split(":")[0] for row in out.splitlines() if ":" in row]


def line(name: str, s: dict[str, int]) -> str:
    total = s["total"]
    pct = 100.0 * s["killed"] / total if total else float("nan")
    rest = {k: v for k, v in s.items() if k not in ("killed", "total") and v}
    return f"{name:14s} killed {s['killed']:4d} / {total:4d}  ({pct:5.1f} %)  {rest}"


def survivors(name: str) -> None:
    work = SCRATCH / name
    out = subprocess.run(mutmut() + ["results"], cwd=work, env=_env(), check=True,
                         capture_output=True, text=True).stdout
    for row in out.splitlines():
        print(row.strip(), flush=True)
        mutant = row.strip().split(":")[0]
        if mutant:
            subprocess.run(mutmut() + ["show", mutant], cwd=work, env=_env(), check=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="*", help=f"some of {list(MODULES)} (default: all)")
    ap.add_argument("--max-children", type=int, default=1, help="parallel mutant runs (default 1)")
    ap.add_argument("--list", action="store_true", help="print the modules and their tests")
    ap.add_argument("--survivors", action="store_true", help="show the surviving mutants of the last run")
    ap.add_argument("--rerun", action="store_true",
                    help="keep the last run's results and run only its surviving mutants again (new tests)")
    args = ap.parse_args(argv)
    names = args.modules or list(MODULES)
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        ap.error(f"unknown module(s) {unknown}; choose from {list(MODULES)}")
    if args.list:
        for n in names:
            src, tests, jit = MODULES[n]
            print(f"{n:14s} {src:34s} {' '.join(tests)}{'  (@njit stripped)' if jit else ''}")
        return 0
    if args.survivors:
        for n in names:
            survivors(n)
        return 0
    if args.rerun:
        scores = {n: rerun_survivors(n, args.max_children) for n in names}
    else:
        scores = {n: run(n, args.max_children) for n in names}
    print("\nmutation score per module (killed / total):")
    for n, s in scores.items():
        print(line(n, s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
