"""Write the student notebooks (exercises/) from the authored ones (solutions/).

    python -m seqcourse generate SOLUTIONS_DIR EXERCISES_DIR [--check] [--timeout SECONDS]

Notebooks carry nbgrader's cell metadata (schema 3) and markers, so an instructor can also load
them into nbgrader; this module does nbgrader's few release transformations itself:

- in a solution cell (``nbgrader.solution: true``) each region from ``### BEGIN SOLUTION`` to
  ``### END SOLUTION`` becomes ``# YOUR CODE HERE`` / ``raise NotImplementedError()`` at the
  marker's indentation (``YOUR ANSWER HERE`` in a Markdown cell; a Markdown solution cell with no
  markers is replaced whole);
- in a graded cell (``nbgrader.grade: true``) each ``### BEGIN HIDDEN TESTS`` ...
  ``### END HIDDEN TESTS`` block is deleted;
- outputs are cleared, and cells are locked the way nbgrader releases them (locked cells not
  editable, graded and solution cells not deletable);
- the student notebook is executed (with this Python, in its own folder) so that its stored
  outputs show every check reporting "not attempted".

``--check`` writes nothing: it compares what would be generated with what is in EXERCISES_DIR
(cell types, sources, metadata; not outputs) and exits 1 naming the first differing cell of each
notebook. A malformed notebook (unbalanced markers, a duplicate or missing grade_id, markers in
the wrong kind of cell, metadata that is not nbgrader schema 3) is an error naming the cell.
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_MARKERS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
MARKDOWN_STUB = ("YOUR ANSWER HERE",)
GRADE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
SCHEMA_VERSION = 3


class NotebookError(ValueError):
    """A solutions notebook that cannot be turned into an exercise; the message names the cell."""


class ExecutionFailed(RuntimeError):
    """Executing a generated exercise failed (a cell raised, timed out, or the kernel died)."""


def _cell_label(index: int, cell) -> str:
    meta = cell.get("metadata", {}).get("nbgrader")
    grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
    return f"cell {index}" + (f" (grade_id {grade_id!r})" if grade_id else "")


def _where(name: str, index: int, cell) -> str:
    return f"{name}: {_cell_label(index, cell)}"


def validate(nb, name: str = "notebook") -> None:
    """Raise :class:`NotebookError` unless every cell's ``nbgrader`` metadata is valid schema 3
    and the markers are where they belong and balanced.

    Rules: ``grade``, ``solution``, ``locked`` are booleans; ``schema_version`` is 3; ``grade_id``
    is a unique identifier (letters, digits, ``-``, ``_``); a graded cell has ``points`` >= 0; a
    solution cell is not locked; a graded cell that is not a solution cell is code (an autograder
    test); solution markers only in solution cells (code solution cells need at least one region);
    hidden-test markers only in graded code cells."""
    seen: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        where = _where(name, index, cell)
        meta = cell.get("metadata", {}).get("nbgrader")
        source = cell.get("source", "")
        if meta is None:
            for marker in SOLUTION_MARKERS + HIDDEN_MARKERS:
                if _has_marker(source, marker):
                    raise NotebookError(f"{where}: has {marker!r} but no nbgrader metadata")
            continue
        if not isinstance(meta, dict):
            raise NotebookError(f"{where}: nbgrader metadata must be a dict, got {type(meta).__name__}")
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise NotebookError(f"{where}: nbgrader schema_version must be 3, got {meta.get('schema_version')!r}")
        for key in ("grade", "solution", "locked"):
            if not isinstance(meta.get(key), bool):
                raise NotebookError(f"{where}: nbgrader.{key} must be true or false, got {meta.get(key)!r}")
        grade_id = meta.get("grade_id")
        if not isinstance(grade_id, str) or not GRADE_ID.match(grade_id):
            raise NotebookError(
                f"{where}: nbgrader cells need a grade_id of letters, digits, '-' and '_'; got {grade_id!r}"
            )
        if grade_id in seen:
            raise NotebookError(f"{where}: duplicate grade_id {grade_id!r} (also cell {seen[grade_id]})")
        seen[grade_id] = index
        if meta["grade"]:
            points = meta.get("points")
            if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
                raise NotebookError(f"{where}: a graded cell needs points >= 0, got {points!r}")
            if not meta["solution"] and cell.cell_type != "code":
                raise NotebookError(f"{where}: a graded cell that is not a solution cell must be a code cell")
        if meta["solution"] and meta["locked"]:
            raise NotebookError(f"{where}: a solution cell cannot be locked")
        is_solution, is_test = meta["solution"], meta["grade"] and cell.cell_type == "code"
        solution_regions = _regions(source, SOLUTION_MARKERS, where)
        hidden_regions = _regions(source, HIDDEN_MARKERS, where)
        if solution_regions and not is_solution:
            raise NotebookError(f"{where}: has {SOLUTION_MARKERS[0]!r} but is not a solution cell")
        if is_solution and cell.cell_type == "code" and not solution_regions:
            raise NotebookError(f"{where}: a code solution cell needs a {SOLUTION_MARKERS[0]!r} ... {SOLUTION_MARKERS[1]!r} region")
        if hidden_regions and not is_test:
            raise NotebookError(f"{where}: has {HIDDEN_MARKERS[0]!r} but is not a graded code cell")


def _has_marker(source: str, marker: str) -> bool:
    return any(line.strip() == marker for line in source.splitlines())


def _regions(source: str, markers: tuple[str, str], where: str) -> list[tuple[int, int]]:
    """(begin line, end line) of each marked region; NotebookError if unbalanced or nested."""
    begin, end = markers
    regions, start = [], None
    for number, line in enumerate(source.splitlines()):
        text = line.strip()
        if text == begin:
            if start is not None:
                raise NotebookError(f"{where}: {begin!r} on line {number + 1} inside another (opened on line {start + 1})")
            start = number
        elif text == end:
            if start is None:
                raise NotebookError(f"{where}: {end!r} on line {number + 1} without a {begin!r} before it")
            regions.append((start, number))
            start = None
    if start is not None:
        raise NotebookError(f"{where}: {begin!r} on line {start + 1} is never closed by {end!r}")
    return regions


def _replace_regions(source: str, regions: list[tuple[int, int]], stub: tuple[str, ...]) -> str:
    """Replace each region (markers included) by ``stub`` at the begin marker's indentation."""
    lines = source.splitlines()
    for first, last in reversed(regions):
        indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
        lines[first : last + 1] = [indent + line for line in stub]
    return "\n".join(lines).rstrip()


