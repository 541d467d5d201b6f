"""The check every chapter's graded questions run on their usual mistakes
(tests/test_attention_questions.py, tests/test_state_space_questions.py)."""
from seqcourse.grading import check, get_question


def assert_mistake_fails_exactly(name: str, question_id: str, fn, failing: set[int]) -> None:
    """The mistake ``fn`` fails exactly the cases ``failing`` (1-based) of its question, so it neither
    passes nor earns the question's full points."""
    result = check(question_id, fn)
    failed = {case.index for case in result.cases if not case.passed}
    assert failed == failing, (name, failed, [c.message for c in result.cases])
    assert not result.passed and result.earned < get_question(question_id).points
