"""Graded exercises, the student's side: ``check()`` for the check cells, the question registry,
the wire format the batch grader reads (:mod:`seqcourse.grading.wire`), and (in
``seqcourse.grading.generate``) the command that writes exercises/ from solutions/.

A check cell reads ``check("rnn-step", rnn_step)``; see :mod:`seqcourse.grading.check`. The
instructor's batch grader is :mod:`seqcourse.autograde`.
"""
from .check import CaseResult, CheckResult, StudentOutcome, check, run_student, score
from .registry import Case, Question, get_question, question_ids

__all__ = [
    "Case",
    "CaseResult",
    "CheckResult",
    "Question",
    "StudentOutcome",
    "check",
    "get_question",
    "question_ids",
    "run_student",
    "score",
]
