"""check() and the Recurrence questions: correct work passes, each classic mistake fails the case
it should with a measured error, nothing a student's function does makes check raise (except in
strict mode, on a failure), and the references agree with computations done another way."""
import json
import math
import re
import sys

import numpy as np
import pytest
import torch

from seqcourse.grading import CheckResult, Question, check, get_question, question_ids, run_student, score
from seqcourse.grading.questions import recurrence
from seqcourse.grading.registry import Case

# ---- what a correct student writes (the plain formulas the references avoid) ------------------


def step(x_t, h_prev, W_x, W_h, b):
    return torch.tanh(x_t @ W_x.T + h_prev @ W_h.T + b)


def unroll(x, h0, W_x, W_h, b):
    h, states = h0, []
    for x_t in x.unbind(1):
        h = step(x_t, h, W_x, W_h, b)
        states.append(h)
    return torch.stack(states, 1)


def bptt(x, h0, W_x, W_h, b, target, *, sign=1.0, recurse=True, shift=True, w_h_back=None, tanh_grad=True, scale=1.0):
    """Hand BPTT; the keyword arguments switch on the classic mistakes."""
    h = unroll(x, h0, W_x, W_h, b)
    h_before = torch.cat([h0.unsqueeze(1), h[:, :-1]], 1) if shift else h
    w_back = W_h if w_h_back is None else w_h_back(W_h)
    dW_x, dW_h, later = torch.zeros_like(W_x), torch.zeros_like(W_h), torch.zeros_like(h0)
    for t in reversed(range(x.shape[1])):
        dz = sign * (h[:, t] - target[:, t]) + later
        if tanh_grad:
            dz = dz * (1 - h[:, t] ** 2)
        dW_x += scale * dz.T @ x[:, t]
        dW_h += scale * dz.T @ h_before[:, t]
        later = dz @ w_back if recurse else torch.zeros_like(later)
    return dW_x, dW_h


CORRECT = {"rnn-step": step, "rnn-unroll": unroll, "rnn-bptt": bptt}


def not_implemented(*args):
    raise NotImplementedError()


def last_line(text):
    return text.strip().splitlines()[-1]


# ---- the registry ---------------------------------------------------------------------------


def test_registry_holds_the_recurrence_questions_with_their_points():
    assert {q.id for q in recurrence.QUESTIONS} <= set(question_ids())
    assert {q.id: q.points for q in recurrence.QUESTIONS} == {"rnn-step": 2, "rnn-unroll": 3, "rnn-bptt": 4}
    assert get_question("rnn-step") is recurrence.RNN_STEP


def test_every_recurrence_question_has_a_correct_solution_tested_here():
    assert {q.id for q in recurrence.QUESTIONS} == set(CORRECT)


def test_unknown_question_id_raises_listing_the_known_ids():
    for strict in (False, True):
        with pytest.raises(ValueError, match="unknown question id 'rnn-stpe'.*rnn-bptt, rnn-step, rnn-unroll"):
            check("rnn-stpe", step, strict=strict)
    with pytest.raises(ValueError, match="known ids"):
        get_question(None)


def test_question_rejects_a_definition_without_cases_or_points():
    with pytest.raises(ValueError, match="no test cases"):
        Question("q", "t", 1, ("x",), ("y",), lambda x: x, cases=())
    with pytest.raises(ValueError, match="points must be a positive int"):
        Question("q", "t", 0, ("x",), ("y",), lambda x: x, cases=(Case("c", lambda g: {"x": torch.zeros(1)}),))


@pytest.mark.parametrize("question", recurrence.QUESTIONS, ids=lambda q: q.id)
def test_case_inputs_are_deterministic_fresh_float32_and_named_by_the_args(question):
    for case in question.cases:
        first, second = case.inputs(), case.inputs()
        assert tuple(first) == question.args
        for name in question.args:
            assert first[name].dtype == torch.float32
            assert torch.equal(first[name], second[name])
            assert first[name].data_ptr() != second[name].data_ptr()


