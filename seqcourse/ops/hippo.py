"""HiPPO-LegS: the online Legendre projection that S4's state matrix, and S4D's initialisation, come from.

Glossary (the symbols of the State-space chapter; HiPPO paper, Gu et al. 2020):

    N  state size: the number of Legendre coefficients kept      T  number of samples
    f(s)   the input signal; f_k its sample on step k, held over the step (k-1, k]
    c(t) (N,)  the state: the coefficients of the history f(s), 0 <= s <= t
    P_n    the Legendre polynomial of degree n on [-1, 1]
    g_n(u) = sqrt(2n+1) P_n(2u - 1), n = 0 ... N-1: orthonormal on [0, 1]

**The projection.** At every time t, HiPPO-LegS keeps the coefficients of the best approximation of
the whole history by a polynomial of degree < N, in the uniform measure on [0, t]:

    c_n(t) = (1/t) ∫_0^t f(s) g_n(s/t) ds,        f(s) ≈ Σ_n c_n(t) g_n(s/t)   for 0 <= s <= t.

**The memory.** Differentiating c_n(t) in t gives a linear system whose matrices do not depend on f:

    c'(t) = (1/t) (A c(t) + B f(t)),
    A_nk = -sqrt(2n+1) sqrt(2k+1) (n > k),   -(n+1) (n = k),   0 (n < k);      B_n = sqrt(2n+1)

(the sign convention of S4: A is lower triangular with eigenvalues -1, ..., -N). So the state can be
updated online, one sample at a time, and still hold the projection of everything seen so far.
Because A is lower triangular, the first N' < N coefficients evolve on their own: they are the
state of the size-N' system.

**Discretization.** In log time τ = ln t the system is time-invariant, dc/dτ = A c + B f, so zero-order
hold over the step from t = k-1 to t = k is ``seqcourse.ops.discretize.discretize(A, B, ln(k / (k-1)))``,
exact for an input held constant on each step. The first step starts at t = 0 (ln(1/0) = ∞): it
gives the projection of a constant, c(1) = f_1 e_0 (indeed -A^{-1} B = e_0). ``legs_online`` runs this
recurrence; its states are exactly the projections of the held signal (the tests compare them with
the integrals computed by quadrature).

**The normal part (S4, S4D).** With P_n = sqrt(n + 1/2),

    A = S - P Pᵀ,        S = -½ I + J,   J skew-symmetric,

so S is normal: its eigenvalues are -½ + iω with real ω, and it has an orthonormal (unitary)
eigenbasis V. In that basis A is diagonal plus low rank, V* A V = Λ - (V* P)(V* P)*: S4's
"normal plus low-rank" (NPLR) or "diagonal plus low-rank" (DPLR) structure. S4D keeps Λ and drops
the low-rank term; its S4D-Inv initialisation, -½ + i (N/π)(N/(2n+1) - 1), approximates Λ by a
formula (``seqcourse.models.s4d.s4d_imaginary_parts``).
"""
from __future__ import annotations

import math

import torch

from .discretize import discretize
from ..validation import expect_int, expect_nonempty_time, expect_tensor

__all__ = [
    "legendre_basis",
    "legs_matrices",
    "legs_nplr",
    "legs_normal_eigenvalues",
    "legs_online",
    "legs_reconstruct",
]


