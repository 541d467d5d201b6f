"""exercises/ is generated from solutions/ and stays in sync; the stored outputs say every check
passes in solutions/ and is "not attempted" in exercises/ (nbval re-executes those cells and
compares, so the checks run live); no solution or hidden test leaks; the nbgrader metadata is
valid; and the generator turns malformed notebooks into clear errors."""
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from seqcourse.grading import get_question, question_ids
from seqcourse.grading import generate
from seqcourse.grading.generate import NotebookError, make_exercise, validate

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, EXERCISES = ROOT / "solutions", ROOT / "exercises"
SOLUTION_NOTEBOOKS = sorted(SOLUTIONS.glob("*.ipynb"))
CHECK_CALL = re.compile(r'^check\("([^"]+)", (\w+)\);?$', re.M)


def read(path):
    return nbformat.read(path, as_version=4)


def nbgrader(cell):
    return cell.metadata.get("nbgrader", {})


def check_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and nbgrader(c).get("grade") and not nbgrader(c).get("solution")]


def region_lines(source, begin, end):
    lines, inside = [], False
    for line in source.splitlines():
        if line.strip() == begin:
            inside = True
        elif line.strip() == end:
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


def stdout_of(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def test_there_are_solution_notebooks_each_with_an_exercise():
    assert SOLUTION_NOTEBOOKS
    assert [p.name for p in SOLUTION_NOTEBOOKS] == sorted(p.name for p in EXERCISES.glob("*.ipynb"))


# ---- in sync ---------------------------------------------------------------------------------


def test_exercises_are_in_sync_with_solutions(capsys):
    assert generate.differences(SOLUTIONS, EXERCISES) == []
    assert generate.main([str(SOLUTIONS), str(EXERCISES), "--check"]) == 0
    assert "in sync" in capsys.readouterr().out


def test_check_names_the_notebook_and_cell_that_differ(tmp_path, capsys):
    exercises = tmp_path / "exercises"
    shutil.copytree(EXERCISES, exercises)
    target = exercises / SOLUTION_NOTEBOOKS[0].name
    nb = read(target)
    index = next(i for i, c in enumerate(nb.cells) if nbgrader(c).get("solution") and c.cell_type == "code")
    nb.cells[index].source += "\nreturn 42"
    nbformat.write(nb, target)
    (exercises / "old.ipynb").write_text(target.read_text())
    assert generate.main([str(SOLUTIONS), str(exercises), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"{target}: cell {index} (grade_id '{nbgrader(nb.cells[index])['grade_id']}'): source differs" in err
    assert f"{exercises / 'old.ipynb'}: stale" in err
    assert "run: python -m seqcourse generate" in err
    target.unlink()
    assert generate.main([str(SOLUTIONS), str(exercises), "--check"]) == 1
    assert f"{target}: missing" in capsys.readouterr().err


def test_check_notices_changed_metadata(tmp_path):
    exercises = tmp_path / "exercises"
    shutil.copytree(EXERCISES, exercises)
    target = exercises / SOLUTION_NOTEBOOKS[0].name
    nb = read(target)
    check_cells(nb)[0].metadata["nbgrader"]["points"] += 1
    nbformat.write(nb, target)
    assert any("metadata differs" in line for line in generate.differences(SOLUTIONS, exercises))


# ---- stored outputs: checks pass in solutions/, are not attempted in exercises/ ----------------


@pytest.mark.parametrize("path", SOLUTION_NOTEBOOKS, ids=lambda p: p.name)
def test_check_cells_call_their_question_with_matching_points_and_are_compared_by_nbval(path):
    for cell in check_cells(read(path)):
        calls = CHECK_CALL.findall(cell.source)
        assert len(calls) == 1, cell.source
        question = get_question(calls[0][0])
        assert nbgrader(cell)["grade_id"] == question.id
        assert nbgrader(cell)["points"] == question.points
        assert "nbval-check-output" in cell.metadata.get("tags", [])


@pytest.mark.parametrize("path", SOLUTION_NOTEBOOKS, ids=lambda p: p.name)
def test_the_question_heading_states_the_points_the_check_gives(path):
    heading, checked = None, 0
    for cell in read(path).cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## Question"):
            heading = cell.source.splitlines()[0]
        elif cell.cell_type == "code" and CHECK_CALL.search(cell.source):
            points = get_question(CHECK_CALL.findall(cell.source)[0][0]).points
            assert heading is not None and heading.endswith(f"({points} points)"), heading
            checked += 1
    assert checked == len(check_cells(read(path)))


def test_every_question_is_asked_in_exactly_one_solutions_notebook():
    asked = [CHECK_CALL.findall(c.source)[0][0] for p in SOLUTION_NOTEBOOKS for c in check_cells(read(p))]
    assert sorted(asked) == question_ids()


@pytest.mark.parametrize("path", SOLUTION_NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_pass_in_solutions_and_are_not_attempted_in_exercises(path):
    solution, exercise = read(path), read(EXERCISES / path.name)
    for nb in (solution, exercise):
        assert all(c.execution_count is not None for c in nb.cells if c.cell_type == "code"), "not executed"
        assert not any(o.output_type == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    for cell in check_cells(solution):
        question = get_question(CHECK_CALL.findall(cell.source)[0][0])
        n, p = len(question.cases), question.points
        out = stdout_of(cell)
        assert out.count(" passed: ") == n and "FAILED" not in out
        assert out.strip().splitlines()[-1] == f"{n}/{n} cases passed — {p}/{p} points"
    for cell in check_cells(exercise):
        question = get_question(CHECK_CALL.findall(cell.source)[0][0])
        assert stdout_of(cell) == f"{question.id}: not attempted — 0/{question.points} points\n"


# ---- nothing leaks ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", SOLUTION_NOTEBOOKS, ids=lambda p: p.name)
def test_no_solution_line_or_hidden_test_leaks_into_the_exercise(path):
    solution, exercise = read(path), read(EXERCISES / path.name)
    secret = []
    for cell in solution.cells:
        secret += region_lines(cell.source, *generate.SOLUTION_MARKERS)
        secret += region_lines(cell.source, *generate.HIDDEN_MARKERS)
        if cell.cell_type == "markdown" and nbgrader(cell).get("solution") and "### BEGIN SOLUTION" not in cell.source:
            secret += [line.strip() for line in cell.source.splitlines() if line.strip()]
    assert len(secret) >= 10  # the notebook does hide something
    shown = "\n".join(c.source for c in exercise.cells)
    shown += "\n".join(stdout_of(c) for c in exercise.cells if c.cell_type == "code")
    shown_lines = {line.strip() for line in shown.splitlines()}
    assert not [line for line in secret if line in shown_lines]
    assert "### BEGIN" not in shown and "### END" not in shown
    stubs = [c for c in exercise.cells if nbgrader(c).get("solution") and c.cell_type == "code"]
    assert stubs and all("# YOUR CODE HERE\n    raise NotImplementedError()" in c.source for c in stubs)


# ---- nbgrader metadata -------------------------------------------------------------------------


@pytest.mark.parametrize("path", SOLUTION_NOTEBOOKS + sorted(EXERCISES.glob("*.ipynb")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_metadata_is_valid_nbgrader_schema_3(path):
    nb = read(path)
    nbformat.validate(nb)
    if path.parent == SOLUTIONS:
        validate(nb, str(path))  # authored rules (markers where they belong); exercises have none left
    assert nb.metadata.kernelspec.name == "python3"
    ids = [nbgrader(c)["grade_id"] for c in nb.cells]
    assert len(ids) == len(set(ids)) == len(nb.cells)  # every cell is an nbgrader cell, ids unique
    for cell in nb.cells:
        meta = nbgrader(cell)
        assert meta["schema_version"] == 3
        assert {type(meta[k]) for k in ("grade", "solution", "locked")} == {bool}
        assert ("points" in meta) == meta["grade"]
        if meta["solution"]:
            assert not meta["locked"]
        else:
            assert meta["locked"]  # questions, setup and checks are read-only
        if path.parent == EXERCISES:
            assert cell.metadata.get("editable", True) is (not meta["locked"])
            assert cell.metadata["deletable"] is False


@pytest.mark.parametrize("path", SOLUTION_NOTEBOOKS, ids=lambda p: p.name)
def test_grade_ids_are_unique_within_each_solution(path):
    # nbgrader matches cells by grade_id within one notebook; the shared set-up cell
    # (seqcourse.tools.notebook_setup) has the same id in every notebook.
    ids = [nbgrader(c)["grade_id"] for c in read(path).cells if nbgrader(c)]
    assert len(ids) == len(set(ids))


# ---- the transformations, on small notebooks ---------------------------------------------------


def nbg(grade_id, *, grade=False, solution=False, locked=False, points=None):
    meta = {"grade": grade, "solution": solution, "locked": locked, "grade_id": grade_id, "schema_version": 3}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def small_notebook(*cells):
    return new_notebook(cells=list(cells), metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def test_make_exercise_stubs_solutions_at_their_indentation_and_drops_hidden_tests():
    solution = new_code_cell(
        "def f(x):\n"
        "    if x > 0:\n"
        "        ### BEGIN SOLUTION\n"
        "        return x\n"
        "        ### END SOLUTION\n"
        "    ### BEGIN SOLUTION\n"
        "    return -x\n"
        "    ### END SOLUTION",
        metadata=nbg("f-solution", solution=True),
        execution_count=3,
        outputs=[nbformat.v4.new_output("stream", text="hi\n")],
    )
    test = new_code_cell(
        "check('q', f);\n### BEGIN HIDDEN TESTS\nassert f(2) == 2\n### END HIDDEN TESTS\n",
        metadata=nbg("q", grade=True, locked=True, points=2),
    )
    answer = new_markdown_cell("Because **reasons**.", metadata=nbg("why", grade=True, solution=True, points=1))
    partly = new_markdown_cell(
        "Fill in:\n### BEGIN SOLUTION\nthe answer\n### END SOLUTION\nthanks",
        metadata=nbg("fill", grade=True, solution=True, points=1),
    )
    plain = new_markdown_cell("no metadata")
    nb = small_notebook(solution, test, answer, partly, plain)
    exercise = make_exercise(nb)
    assert exercise.cells[0].source == (
        "def f(x):\n"
        "    if x > 0:\n"
        "        # YOUR CODE HERE\n"
        "        raise NotImplementedError()\n"
        "    # YOUR CODE HERE\n"
        "    raise NotImplementedError()"
    )
    assert exercise.cells[0].outputs == [] and exercise.cells[0].execution_count is None
    assert exercise.cells[1].source == "check('q', f);"
    assert exercise.cells[2].source == "YOUR ANSWER HERE"
    assert exercise.cells[3].source == "Fill in:\nYOUR ANSWER HERE\nthanks"
    assert exercise.cells[4].source == "no metadata" and "editable" not in exercise.cells[4].metadata
    assert exercise.cells[0].metadata["deletable"] is False and "editable" not in exercise.cells[0].metadata
    assert exercise.cells[1].metadata["editable"] is False
    assert [c.id for c in exercise.cells] == [c.id for c in nb.cells]
    assert nb.cells[0].outputs and "BEGIN SOLUTION" in nb.cells[0].source  # the input is left alone


MALFORMED = {
    "begin without end": (
        new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1", metadata=nbg("f", solution=True)),
        r"cell 0 \(grade_id 'f'\): '### BEGIN SOLUTION' on line 2 is never closed",
    ),
    "end without begin": (
        new_code_cell("def f():\n    return 1\n    ### END SOLUTION", metadata=nbg("f", solution=True)),
        r"'### END SOLUTION' on line 3 without a '### BEGIN SOLUTION' before it",
    ),
    "nested begin": (
        new_code_cell("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", metadata=nbg("f", solution=True)),
        r"on line 2 inside another \(opened on line 1\)",
    ),
    "solution cell without grade_id": (
        new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", metadata={"nbgrader": {**nbg("x", solution=True)["nbgrader"], "grade_id": ""}}),
        "need a grade_id",
    ),
    "grade_id with a space": (new_code_cell("x = 1", metadata=nbg("my id", locked=True)), "need a grade_id"),
    "markers in a cell that is not a solution cell": (
        new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", metadata=nbg("x", locked=True)),
        "has '### BEGIN SOLUTION' but is not a solution cell",
    ),
    "markers in a cell without metadata": (new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION"), "but no nbgrader metadata"),
    "code solution cell without markers": (new_code_cell("x = 1", metadata=nbg("x", solution=True)), "needs a '### BEGIN SOLUTION'"),
    "hidden tests outside a graded cell": (
        new_code_cell("### BEGIN HIDDEN TESTS\nassert True\n### END HIDDEN TESTS", metadata=nbg("t", locked=True)),
        "is not a graded code cell",
    ),
    "metadata that is not a dict": (new_code_cell("x = 1", metadata={"nbgrader": ["grade"]}), "nbgrader metadata must be a dict, got list"),
    "schema version 2": (new_code_cell("x = 1", metadata={"nbgrader": {**nbg("x")["nbgrader"], "schema_version": 2}}), "schema_version must be 3"),
    "flag that is not a bool": (new_code_cell("x = 1", metadata={"nbgrader": {**nbg("x")["nbgrader"], "locked": "yes"}}), "nbgrader.locked must be true or false"),
    "graded cell without points": (new_code_cell("check('q', f)", metadata=nbg("q", grade=True, locked=True)), "needs points >= 0"),
    "locked solution cell": (
        new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", metadata=nbg("x", solution=True, locked=True)),
        "a solution cell cannot be locked",
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_notebooks_are_clear_errors_naming_the_cell(name):
    cell, message = MALFORMED[name]
    with pytest.raises(NotebookError, match=message):
        make_exercise(small_notebook(cell), "bad.ipynb")
    with pytest.raises(NotebookError, match=r"^bad\.ipynb: cell 0"):
        validate(small_notebook(cell), "bad.ipynb")


def test_duplicate_grade_ids_are_an_error_naming_both_cells():
    cells = [new_code_cell("x = 1", metadata=nbg("same", locked=True)), new_code_cell("y = 2", metadata=nbg("same", locked=True))]
    with pytest.raises(NotebookError, match=r"bad\.ipynb: cell 1 \(grade_id 'same'\): duplicate grade_id 'same' \(also cell 0\)"):
        validate(small_notebook(*cells), "bad.ipynb")


def test_generate_reports_a_malformed_notebook_and_writes_nothing(tmp_path, capsys):
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    solutions.mkdir()
    good = small_notebook(new_code_cell("x = 1", metadata=nbg("x", locked=True)))
    nbformat.write(good, solutions / "a.ipynb")
    nbformat.write(small_notebook(MALFORMED["begin without end"][0]), solutions / "b.ipynb")
    assert generate.main([str(solutions), str(exercises)]) == 1
    assert f"error: {solutions / 'b.ipynb'}: cell 0" in capsys.readouterr().err
    assert not exercises.exists()
    assert generate.main([str(tmp_path / "nowhere"), str(exercises)]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_generate_writes_executed_exercises_removes_stale_ones_and_then_checks_clean(tmp_path, capsys):
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    (solutions / "part").mkdir(parents=True)
    exercises.mkdir()
    nb = small_notebook(
        new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", metadata=nbg("f", solution=True)),
        new_code_cell(
            "import os\ntry:\n    print(f())\nexcept NotImplementedError:\n    print('stub in', os.path.basename(os.getcwd()))",
            metadata=nbg("try-f", grade=True, locked=True, points=1),
        ),
    )
    nbformat.write(nb, solutions / "part" / "one.ipynb")
    nbformat.write(nb, exercises / "gone.ipynb")
    assert generate.main([str(solutions), str(exercises), "--check"]) == 1
    capsys.readouterr()
    assert generate.main([str(solutions), str(exercises)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {exercises / 'part' / 'one.ipynb'}" in out and f"removed {exercises / 'gone.ipynb'}" in out
    written = read(exercises / "part" / "one.ipynb")
    assert stdout_of(written.cells[1]) == "stub in part\n"  # executed, in the notebook's own folder
    assert not (exercises / "gone.ipynb").exists()
    assert generate.main([str(solutions), str(exercises), "--check"]) == 0


def test_generate_reports_a_cell_that_fails_to_execute(tmp_path, capsys):
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    solutions.mkdir()
    nbformat.write(small_notebook(new_code_cell("1 / 0", metadata=nbg("boom", locked=True))), solutions / "a.ipynb")
    assert generate.main([str(solutions), str(exercises)]) == 1
    err = capsys.readouterr().err
    assert f"error: {exercises / 'a.ipynb'}: executing the exercise failed" in err and "ZeroDivisionError" in err
    assert not (exercises / "a.ipynb").exists()
