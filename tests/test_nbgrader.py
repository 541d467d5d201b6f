"""The nbgrader route (book/instructors.md): real nbgrader 0.9.6 on a temporary course directory.

``nbgrader generate_assignment`` turns solutions/01_recurrence.ipynb into the released notebook
(the same cells as exercises/), and ``nbgrader autograde`` with ``SEQCOURSE_STRICT=1`` gives an
honest submission full points and a wrong and an untouched one 0 on every question: in strict
mode a check raises unless every case passes, not attempted included, and nbgrader scores a test
cell by whether it raises."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from test_batch_grading import BPTT, STEP, UNROLL, WRONG_STEP, ZERO_BPTT

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "01_recurrence"
POINTS = {"rnn-step": 2, "rnn-unroll": 3, "rnn-bptt": 4}
STUDENTS = {
    "honest": ({"rnn-step-solution": STEP, "rnn-unroll-solution": UNROLL, "rnn-bptt-solution": BPTT}, POINTS),
    "wrong": ({"rnn-step-solution": WRONG_STEP, "rnn-unroll-solution": UNROLL, "rnn-bptt-solution": ZERO_BPTT},
              dict.fromkeys(POINTS, 0)),
    "untouched": ({}, dict.fromkeys(POINTS, 0)),
}


def nbgrader(course: Path, *args: str, strict: bool = False) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    env["SEQCOURSE_STRICT"] = "1" if strict else "0"
    # nbgrader runs the `alembic` command of its environment: the venv's bin folder must be on PATH
    # even when pytest is started as .venv/bin/python without activating the venv (make test does)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--force"], cwd=course, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    pytest.importorskip("nbgrader", reason="nbgrader is pinned in requirements.txt")
    course = tmp_path_factory.mktemp("course")
    (course / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.root = "."\n'
                                               'c.ExecutePreprocessor.timeout = 300\n')
    (course / "source" / "ps1").mkdir(parents=True)
    shutil.copy(ROOT / "solutions" / f"{NOTEBOOK}.ipynb", course / "source" / "ps1")
    nbgrader(course, "generate_assignment", "ps1")
    released = nbformat.read(course / "release" / "ps1" / f"{NOTEBOOK}.ipynb", as_version=4)
    for student, (solutions, _) in STUDENTS.items():
        nb = nbformat.read(course / "release" / "ps1" / f"{NOTEBOOK}.ipynb", as_version=4)
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in solutions:
                cell.source = textwrap.dedent(solutions[grade_id]).strip()
        folder = course / "submitted" / student / "ps1"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{NOTEBOOK}.ipynb")
    nbgrader(course, "autograde", "ps1", strict=True)
    return course, released


def test_generate_assignment_releases_the_exercise_cell_for_cell(course):
    _, released = course
    exercise = nbformat.read(ROOT / "exercises" / f"{NOTEBOOK}.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in released.cells] == [(c.cell_type, c.source) for c in exercise.cells]


@pytest.mark.parametrize("student", STUDENTS)
def test_autograde_in_strict_mode_scores_each_question(course, student):
    from nbgrader.api import Gradebook

    root, _ = course
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        notebook = gradebook.find_submission_notebook(NOTEBOOK, "ps1", student)
        scores = {grade.name: grade.score for grade in notebook.grades if grade.name in POINTS}
        maxima = {grade.name: grade.max_score for grade in notebook.grades if grade.name in POINTS}
    assert maxima == POINTS
    assert scores == STUDENTS[student][1]
