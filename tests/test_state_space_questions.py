"""The State-space chapter's graded questions: a correct solution (the plain formulas the references
avoid) earns full points, on the published cases and on fresh draws of them; each usual mistake
fails the cases it should; and the references agree with computations done another way."""
import dataclasses
import math

import numpy as np
import pytest
import torch
from numpy.polynomial import legendre as npl

from seqcourse.grading import check, get_question, question_ids, run_student, score
from seqcourse.grading.questions import state_space
from seqcourse.grading.registry import Case
from seqcourse.ops.hippo import legs_matrices
from seqcourse.ops.scan import selective_scan
from seqcourse.ops.ssd import ssd_matrix

from question_checks import assert_mistake_fails_exactly

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- what a correct student writes; the keyword arguments switch on the usual mistakes -------------


def zoh_diagonal(A, B, delta, *, euler=False):
    A_bar = torch.exp(delta * A)
    if euler:
        return A_bar, delta * B
    return A_bar, ((A_bar - 1) / A).unsqueeze(-1) * B


def s4d_kernel(A_real, A_imag, C_real, C_imag, delta, L, *, factor=2.0, start=0, swap_re=False):
    A = torch.complex(A_real, A_imag)
    C = torch.complex(C_real, C_imag)
    dA = delta.unsqueeze(-1) * A
    B_bar = (torch.exp(dA) - 1) / A
    powers = torch.exp(dA.unsqueeze(-1) * torch.arange(start, int(L) + start))
    K = torch.einsum("hn,hnl->hl", C * B_bar, powers)
    return factor * (K.imag if swap_re else K.real)


def selective_step(h, x_t, delta_t, A, B_t, C_t, D, *, skip=True, swap_bc=False):
    if swap_bc:
        B_t, C_t = C_t, B_t
    h_t = torch.exp(delta_t.unsqueeze(-1) * A) * h + (delta_t * x_t).unsqueeze(-1) * B_t.unsqueeze(1)
    y_t = (h_t * C_t.unsqueeze(1)).sum(-1) + (D * x_t if skip else 0)
    return y_t, h_t


def hippo_legs(c, f, t, *, transpose=False, a_sqrt=True, b_sqrt=True, diagonal_shift=1, sign=-1.0, per_t=True,
               first=0):
    N = c.shape[-1]
    n = torch.arange(first, N + first, dtype=c.dtype)
    r = torch.sqrt(2 * n + 1)
    lower = torch.outer(r, r) if a_sqrt else (2 * n + 1).unsqueeze(1).expand(N, N)
    A = sign * (torch.tril(lower, -1) + torch.diag(n + diagonal_shift))
    if transpose:
        A = A.T
    B = r if b_sqrt else 2 * n + 1
    dc = c @ A.T + f.unsqueeze(-1) * B
    return dc / t.unsqueeze(-1) if per_t else dc


def ssd(a, B, C, *, first=1, last=0, causal=True, transpose=False, diagonal=True, swap_bc=False, cumprod=False):
    """L_ij = exp(sum of log a_k over j + first <= k <= i - last), each entry summing its own terms."""
    if swap_bc:
        B, C = C, B
    T = a.shape[1]
    i, j, k = (torch.arange(T).view(*shape) for shape in ((T, 1, 1), (1, T, 1), (1, 1, T)))
    if cumprod:
        P = torch.cumprod(a, dim=1)
        L = P.unsqueeze(2) / P.unsqueeze(1)
    else:
        terms = (k >= j + first) & (k <= i - last)  # (T, T, T): which a_k enter L_ij
        L = torch.exp((torch.log(a)[:, None, None, :] * terms).sum(-1))
    if causal:
        L = L.tril()
    if not diagonal:
        L = L.tril(-1)
    if transpose:
        L = L.transpose(1, 2)
    return L * (C @ B.transpose(1, 2))


CORRECT = {
    "zoh-diagonal": zoh_diagonal,
    "s4d-kernel": s4d_kernel,
    "hippo-legs": hippo_legs,
    "selective-step": selective_step,
    "ssd-matrix": ssd,
}


def test_the_questions_are_registered_with_their_points():
    assert {q.id for q in state_space.QUESTIONS} == set(CORRECT)
    assert set(CORRECT) <= set(question_ids())
    assert {q.id: q.points for q in state_space.QUESTIONS} == {
        "zoh-diagonal": 2, "s4d-kernel": 3, "hippo-legs": 2, "selective-step": 3, "ssd-matrix": 3}


