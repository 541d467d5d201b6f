"""Grade a class's notebooks headlessly, in a way a submission cannot talk its way through.

    python -m seqcourse grade SOLUTION_NOTEBOOK SUBMISSIONS... [--out grades.csv] [--json grades.json]
        [--jobs N] [--cell-timeout S] [--time-limit S] [--memory-mb MB] [--no-variants] [--no-sandbox] [--quiet]

SUBMISSIONS are notebooks or folders (searched recursively for ``*.ipynb``). For each submission:

1. **Assemble** (:mod:`~seqcourse.autograde.assemble`): the instructor's notebook with only the
   student's solution cells put in, matched by ``grade_id``; locked and test cells (hidden tests
   included) always come from the instructor's copy; edited or deleted locked cells are flagged.
2. **Audit** (:mod:`~seqcourse.autograde.audit`): the student's code is read, not run, for the means
   to interfere (monkeypatching, input transformers, ``exec``, introspection, ...).
3. **Run** (:mod:`~seqcourse.autograde.sandbox`): a fresh worker in a bubblewrap sandbox of its own
   (read-only system and package, no question registry, private /tmp and home, own PID namespace,
   no network, uid 65534, rlimits), under a per-cell timeout, a total time limit and a memory cap,
   with the runtime audit (:mod:`~seqcourse.autograde.runtime_audit`) watching. ``check()``
   records the function's outputs there; after each test cell the worker also calls the
   student's function itself on inputs the grader computed (the question's cases, and a fresh
   random draw of each case that the student cannot have seen), watched for what the question
   forbids, and sends back the raw outputs (:mod:`seqcourse.grading.wire`) over a pipe, stamped
   with a per-run nonce.
4. **Judge**, outside the student's process: the raw outputs are compared with the outputs the
   solution notebook produced through the same pipeline. A question scores only if the test cell
   ran without error, what ``check()`` recorded agrees case by case with the grader's own call,
   the fresh draws pass wherever the cases pass, the function used nothing the question forbids,
   and nothing timed out or ran out of memory. The solution notebook is graded first and must
   earn full marks with no flags, or grading stops (exit status 1): that run is also a test of
   the pipeline.

Writes a CSV (``submission``, one column per question, ``total``, ``max_total``, ``flags``) and a
JSON file with the same plus the details of every case, the static and runtime audits' findings
and the student's answers to questions graded by hand. Flags are space-separated tokens, listed in
:data:`FLAG_HELP`.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np

from seqcourse.grading.check import CheckResult, score
from seqcourse.grading.registry import Case, Question
from seqcourse.grading.wire import InputError, StudentOutcome, encode_input, finding_from_wire, outcome_from_wire

from .assemble import PlanCell, PlanError, assemble, load_plan
from .audit import Finding, audit
from .sandbox import Launcher, Limits, RunRecord, SandboxUnavailable, Unit, not_dumpable, run_units

MAX_NOTEBOOK_BYTES = 50 * 2**20
FORBIDDEN_WORDS = frozenset({"seqcourse", "torch.nn", "autograd", "unwatched"})
FLAG_HELP = {
    "timeout:ID": "a cell or the recording of question ID ran past --cell-timeout (ID scores 0)",
    "time-limit": "the submission ran past --time-limit; what had not run scores 0",
    "memory:ID": "ID ran out of memory under --memory-mb (or the process was killed for memory; ID scores 0)",
    "crashed:ID": "the process died while running ID (os._exit, a segfault, ...); ID scores 0",
    "crashed": "the process died before its first cell or between cells; what had not run scores 0",
    "check-missing:ID": "the test cell ran but check() recorded nothing for ID: check replaced or skipped (ID scores 0)",
    "check-disagrees:ID": "the function's outputs under check() and under the grader's own call differ (ID scores 0)",
    "forbidden:ID:WHAT": "ID's function used WHAT, which the question forbids (seqcourse, torch.nn, autograd; ID scores 0)",
    "variant-failed:ID": "passes the published cases but fails fresh draws of them: hard-coded answers? (ID scores 0)",
    "fake-results": "something other than the grader wrote to the result channel; forged reports were ignored",
    "locked-cell-edited:ID": "the student changed a locked cell (the instructor's copy ran instead)",
    "locked-cell-deleted:ID": "the student deleted a locked cell (the instructor's copy ran instead)",
    "solution-cell-missing:ID": "no solution cell with this grade_id (the released stub ran instead)",
    "duplicate-grade-id:ID": "several cells share this grade_id (the first one ran)",
    "extra-cells-ignored:N": "N cells the student added; they did not run",
    "null-bytes:ID": "the solution cell held null bytes; they were removed before it ran",
    "malformed-source:ID": "the solution cell's source is not text; the released stub ran instead",
    "suspicious:RULE": "the static audit found code that could interfere (see seqcourse.autograde.audit)",
    "runtime:RULE": "at run time the student's code did RULE (see seqcourse.autograde.runtime_audit; cell and line in the JSON)",
    "tampered:WHAT": "at run time, the student's code rebound WHAT (a module attribute, check, IPython's transformers)",
    "unsandboxed": "graded with --no-sandbox: the submission could read and write what the grader's user can",
    "unreadable": "the submission is not a notebook that could be read",
    "grader-error": "the grading machinery failed on this submission (the JSON's error says how); report it",
}


class GradingError(RuntimeError):
    """Grading cannot go on (the solution notebook does not pass its own checks in the sandbox)."""


# ---- what check() recorded inside the kernel ------------------------------------------------


@dataclass(frozen=True)
class KernelReport:
    """What ``check()`` recorded inside the kernel for one question (its last call in the test
    cell), judged outside: per case passed or not, the points, and what the function used that the
    question forbids."""

    attempted: bool
    passed: tuple[bool, ...]
    earned: float
    forbidden: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"attempted": self.attempted, "passed": list(self.passed), "earned": self.earned}


def kernel_report(test: dict | None, qp: QuestionPlan, reference: Reference | None) -> KernelReport | None:
    """What ``check()`` recorded for ``qp``'s question in its test cell (the last call), judged
    like the recording: None when it did not record (the cell failed first, ``check`` was
    replaced, or its recording is malformed)."""
    checks = test.get("checks") if isinstance(test, dict) else None
    found = [c for c in checks if isinstance(c, dict) and c.get("question") == qp.question.id] if isinstance(checks, list) else []
    raw = found[-1].get("outcomes") if found else None
    n = len(qp.question.cases)
    if not isinstance(raw, list) or len(raw) != n:
        return None
    outcomes = [outcome_from_wire(item, qp.question.outputs) for item in raw]
    if any(outcome is None for outcome in outcomes):
        return None
    result = score(qp.question, outcomes, expected=None if reference is None else reference.main)
    forbidden = found[-1].get("forbidden")
    forbidden = tuple(sorted(w for w in forbidden if w in FORBIDDEN_WORDS)) if isinstance(forbidden, list) else ()
    return KernelReport(result.attempted, tuple(c.passed for c in result.cases), result.earned, forbidden)


def agrees(report: KernelReport, result: CheckResult) -> bool:
    """The in-kernel report and the out-of-kernel result say the same, case by case."""
    if report.attempted != result.attempted:
        return False
    if not report.attempted:
        return True
    return report.passed == tuple(case.passed for case in result.cases) and abs(report.earned - result.earned) < 1e-9


# ---- the grading plan for a run --------------------------------------------------------------


@dataclass(frozen=True)
class QuestionPlan:
    """A question as this run grades it: its test cell, the function expression, its cases and
    (unless variants are off) fresh draws of them, with the inputs encoded for the sandbox."""

    question: Question
    variant: Question | None
    cell: PlanCell
    function: str
    inputs: list[list[dict]]

    @property
    def cell_unit(self) -> str:
        return f"c{self.cell.index}"

    @property
    def record_unit(self) -> str:
        return f"r:{self.question.id}"


def _encode_input(value, where: str) -> dict:
    try:
        return encode_input(value, where)
    except InputError as error:
        raise PlanError(str(error)) from None


def _variant(question: Question, seed: int) -> Question:
    cases = tuple(Case(f"{case.name} [fresh draw]", case.build, seed=seed + i) for i, case in enumerate(question.cases))
    return dataclasses.replace(question, cases=cases)


def plan_questions(plan, variants: bool) -> list[QuestionPlan]:
    seed = secrets.randbelow(2**30)
    plans = []
    for number, (cell, call) in enumerate(plan.checks):
        question = call.question
        variant = _variant(question, seed + 1000 * number) if variants else None
        cases = list(question.cases) + (list(variant.cases) if variant else [])
        inputs = [
            [_encode_input(value, f"{question.id} case {case.name!r} input {name!r}") for name, value in case.inputs().items()]
            for case in cases
        ]
        plans.append(QuestionPlan(question, variant, cell, call.function, inputs))
    return plans


def _units(assembly, question_plans: list[QuestionPlan]) -> list[Unit]:
    by_cell: dict[int, list[QuestionPlan]] = {}
    for qp in question_plans:
        by_cell.setdefault(qp.cell.index, []).append(qp)
    units = []
    for cell in assembly.cells:
        protect = sorted(cell.plan.binds) if cell.origin == "instructor" else []
        spec = {"source": cell.source, "protect": protect, "label": cell.plan.label, "origin": cell.origin}
        units.append(Unit(f"c{cell.plan.index}", "cell", spec))
        for qp in by_cell.get(cell.plan.index, []):
            spec = {
                "question": qp.question.id,
                "function": qp.function,
                "outputs": list(qp.question.outputs),
                "allow_autograd": qp.question.allow_autograd,
                "forbids": list(qp.question.forbidden),
                "published": len(qp.question.cases),
                "cases": qp.inputs,
            }
            units.append(Unit(qp.record_unit, "record", spec))
    return units


# ---- judging ---------------------------------------------------------------------------------


@dataclass
class QuestionGrade:
    """One question of one submission: the points, and the evidence they rest on."""

    id: str
    points: int
    earned: float
    flags: list[str]
    reason: str | None  # why it scores 0 despite the comparison (None when it scores what the comparison says)
    kernel: KernelReport | None
    result: CheckResult | None
    variants: CheckResult | None

    def to_dict(self) -> dict:
        def cases(result):
            if result is None:
                return None
            keys = ("index", "name", "passed", "message", "max_abs_error")
            return [{key: getattr(case, key) for key in keys} for case in result.cases]

        return {
            "earned": self.earned,
            "points": self.points,
            "flags": self.flags,
            "reason": self.reason,
            "in_kernel": None if self.kernel is None else self.kernel.to_dict(),
            "out_of_kernel": None
            if self.result is None
            else {"attempted": self.result.attempted, "earned": self.result.earned, "cases": cases(self.result)},
            "fresh_draws": cases(self.variants),
        }


@dataclass
class Reference:
    main: list[dict[str, np.ndarray]]
    variants: list[dict[str, np.ndarray]]


def _outcomes(qp: QuestionPlan, record: RunRecord) -> tuple[list[StudentOutcome] | None, bool]:
    """(the recorded outcomes, main cases then fresh draws, or None; whether any was malformed)."""
    result = record.results.get(qp.record_unit)
    if result is None or result.get("interrupted") is True:
        return None, False
    raw = result.get("outcomes")
    if not isinstance(raw, list) or len(raw) != len(qp.inputs):
        return None, True
    decoded = [outcome_from_wire(item, qp.question.outputs) for item in raw]
    malformed = any(outcome is None for outcome in decoded)
    return [outcome or StudentOutcome(error="malformed result") for outcome in decoded], malformed


def _judge(qp: QuestionPlan, record: RunRecord, reference: Reference | None) -> tuple[QuestionGrade, bool]:
    """Grade one question from a run; ``reference`` None scores against ``question.reference``
    (the solution run). Returns the grade and whether a recorded outcome was malformed."""
    question, n = qp.question, len(qp.question.cases)
    test, recorded = record.results.get(qp.cell_unit), record.results.get(qp.record_unit)
    units = (qp.cell_unit, qp.record_unit)
    flags = []
    if any(unit in record.timed_out for unit in units):
        flags.append(f"timeout:{question.id}")
    outcomes, malformed = _outcomes(qp, record)
    memory = any(unit in record.memory_killed for unit in units) or bool(test and (test.get("error") or {}).get("memory"))
    memory = memory or bool(recorded and any(isinstance(o, dict) and o.get("memory") is True for o in recorded.get("outcomes") or []))
    if memory:
        flags.append(f"memory:{question.id}")
    if any(unit in units for unit, _ in record.crashed):
        flags.append(f"crashed:{question.id}")
    result = variants = kernel = None
    if outcomes is not None:
        result = score(question, outcomes[:n], expected=None if reference is None else reference.main)
        if qp.variant is not None:
            variants = score(qp.variant, outcomes[n:], expected=None if reference is None else reference.variants)
    kernel = kernel_report(test, qp, reference)
    forbidden = sorted(set(_forbidden(recorded)) | set(kernel.forbidden if kernel else ()))
    reason = None
    if flags:
        reason = "did not finish: " + ", ".join(flags)
    elif test is None or result is None:
        reason = "did not run" + (" (time limit)" if record.time_limit_hit else "")
    elif forbidden:
        flags += [f"forbidden:{question.id}:{what}" for what in forbidden]
        reason = f"the function used {', '.join(forbidden)}, which this question forbids"
    elif kernel is not None and not agrees(kernel, result):  # flagged even if a hidden test then raised
        flags.append(f"check-disagrees:{question.id}")
        reason = "the function's outputs under check() and under the grader's own call differ"
    elif test.get("error"):
        reason = f"the test cell raised {test['error']['ename']}: {test['error']['evalue']}"
    elif kernel is None:
        flags.append(f"check-missing:{question.id}")
        reason = "check() recorded nothing for this question in its test cell"
    elif variants is not None and any(c.passed and not v.passed for c, v in zip(result.cases, variants.cases)):
        flags.append(f"variant-failed:{question.id}")
        reason = "passes published cases but fails fresh draws of them"
    earned = result.earned if reason is None and result is not None else 0
    return QuestionGrade(question.id, question.points, earned, flags, reason, kernel, result, variants), malformed


def _forbidden(recorded: dict | None) -> list[str]:
    found = recorded.get("forbidden") if isinstance(recorded, dict) else None
    return [w for w in found if w in FORBIDDEN_WORDS] if isinstance(found, list) else []


def _runtime_findings(record: RunRecord) -> list[dict]:
    """The runtime audit's findings from every unit, valid ones only, each once."""
    found = {}
    for result in record.results.values():
        for item in result.get("runtime") or [] if isinstance(result.get("runtime"), list) else []:
            finding = finding_from_wire(item)
            if finding is not None:
                found.setdefault((finding["rule"], finding["cell"], finding["line"], finding["detail"]), finding)
    return sorted(found.values(), key=lambda f: (f["cell"], f["line"], f["rule"]))


