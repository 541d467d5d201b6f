"""From a continuous-time state-space system to a recurrence: zero-order hold and bilinear.

Glossary (the symbols of the State-space chapter):

    N  state size          M  input channels        Δ  step size (delta), Δ > 0
    h(t) (N,)  state       x(t) (M,)  input         A (N, N)   B (N, M)

The continuous system  h'(t) = A h(t) + B x(t)  (its output y = C h + D x needs no
discretization) becomes, on the grid t = kΔ, the recurrence

    h_k = Ā h_{k-1} + B̄ x_k,

where x_k is the input on the step that ends at t = kΔ. Two ways to choose Ā and B̄:

* zero-order hold (ZOH), exact when x(t) is constant on each step:
      Ā = exp(ΔA),    B̄ = ∫_0^Δ exp(sA) ds · B = A^{-1} (exp(ΔA) - I) B   (for invertible A);
* bilinear (Tustin, the trapezoidal rule):
      Ā = (I - Δ/2·A)^{-1} (I + Δ/2·A),    B̄ = (I - Δ/2·A)^{-1} Δ B.

For a diagonal A (a vector of eigenvalues a_n, real or complex) both become elementwise:
ZOH gives Ā_n = exp(Δ a_n), B̄_n = (exp(Δ a_n) - 1) / a_n · B_n; bilinear gives
Ā_n = (1 + Δ a_n/2) / (1 - Δ a_n/2), B̄_n = Δ B_n / (1 - Δ a_n/2).

``integrate`` solves the continuous system numerically (classical Runge-Kutta with many small
substeps) with the input held on each step; it is the independent reference the tests and the
chapter compare the recurrence against.
"""
from __future__ import annotations

import torch

from ..validation import expect_int, expect_nonempty_time, expect_tensor

__all__ = ["discretize", "discretize_diagonal", "integrate", "run_recurrence"]

METHODS = ("zoh", "bilinear")


def _check_method(method) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")


def _check_delta(delta, like: torch.Tensor) -> torch.Tensor:
    """Δ as a tensor of like's dtype and device; a positive number or a tensor of positive entries."""
    if isinstance(delta, bool) or not isinstance(delta, (int, float, torch.Tensor)):
        raise TypeError(f"delta must be a positive number or a tensor of them; got {type(delta).__name__}")
    delta = torch.as_tensor(delta, dtype=like.real.dtype, device=like.device)
    if not bool((delta > 0).all()) or not bool(torch.isfinite(delta).all()):
        raise ValueError(f"delta (the step size Δ) must be finite and > 0; got {delta.tolist()}")
    return delta


def _check_sequence(x, h0, A, M: int) -> None:
    """x (B, T, M) and h0 (B, N) or None, in A's dtype and on its device."""
    same = {"dtype": A.dtype, "device": A.device, "dtype_reason": "(the dtype of A)"}
    expect_tensor(x, "x", dims=("B", "T", "M"), size={"M": M}, **same)
    expect_nonempty_time(x, "x")
    if h0 is not None:
        expect_tensor(h0, "h0", dims=("B", "N"), size={"B": x.shape[0], "N": A.shape[0]}, **same)


def _check_dense(A, B) -> None:
    expect_tensor(A, "A", dims=("N", "N"))
    if not (A.is_floating_point() or A.is_complex()) or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square float tensor (N, N); got shape {tuple(A.shape)}, dtype {A.dtype}")
    expect_tensor(B, "B", dims=("N", "M"), size={"N": A.shape[0]}, dtype=A.dtype, device=A.device,
                  dtype_reason="(the dtype of A)")


def discretize(A: torch.Tensor, B: torch.Tensor, delta, method: str = "zoh") -> tuple[torch.Tensor, torch.Tensor]:
    """(Ā, B̄) of h'(t) = A h(t) + B x(t) for step size Δ.

    A (N, N), B (N, M), delta a positive number or 0-dim tensor, method "zoh" or "bilinear"
    -> (A_bar (N, N), B_bar (N, M)). ZOH uses one matrix exponential of the block matrix
    [[A, B], [0, 0]] · Δ, whose top blocks are exactly exp(ΔA) and ∫_0^Δ exp(sA) ds · B (this
    needs no inverse of A, so a singular A, such as a pure integrator, is fine).
    """
    _check_dense(A, B)
    _check_method(method)
    delta = _check_delta(delta, A)
    if delta.ndim != 0:
        raise ValueError(f"delta must be a single step size for a dense system; got shape {tuple(delta.shape)}")
    N, M = B.shape
    if method == "zoh":
        block = torch.zeros(N + M, N + M, dtype=A.dtype, device=A.device)
        block[:N, :N], block[:N, N:] = A, B
        E = torch.linalg.matrix_exp(delta * block)
        return E[:N, :N], E[:N, N:]
    I = torch.eye(N, dtype=A.dtype, device=A.device)
    left = I - delta / 2 * A  # (I - Δ/2·A)
    return torch.linalg.solve(left, I + delta / 2 * A), torch.linalg.solve(left, delta * B)


