"""Shared fixtures. Tests that touch models take the ``device`` fixture, which runs them once on
every device this machine has (cpu always; cuda and mps where present). ``built_book`` is the book
built once per session, shared by the build test and the browser test."""
import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seqcourse.device import available_devices


@pytest.fixture(params=[str(d) for d in available_devices()])
def device(request):
    import torch

    return torch.device(request.param)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny-tensor tests: such ops gain nothing from a second
    thread, and when other processes load the CPU two spinning OpenMP threads made them 30-50x
    slower here. Use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


REPO_ROOT = Path(__file__).resolve().parents[1]
# What `make book` runs (the Makefile's book recipe; tests/test_browser.py checks the two agree),
# with the output sent to a temporary folder instead of the repository's _build/.
BOOK_BUILD_ARGS = ("build", ".", "-W", "--keep-going")


@dataclasses.dataclass(frozen=True)
class BuiltBook:
    """One build of the book: its exit status, its log (stdout + stderr) and the HTML folder."""

    returncode: int
    log: str
    html: Path


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> BuiltBook:
    """The book built once per test session with `make book`'s command, into a temporary folder."""
    beside_python = Path(sys.executable).with_name("jupyter-book")
    command = str(beside_python) if beside_python.exists() else shutil.which("jupyter-book")
    if command is None:
        pytest.fail("jupyter-book is not installed in this environment (see requirements.txt)")
    out = tmp_path_factory.mktemp("book")
    args = [command, *BOOK_BUILD_ARGS, "--path-output", str(out)]
    done = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    return BuiltBook(done.returncode, done.stdout + done.stderr, out / "_build" / "html")


@pytest.fixture(scope="session")
def offline_assets():
    """The book's Sphinx extension book/_ext/offline_assets.py, imported as a module (fetch_all(),
    fetch(), PACKAGES, VENDOR): the local copies of MathJax and the widget scripts."""
    import importlib.util

    path = REPO_ROOT / "book" / "_ext" / "offline_assets.py"
    spec = importlib.util.spec_from_file_location("offline_assets", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
