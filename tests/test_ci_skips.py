"""The CI skip gate (tests/ci_skips.py): under CI=true a skip fails the run unless its reason is
on the allow-list; outside CI skips are just skips. Runs pytest on small generated test files."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

TESTS = '''
import pytest

def test_passes():
    assert True

def test_needs_a_gpu():
    pytest.skip("no CUDA GPU visible")

@pytest.mark.skipif(True, reason="Chromium not found")
def test_needs_chromium():
    pass

@pytest.mark.xfail(reason="declared", strict=True)
def test_expected_to_fail():
    assert False
'''


def run_pytest(tmp_path: Path, files: dict[str, str], **env) -> subprocess.CompletedProcess:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    e = {k: v for k, v in os.environ.items() if k not in ("CI", "LSLD_CI_ALLOW_SKIPS")}
    e.update(PYTHONPATH=os.pathsep.join([str(HERE), e.get("PYTHONPATH", "")]), **env)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "ci_skips", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
                          cwd=tmp_path, env=e, capture_output=True, text=True, timeout=300)


def test_in_ci_a_skip_not_on_the_allow_list_fails_the_run(tmp_path):
    r = run_pytest(tmp_path, {"test_a.py": TESTS, "test_b.py": "import pytest\npytest.importorskip('no_such_module_xyz')\n"},
                   CI="true")
    assert r.returncode == 1, r.stdout
    section = r.stdout.split("skips not allowed in CI", 1)[1]
    assert "test_a.py::test_needs_chromium: Chromium not found" in section
    assert "test_b.py" in section and "no_such_module_xyz" in section
    assert "test_needs_a_gpu" not in section and "test_expected_to_fail" not in section
    assert "2 skip(s) whose reason is not on the CI allow-list" in section


def test_in_ci_allowed_skips_pass_and_an_explicit_extra_reason_is_allowed(tmp_path):
    r = run_pytest(tmp_path, {"test_a.py": TESTS}, CI="true", LSLD_CI_ALLOW_SKIPS="^Chromium not found$")
    assert r.returncode == 0, r.stdout
    assert "skips not allowed in CI" not in r.stdout


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_skips_are_just_skips(tmp_path, ci):
    r = run_pytest(tmp_path, {"test_a.py": TESTS}, **({"CI": ci} if ci else {}))
    assert r.returncode == 0, r.stdout
    assert "2 skipped" in r.stdout and "skips not allowed in CI" not in r.stdout


def test_a_failing_run_keeps_its_own_exit_status(tmp_path):
    r = run_pytest(tmp_path, {"test_a.py": TESTS + "\ndef test_fails():\n    assert False\n"}, CI="true")
    assert r.returncode == 1 and "1 failed" in r.stdout and "skips not allowed in CI" in r.stdout
