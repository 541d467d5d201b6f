"""Questions for the State-space chapter: zero-order hold of a diagonal system, the S4D kernel, the
HiPPO-LegS memory, one step of Mamba's selective scan, and the matrix of state-space duality (SSD).

Symbols as in the chapter. A continuous system h'(t) = A h(t) + B x(t) with a diagonal A (its
entries a_n) and step size Δ becomes, by zero-order hold,

    Ā_n = exp(Δ a_n),    B̄_n = (exp(Δ a_n) - 1) / a_n · B_n,    h_k = Ā h_{k-1} + B̄ x_k.

The references take other routes than the formulas students write:

* zoh-diagonal: one matrix exponential of the block matrix [[diag(a), B], [0, 0]]·Δ, whose top
  blocks are Ā and B̄ (no division by a_n);
* s4d-kernel: each complex mode as a real 2x2 rotation-and-decay block, discretized by the same
  block matrix exponential, and the kernel as the impulse response of that real recurrence, step
  by step (no Vandermonde matrix, no complex arithmetic);
* hippo-legs: builds A as the similarity transform T M T^{-1} of the unsymmetric matrix
  M_nk = -(2k+1) (n > k), -(n+1) (n = k) with T = diag(sqrt(2n+1)), the route of the HiPPO
  derivation, and applies it entry by entry (the tests check it against the derivative of the exact
  Legendre projection);
* selective-step: loops over every batch entry, channel and state index;
* ssd-matrix: multiplies the decays of each entry one by one, in float64 (no logarithms, no
  cumulative products).

All compute in float64. The cases are drawn so that the usual mistakes fail at least one case:
Euler's B̄ = ΔB instead of ZOH (cases with Δ|a| far from 0), a forgotten Δ, a missing factor 2 or
Re in the kernel, a kernel that starts at Ā^1 instead of Ā^0 (the L = 1 case), B and C swapped,
B broadcast along the wrong axis (d = n cases), a forgotten skip term D; for HiPPO-LegS, A transposed,
a missing square root (in A or in B), a diagonal off by one, the wrong sign, a forgotten 1/t; for
SSD, a mask off by one (a_j included or a_i left out), not causal, transposed, without its
diagonal, B and C swapped, and a ratio of cumulative products, which underflows on long sequences.
"""
from __future__ import annotations

import math

import torch

from ..registry import Case, Question

F64 = torch.float64