def test_cases_are_drawn_so_transposes_are_detectable():
    for question in recurrence.QUESTIONS:
        for case in question.cases:
            inputs = case.inputs()
            assert not torch.allclose(inputs["W_h"], inputs["W_h"].T), (question.id, case.name)
        assert any(c.inputs()["W_x"].shape[0] != c.inputs()["W_x"].shape[1] for c in question.cases)
        assert any(c.inputs()["b"].abs().min() > 0 for c in question.cases)


# ---- the references agree with independent computations --------------------------------------


def test_unroll_reference_reproduces_the_worked_example_computed_in_plain_python():
    W_h, W_x = recurrence.WORKED_W_H, recurrence.WORKED_W_X
    h, expected = [0.0, 0.0], []
    for x in recurrence.WORKED_INPUTS:
        h = [math.tanh(W_x[i][0] * x + W_h[i][0] * h[0] + W_h[i][1] * h[1]) for i in range(2)]
        expected.append(h)
    case = recurrence.RNN_UNROLL.cases[0]
    got = recurrence.RNN_UNROLL.reference(*case.inputs().values())
    np.testing.assert_allclose(got[0].numpy(), expected, atol=1e-7)  # float32 inputs, float64 maths
    np.testing.assert_allclose(expected[-1], [0.4860, 0.6100], atol=5e-5)


def test_step_reference_matches_the_unroll_reference_step_by_step():
    inputs = recurrence.RNN_UNROLL.cases[1].inputs()
    states = recurrence.RNN_UNROLL.reference(*inputs.values())
    h = inputs["h0"].double()
    for t in range(inputs["x"].shape[1]):
        h = recurrence.RNN_STEP.reference(inputs["x"][:, t], h, inputs["W_x"], inputs["W_h"], inputs["b"])
        torch.testing.assert_close(h, states[:, t], rtol=0, atol=1e-12)


def test_bptt_reference_matches_central_finite_differences():
    inputs = {k: v.double() for k, v in recurrence.RNN_BPTT.cases[1].inputs().items()}

    def loss(W_x, W_h):
        h = recurrence.RNN_UNROLL.reference(inputs["x"], inputs["h0"], W_x, W_h, inputs["b"])
        return 0.5 * (h - inputs["target"]).pow(2).sum().item()

    dW_x, dW_h = recurrence.RNN_BPTT.reference(*inputs.values())
    eps = 1e-6
    for which, grad in (("W_x", dW_x), ("W_h", dW_h)):
        numeric = torch.zeros_like(grad)
        for index in np.ndindex(*grad.shape):
            plus, minus = dict(inputs), dict(inputs)
            plus[which], minus[which] = inputs[which].clone(), inputs[which].clone()
            plus[which][index] += eps
            minus[which][index] -= eps
            numeric[index] = (loss(plus["W_x"], plus["W_h"]) - loss(minus["W_x"], minus["W_h"])) / (2 * eps)
        torch.testing.assert_close(grad, numeric, rtol=0, atol=1e-7)


def test_inputs_do_not_depend_on_global_torch_state():
    torch.manual_seed(999)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for question in recurrence.QUESTIONS:
            for case in question.cases:
                assert all(v.dtype == torch.float32 for v in case.inputs().values()), case.name
        assert check("rnn-unroll", unroll).passed
    finally:
        torch.set_default_dtype(previous)


def test_check_draws_no_numbers_from_the_global_random_stream():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    for question_id, fn in CORRECT.items():
        check(question_id, fn)
    assert torch.equal(before, torch.get_rng_state())


# ---- correct work passes ----------------------------------------------------------------------


@pytest.mark.parametrize("question_id", sorted(CORRECT))
def test_correct_solution_passes_every_case_with_full_points(question_id, capsys):
    question = get_question(question_id)
    result = check(question_id, CORRECT[question_id], strict=True)
    out = capsys.readouterr().out
    n, p = len(question.cases), question.points
    assert result.passed and result.attempted
    assert result.earned == p
    assert all(case.max_abs_error < question.tol / 10 for case in result.cases)
    assert out.splitlines()[0] == f"{question_id}: {question.title}"
    assert out.count(" passed: ") == n
    assert last_line(out) == f"{n}/{n} cases passed — {p}/{p} points"


