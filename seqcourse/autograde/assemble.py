"""What grading runs: the instructor's notebook with only the student's solution cells put in.

:func:`load_plan` reads the solution notebook (nbgrader metadata, schema 3) once and works out
each cell's role:

- ``solution``: a code cell the student writes (``nbgrader.solution``); the student's cell with
  the same ``grade_id`` is taken, its metadata ignored;
- ``manual``: a Markdown solution cell (an answer graded by hand); collected, never run;
- ``test``: a graded code cell (``nbgrader.grade`` and not a solution): always the instructor's
  copy, hidden tests included; its ``check("question-id", function)`` calls say which questions
  it grades and which function the grader records;
- ``locked``: any other locked cell: always the instructor's copy;
- ``plain``: a cell without nbgrader metadata: the instructor's copy.

:func:`assemble` builds the cells to run for one submission and flags what the student changed
that grading ignores: ``locked-cell-edited:ID`` and ``locked-cell-deleted:ID`` (compared with
the released exercise, so hidden tests do not count as edits), ``solution-cell-missing:ID`` (the
released stub runs instead), ``duplicate-grade-id:ID`` (the first cell is used) and
``extra-cells-ignored:N`` (cells the student added, which do not run), ``null-bytes:ID`` (null
bytes removed from a solution cell, which Python cannot compile) and ``malformed-source:ID`` (a
solution cell whose source is not text: the released stub runs instead).
"""
from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from seqcourse.grading.generate import NotebookError, make_exercise, validate
from seqcourse.grading.registry import Question, get_question

from .audit import bound_names, parse_cell


class PlanError(ValueError):
    """The solution notebook cannot drive grading; the message names the cell and the reason."""


@dataclass(frozen=True)
class CheckCall:
    """``check("question-id", function)`` in a test cell: the question and the function's expression."""

    question: Question
    function: str


@dataclass(frozen=True)
class PlanCell:
    index: int
    cell_type: str
    role: str
    grade_id: str | None
    source: str  # the instructor's source (solutions and hidden tests included)
    release_source: str  # what students received
    checks: tuple[CheckCall, ...] = ()
    binds: dict[str, str | None] = field(default_factory=dict)  # top-level names -> import target

    @property
    def label(self) -> str:
        """How flags name this cell: its grade_id, or ``cell-N``."""
        return self.grade_id or f"cell-{self.index}"