def _tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _zoh_block(a: torch.Tensor, B: torch.Tensor, delta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """exp(Δ [[A, B], [0, 0]]) = [[Ā, B̄], [0, I]] for a square A (N, N) and B (N, M), float64."""
    N, M = B.shape
    block = torch.zeros(N + M, N + M, dtype=F64)
    block[:N, :N], block[:N, N:] = a, B
    E = torch.linalg.matrix_exp(delta * block)
    return E[:N, :N], E[:N, N:]


# ---- zoh-diagonal ----------------------------------------------------------------------------

WORKED_A = [-1.0, -2.0]
WORKED_B = [[1.0], [1.0]]
WORKED_DELTA = 0.5


def _zoh_reference(A, B, delta):
    A_bar, B_bar = _zoh_block(torch.diag(A.double()), B.double(), float(delta))
    return torch.diagonal(A_bar), B_bar


def _zoh_worked(g):
    return {"A": _tensor(WORKED_A), "B": _tensor(WORKED_B), "delta": _tensor(WORKED_DELTA)}


def _zoh_random(N, M, delta, low=0.2, high=3.0):
    def build(g):
        A = -(low + (high - low) * torch.rand(N, generator=g))
        return {"A": A, "B": torch.randn(N, M, generator=g), "delta": _tensor(delta)}

    return build


ZOH_DIAGONAL = Question(
    id="zoh-diagonal",
    title="zero-order hold of a diagonal system: A_bar = exp(delta A), B_bar = (exp(delta A) - 1)/A B",
    points=2,
    args=("A", "B", "delta"),
    outputs=("A_bar", "B_bar"),
    reference=_zoh_reference,
    cases=(
        Case("worked example (A = diag(-1, -2), B = (1, 1), delta = 0.5)", _zoh_worked),
        Case("a large step (N=4, M=2, delta = 2)", _zoh_random(4, 2, 2.0), seed=1),
        Case("a small step, where Euler's delta B is close but not equal (N=3, M=1, delta = 0.01)",
             _zoh_random(3, 1, 0.01, low=1.0, high=5.0), seed=2),
        Case("eigenvalues of different sizes (N=5, M=3, delta = 0.3)", _zoh_random(5, 3, 0.3, 0.1, 10.0), seed=3),
    ),
)


# ---- s4d-kernel ------------------------------------------------------------------------------


def _kernel_reference(A_real, A_imag, C_real, C_imag, delta, L):
    """Impulse response of the real form of each mode, discretized by the block matrix exponential."""
    H, N = A_real.shape
    K = torch.zeros(H, int(L), dtype=F64)
    for h in range(H):
        for n in range(N):
            a_r, a_i = float(A_real[h, n]), float(A_imag[h, n])
            rotation = torch.tensor([[a_r, -a_i], [a_i, a_r]], dtype=F64)  # a acting on (Re z, Im z)
            A_bar, B_bar = _zoh_block(rotation, torch.tensor([[1.0], [0.0]], dtype=F64), float(delta[h]))
            readout = torch.tensor([2 * float(C_real[h, n]), -2 * float(C_imag[h, n])], dtype=F64)  # 2 Re(C z)
            state = B_bar[:, 0]  # the state after the impulse x_1 = 1
            for l in range(int(L)):
                K[h, l] += readout @ state
                state = A_bar @ state
    return K


def _kernel_one_mode(g):
    return {"A_real": _tensor([[-0.5]]), "A_imag": _tensor([[math.pi]]), "C_real": _tensor([[1.0]]),
            "C_imag": _tensor([[0.0]]), "delta": _tensor([0.1]), "L": torch.tensor(6)}


def _kernel_random(H, N, L, init="lin", delta_range=(0.05, 0.5)):
    def build(g):
        n = torch.arange(N, dtype=torch.float32)
        imag = math.pi * n if init == "lin" else 2 * N / math.pi * (2 * N / (2 * n + 1) - 1)
        lo, hi = delta_range
        return {
            "A_real": -(0.3 + 0.4 * torch.rand(H, N, generator=g)),
            "A_imag": imag.repeat(H, 1),
            "C_real": torch.randn(H, N, generator=g),
            "C_imag": torch.randn(H, N, generator=g),
            "delta": lo + (hi - lo) * torch.rand(H, generator=g),
            "L": torch.tensor(L),
        }

    return build


S4D_KERNEL = Question(
    id="s4d-kernel",
    title="the S4D convolution kernel K_l = 2 Re(sum_n C_n B_bar_n A_bar_n^l), l = 0 ... L-1 (B = 1)",
    points=3,
    args=("A_real", "A_imag", "C_real", "C_imag", "delta", "L"),
    outputs=("K",),
    reference=_kernel_reference,
    cases=(
        Case("one mode (H=1, N=1, A = -0.5 + i pi, C = 1, delta = 0.1, L=6)", _kernel_one_mode),
        Case("S4D-Lin modes (H=2, N=3, L=10)", _kernel_random(2, 3, 10), seed=4),
        Case("only K_0 (H=3, N=4, L=1)", _kernel_random(3, 4, 1), seed=5),
        Case("S4D-Inv modes and large steps (H=2, N=4, L=16, delta up to 1)",
             _kernel_random(2, 4, 16, init="inv", delta_range=(0.2, 1.0)), seed=6),
    ),
    tol=1e-4,
)


# ---- selective-step --------------------------------------------------------------------------


def _step_reference(h, x_t, delta_t, A, B_t, C_t, D):
    b, d, n = h.shape
    h_new = torch.zeros(b, d, n, dtype=F64)
    y = torch.zeros(b, d, dtype=F64)
    for i in range(b):
        for c in range(d):
            dt, x = float(delta_t[i, c]), float(x_t[i, c])
            for k in range(n):
                h_new[i, c, k] = math.exp(dt * float(A[c, k])) * float(h[i, c, k]) + dt * float(B_t[i, k]) * x
            y[i, c] = sum(float(C_t[i, k]) * h_new[i, c, k] for k in range(n)) + float(D[c]) * x
    return y, h_new


def _step_small(g):
    return {"h": _tensor([[[1.0, -1.0]]]), "x_t": _tensor([[2.0]]), "delta_t": _tensor([[0.5]]),
            "A": _tensor([[-1.0, -2.0]]), "B_t": _tensor([[1.0, 0.5]]), "C_t": _tensor([[1.0, 1.0]]),
            "D": _tensor([1.0])}


def _step_random(b, d, n, zero_state=False):
    def build(g):
        return {
            "h": torch.zeros(b, d, n) if zero_state else torch.randn(b, d, n, generator=g),
            "x_t": torch.randn(b, d, generator=g),
            "delta_t": 0.05 + torch.rand(b, d, generator=g),
            "A": -(0.5 + 2 * torch.rand(d, n, generator=g)),
            "B_t": torch.randn(b, n, generator=g),
            "C_t": torch.randn(b, n, generator=g),
            "D": torch.randn(d, generator=g),
        }

    return build


SELECTIVE_STEP = Question(
    id="selective-step",
    title="one step of the selective scan: h_t = exp(delta_t A) h_{t-1} + delta_t B_t x_t, y_t = C_t h_t + D x_t",
    points=3,
    args=("h", "x_t", "delta_t", "A", "B_t", "C_t", "D"),
    outputs=("y_t", "h_t"),
    reference=_step_reference,
    cases=(
        Case("by hand (b=1, d=1, n=2)", _step_small),
        Case("a batch (b=2, d=3, n=4)", _step_random(2, 3, 4), seed=7),
        Case("d = n, so a wrong broadcast still runs (b=3, d=4, n=4)", _step_random(3, 4, 4), seed=8),
        Case("the first step, from h = 0 (b=2, d=2, n=3)", _step_random(2, 2, 3, zero_state=True), seed=9),
    ),
)

# ---- hippo-legs ------------------------------------------------------------------------------


def _legs_reference(c, f, t):
    """dc/dt = (A c + B f) / t with A = T M T^{-1} built entry by entry, float64."""
    b, N = c.shape
    A = torch.zeros(N, N, dtype=F64)
    for n in range(N):
        for k in range(n + 1):
            m = -(n + 1) if n == k else -(2 * k + 1)  # M: lower triangular, column k holds 2k + 1
            A[n, k] = math.sqrt(2 * n + 1) * m / math.sqrt(2 * k + 1)
    dc = torch.zeros(b, N, dtype=F64)
    for i in range(b):
        for n in range(N):
            total = sum(float(A[n, k]) * float(c[i, k]) for k in range(N)) + math.sqrt(2 * n + 1) * float(f[i])
            dc[i, n] = total / float(t[i])
    return dc


def _legs_constant(g):
    return {"c": _tensor([[2.0, 0.0, 0.0]]), "f": _tensor([2.0]), "t": _tensor([1.5])}


def _legs_random(b, N, t_low, t_high):
    def build(g):
        return {"c": torch.randn(b, N, generator=g), "f": torch.randn(b, generator=g),
                "t": t_low + (t_high - t_low) * torch.rand(b, generator=g)}

    return build


HIPPO_LEGS = Question(
    id="hippo-legs",
    title="the HiPPO-LegS memory: dc/dt = (A c + B f) / t, A_nk = -sqrt(2n+1) sqrt(2k+1) (n > k), -(n+1) (n = k)",
    points=2,
    args=("c", "f", "t"),
    outputs=("dc",),
    reference=_legs_reference,
    cases=(
        Case("the projection of a constant stays put (N=3, c = (2, 0, 0), f = 2, t = 1.5)", _legs_constant),
        Case("a batch of states (b=4, N=6, t from 1 to 4)", _legs_random(4, 6, 1.0, 4.0), seed=10),
        Case("one coefficient (b=3, N=1)", _legs_random(3, 1, 0.5, 2.0), seed=11),
        Case("a large state, late (b=2, N=32, t from 50 to 100)", _legs_random(2, 32, 50.0, 100.0), seed=12),
    ),
    tol=1e-4,
)


# ---- ssd-matrix ------------------------------------------------------------------------------


def _ssd_reference(a, B, C):
    """Row t: the decays a_{j+1} ... a_t for j = t, t-1, ..., 0, multiplied in one at a time (float64)."""
    b, T, _ = B.shape
    a, B, C = a.double(), B.double(), C.double()
    M = torch.zeros(b, T, T, dtype=F64)
    for t in range(T):
        decay = torch.ones(b, dtype=F64)
        for j in range(t, -1, -1):
            M[:, t, j] = decay * (C[:, t] * B[:, j]).sum(-1)
            decay = decay * a[:, j]
    return M


def _ssd_by_hand(g):
    return {"a": _tensor([[0.9, 0.5, 0.25]]), "B": torch.ones(1, 3, 1), "C": torch.ones(1, 3, 1)}


def _ssd_random(b, T, n, low=0.2, high=1.0):
    def build(g):
        return {"a": low + (high - low) * torch.rand(b, T, generator=g),
                "B": torch.randn(b, T, n, generator=g), "C": torch.randn(b, T, n, generator=g)}

    return build


SSD_MATRIX = Question(
    id="ssd-matrix",
    title="the SSD matrix M = L * (C B^T), L_ij = a_(j+1) ... a_i for i >= j, 0 above the diagonal",
    points=3,
    args=("a", "B", "C"),
    outputs=("M",),
    reference=_ssd_reference,
    cases=(
        Case("by hand (b=1, T=3, n=1, a = (0.9, 0.5, 0.25), B = C = 1)", _ssd_by_hand),
        Case("no decay, a = 1: causal linear attention (b=2, T=6, n=3)", _ssd_random(2, 6, 3, 1.0, 1.0), seed=13),
        Case("random decays (b=2, T=8, n=4)", _ssd_random(2, 8, 4), seed=14),
        Case("a long sequence, where products of many decays underflow (b=1, T=120, n=2)",
             _ssd_random(1, 120, 2, 0.02, 0.5), seed=15),
    ),
    tol=1e-4,
)

QUESTIONS = (ZOH_DIAGONAL, S4D_KERNEL, HIPPO_LEGS, SELECTIVE_STEP, SSD_MATRIX)