@pytest.mark.parametrize("question_id", sorted(CORRECT))
def test_correct_solution_passes_every_case(question_id, capsys):
    question = get_question(question_id)
    result = check(question_id, CORRECT[question_id], strict=True)
    assert result.passed and result.earned == question.points
    assert all(case.max_abs_error < question.tol / 10 for case in result.cases), [c.max_abs_error for c in result.cases]
    assert capsys.readouterr().out.strip().endswith(
        f"{len(question.cases)}/{len(question.cases)} cases passed — {question.points}/{question.points} points")


@pytest.mark.parametrize("question_id", sorted(CORRECT))
def test_fresh_draws_pass_too_and_differ_from_the_published_cases(question_id):
    """Batch grading also runs each case with another seed (``batch._variant``): a correct solution
    must pass those, and every case with random inputs must draw different ones."""
    question = get_question(question_id)
    variant = dataclasses.replace(question, cases=tuple(
        Case(f"{case.name} [fresh draw]", case.build, seed=case.seed + 1000 + i) for i, case in enumerate(question.cases)))
    result = score(variant, run_student(variant, CORRECT[question_id]))
    assert result.passed, result.report()
    fresh = sum(any(not torch.equal(a, b) for a, b in zip(case.inputs().values(), draw.inputs().values()))
                for case, draw in zip(question.cases, variant.cases))
    assert fresh >= len(question.cases) - 1  # all but a worked example


@pytest.mark.parametrize("question_id", sorted(CORRECT))
def test_case_inputs_are_deterministic_fresh_float32_and_named_by_the_args(question_id):
    question = get_question(question_id)
    for case in question.cases:
        first, second = case.inputs(), case.inputs()
        assert tuple(first) == question.args
        for name in first:
            assert torch.equal(first[name], second[name])
            assert first[name].data_ptr() != second[name].data_ptr() or first[name].numel() <= 1
            assert first[name].dtype in (torch.float32, torch.int64), (name, first[name].dtype)


# ---- the usual mistakes fail --------------------------------------------------------------------

