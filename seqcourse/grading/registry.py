"""The question registry: every graded question of the course, looked up by its id.

A :class:`Question` names the function students write (its arguments, in order, and what it
returns), a reference that computes the same thing by an independent route (a ``torch.nn`` module
with copied weights, or autograd), the test cases it is checked on, the tolerance and the points.
Each chapter's questions live in ``seqcourse/grading/questions/<chapter>.py`` as a tuple
``QUESTIONS``; the registry imports every module of that package the first time a question is
looked up, so adding a chapter's questions means adding its module and nothing else.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

import torch

QUESTIONS_PACKAGE = "seqcourse.grading.questions"
FORBIDDABLE = ("seqcourse", "torch.nn", "autograd")


def chapter_modules() -> list[str]:
    """The question modules, one per chapter, each defining ``QUESTIONS: tuple[Question, ...]``."""
    package = importlib.import_module(QUESTIONS_PACKAGE)
    return sorted(f"{QUESTIONS_PACKAGE}.{info.name}" for info in pkgutil.iter_modules(package.__path__))


@dataclass(frozen=True)
class Case:
    """One test case: a name students read in the check's output, and a builder for its inputs.

    ``build(generator)`` returns the inputs as a dict ``{argument name: tensor}`` in the order of
    the question's ``args``; it draws every random number from ``generator``, which
    :meth:`inputs` seeds with ``seed``, so the inputs are the same on every call and each call
    returns fresh tensors (the student and the reference each get their own copy).
    """

    name: str
    build: Callable[[torch.Generator], dict[str, torch.Tensor]]
    seed: int = 0

    def inputs(self) -> dict[str, torch.Tensor]:
        return self.build(torch.Generator().manual_seed(self.seed))


@dataclass(frozen=True)
class Question:
    """A graded question.

    Attributes:
        id: what a check cell passes to ``check`` (e.g. ``"rnn-step"``).
        title: one line shown above the check's per-case lines.
        points: what the question is worth; a check earns ``points * passed / len(cases)``.
        args: the student function's positional arguments, in order.
        outputs: names of what it returns: one name means a single tensor, several a tuple of
            tensors in that order.
        reference: computes the expected outputs from the same inputs (a tensor, or a tuple of
            tensors matching ``outputs``); it must not share the obvious formula with the solution.
        cases: the test cases.
        tol: largest accepted absolute difference from the reference, entry by entry.
        allow_autograd: False runs the student's function under ``torch.no_grad()`` (for questions
            that ask for a gradient by hand).
        forbids: what the student's function may not use, among :data:`FORBIDDABLE`: ``"seqcourse"``
            (any code of the course's package: its models and these references), ``"torch.nn"``
            (``torch.nn`` modules) and ``"autograd"`` (always forbidden when ``allow_autograd`` is
            False). The batch grader watches the function while it records its outputs; a question
            whose function used something it forbids scores 0 (flag ``forbidden:ID:WHAT``).
    """

    id: str
    title: str
    points: int
    args: tuple[str, ...]
    outputs: tuple[str, ...]
    reference: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]]
    cases: tuple[Case, ...]
    tol: float = 1e-5
    allow_autograd: bool = True
    forbids: tuple[str, ...] = ("seqcourse",)

    @property
    def forbidden(self) -> tuple[str, ...]:
        """What ``forbids`` names, plus ``"autograd"`` when autograd is switched off."""
        return tuple(dict.fromkeys(self.forbids + (() if self.allow_autograd else ("autograd",))))

    def __post_init__(self):
        unknown = [name for name in self.forbids if name not in FORBIDDABLE]
        if unknown or not isinstance(self.forbids, tuple):
            raise ValueError(f"question {self.id!r}: forbids must be a tuple of {', '.join(FORBIDDABLE)}; got {self.forbids!r}")
        if not self.cases:
            raise ValueError(f"question {self.id!r} has no test cases")
        if not self.outputs:
            raise ValueError(f"question {self.id!r} names no outputs")
        if not (isinstance(self.points, int) and self.points > 0):
            raise ValueError(f"question {self.id!r}: points must be a positive int, got {self.points!r}")


_questions: dict[str, Question] | None = None


def questions() -> dict[str, Question]:
    """Every registered question, by id (the chapter modules are imported on the first call)."""
    global _questions
    if _questions is None:
        found: dict[str, Question] = {}
        for module_name in chapter_modules():
            for question in importlib.import_module(module_name).QUESTIONS:
                if question.id in found:
                    raise RuntimeError(f"question id {question.id!r} is defined twice (again in {module_name})")
                found[question.id] = question
        _questions = found
    return _questions


def question_ids() -> list[str]:
    """The ids of every registered question, sorted."""
    return sorted(questions())


def get_question(question_id: str) -> Question:
    """The question with this id; ``ValueError`` listing the known ids if there is none."""
    registry = questions()
    if not isinstance(question_id, str) or question_id not in registry:
        raise ValueError(f"unknown question id {question_id!r}; known ids: {', '.join(sorted(registry))}")
    return registry[question_id]