@dataclass
class Plan:
    path: Path
    cells: list[PlanCell]

    @property
    def checks(self) -> list[tuple[PlanCell, CheckCall]]:
        return [(cell, call) for cell in self.cells for call in cell.checks]

    @property
    def questions(self) -> list[Question]:
        return [call.question for _, call in self.checks]

    @property
    def max_total(self) -> int:
        return sum(question.points for question in self.questions)

    @property
    def imports(self) -> list[str]:
        """Modules the instructor's code cells import (the fork server imports them once)."""
        found = []
        for cell in self.cells:
            if cell.cell_type == "code" and cell.role != "solution":
                tree = parse_cell(cell.source)
                for node in ast.walk(tree) if tree else ():
                    if isinstance(node, ast.Import):
                        found += [alias.name for alias in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                        found.append(node.module)
        return list(dict.fromkeys(found))

    def protected_before(self, index: int) -> dict[str, str | None]:
        """Names that instructor code cells before cell ``index`` bind, and every builtin an
        instructor cell reads (``all``, ``zip``, ...): a student cell that rebinds one of them
        changes what the instructor's cells do. Values are import targets (None: not an import)."""
        protected: dict[str, str | None] = {}
        for cell in self.cells:
            if cell.cell_type != "code" or cell.role == "solution":
                continue
            if cell.index < index:
                protected.update(cell.binds)
            tree = parse_cell(cell.source)
            for node in ast.walk(tree) if tree else ():
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in _BUILTINS:
                    protected.setdefault(node.id, f"builtins.{node.id}")
        return protected


_BUILTINS = frozenset(dir(builtins))


def _role(cell) -> str:
    meta = cell.metadata.get("nbgrader")
    if not meta:
        return "plain"
    if meta["solution"]:
        return "solution" if cell.cell_type == "code" else "manual"
    if meta["grade"]:
        return "test"
    return "locked" if meta["locked"] else "plain"


def _check_calls(source: str, where: str) -> tuple[CheckCall, ...]:
    """The ``check("id", function)`` calls of a test cell, in source order."""
    tree = parse_cell(source)
    if tree is None:
        raise PlanError(f"{where}: the test cell is not valid Python")
    calls = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "check"):
            continue
        if len(node.args) < 2 or not (isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            raise PlanError(f'{where}: write check calls as check("question-id", function)')
        try:
            question = get_question(node.args[0].value)
        except ValueError as error:
            raise PlanError(f"{where}: {error}") from None
        calls.append(((node.lineno, node.col_offset), CheckCall(question, ast.unparse(node.args[1]))))
    return tuple(call for _, call in sorted(calls, key=lambda item: item[0]))


def load_plan(path: Path) -> Plan:
    """Read and check the solution notebook. Raises :class:`PlanError` (naming the cell) when its
    metadata is invalid, a test cell has no ``check("id", function)`` call or names an unknown
    question, a question is checked twice, or a test cell's points differ from its questions'."""
    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
        validate(nb, str(path))
        release = make_exercise(nb, str(path))
    except (OSError, ValueError, NotebookError) as error:
        raise PlanError(f"{path}: {error}") from None
    cells, seen = [], set()
    for index, (cell, released) in enumerate(zip(nb.cells, release.cells)):
        role = _role(cell)
        grade_id = (cell.metadata.get("nbgrader") or {}).get("grade_id")
        where = f"{path}: cell {index}" + (f" (grade_id {grade_id!r})" if grade_id else "")
        checks: tuple[CheckCall, ...] = ()
        if role == "test":
            checks = _check_calls(cell.source, where)
            if not checks:
                raise PlanError(f"{where}: a graded cell needs a check(\"question-id\", function) call to be graded in batch")
            points = cell.metadata["nbgrader"]["points"]
            worth = sum(call.question.points for call in checks)
            if points != worth:
                raise PlanError(f"{where}: the cell has points {points} but its checks are worth {worth}")
            for call in checks:
                if call.question.id in seen:
                    raise PlanError(f"{where}: question {call.question.id!r} is checked twice")
                seen.add(call.question.id)
        binds = {}
        if cell.cell_type == "code" and role != "solution":
            tree = parse_cell(cell.source)
            binds = bound_names(tree) if tree else {}
        cells.append(PlanCell(index, cell.cell_type, role, grade_id, cell.source, released.source, checks, binds))
    if not seen:
        raise PlanError(f"{path}: no graded cell calls check(); nothing to grade")
    return Plan(path, cells)


@dataclass(frozen=True)
class RunCell:
    """One cell as grading runs it."""

    plan: PlanCell
    source: str
    origin: str  # "student" or "instructor"


@dataclass
class Assembly:
    cells: list[RunCell]
    flags: list[str]
    manual_answers: dict[str, str]

    @property
    def student_cells(self) -> list[RunCell]:
        return [cell for cell in self.cells if cell.origin == "student"]


def _normalised(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def _text(cell, default: str | None = "") -> str | None:
    """A cell's source as text (nbformat joins a list of lines; a list of strings is joined here
    too); ``default`` when it is anything else (a number, a list of numbers, missing)."""
    source = cell.get("source") if isinstance(cell, dict) else None
    if isinstance(source, list) and all(isinstance(line, str) for line in source):
        source = "".join(source)
    return source if isinstance(source, str) else default


def assemble(plan: Plan, submission) -> Assembly:
    """The cells to run for ``submission`` (a notebook node), what grading ignores, and the
    student's Markdown answers (for grading by hand)."""
    by_id: dict[str, list] = {}
    extra = 0
    plain_sources = {_normalised(cell.release_source) for cell in plan.cells if cell.role == "plain"}
    for cell in submission.cells:
        meta = cell.get("metadata", {}) if isinstance(cell, dict) else {}
        meta = meta.get("nbgrader") if isinstance(meta, dict) else None
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        if isinstance(grade_id, str) and any(grade_id == planned.grade_id for planned in plan.cells):
            by_id.setdefault(grade_id, []).append(cell)
        elif _normalised(_text(cell)) and _normalised(_text(cell)) not in plain_sources:
            extra += 1
    flags = [f"duplicate-grade-id:{grade_id}" for grade_id, found in by_id.items() if len(found) > 1]
    cells, answers = [], {}
    for planned in plan.cells:
        theirs = by_id.get(planned.grade_id or "", [None])[0]
        kind = theirs.get("cell_type") if theirs is not None else None
        if planned.role in ("test", "locked"):
            if theirs is None:
                flags.append(f"locked-cell-deleted:{planned.label}")
            elif kind != planned.cell_type or _normalised(_text(theirs)) != _normalised(planned.release_source):
                flags.append(f"locked-cell-edited:{planned.label}")
        if planned.role == "manual":
            answers[planned.label] = _text(theirs) if theirs is not None and kind == "markdown" else ""
        if planned.cell_type != "code":
            continue
        if planned.role == "solution":
            source = _text(theirs, None) if theirs is not None else None
            if theirs is None or kind != "code":
                flags.append(f"solution-cell-missing:{planned.label}")
                cells.append(RunCell(planned, planned.release_source, "student"))
            elif source is None:
                flags.append(f"malformed-source:{planned.label}")
                cells.append(RunCell(planned, planned.release_source, "student"))
            else:
                if "\0" in source:
                    flags.append(f"null-bytes:{planned.label}")
                    source = source.replace("\0", "")
                cells.append(RunCell(planned, source, "student"))
        else:
            cells.append(RunCell(planned, planned.source, "instructor"))
    if extra:
        flags.append(f"extra-cells-ignored:{extra}")
    return Assembly(cells, flags, answers)