def discretize_diagonal(A: torch.Tensor, B: torch.Tensor, delta, method: str = "zoh") -> tuple[torch.Tensor, torch.Tensor]:
    """(Ā, B̄) for diagonal state matrices, elementwise; many systems at once by broadcasting.

    A (..., N): the diagonal of each A (real or complex, nonzero entries for ZOH);
    B broadcastable against A (e.g. (..., N), one input per system);
    delta: a positive number, or a tensor broadcastable against A.shape[:-1] (one Δ per system).
    -> (A_bar, B_bar), each of the broadcast shape. ZOH uses expm1 for accuracy when Δ a_n is small.
    """
    expect_tensor(A, "A")
    expect_tensor(B, "B", device=A.device)
    if not (A.is_floating_point() or A.is_complex()):
        raise TypeError(f"A must be a floating-point or complex tensor; got dtype {A.dtype}. Convert it with A.float().")
    if A.ndim < 1:
        raise ValueError("A must hold the diagonal entries along its last dimension, shape (..., N); got a 0-dim tensor")
    _check_method(method)
    delta = _check_delta(delta, A).unsqueeze(-1)  # (..., 1): one Δ per system, shared by its N modes
    dA = delta * A
    if method == "zoh":
        return torch.exp(dA), torch.expm1(dA) / A * B
    return (1 + dA / 2) / (1 - dA / 2), delta * B / (1 - dA / 2)


def run_recurrence(A_bar: torch.Tensor, B_bar: torch.Tensor, x: torch.Tensor,
                   h0: torch.Tensor | None = None) -> torch.Tensor:
    """All states of h_k = Ā h_{k-1} + B̄ x_k for a batch of input sequences.

    A_bar (N, N), B_bar (N, M), x (B, T, M), h0 (B, N) or None for zeros -> h (B, T, N), h[:, k-1] = h_k.
    """
    _check_dense(A_bar, B_bar)
    N, M = B_bar.shape
    _check_sequence(x, h0, A_bar, M)
    h = x.new_zeros(x.shape[0], N) if h0 is None else h0
    inputs = x @ B_bar.T  # (B, T, N): B̄ x_k for every k in one product
    states = []
    for Bx_k in inputs.unbind(1):
        h = h @ A_bar.T + Bx_k
        states.append(h)
    return torch.stack(states, dim=1)


def integrate(A: torch.Tensor, B: torch.Tensor, x: torch.Tensor, delta, h0: torch.Tensor | None = None,
              substeps: int = 100) -> torch.Tensor:
    """Solve h'(t) = A h(t) + B x(t) numerically, with x(t) = x_k on the step ((k-1)Δ, kΔ].

    A (N, N), B (N, M), x (B, T, M), delta > 0, h0 (B, N) or None for zeros, ``substeps`` classical
    fourth-order Runge-Kutta steps of size Δ/substeps per step -> h (B, T, N), h[:, k-1] = h(kΔ).
    The error per step shrinks like (Δ/substeps)^4; use float64 for a reference.
    """
    _check_dense(A, B)
    _check_sequence(x, h0, A, B.shape[1])
    expect_int(substeps, "substeps", minimum=1)
    dt = float(_check_delta(delta, A)) / substeps
    h = x.new_zeros(x.shape[0], A.shape[0]) if h0 is None else h0
    states = []
    for x_k in x.unbind(1):
        drive = x_k @ B.T  # (B, N): B x(t), constant over this step

        def f(state):
            return state @ A.T + drive

        for _ in range(substeps):
            k1 = f(h)
            k2 = f(h + dt / 2 * k1)
            k3 = f(h + dt / 2 * k2)
            k4 = f(h + dt * k3)
            h = h + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        states.append(h)
    return torch.stack(states, dim=1)
