"""``check()``: run a student's function on a question's test cases and report, case by case.

A check runs in two stages with a plain-data seam between them, so that batch grading can run
the first stage inside a student's kernel and the second outside it:

1. :func:`run_student` calls the student's function on fresh copies of each case's inputs and
   reduces what it did to a :class:`StudentOutcome`: float64 NumPy arrays, or a one-line error
   (``"raised ZeroDivisionError: ..."``, ``"returned NoneType, expected a tensor"``).
2. :func:`score` computes the reference on its own copies of the same inputs and compares:
   shape first, then values (largest absolute difference against the question's tolerance).
   It returns a :class:`CheckResult` that keeps every compared array as plain numbers and has
   :meth:`CheckResult.to_json`.

In normal use ``check`` never raises because of what the student's code does (exceptions, wrong
types, ``None``, NaN, wrong dtype or shape, modified inputs); it prints its report and returns the
result. Strict mode (``strict=True``, or ``SEQCOURSE_STRICT=1`` in the environment, as for
``nbgrader autograde``) raises ``AssertionError`` unless every case passes, so a question that was
not attempted fails too. An unknown question id always raises ``ValueError``.

Inside the batch grader's sandbox there is no reference to compare with: the sandbox installs a
recorder (:func:`record_checks_with`), and ``check`` hands the question id and the function to it
instead (it records the outputs; the grader judges them outside the sandbox).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from .registry import Question, get_question
from .wire import StudentOutcome, describe_exception, read_outputs

STRICT_ENV = "SEQCOURSE_STRICT"


@dataclass
class CaseResult:
    """One case of a check: what went in, what was expected, what came back, and the verdict.

    Arrays are float64 NumPy arrays; ``got`` is None when the student's function raised or
    returned something that is not a floating-point tensor/array. ``max_abs_error`` is None when
    no values could be compared (wrong shape, NaN, an error)."""

    index: int
    name: str
    passed: bool
    message: str
    inputs: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    got: dict[str, np.ndarray] | None
    max_abs_error: float | None
    tol: float

    def to_dict(self) -> dict:
        """JSON-ready: arrays as nested lists; NaN and infinities as the strings "nan", "inf", "-inf"."""
        return {
            "index": self.index,
            "name": self.name,
            "passed": self.passed,
            "message": self.message,
            "max_abs_error": self.max_abs_error,
            "tol": self.tol,
            "inputs": {k: _plain(v) for k, v in self.inputs.items()},
            "expected": {k: _plain(v) for k, v in self.expected.items()},
            "got": None if self.got is None else {k: _plain(v) for k, v in self.got.items()},
        }


@dataclass
class CheckResult:
    """The outcome of ``check(question_id, student_fn)``.

    ``earned`` is ``points * cases passed / cases`` (0 when not attempted); ``passed`` is True when
    every case passed. ``str(result)`` is the report that ``check`` prints."""

    question_id: str
    title: str
    points: int
    attempted: bool
    cases: list[CaseResult]

    @property
    def cases_passed(self) -> int:
        return sum(case.passed for case in self.cases)

    @property
    def passed(self) -> bool:
        return self.attempted and self.cases_passed == len(self.cases)

    @property
    def earned(self) -> float:
        if not self.attempted:
            return 0
        return round(self.points * self.cases_passed / len(self.cases), 2)

    def report(self) -> str:
        total = f"{_number(self.earned)}/{self.points} points"
        if not self.attempted:
            return f"{self.question_id}: not attempted — {total}"
        lines = [f"{self.question_id}: {self.title}"]
        for case in self.cases:
            if case.passed:
                lines.append(f"  case {case.index} passed: {case.name}")
            else:
                lines.append(f"  case {case.index} FAILED: {case.name}: {case.message}")
        lines.append(f"{self.cases_passed}/{len(self.cases)} cases passed — {total}")
        return "\n".join(lines)

    __str__ = report

    def _ipython_display_(self) -> None:
        """Show nothing when a notebook cell ends with ``check(...)``: check has already printed
        the report (``print(result)`` prints it again). A trailing ``;`` cannot be relied on to
        hide the value: IPython ignores it when a cell runs without storing history, as under nbval."""

    def __repr__(self) -> str:
        state = "not attempted" if not self.attempted else f"{self.cases_passed}/{len(self.cases)} cases passed"
        return f"<CheckResult {self.question_id}: {state}, {_number(self.earned)}/{self.points} points>"

    def to_dict(self) -> dict:
        return {
            "question_id": self.question_id,
            "title": self.title,
            "points": self.points,
            "earned": self.earned,
            "attempted": self.attempted,
            "cases_passed": self.cases_passed,
            "cases_total": len(self.cases),
            "cases": [case.to_dict() for case in self.cases],
        }

    def to_json(self, indent: int | None = None) -> str:
        """Strict JSON (no NaN literals), e.g. for a grader that compares outside the kernel."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def check(question_id: str, student_fn, *, strict: bool | None = None) -> CheckResult:
    """Check ``student_fn`` against the question ``question_id``; print the report; return it.

    The report has one line per case (passed, or failed with the measured error) and a total
    ``"N/M cases passed — P/Q points"``; a function that raises ``NotImplementedError`` is
    reported as ``"not attempted — 0/Q points"``.

    strict: None reads ``$SEQCOURSE_STRICT`` ("1", "true" or "yes" turn it on). In strict mode a
    failed case, or a question not attempted, raises ``AssertionError`` carrying the report (so
    that ``nbgrader autograde`` gives the cell 0 points).
    Raises ``ValueError`` for an unknown question id (listing the known ones), in any mode.
    """
    if _recorder is not None:
        return _recorder(question_id, student_fn)
    question = get_question(question_id)
    result = score(question, run_student(question, student_fn))
    print(result.report())
    if strict is None:
        strict = os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes")
    if strict and not result.passed:
        raise AssertionError(result.report())
    return result


