"""Shared fixtures and the skip policy.

Markers: ``slow``, ``gpu``, ``browser``, ``postgres`` (declared in pyproject.toml).

Skip policy: on a user's machine, tests whose external requirement is missing (Chromium,
Firefox, the PostgreSQL server named by ``HVQEVAL_TEST_DATABASE_URL``, Debian's Fashion-MNIST
package) skip with a reason. In CI (``CI=true``) every requirement except a GPU is
installed by ``.ci/run``, so any skip of a test not marked ``gpu`` is turned into a failure.
"""

from __future__ import annotations

import os

# One intra-op thread for torch in the tests and in the commands they start: the small
# tensors of the test models gain nothing from threads, and on a shared 2-core machine
# waiting threads make them many times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
CHROMIUM = Path("/usr/bin/chromium")
FIREFOX = Path("/usr/bin/firefox-esr")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _in_ci() and report.skipped and item.get_closest_marker("gpu") is None:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in CI, where every non-GPU requirement must be present: {reason}"
        )


@pytest.fixture(autouse=True)
def single_thread():
    """One intra-op torch thread per test (see OMP_NUM_THREADS above); restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Folder for test artifacts (screenshots, figures) kept after the run: artifacts/."""
    path = REPO_ROOT / "artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(
            f"Fashion-MNIST not installed at {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)"
        )
    return FASHION_MNIST_DIR


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.is_file() and shutil.which("chromium") is None:
        pytest.skip("Chromium not installed (apt-get install chromium)")
    return CHROMIUM if CHROMIUM.is_file() else Path(shutil.which("chromium"))


@pytest.fixture(scope="session")
def firefox_path() -> Path:
    if FIREFOX.is_file():
        return FIREFOX
    found = shutil.which("firefox-esr") or shutil.which("firefox")
    if found is None:
        pytest.skip("Firefox not installed (apt-get install firefox-esr)")
    return Path(found)


@pytest.fixture
def browser(chromium_path):
    """A Playwright Chromium browser (Debian's binary, headless)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=str(chromium_path), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield b
        finally:
            b.close()


def _database_params():
    params = [pytest.param("sqlite", id="sqlite")]
    params.append(pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres))
    return params


@pytest.fixture(params=_database_params())
def database_url(request, tmp_path) -> str:
    """A SQLAlchemy URL: a fresh SQLite file, and PostgreSQL when HVQEVAL_TEST_DATABASE_URL is set.

    The PostgreSQL database is shared, so tests that use it must create their tables in a
    fresh schema or clean up after themselves (the study app's fixtures do).
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    url = os.environ.get("HVQEVAL_TEST_DATABASE_URL")
    if not url:
        pytest.skip(
            "PostgreSQL tests need HVQEVAL_TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
        )
    return url


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)