def test_numpy_float64_results_and_results_on_any_device_are_accepted(device):
    assert check("rnn-step", lambda *a: step(*a).double().numpy()).passed
    assert check("rnn-step", lambda *a: step(*(t.to(device) for t in a))).passed
    assert check("rnn-bptt", lambda *a: tuple(g.to(device) for g in bptt(*a))).passed
    assert check("rnn-bptt", lambda *a: list(bptt(*a))).passed


def test_a_result_that_requires_grad_is_accepted():
    def with_grad(x_t, h_prev, W_x, W_h, b):
        return step(x_t, h_prev, W_x.requires_grad_(), W_h, b)

    assert check("rnn-step", with_grad).passed


# ---- each classic mistake fails the case it should, with a measured error ---------------------

MAX_ABS = r"max abs error \d\.\de[+-]\d\d > tol 1e-0[45] at \[[\d, ]+\] \(got -?[\d.e+-]+, expected -?[\d.e+-]+\)"

MISTAKES = {
    # name: (question, function, {failing case: regex its message must match})
    "step: W_h transposed": (
        "rnn-step",
        lambda x, h, W_x, W_h, b: torch.tanh(x @ W_x.T + h @ W_h + b),
        {2: MAX_ABS, 3: MAX_ABS, 4: MAX_ABS},
    ),
    "step: W_x transposed": (
        "rnn-step",
        lambda x, h, W_x, W_h, b: torch.tanh(x @ W_x + h @ W_h.T + b),
        {1: "raised RuntimeError: mat1 and mat2", 2: "raised RuntimeError", 3: "raised RuntimeError", 4: MAX_ABS},
    ),
    "step: no bias": ("rnn-step", lambda x, h, W_x, W_h, b: torch.tanh(x @ W_x.T + h @ W_h.T), {3: MAX_ABS, 4: MAX_ABS}),
    "step: sign error on W_h": (
        "rnn-step",
        lambda x, h, W_x, W_h, b: torch.tanh(x @ W_x.T - h @ W_h.T + b),
        {2: MAX_ABS, 3: MAX_ABS, 4: MAX_ABS},
    ),
    "step: no tanh": ("rnn-step", lambda x, h, W_x, W_h, b: x @ W_x.T + h @ W_h.T + b, {i: MAX_ABS for i in (1, 2, 3, 4)}),
    "step: one example, not a batch": (
        "rnn-step",
        lambda x, h, W_x, W_h, b: step(x, h, W_x, W_h, b)[0],
        {1: r"shape \(2,\), expected \(1, 2\)", 2: "shape", 3: r"shape \(4,\), expected \(3, 4\)", 4: "shape"},
    ),
    "unroll: off by one (h_0 ... h_(T-1))": (
        "rnn-unroll",
        lambda x, h0, W_x, W_h, b: torch.cat([h0.unsqueeze(1), unroll(x, h0, W_x, W_h, b)[:, :-1]], 1),
        {1: MAX_ABS, 2: MAX_ABS, 3: MAX_ABS},
    ),
    "unroll: h_0 included (T + 1 states)": (
        "rnn-unroll",
        lambda x, h0, W_x, W_h, b: torch.cat([h0.unsqueeze(1), unroll(x, h0, W_x, W_h, b)], 1),
        {1: r"shape \(1, 4, 2\), expected \(1, 3, 2\)", 2: r"shape \(2, 6, 4\)", 3: r"shape \(4, 2, 3\)"},
    ),
    "unroll: time-major output": (
        "rnn-unroll",
        lambda *a: unroll(*a).transpose(0, 1),
        {1: r"shape \(3, 1, 2\), expected \(1, 3, 2\)", 2: "shape", 3: r"shape \(1, 4, 3\), expected \(4, 1, 3\)"},
    ),
    "unroll: final state only": ("rnn-unroll", lambda *a: unroll(*a)[:, -1], {1: r"shape \(1, 2\), expected \(1, 3, 2\)", 2: "shape", 3: "shape"}),
    "unroll: no bias": ("rnn-unroll", lambda x, h0, W_x, W_h, b: unroll(x, h0, W_x, W_h, 0 * b), {2: MAX_ABS, 3: MAX_ABS}),
    "bptt: sign error": ("rnn-bptt", lambda *a: bptt(*a, sign=-1.0), {i: "dL_dW_x: " + MAX_ABS for i in (1, 2, 3, 4)}),
    "bptt: no recursive term": ("rnn-bptt", lambda *a: bptt(*a, recurse=False), {1: MAX_ABS, 2: MAX_ABS, 4: MAX_ABS}),
    "bptt: h_t instead of h_(t-1)": ("rnn-bptt", lambda *a: bptt(*a, shift=False), {i: "dL_dW_h: " + MAX_ABS for i in (1, 2, 3, 4)}),
    "bptt: W_h not transposed going back": (
        "rnn-bptt",
        lambda *a: bptt(*a, w_h_back=lambda W: W.T),
        {1: MAX_ABS, 2: MAX_ABS, 4: MAX_ABS},
    ),
    "bptt: no tanh derivative": ("rnn-bptt", lambda *a: bptt(*a, tanh_grad=False), {i: MAX_ABS for i in (1, 2, 3, 4)}),
    "bptt: mean over the batch": (
        "rnn-bptt",
        lambda *a: bptt(*a, scale=1 / a[0].shape[0]),
        {2: MAX_ABS, 3: MAX_ABS, 4: MAX_ABS},
    ),
    "bptt: outputs swapped": (
        "rnn-bptt",
        lambda *a: bptt(*a)[::-1],
        {1: r"dL_dW_x: shape \(2, 2\), expected \(2, 1\); dL_dW_h: shape \(2, 1\), expected \(2, 2\)", 2: "shape", 3: "shape", 4: MAX_ABS},
    ),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_classic_mistake_fails_the_right_cases_with_a_measured_error(name, capsys):
    question_id, fn, failing = MISTAKES[name]
    question = get_question(question_id)
    result = check(question_id, fn)
    out = capsys.readouterr().out
    failed = {case.index: case for case in result.cases if not case.passed}
    assert set(failed) == set(failing), name
    for index, pattern in failing.items():
        assert re.search(pattern, failed[index].message), (name, index, failed[index].message)
        line = next(line for line in out.splitlines() if line.startswith(f"  case {index} "))
        assert line.startswith(f"  case {index} FAILED: {question.cases[index - 1].name}: ")
        assert re.search(pattern, line)
        if pattern == MAX_ABS:
            assert failed[index].max_abs_error > question.tol
    n, k = len(question.cases), len(question.cases) - len(failing)
    earned = round(question.points * k / n, 2)
    assert result.earned == earned and not result.passed
    assert last_line(out) == f"{k}/{n} cases passed — {earned:g}/{question.points} points"


# ---- not attempted ----------------------------------------------------------------------------


@pytest.mark.parametrize("question_id", question_ids())
def test_a_stub_is_reported_not_attempted_with_zero_points(question_id, capsys):
    """Every registered question, of every chapter."""
    question = get_question(question_id)
    result = check(question.id, not_implemented, strict=False)
    assert not result.attempted and not result.passed and result.earned == 0
    assert capsys.readouterr().out == f"{question.id}: not attempted — 0/{question.points} points\n"
    assert repr(result) == f"<CheckResult {question.id}: not attempted, 0/{question.points} points>"


def test_a_partly_written_function_is_attempted_and_fails_where_it_raises():
    def only_short(x, h0, W_x, W_h, b):
        if x.shape[1] > 1:
            raise NotImplementedError("long sequences later")
        return unroll(x, h0, W_x, W_h, b)

    result = check("rnn-unroll", only_short)
    assert result.attempted
    assert [c.message for c in result.cases] == ["raised NotImplementedError"] * 2 + ["passed"]
    assert result.earned == 1


# ---- check never raises in normal use ---------------------------------------------------------


class BadMessage(Exception):
    def __str__(self):
        raise RuntimeError("no message for you")


def raise_(exc):
    def fn(*args):
        raise exc

    return fn


def mutate_then_answer(x_t, h_prev, W_x, W_h, b):
    answer = step(x_t, h_prev, W_x, W_h, b)
    for tensor in (x_t, h_prev, W_x, W_h, b):
        tensor.mul_(-3.0)
    return answer


def mutate_first(x_t, h_prev, W_x, W_h, b):
    x_t.zero_()
    return step(x_t, h_prev, W_x, W_h, b)


def autograd_bptt(x, h0, W_x, W_h, b, target):
    W_h.requires_grad_()
    loss = 0.5 * (unroll(x, h0, W_x, W_h, b) - target).pow(2).sum()
    return torch.autograd.grad(loss, (W_x, W_h))


BAD = {
    # name: (question, function, message of the first case)
    "raises ZeroDivisionError": ("rnn-step", lambda *a: 1 / 0, "raised ZeroDivisionError: division by zero"),
    "raises with a broken message": ("rnn-step", raise_(BadMessage()), "raised BadMessage: (message could not be read)"),
    "calls sys.exit": ("rnn-step", lambda *a: sys.exit(3), "raised SystemExit: 3"),
    "recurses forever": ("rnn-step", lambda *a: BAD["recurses forever"][1](*a), "raised RecursionError"),
    "not a function": ("rnn-step", 5, "raised TypeError: 'int' object is not callable"),
    "returns None": ("rnn-step", lambda *a: None, "returned NoneType, expected a tensor"),
    "returns a string": ("rnn-step", lambda *a: "h_t", "returned str, expected a tensor"),
    "returns a list": ("rnn-step", lambda *a: step(*a).tolist(), "returned list, expected a tensor"),
    "returns a float": ("rnn-step", lambda *a: 0.5, "returned float, expected a tensor"),
    "returns NaN": ("rnn-step", lambda *a: step(*a) * float("nan"), "2 of 2 entries are NaN or inf"),
    "returns inf": ("rnn-step", lambda *a: step(*a) / 0, "entries are NaN or inf"),
    "returns an int tensor": ("rnn-step", lambda *a: step(*a).long(), "dtype int64, expected a floating-point tensor"),
    "returns a bool array": ("rnn-step", lambda *a: step(*a).numpy() > 0, "dtype bool, expected a floating-point tensor"),
    "returns a complex tensor": ("rnn-step", lambda *a: step(*a).to(torch.complex64), "dtype complex64, expected"),
    "returns a meta tensor": ("rnn-step", lambda *a: step(*a).to("meta"), "returned a Tensor that could not be read"),
    "returns half precision": ("rnn-step", lambda *a: step(*a).half(), "max abs error"),
    "mutates its inputs before answering": ("rnn-step", mutate_first, "max abs error"),
    "bptt returns one tensor": ("rnn-bptt", lambda *a: bptt(*a)[0], "returned Tensor, expected a tuple of 2 tensors (dL_dW_x, dL_dW_h)"),
    "bptt returns three": ("rnn-bptt", lambda *a: (*bptt(*a), None), "returned a tuple of 3, expected a tuple of 2"),
    "bptt returns None inside": ("rnn-bptt", lambda *a: (bptt(*a)[0], None), "dL_dW_h: returned NoneType, expected a tensor"),
    "bptt uses autograd": ("rnn-bptt", autograd_bptt, "raised RuntimeError: element 0 of tensors does not require grad"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_check_never_raises_in_normal_mode_and_says_what_went_wrong(name, capsys, monkeypatch):
    monkeypatch.delenv("SEQCOURSE_STRICT", raising=False)
    question_id, fn, message = BAD[name]
    result = check(question_id, fn)
    out = capsys.readouterr().out
    assert isinstance(result, CheckResult) and result.attempted and not result.passed
    assert message in result.cases[0].message
    assert message in out
    assert re.search(r"\d+/\d+ cases passed — [\d.]+/\d+ points$", out.strip())


def test_autograd_hint_names_the_rule():
    result = check("rnn-bptt", autograd_bptt)
    assert "autograd is switched off for this question" in result.cases[0].message


def test_a_function_that_wrecks_its_inputs_after_answering_still_passes():
    """Student and reference get their own copies, so in-place changes cannot leak into the
    reference or the next case."""
    result = check("rnn-step", mutate_then_answer)
    assert result.passed
    np.testing.assert_allclose(result.cases[0].inputs["W_h"], recurrence.WORKED_W_H, atol=1e-7)


def test_a_notebook_cell_ending_in_check_shows_only_the_printed_report():
    from IPython.core.formatters import DisplayFormatter

    result = check("rnn-step", step)
    assert DisplayFormatter().format(result) == ({}, {})  # no Out[] under the printed report
    assert str(result) == result.report() and result.report().endswith("4/4 cases passed — 2/2 points")


# ---- strict mode -----------------------------------------------------------------------------


def test_strict_mode_raises_unless_every_case_passes_not_attempted_included(monkeypatch):
    """So that nbgrader autograde, which scores a cell by whether it raises, gives 0 to a wrong
    answer and to an untouched stub."""
    monkeypatch.delenv("SEQCOURSE_STRICT", raising=False)
    wrong = MISTAKES["step: no bias"][1]
    assert check("rnn-step", step, strict=True).passed
    with pytest.raises(AssertionError, match=r"^rnn-step: not attempted — 0/2 points$"):
        check("rnn-step", not_implemented, strict=True)
    with pytest.raises(AssertionError, match=r"case 3 FAILED: .*\n.*case 4 FAILED.*\n2/4 cases passed — 1/2 points"):
        check("rnn-step", wrong, strict=True)
    with pytest.raises(AssertionError, match="raised ZeroDivisionError"):
        check("rnn-step", lambda *a: 1 / 0, strict=True)
    assert check("rnn-step", wrong).earned == 1


@pytest.mark.parametrize("value, raises", [("1", True), ("true", True), ("yes", True), ("0", False), ("", False)])
def test_strict_mode_follows_the_environment(monkeypatch, value, raises):
    monkeypatch.setenv("SEQCOURSE_STRICT", value)
    wrong = MISTAKES["step: no bias"][1]
    if raises:
        for function in (wrong, not_implemented):
            with pytest.raises(AssertionError):
                check("rnn-step", function)
    else:
        assert not check("rnn-step", wrong).passed
        assert not check("rnn-step", not_implemented).attempted
    assert not check("rnn-step", wrong, strict=False).passed  # the argument wins over the environment
    assert check("rnn-step", step).passed


# ---- the result: rich, plain data, strict JSON ------------------------------------------------


def test_result_keeps_the_compared_numbers_and_serialises_to_strict_json():
    result = check("rnn-step", lambda *a: step(*a) * torch.tensor([1.0, float("nan")]) if a[0].shape[0] == 1 else step(*a))
    data = json.loads(result.to_json(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data["question_id"] == "rnn-step" and data["points"] == 2 and data["earned"] == 1.0
    assert (data["cases_passed"], data["cases_total"], data["attempted"]) == (2, 4, True)
    first = data["cases"][0]
    assert first["passed"] is False and first["max_abs_error"] is None
    assert first["got"]["h_t"][0][1] == "nan"
    np.testing.assert_allclose(first["inputs"]["W_h"], recurrence.WORKED_W_H, atol=1e-7)
    third = data["cases"][2]
    assert third["passed"] and third["max_abs_error"] < 1e-6
    np.testing.assert_allclose(third["got"]["h_t"], third["expected"]["h_t"], atol=1e-6)
    assert all(isinstance(v, float) for row in third["expected"]["h_t"] for v in row)


def test_run_student_and_score_meet_at_plain_data():
    """Batch grading will run the first stage in the student's kernel and the second outside it."""
    question = get_question("rnn-bptt")
    outcomes = run_student(question, bptt)
    for outcome in outcomes:
        assert outcome.error is None and not outcome.not_implemented
        assert all(type(v) is np.ndarray and v.dtype == np.float64 for v in outcome.values.values())
    assert score(question, outcomes).passed
    outcomes[2].values["dL_dW_h"] = outcomes[2].values["dL_dW_h"] + 1e-3
    rescored = score(question, outcomes)
    assert [c.passed for c in rescored.cases] == [True, True, False, True]
    assert rescored.cases[2].message.startswith("dL_dW_h: max abs error 1.0e-03 > tol 1e-04")
    with pytest.raises(ValueError, match="4 cases, got 3 outcomes"):
        score(question, outcomes[:3])