MISTAKES = {
    # name: (question, function, the cases it must fail)
    "zoh: Euler's delta B": ("zoh-diagonal", lambda *a: zoh_diagonal(*a, euler=True), {1, 2, 3, 4}),
    "kernel: no factor 2": ("s4d-kernel", lambda *a: s4d_kernel(*a, factor=1.0), {1, 2, 3, 4}),
    "kernel: starts at A_bar^1": ("s4d-kernel", lambda *a: s4d_kernel(*a, start=1), {1, 2, 3, 4}),
    "kernel: imaginary part": ("s4d-kernel", lambda *a: s4d_kernel(*a, swap_re=True), {1, 2, 3, 4}),
    "step: no skip term": ("selective-step", lambda *a: selective_step(*a, skip=False), {1, 2, 3, 4}),
    "step: B and C swapped": ("selective-step", lambda *a: selective_step(*a, swap_bc=True), {1, 2, 3, 4}),
    "legs: A transposed": ("hippo-legs", lambda *a: hippo_legs(*a, transpose=True), {1, 2, 4}),
    "legs: no square root in A (the unsymmetric 2k+1)": ("hippo-legs", lambda *a: hippo_legs(*a, a_sqrt=False), {1, 2, 4}),
    "legs: B = 2n+1, no square root": ("hippo-legs", lambda *a: hippo_legs(*a, b_sqrt=False), {1, 2, 4}),
    "legs: diagonal n instead of n+1": ("hippo-legs", lambda *a: hippo_legs(*a, diagonal_shift=0), {1, 2, 3, 4}),
    "legs: A with the wrong sign (positive diagonal)": (
        "hippo-legs", lambda *a: hippo_legs(*a, sign=1.0), {1, 2, 3, 4}),
    "legs: no 1/t": ("hippo-legs", lambda *a: hippo_legs(*a, per_t=False), {2, 3, 4}),
    "legs: n counted from 1": ("hippo-legs", lambda *a: hippo_legs(*a, first=1), {1, 2, 3, 4}),
    "ssd: a_j included": ("ssd-matrix", lambda *a: ssd(*a, first=0), {1, 3, 4}),
    "ssd: a_i left out": ("ssd-matrix", lambda *a: ssd(*a, last=1), {1, 3, 4}),
    "ssd: not causal": ("ssd-matrix", lambda *a: ssd(*a, causal=False), {1, 2, 3, 4}),
    "ssd: mask transposed": ("ssd-matrix", lambda *a: ssd(*a, transpose=True), {1, 2, 3, 4}),
    "ssd: diagonal left out": ("ssd-matrix", lambda *a: ssd(*a, diagonal=False), {1, 2, 3, 4}),
    "ssd: B and C swapped": ("ssd-matrix", lambda *a: ssd(*a, swap_bc=True), {2, 3, 4}),
    "ssd: ratio of cumulative products": ("ssd-matrix", lambda *a: ssd(*a, cumprod=True), {4}),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_usual_mistake_fails_its_cases(name):
    assert_mistake_fails_exactly(name, *MISTAKES[name])


# ---- the references agree with computations done another way -----------------------------------


@pytest.mark.parametrize("index", range(4))
def test_legs_reference_equals_the_course_matrices(index):
    inputs = state_space.HIPPO_LEGS.cases[index].inputs()
    c, f, t = (inputs[k].double() for k in ("c", "f", "t"))
    A, B = legs_matrices(c.shape[-1])
    expected = (c @ A.T + f.unsqueeze(-1) * B) / t.unsqueeze(-1)
    torch.testing.assert_close(state_space.HIPPO_LEGS.reference(*inputs.values()), expected, rtol=0, atol=1e-12)


def test_legs_reference_is_the_derivative_of_the_exact_projection():
    """For c(t) = the Legendre projection of f on [0, t], the reference's dc/dt equals the derivative
    of the projection integrals (Gauss-Legendre quadrature, central differences)."""
    N, t, eps = 6, 2.0, 1e-5
    x, w = npl.leggauss(100)

    def project(time):
        values = np.cos(2 * (x + 1) / 2 * time) + (x + 1) / 2 * time
        return np.array([math.sqrt(2 * n + 1) * np.sum(w * values * npl.legval(x, np.eye(n + 1)[n])) / 2
                         for n in range(N)])

    c = torch.tensor(project(t)).unsqueeze(0)
    dc = state_space.HIPPO_LEGS.reference(c, torch.tensor([math.cos(2 * t) + t]), torch.tensor([t]))
    np.testing.assert_allclose(dc[0].numpy(), (project(t + eps) - project(t - eps)) / (2 * eps), rtol=0, atol=1e-7)


def test_legs_worked_example_is_still():
    inputs = state_space.HIPPO_LEGS.cases[0].inputs()
    assert state_space.HIPPO_LEGS.reference(*inputs.values()).abs().max() < 1e-12


@pytest.mark.parametrize("index", range(4))
def test_ssd_reference_equals_the_course_ssd_and_the_scan(index):
    inputs = state_space.SSD_MATRIX.cases[index].inputs()
    a, B, C = (inputs[k].double() for k in ("a", "B", "C"))
    M = state_space.SSD_MATRIX.reference(*inputs.values())
    torch.testing.assert_close(M, ssd_matrix(a, B, C), rtol=1e-12, atol=1e-14)
    # M applied to unit inputs is what Mamba's scan computes with Ā_t = a_t (A = -1, Δ_t = -log a_t on x / Δ_t)
    b, T, n = B.shape
    x = torch.randn(b, T, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(index))
    delta = -torch.log(a)
    if torch.all(delta > 0):
        y, _ = selective_scan(x / delta.unsqueeze(-1), delta.unsqueeze(-1), -torch.ones(1, n, dtype=torch.float64),
                              B, C, scan="sequential")
        torch.testing.assert_close(M @ x, y, rtol=1e-9, atol=1e-9)


def test_ssd_worked_example_by_hand():
    M = state_space.SSD_MATRIX.reference(*state_space.SSD_MATRIX.cases[0].inputs().values())
    expected = torch.tensor([[1, 0, 0], [0.5, 1, 0], [0.125, 0.25, 1]], dtype=torch.float64)
    torch.testing.assert_close(M[0], expected, rtol=0, atol=1e-7)


def test_the_long_ssd_case_underflows_a_cumulative_product():
    a = state_space.SSD_MATRIX.cases[3].inputs()["a"]
    assert torch.cumprod(a, dim=1)[0, -1] == 0