def _labels(assembly) -> dict[str, str]:
    return {f"c{cell.plan.index}": cell.plan.label for cell in assembly.cells if not cell.plan.checks}


def _run_flags(record: RunRecord, assembly) -> list[str]:
    """Flags from the run that belong to no question: tampering, forged reports, and time-outs,
    memory errors and crashes in cells that are not test cells."""
    labels = _labels(assembly)
    flags = [flag for result in record.results.values() for flag in result.get("tampered", [])]
    if record.forged:
        flags.append("fake-results")
    if record.time_limit_hit:
        flags.append("time-limit")
    flags += [f"timeout:{labels[unit]}" for unit in record.timed_out if unit in labels]
    flags += [f"memory:{labels[unit]}" for unit in record.memory_killed if unit in labels]
    for unit, result in record.results.items():
        if unit in labels and (result.get("error") or {}).get("memory"):
            flags.append(f"memory:{labels[unit]}")
    for unit, _ in record.crashed:
        if unit in labels:
            flags.append(f"crashed:{labels[unit]}")
        elif unit in ("startup", "between-units"):
            flags.append("crashed")
    return flags


@dataclass
class SubmissionGrade:
    """One row of the grade table, and the details behind it."""

    submission: str
    path: str
    questions: dict[str, QuestionGrade]
    max_total: int
    flags: list[str]
    findings: list[Finding] = field(default_factory=list)
    runtime: list[dict] = field(default_factory=list)
    manual_answers: dict[str, str] = field(default_factory=dict)
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def total(self) -> float:
        return round(sum(q.earned for q in self.questions.values()), 2)

    def to_dict(self) -> dict:
        return {
            "submission": self.submission,
            "path": self.path,
            "scores": {qid: q.earned for qid, q in self.questions.items()},
            "total": self.total,
            "max_total": self.max_total,
            "flags": self.flags,
            "questions": {qid: q.to_dict() for qid, q in self.questions.items()},
            "audit": [finding.to_dict() for finding in self.findings],
            "runtime_audit": [{"flag": f"runtime:{f['rule']}", **f} for f in self.runtime],
            "manual_answers": self.manual_answers,
            "attempts": self.attempts,
            "seconds": round(self.seconds, 2),
            "error": self.error,
        }