def make_exercise(nb, name: str = "notebook"):
    """The student version of a solutions notebook (a new notebook; outputs cleared, not executed)."""
    validate(nb, name)
    exercise = copy.deepcopy(nb)
    for index, cell in enumerate(exercise.cells):
        meta = cell.metadata.get("nbgrader")
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if meta is None:
            continue
        where = _where(name, index, cell)
        if meta["solution"]:
            regions = _regions(cell.source, SOLUTION_MARKERS, where)
            if cell.cell_type == "code":
                cell.source = _replace_regions(cell.source, regions, CODE_STUB)
            elif regions:
                cell.source = _replace_regions(cell.source, regions, MARKDOWN_STUB)
            else:
                cell.source = MARKDOWN_STUB[0]
        if meta["grade"] and cell.cell_type == "code":
            cell.source = _replace_regions(cell.source, _regions(cell.source, HIDDEN_MARKERS, where), ())
        if meta["locked"]:
            cell.metadata["editable"] = False
        if meta["locked"] or meta["grade"] or meta["solution"]:
            cell.metadata["deletable"] = False
    return exercise


def execute(nb, folder: Path, timeout: int) -> None:
    """Run every cell of ``nb`` in place, in ``folder``, on a kernel of this very Python (not
    whichever ``python3`` kernel is registered first on the machine)."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return self.kernel_spec_class(
                resource_dir=ipykernel.kernelspec.RESOURCES, **ipykernel.kernelspec.get_kernel_dict()
            )

    manager = KernelManager(kernel_name="python3", kernel_spec_manager=ThisPython())
    client = NotebookClient(
        nb,
        km=manager,
        timeout=timeout,
        record_timing=False,
        shutdown_kernel="immediate",
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute(cleanup_kc=True)  # shut the kernel down afterwards (we passed our own manager)


def _notebooks(folder: Path) -> list[Path]:
    return sorted(
        p.relative_to(folder) for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
    )


def differences(solutions_dir: Path, exercises_dir: Path) -> list[str]:
    """What differs between the exercises that would be generated and those in ``exercises_dir``:
    one line per notebook (missing, stale, or its first differing cell); empty when in sync."""
    found = []
    solutions, exercises = _notebooks(solutions_dir), set(_notebooks(exercises_dir))
    for relative in solutions:
        target = exercises_dir / relative
        if relative not in exercises:
            found.append(f"{target}: missing")
            continue
        want = make_exercise(nbformat.read(solutions_dir / relative, as_version=4), str(solutions_dir / relative))
        have = nbformat.read(target, as_version=4)
        difference = _first_difference(want, have)
        if difference is not None:
            found.append(f"{target}: {difference}")
    for relative in sorted(exercises - set(solutions)):
        found.append(f"{exercises_dir / relative}: stale (no {solutions_dir / relative})")
    return found


def _first_difference(want, have) -> str | None:
    if len(want.cells) != len(have.cells):
        return f"{len(have.cells)} cells, expected {len(want.cells)}"
    for index, (w, h) in enumerate(zip(want.cells, have.cells)):
        for field in ("cell_type", "source", "metadata"):
            if w.get(field) != h.get(field):
                return f"{_cell_label(index, w)}: {field} differs"
    return None


def generate(solutions_dir: Path, exercises_dir: Path, timeout: int = 120) -> list[Path]:
    """Write and execute the exercise of every notebook in ``solutions_dir``; delete exercise
    notebooks whose solution is gone. Returns the notebooks written."""
    sources = _notebooks(solutions_dir)
    # Make (and so validate) every exercise before writing any.
    exercises = [
        (relative, make_exercise(nbformat.read(solutions_dir / relative, as_version=4), str(solutions_dir / relative)))
        for relative in sources
    ]
    written = []
    for relative, exercise in exercises:
        target = exercises_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            execute(exercise, target.parent, timeout)
        except Exception as error:  # a failing cell, a timeout, a dead kernel
            raise ExecutionFailed(f"{target}: executing the exercise failed: {error}") from error
        nbformat.write(exercise, target)
        written.append(target)
    for relative in sorted(set(_notebooks(exercises_dir)) - set(sources)):
        (exercises_dir / relative).unlink()
        print(f"removed {exercises_dir / relative} (no {solutions_dir / relative})")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seqcourse generate", description="Write the student notebooks from the authored solutions."
    )
    parser.add_argument("solutions_dir", type=Path, help="folder of authored notebooks (nbgrader metadata)")
    parser.add_argument("exercises_dir", type=Path, help="folder to write the student notebooks to")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if EXERCISES_DIR is out of date")
    parser.add_argument("--timeout", type=int, default=120, help="seconds allowed per cell when executing (default 120)")
    args = parser.parse_args(argv)
    if not args.solutions_dir.is_dir():
        print(f"error: {args.solutions_dir} is not a folder", file=sys.stderr)
        return 1
    if not _notebooks(args.solutions_dir):
        print(f"error: no notebooks in {args.solutions_dir}", file=sys.stderr)
        return 1
    try:
        if args.check:
            found = differences(args.solutions_dir, args.exercises_dir)
            for line in found:
                print(line, file=sys.stderr)
            if found:
                print(f"run: python -m seqcourse generate {args.solutions_dir} {args.exercises_dir}", file=sys.stderr)
                return 1
            print(f"{args.exercises_dir} is in sync with {args.solutions_dir}")
            return 0
        for path in generate(args.solutions_dir, args.exercises_dir, args.timeout):
            print(f"wrote {path}")
    except (NotebookError, ExecutionFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