def legs_matrices(state_size: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO-LegS's (A (N, N), B (N,)) for c'(t) = (A c + B f)/t, in S4's sign convention.

    A_nk = -sqrt(2n+1) sqrt(2k+1) below the diagonal, -(n+1) on it, 0 above; B_n = sqrt(2n+1).
    """
    N = expect_int(state_size, "state_size", minimum=1)
    r = torch.sqrt(2 * torch.arange(N, dtype=torch.float64) + 1)  # sqrt(2n + 1)
    A = -torch.tril(torch.outer(r, r), diagonal=-1) - torch.diag(torch.arange(1, N + 1, dtype=torch.float64))
    return A.to(dtype), r.to(dtype)


def legs_nplr(state_size: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """The normal-plus-low-rank split A = S - P Pᵀ of HiPPO-LegS: (S (N, N), P (N,)), P_n = sqrt(n + ½).

    S = A + P Pᵀ has -½ on its diagonal and ±½ sqrt(2n+1) sqrt(2k+1) off it (minus below, plus
    above), so S + Sᵀ = -I: S is -½ I plus a skew-symmetric matrix, hence normal.
    """
    A, _ = legs_matrices(state_size)
    P = torch.sqrt(torch.arange(state_size, dtype=torch.float64) + 0.5)
    return (A + torch.outer(P, P)).to(dtype), P.to(dtype)


def legs_normal_eigenvalues(state_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The eigen-decomposition of LegS's normal part S = V diag(λ) V*: (λ (N,) complex128, V (N, N)).

    Computed as S4 does, from the Hermitian matrix -i J (J = S + ½ I, skew-symmetric), whose real
    eigenvalues ω give λ = -½ + iω and whose eigenvectors are orthonormal: V is unitary by
    construction. λ is sorted by decreasing ω, so the first N/2 are the modes with ω > 0 (for even
    N the spectrum is symmetric, ω and -ω, and has no ω = 0).
    """
    N = expect_int(state_size, "state_size", minimum=1)
    S, _ = legs_nplr(N)
    J = S + 0.5 * torch.eye(N, dtype=torch.float64)
    omega, V = torch.linalg.eigh(-1j * J.to(torch.complex128))
    order = torch.argsort(omega, descending=True)
    return torch.complex(torch.full_like(omega[order], -0.5), omega[order]), V[:, order]


def legendre_basis(state_size: int, u: torch.Tensor) -> torch.Tensor:
    """g_n(u) = sqrt(2n+1) P_n(2u - 1) for n = 0 ... N-1 at the points u (M,) in [0, 1] -> (M, N).

    P_n by the three-term recurrence (n+1) P_{n+1}(x) = (2n+1) x P_n(x) - n P_{n-1}(x).
    """
    N = expect_int(state_size, "state_size", minimum=1)
    expect_tensor(u, "u", dims=("M",), dtype="float")
    if u.numel() and (float(u.min()) < 0 or float(u.max()) > 1):
        raise ValueError(f"u must lie in [0, 1] (a fraction of the history); got values from {float(u.min())} "
                         f"to {float(u.max())}")
    x = 2 * u.double() - 1
    P = [torch.ones_like(x), x]
    for n in range(1, N - 1):
        P.append(((2 * n + 1) * x * P[n] - n * P[n - 1]) / (n + 1))
    scale = torch.sqrt(2 * torch.arange(N, dtype=torch.float64) + 1)
    return (torch.stack(P[:N], dim=-1) * scale).to(u.dtype)


def legs_online(f: torch.Tensor, state_size: int) -> torch.Tensor:
    """The LegS states after every sample: f (B, T) -> c (B, T, N), c[:, k-1] = c(k).

    Zero-order hold in log time (module docstring): c(1) = f_1 e_0, then for k = 2 ... T
    c(k) = Ā_k c(k-1) + B̄_k f_k with (Ā_k, B̄_k) = discretize(A, B, ln(k/(k-1))). The state c(k) is
    the exact Legendre projection of f held constant on each step (k'-1, k'], k' <= k. Computed in
    float64 (T matrix exponentials of size N + 1).
    """
    expect_tensor(f, "f", dims=("B", "T"), dtype="float")
    expect_nonempty_time(f, "f")
    N = expect_int(state_size, "state_size", minimum=1)
    A, B = legs_matrices(N)
    f64 = f.double()
    c = torch.zeros(f.shape[0], N, dtype=torch.float64)
    c[:, 0] = f64[:, 0]  # the projection of the constant f_1 on [0, 1]
    states = [c]
    for k in range(2, f.shape[1] + 1):
        A_bar, B_bar = discretize(A, B.unsqueeze(-1), math.log(k / (k - 1)))
        c = c @ A_bar.T + f64[:, k - 1 : k] @ B_bar.T
        states.append(c)
    return torch.stack(states, dim=1).to(f.dtype)


def legs_reconstruct(c: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The history that the state c(t) holds, at the fractions u of it: f(u t) ≈ Σ_n c_n g_n(u).

    c (..., N), u (M,) in [0, 1] (u = 0 the start of the history, u = 1 now) -> (..., M).
    """
    expect_tensor(c, "c", dtype="float")
    if c.ndim < 1:
        raise ValueError("c must hold the N coefficients along its last dimension, shape (..., N); got a 0-dim tensor")
    return c @ legendre_basis(c.shape[-1], u).to(c.dtype).T
