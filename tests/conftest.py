"""Shared test setup: no network, small threads, the real LLP annotations when present, no silent skips in CI."""
import os

# Nothing may reach for a hub at run time; set before any library import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402

# Under CI=true a skip whose reason is not on the allow-list (no GPU, CUDA, TensorRT, NVDEC) fails the run.
from ci_skips import (pytest_collectreport, pytest_configure, pytest_runtest_logreport,  # noqa: E402,F401
                      pytest_sessionfinish, pytest_terminal_summary)
from lsld_engine.data.llp import default_llp_dir  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _export_cache(tmp_path_factory):
    """``--backend auto`` (the default) exports into ``$LSLD_CACHE``: one folder for the whole session
    (each random-weight network is exported once, subprocesses and Ray workers inherit it), never the
    user's ``~/.cache``."""
    os.environ["LSLD_CACHE"] = str(tmp_path_factory.mktemp("lsld_cache"))
    yield


@pytest.fixture(scope="session")
def llp_dir():
    """The real LLP annotation folder (``../shared/llp``); skip when absent."""
    d = default_llp_dir()
    if d is None:
        pytest.skip("real LLP annotations not found (../shared/llp or $LSLD_LLP_DIR): skipping")
    return d