@dataclass
class GradeReport:
    solution: str
    questions: list[Question]
    submissions: list[SubmissionGrade]
    limits: Limits
    variants: bool
    jobs: int
    seconds: float
    complete: bool = True  # False while grading runs, and when it was interrupted

    @property
    def max_total(self) -> int:
        return sum(question.points for question in self.questions)

    def to_dict(self) -> dict:
        return {
            "solution": self.solution,
            "questions": [{"id": q.id, "title": q.title, "points": q.points} for q in self.questions],
            "max_total": self.max_total,
            "limits": dataclasses.asdict(self.limits),
            "fresh_draws": self.variants,
            "jobs": self.jobs,
            "seconds": round(self.seconds, 2),
            "complete": self.complete,
            "flag_help": FLAG_HELP,
            "submissions": [s.to_dict() for s in self.submissions],
        }


def _zero(qp: QuestionPlan, reason: str) -> QuestionGrade:
    return QuestionGrade(qp.question.id, qp.question.points, 0, [], reason, None, None, None)


class _Grader:
    def __init__(self, plan, question_plans, *, launcher: Launcher, limits, workdir):
        self.plan, self.question_plans, self.launcher, self.limits = plan, question_plans, launcher, limits
        self.workdir = workdir
        self.reference: dict[str, Reference] = {}

    def run(self, notebook) -> tuple:
        assembly = assemble(self.plan, notebook)
        units = _units(assembly, self.question_plans)
        record = run_units(self.launcher, units, self.limits, self.workdir, self.plan.imports)
        return assembly, record

    def solution(self, path: Path) -> None:
        """Grade the solution notebook against ``question.reference``; keep its outputs as the
        reference for students. Raises :class:`GradingError` unless it earns full marks, flag-free."""
        assembly, record = self.run(nbformat.read(path, as_version=4))
        problems = [f"run: {flag}" for flag in _run_flags(record, assembly)]
        problems += [f"run: runtime:{f['rule']} in {f['cell']} line {f['line']} ({f['detail']})" for f in _runtime_findings(record)]
        for qp in self.question_plans:
            grade, _ = _judge(qp, record, None)
            if grade.earned != qp.question.points or grade.flags:
                failing = [c for r in (grade.result, grade.variants) if r for c in r.cases if not c.passed]
                details = [grade.reason or ""] + [f"case {c.name!r}: {c.message}" for c in failing[:1]]
                words = [f"{qp.question.id}: {_number(grade.earned)}/{qp.question.points}", *grade.flags]
                problems.append(" ".join(words) + " (" + "; ".join(d for d in details if d) + ")")
                continue
            outcomes, _ = _outcomes(qp, record)
            n = len(qp.question.cases)
            self.reference[qp.question.id] = Reference([o.values for o in outcomes[:n]], [o.values for o in outcomes[n:]])
        if problems:
            tail = f"\nits log ends:\n{record.log_tail}" if record.log_tail.strip() else ""
            raise GradingError(f"{path} does not pass its own checks in the sandbox:\n  " + "\n  ".join(problems) + tail)

    def _failed(self, name: str, path: Path, flag: str, reason: str) -> SubmissionGrade:
        zeros = {qp.question.id: _zero(qp, reason) for qp in self.question_plans}
        flags = [flag] + ([] if self.launcher.sandboxed else ["unsandboxed"])
        return SubmissionGrade(name, str(path), zeros, self.plan.max_total, sorted(flags), error=reason)

    def submission(self, name: str, path: Path) -> SubmissionGrade:
        """Grade one submitted notebook; never raises (a failure is a flagged row of zeros)."""
        try:
            if path.stat().st_size > MAX_NOTEBOOK_BYTES:
                raise ValueError(f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
            notebook = nbformat.read(path, as_version=4)
            if not isinstance(notebook.cells, list):
                raise ValueError("no list of cells")
        except Exception as error:  # anything that is not a readable notebook
            return self._failed(name, path, "unreadable", f"unreadable: {type(error).__name__}: {str(error)[:200]}")
        try:
            assembly, record = self.run(notebook)
            student_cells = [(c.plan.label, c.source, self.plan.protected_before(c.plan.index)) for c in assembly.student_cells]
            findings = audit(student_cells)
            runtime = _runtime_findings(record)
            flags = assembly.flags + [finding.flag for finding in findings] + _run_flags(record, assembly)
            flags += [f"runtime:{finding['rule']}" for finding in runtime]
            flags += [] if self.launcher.sandboxed else ["unsandboxed"]
            grades = {}
            for qp in self.question_plans:
                grades[qp.question.id], malformed = _judge(qp, record, self.reference[qp.question.id])
                flags += grades[qp.question.id].flags + (["fake-results"] if malformed else [])
        except Exception as error:  # the grading machinery failed: one flagged row, not a lost class
            return self._failed(name, path, "grader-error", f"grader error: {type(error).__name__}: {error}")
        return SubmissionGrade(
            name,
            str(path),
            grades,
            self.plan.max_total,
            sorted(set(flags)),
            findings,
            runtime,
            assembly.manual_answers,
            record.attempts,
            record.seconds,
            record.log_tail if record.crashed else None,
        )


def grade(
    solution: Path,
    submissions: list[tuple[str, Path]],
    *,
    limits: Limits = Limits(),
    jobs: int = 1,
    variants: bool = True,
    progress: bool = True,
    on_row: Callable[[GradeReport], None] | None = None,
    sandbox: bool = True,
) -> GradeReport:
    """Grade ``submissions`` (``(name, path)`` pairs) against the solution notebook.

    ``on_row``, when given, receives the report of the rows graded so far (``complete=False``,
    in submission order) each time a submission finishes, so a caller can save them as they come.

    ``sandbox``: False grades without bubblewrap (every row is flagged ``unsandboxed``).

    Raises :class:`~seqcourse.autograde.sandbox.SandboxUnavailable` when ``sandbox`` is True and
    bubblewrap is missing or cannot work here, :class:`~seqcourse.autograde.assemble.PlanError` for
    a solution notebook that cannot drive grading and :class:`GradingError` when it does not earn
    full marks in the sandbox."""
    from tqdm.std import tqdm

    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    start = time.monotonic()
    launcher = Launcher(sandboxed=sandbox)
    not_dumpable()  # no process of this user (a submission run unsandboxed) can read the grader's memory
    plan = load_plan(Path(solution))
    question_plans = plan_questions(plan, variants)
    private = tempfile.TemporaryDirectory(prefix="seqcourse-grade-", ignore_cleanup_errors=True)
    with private as workdir, launcher:
        grader = _Grader(plan, question_plans, launcher=launcher, limits=limits, workdir=Path(workdir))
        if progress:
            print(f"grading {len(submissions)} submissions against {solution} ...", file=sys.stderr)
        grader.solution(Path(solution))
        rows: dict[str, SubmissionGrade] = {}
        bar = tqdm(total=len(submissions), desc="grading", unit="notebook", file=sys.stderr, disable=not progress)
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            futures = [pool.submit(grader.submission, name, Path(path)) for name, path in submissions]
            for future in as_completed(futures):
                row = future.result()
                rows[row.submission] = row
                if on_row is not None:
                    on_row(GradeReport(str(solution), plan.questions,
                                       [rows[name] for name, _ in submissions if name in rows],
                                       limits, variants, jobs, time.monotonic() - start, complete=False))
                bar.set_postfix_str(f"{row.submission}: {row.total:g}/{row.max_total}", refresh=False)
                bar.update()
        finally:  # on Ctrl-C, start nothing new; closing the launcher then kills what runs
            pool.shutdown(wait=False, cancel_futures=True)
            bar.close()
    ordered = [rows[name] for name, _ in submissions]
    return GradeReport(str(solution), plan.questions, ordered, limits, variants, jobs, time.monotonic() - start)


def _number(x: float) -> str:
    return f"{round(x, 2):g}"


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` in one step (a temporary file in the same folder, then
    ``os.replace``), so a reader, or a grader killed mid-write, never sees half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(report: GradeReport, path: Path) -> None:
    """One row per submission: ``submission``, one column per question id (in notebook order),
    ``total``, ``max_total``, ``flags`` (space-separated, sorted). Written atomically."""
    ids = [question.id for question in report.questions]
    stream = io.StringIO()
    writer = csv.writer(stream)
    writer.writerow(["submission", *ids, "total", "max_total", "flags"])
    for row in report.submissions:
        scores = [_number(row.questions[qid].earned) for qid in ids]
        writer.writerow([row.submission, *scores, _number(row.total), row.max_total, " ".join(row.flags)])
    _write_atomically(path, stream.getvalue())


def write_json(report: GradeReport, path: Path) -> None:
    """Everything in the CSV, plus per question the in-kernel report, every case's verdict and
    measured error, the fresh draws, the audit's findings, and the answers graded by hand; and
    ``complete``, false for a partial table. Written atomically."""
    _write_atomically(path, json.dumps(report.to_dict(), indent=1, allow_nan=False) + "\n")


def check_output_paths(*paths: Path) -> None:
    """Raise ``ValueError`` naming the problem unless every path can be written: its folder
    exists and is writable, it is not a folder itself, and no two paths are the same file.
    Checked before grading starts, so a batch is never graded only to fail at the end."""
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"the output files must differ; got {', '.join(map(str, paths))}")
    for path in map(Path, paths):
        folder = path.resolve().parent
        if path.is_dir():
            raise ValueError(f"{path} is a folder; expected a file name to write")
        if not folder.is_dir():
            raise ValueError(f"{path}: the folder {folder} does not exist; create it first")
        if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise ValueError(f"{path}: not writable")


def collect(paths: list[Path], solution: Path) -> list[tuple[str, Path]]:
    """``(name, path)`` for every notebook in ``paths`` (folders searched recursively, skipping
    ``.ipynb_checkpoints`` and the solution notebook). A notebook in a folder is named by its path
    relative to that folder; one given directly, by the path as given."""
    found: list[tuple[str, Path]] = []
    solution = Path(solution).resolve()
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for notebook in sorted(path.rglob("*.ipynb")):
                if ".ipynb_checkpoints" not in notebook.parts and notebook.resolve() != solution:
                    found.append((notebook.relative_to(path).as_posix(), notebook))
        elif path.is_file():
            found.append((str(path), path))
        else:
            raise FileNotFoundError(f"{path}: no such notebook or folder")
    names = [name for name, _ in found]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"two submissions have the same name: {', '.join(duplicates)}; pass their folders instead")
    return found


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seqcourse grade",
        description="Grade submitted notebooks, each in a bubblewrap sandbox (no network, read-only system, private "
                    "/tmp and home, own PID namespace, unprivileged uid); write a CSV and a JSON grade table. "
                    "Needs bubblewrap (sudo apt-get install -y bubblewrap) unless --no-sandbox is given.",
        epilog="flags in the grade table:\n" + "\n".join(f"  {k:<26}{v}" for k, v in FLAG_HELP.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("solution", type=Path, help="the instructor's notebook (solutions/NN_name.ipynb)")
    parser.add_argument("submissions", type=Path, nargs="+", help="submitted notebooks, or folders of them")
    parser.add_argument("--out", type=Path, default=Path("grades.csv"), help="CSV to write (default grades.csv)")
    parser.add_argument("--json", type=Path, help="JSON to write (default: --out with .json)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    parser.add_argument("--cell-timeout", type=float, default=60.0, help="seconds per cell (default 60)")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per submission in all (default 600)")
    parser.add_argument("--memory-mb", type=int, default=2048, help="address-space cap per submission in MB (default 2048)")
    parser.add_argument("--no-variants", action="store_true", help="do not check fresh draws of each case")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="grade without bubblewrap's sandbox (no isolation; every row is flagged unsandboxed)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        grace = min(5.0, args.cell_timeout)  # after an interrupt, before the kill
        limits = Limits(cell_timeout=args.cell_timeout, time_limit=args.time_limit, memory_mb=args.memory_mb, grace=grace)
        if args.jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
        submissions = collect(args.submissions, args.solution)
        if not submissions:
            raise ValueError("no submitted notebooks found")
        json_path = args.json or args.out.with_suffix(".json")
        check_output_paths(args.out, json_path)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    saved: list[GradeReport] = []

    def save(partial: GradeReport) -> None:  # every finished row reaches the disk at once
        write_csv(partial, args.out)
        write_json(partial, json_path)
        saved[:] = [partial]

    # clean up (kill the sandboxes) when terminated or interrupted, keeping the rows already saved
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        report = grade(args.solution, submissions, limits=limits, jobs=args.jobs, variants=not args.no_variants,
                       progress=not args.quiet, on_row=save, sandbox=not args.no_sandbox)
    except (PlanError, GradingError, SandboxUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except SystemExit as stop:
        done = len(saved[0].submissions) if saved else 0
        print(f"interrupted (exit {stop.code}): {done} of {len(submissions)} submissions graded and saved in "
              f"{args.out} and {json_path} (marked \"complete\": false); grade the rest again", file=sys.stderr)
        return int(stop.code) if isinstance(stop.code, int) else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    write_csv(report, args.out)
    write_json(report, json_path)
    flagged = sum(bool(row.flags) for row in report.submissions)
    print(
        f"graded {len(report.submissions)} submissions in {report.seconds:.1f} s (jobs={args.jobs}); "
        f"{flagged} flagged; wrote {args.out} and {json_path}"
    )
    return 0
