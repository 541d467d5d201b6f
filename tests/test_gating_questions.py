"""The Gating chapter's graded questions: a correct answer earns every point, and each usual mistake
loses at least one case."""
import pytest
import torch

from seqcourse.grading import check
from seqcourse.grading.questions import gating
from seqcourse.grading.registry import question_ids

pytestmark = pytest.mark.usefixtures("one_thread")


def lstm_step(x_t, h_prev, c_prev, W_x, W_h, b, order=(0, 1, 2, 3), use_bias=True):
    gates = x_t @ W_x.T + h_prev @ W_h.T + (b if use_bias else 0)
    chunks = gates.chunk(4, dim=-1)
    i, f, g, o = (chunks[k] for k in order)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_step(x_t, h_prev, W_x, W_h, b_x, b_h, torch_convention=False, reset_first=False):
    a_r, a_z, a_h = (x_t @ W_x.T + b_x).chunk(3, dim=-1)
    W_hr, W_hz, W_hh = W_h.chunk(3, dim=0)
    b_hr, b_hz, b_hh = b_h.chunk(3)
    r = torch.sigmoid(a_r + h_prev @ W_hr.T + b_hr)
    z = torch.sigmoid(a_z + h_prev @ W_hz.T + b_hz)
    if reset_first:
        candidate = torch.tanh(a_h + (r * h_prev) @ W_hh.T + b_hh)
    else:
        candidate = torch.tanh(a_h + r * (h_prev @ W_hh.T + b_hh))
    if torch_convention:
        return z * h_prev + (1 - z) * candidate
    return (1 - z) * h_prev + z * candidate


def cell_gradient(x, W_x, W_h, b, gate=1, skip_first=False):
    B, H = x.shape[0], W_h.shape[1]
    h, c, product = torch.zeros(B, H), torch.zeros(B, H), torch.ones(B, H)
    for t, x_t in enumerate(x.unbind(1)):
        gates = (x_t @ W_x.T + h @ W_h.T + b).chunk(4, dim=-1)
        if not (skip_first and t == 0):
            product = product * torch.sigmoid(gates[gate])
        h, c = lstm_step(x_t, h, c, W_x, W_h, b)
    return product


def test_registered_with_points():
    assert {q.id: q.points for q in gating.QUESTIONS} == {"lstm-step": 3, "gru-step": 3, "cell-gradient": 3}
    assert {q.id for q in gating.QUESTIONS} <= set(question_ids())


@pytest.mark.parametrize("question_id, fn", [("lstm-step", lstm_step), ("gru-step", gru_step),
                                             ("cell-gradient", cell_gradient)])
def test_correct_answers_earn_every_point(question_id, fn):
    result = check(question_id, fn, strict=False)
    assert result.passed and result.cases_passed == 4


@pytest.mark.parametrize("question_id, fn, failing", [
    ("lstm-step", lambda *a: lstm_step(*a, order=(1, 0, 2, 3)), {1, 2, 3, 4}),  # f and i swapped
    ("lstm-step", lambda *a: lstm_step(*a, order=(0, 1, 3, 2)), {1, 2, 3, 4}),  # g and o swapped
    ("lstm-step", lambda *a: lstm_step(*a, use_bias=False), {1, 2, 3, 4}),
    ("gru-step", lambda *a: gru_step(*a, torch_convention=True), {2, 3, 4}),
    ("gru-step", lambda *a: gru_step(*a, reset_first=True), {2, 3, 4}),
    ("cell-gradient", lambda *a: cell_gradient(*a, gate=0), {1, 2, 3, 4}),  # the input gate
    ("cell-gradient", lambda *a: cell_gradient(*a, skip_first=True), {1, 2, 3, 4}),
])
def test_usual_mistakes_lose_points(question_id, fn, failing):
    result = check(question_id, fn, strict=False)
    assert result.attempted and {case.index for case in result.cases if not case.passed} == failing
