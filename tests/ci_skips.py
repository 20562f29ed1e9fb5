"""No silent skips in CI: under ``CI=true`` a skipped test fails the run unless its reason is on a
short allow-list of hardware the CI machine does not have.

In CI (``scripts/setup.sh full``) every optional package, Chromium and the ffmpeg oracle are
installed, so a skip for any of them means a broken install, not a missing feature. What CI cannot
have is hardware: a CUDA GPU, TensorRT (which needs one), NVDEC. Those skips stay allowed.
``LSLD_CI_ALLOW_SKIPS`` (a regular expression) adds reasons for one machine, explicitly.

A pytest plugin: tests/conftest.py imports its hooks; test_ci_skips.py runs it with ``-p``.
"""
from __future__ import annotations

import os
import re

import pytest

#: Skip reasons that may stay skips in CI: hardware a CPU-only CI machine lacks.
ALLOWED = re.compile(r"\b(GPUs?|CUDA|TensorRT|NVDEC)\b", re.IGNORECASE)

#: (node id, reason) of each skip not on the allow-list, this session
_BAD: list[tuple[str, str]] = []


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def allowed(reason: str) -> bool:
    extra = os.environ.get("LSLD_CI_ALLOW_SKIPS")
    return bool(ALLOWED.search(reason) or (extra and re.search(extra, reason)))


def _record(report) -> None:
    if not in_ci() or not report.skipped or hasattr(report, "wasxfail"):
        return  # (an xfail is a declared expectation, not a skip)
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    if not allowed(reason):
        _BAD.append((report.nodeid, reason))


@pytest.hookimpl
def pytest_configure(config):
    _BAD.clear()


@pytest.hookimpl
def pytest_runtest_logreport(report):
    _record(report)  # skips in setup (fixtures, skipif marks) and in the test body


@pytest.hookimpl
def pytest_collectreport(report):
    _record(report)  # a whole module skipped at import (pytest.importorskip)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    if _BAD and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _BAD:
        terminalreporter.section("skips not allowed in CI", sep="=", red=True, bold=True)
        for nodeid, reason in _BAD:
            terminalreporter.line(f"{nodeid}: {reason}")
        terminalreporter.line(f"{len(_BAD)} skip(s) whose reason is not on the CI allow-list "
                              f"({ALLOWED.pattern}; LSLD_CI_ALLOW_SKIPS adds one): the run fails")