_recorder = None


def record_checks_with(recorder) -> None:
    """Batch grading only: from now on ``check(question_id, fn)`` returns
    ``recorder(question_id, fn)`` and compares nothing (the sandbox that grades a submission has
    no reference implementations; see :mod:`seqcourse.autograde.worker`)."""
    global _recorder
    _recorder = recorder


def run_student(question: Question, student_fn) -> list[StudentOutcome]:
    """Call ``student_fn(*inputs)`` on fresh inputs for every case of ``question``.

    Never raises for anything the function does (``KeyboardInterrupt`` still stops it). For a
    question with ``allow_autograd=False`` the function runs under ``torch.no_grad()``."""
    outcomes = []
    for case in question.cases:
        inputs = case.inputs()
        grad_mode = contextlib.nullcontext() if question.allow_autograd else torch.no_grad()
        try:
            with grad_mode:
                value = student_fn(*inputs.values())
        except NotImplementedError:
            outcomes.append(StudentOutcome(not_implemented=True))
            continue
        except (Exception, SystemExit) as exc:  # anything the student's code raises is a result
            outcomes.append(StudentOutcome(error=describe_exception(exc, question.allow_autograd)))
            continue
        values, error = read_outputs(value, question.outputs)
        outcomes.append(StudentOutcome(values=values, error=error))
    return outcomes


def score(
    question: Question, outcomes: list[StudentOutcome], expected: list[dict[str, np.ndarray]] | None = None
) -> CheckResult:
    """Compare the student's outcomes (one per case, from :func:`run_student`) with the reference.

    expected: the reference outputs, one ``{output name: float64 array}`` per case, when they were
    computed elsewhere (batch grading passes the outputs recorded from the solution notebook);
    None computes them with ``question.reference``."""
    if len(outcomes) != len(question.cases):
        raise ValueError(f"{question.id} has {len(question.cases)} cases, got {len(outcomes)} outcomes")
    if expected is not None and len(expected) != len(question.cases):
        raise ValueError(f"{question.id} has {len(question.cases)} cases, got {len(expected)} expected outputs")
    attempted = not all(outcome.not_implemented for outcome in outcomes)
    cases = []
    for index, (case, outcome) in enumerate(zip(question.cases, outcomes), start=1):
        inputs = case.inputs()
        stored_inputs = {name: _numpy(value) for name, value in inputs.items()}
        if expected is None:
            reference = _as_tuple(question.reference(*inputs.values()))
            want = {name: _numpy(value) for name, value in zip(question.outputs, reference, strict=True)}
        else:
            want = {name: np.asarray(expected[index - 1][name], dtype=np.float64) for name in question.outputs}
        max_error = None
        if outcome.not_implemented:
            problems = ["raised NotImplementedError" if attempted else "not attempted"]
        elif outcome.error is not None:
            problems = [outcome.error]
        else:
            problems, errors = [], []
            for name, wanted in want.items():
                problem, error = _compare(outcome.values[name], wanted, question.tol)
                if error is not None:
                    errors.append(error)
                if problem is not None:
                    problems.append(problem if len(want) == 1 else f"{name}: {problem}")
            max_error = max(errors) if len(errors) == len(want) else None
        cases.append(
            CaseResult(
                index=index,
                name=case.name,
                passed=not problems,
                message="; ".join(problems) or "passed",
                inputs=stored_inputs,
                expected=want,
                got=outcome.values,
                max_abs_error=max_error,
                tol=question.tol,
            )
        )
    return CheckResult(question.id, question.title, question.points, attempted, cases)


def _compare(got: np.ndarray, want: np.ndarray, tol: float) -> tuple[str | None, float | None]:
    """(problem or None, max abs error or None when the values cannot be compared)."""
    if got.shape != want.shape:
        problem = f"shape {_shape(got.shape)}, expected {_shape(want.shape)}"
        if got.ndim == 2 and got.shape == want.shape[::-1]:
            problem += " (transposed?)"
        return problem, None
    finite = np.isfinite(got)
    if not finite.all():
        return f"{int((~finite).sum())} of {got.size} entries are NaN or inf", None
    if got.size == 0:
        return None, 0.0
    diff = np.abs(got - want)
    error = float(diff.max())
    if error > tol:
        at = np.unravel_index(int(diff.argmax()), diff.shape)
        where = "[" + ", ".join(str(int(i)) for i in at) + "]"
        return f"max abs error {error:.1e} > tol {tol:.0e} at {where} (got {got[at]:.4g}, expected {want[at]:.4g})", error
    return None, error


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to(device="cpu", dtype=torch.float64).numpy().copy()


def _number(x: float) -> str:
    return f"{x:g}"


def _plain(array: np.ndarray):
    """Nested lists of floats, with NaN/inf as strings so the JSON stays strict."""

    def convert(x):
        if isinstance(x, list):
            return [convert(v) for v in x]
        return x if math.isfinite(x) else str(x)

    return convert(array.tolist())
