"""Gradescope's autograder, end to end: the archive that ``python -m seqcourse autograder gradescope``
builds, unpacked into a simulated ``/autograder`` (``$AUTOGRADER_ROOT``) with the environment
already installed (``source/.venv`` is this one), and ``run_autograder`` run on an honest, a
wrong and a tampering submission, one per run, as Gradescope runs them."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from seqcourse.autograde.gradescope import main
from test_batch_grading import BPTT, COURSE_MODEL, STEP, TAMPER_PACKAGE, UNROLL, WRONG_STEP, ZERO_BPTT, make_submission

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "solutions" / "01_recurrence.ipynb"
SUBMISSIONS = {
    "honest": ({"rnn-step-solution": STEP, "rnn-unroll-solution": UNROLL, "rnn-bptt-solution": BPTT}, [2, 3, 4], set()),
    "wrong": ({"rnn-step-solution": WRONG_STEP, "rnn-unroll-solution": UNROLL, "rnn-bptt-solution": ZERO_BPTT}, [0, 0, 0], set()),
    "tampering": ({"rnn-step-solution": TAMPER_PACKAGE + COURSE_MODEL, "rnn-unroll-solution": UNROLL, "rnn-bptt-solution": BPTT},
                  [0, 0, 0], {"forbidden:rnn-step:seqcourse", "forbidden:rnn-step:torch.nn", "runtime:write-outside"}),
}


@pytest.fixture(scope="module")
def autograder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gradescope")
    archive = folder / "autograder.zip"
    assert main(["gradescope", str(SOLUTION), "-o", str(archive), "--cell-timeout", "20", "--time-limit", "120"]) == 0
    root = folder / "autograder"
    with zipfile.ZipFile(archive) as unpacked:
        unpacked.extractall(root / "source")
        modes = {info.filename: info.external_attr >> 16 for info in unpacked.infolist()}
    for name, mode in modes.items():
        os.chmod(root / "source" / name, mode & 0o777)
    (root / "source" / ".venv").symlink_to(sys.prefix)  # what setup.sh installs, already here
    return archive, root


def test_the_archive_holds_setup_run_autograder_the_package_and_the_pinned_environment(autograder):
    archive, root = autograder
    names = zipfile.ZipFile(archive).namelist()
    assert {"setup.sh", "run_autograder", "requirements.txt", "autograder.json", "solution.ipynb"} <= set(names)
    assert "seqcourse/grading/check.py" in names and "seqcourse/autograde/worker.py" in names
    setup = (root / "source" / "setup.sh").read_text()
    assert "apt-get install -y -qq python3.11 python3.11-venv bubblewrap" in setup and "-r /autograder/source/requirements.txt" in setup
    pins = (root / "source" / "requirements.txt").read_text().splitlines()
    assert "torch==2.13.0+cpu" in pins and "numpy==2.4.6" in pins and any(p.startswith("psutil==") for p in pins)
    assert os.access(root / "source" / "run_autograder", os.X_OK) and os.access(root / "source" / "setup.sh", os.X_OK)


@pytest.mark.parametrize("name", SUBMISSIONS)
def test_run_autograder_writes_gradescope_results(autograder, name):
    _, root = autograder
    solutions, scores, flags = SUBMISSIONS[name]
    submission = root / "submission"
    submission.mkdir(exist_ok=True)
    for old in submission.iterdir():
        old.unlink()
    make_submission(submission / "01_recurrence.ipynb", solutions)
    done = subprocess.run([str(root / "source" / "run_autograder")], env={**os.environ, "AUTOGRADER_ROOT": str(root)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads((root / "results" / "results.json").read_text())
    assert [t["name"].split(":")[0] for t in data["tests"]] == ["rnn-step", "rnn-unroll", "rnn-bptt"]
    assert [t["score"] for t in data["tests"]] == scores and [t["max_score"] for t in data["tests"]] == [2, 3, 4]
    assert data["score"] == sum(scores)
    assert [t["status"] for t in data["tests"]] == ["passed" if s == m else "failed" for s, m in zip(scores, [2, 3, 4])]
    tagged = {tag for t in data["tests"] for tag in t["tags"]}
    assert flags <= tagged | set(data["extra_data"]["flags"]) and (bool(flags) == bool(data["extra_data"]["flags"]))
    step = data["tests"][0]["output"]
    if name == "honest":
        assert step.splitlines()[0].startswith("case 1 passed: worked example") and "fresh draws of the cases: 4/4 passed" in step
    if name == "tampering":
        assert "scored 0: the function used seqcourse, torch.nn, which this question forbids" in step
        assert "flags: forbidden:rnn-step:seqcourse forbidden:rnn-step:torch.nn" in step


def test_without_a_submitted_notebook_the_results_say_so(autograder):
    _, root = autograder
    submission = root / "submission"
    submission.mkdir(exist_ok=True)
    for old in submission.iterdir():
        old.unlink()
    done = subprocess.run([str(root / "source" / "run_autograder")], env={**os.environ, "AUTOGRADER_ROOT": str(root)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    data = json.loads((root / "results" / "results.json").read_text())
    assert data["score"] == 0 and data["output"] == "grading failed: no .ipynb notebook in the submission"
