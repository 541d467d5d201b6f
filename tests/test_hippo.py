"""HiPPO-LegS: the matrices against the ODE of the exact projection (its derivative by finite
differences of integrals computed with NumPy's Legendre module); the online states against the
projection computed directly by quadrature, at every step; the Legendre basis against NumPy; the
normal-plus-low-rank split and S4D's spectrum; reconstruction of smooth signals; clear errors."""
import math

import numpy as np
import pytest
import torch
from numpy.polynomial import legendre as npl

from seqcourse.ops.hippo import (legendre_basis, legs_matrices, legs_normal_eigenvalues, legs_nplr, legs_online,
                             legs_reconstruct)
from seqcourse.models.s4d import s4d_imaginary_parts

F64 = torch.float64

pytestmark = pytest.mark.usefixtures("one_thread")


def projection_of_held_signal(f: np.ndarray, N: int, k: int) -> np.ndarray:
    """c_n(k) = (1/k) ∫_0^k f(s) g_n(s/k) ds for f held at f_j on (j-1, j]: each piece integrated
    exactly with the antiderivative of P_n (NumPy), with u = s/k and x = 2u - 1."""
    c = np.zeros(N)
    for n in range(N):
        anti = npl.legint(np.eye(n + 1)[n])  # antiderivative of P_n in x
        edges = npl.legval(2 * np.arange(k + 1) / k - 1, anti)  # at x_j = 2j/k - 1
        c[n] = math.sqrt(2 * n + 1) * np.sum(f[:k] * np.diff(edges)) / 2
    return c


def projection_of_function(fn, N: int, t: float, nodes: int = 200) -> np.ndarray:
    """c_n(t) = ∫_0^1 f(u t) g_n(u) du by Gauss-Legendre quadrature (exact for polynomials of degree < 2·nodes)."""
    x, w = npl.leggauss(nodes)
    values = fn((x + 1) / 2 * t)
    return np.array([math.sqrt(2 * n + 1) * np.sum(w * values * npl.legval(x, np.eye(n + 1)[n])) / 2
                     for n in range(N)])


def test_matrices_entry_by_entry():
    A, B = legs_matrices(3)
    r = [1.0, math.sqrt(3), math.sqrt(5)]
    expected = [[-1, 0, 0], [-r[1] * r[0], -2, 0], [-r[2] * r[0], -r[2] * r[1], -3]]
    torch.testing.assert_close(A, torch.tensor(expected, dtype=F64))
    torch.testing.assert_close(B, torch.tensor(r, dtype=F64))
    assert legs_matrices(4, dtype=torch.float32)[0].dtype == torch.float32


@pytest.mark.parametrize("t", [0.7, 3.0])
def test_the_ode_is_the_derivative_of_the_exact_projection(t):
    """For a smooth f, c(t) = projection of f on [0, t] satisfies c'(t) = (A c + B f(t)) / t."""
    N, eps = 8, 1e-5

    def fn(s):
        return np.sin(3 * s) + 0.3 * s**2 - np.exp(-s)

    A, B = (m.numpy() for m in legs_matrices(N))
    c = projection_of_function(fn, N, t)
    numeric = (projection_of_function(fn, N, t + eps) - projection_of_function(fn, N, t - eps)) / (2 * eps)
    np.testing.assert_allclose((A @ c + B * fn(t)) / t, numeric, atol=1e-8)


def test_online_states_are_the_projections_of_the_held_signal_at_every_step():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(3, 25, generator=g, dtype=F64)
    N = 10
    c = legs_online(f, N)
    assert c.shape == (3, 25, N) and c.dtype == F64
    for i in range(3):
        for k in range(1, 26):
            np.testing.assert_allclose(c[i, k - 1].numpy(), projection_of_held_signal(f[i].numpy(), N, k),
                                       rtol=0, atol=1e-12)


def test_truncation_a_smaller_state_is_the_first_coefficients_of_a_larger_one():
    f = torch.randn(2, 40, generator=torch.Generator().manual_seed(1), dtype=F64)
    torch.testing.assert_close(legs_online(f, 5), legs_online(f, 12)[..., :5], rtol=0, atol=1e-12)


def test_a_constant_comes_back_exactly_and_a_held_ramp_ever_closer():
    """A constant comes back exactly; a linear ramp sampled at the midpoints of T steps and held on
    each differs from its reconstruction (degree < 16) only through the steps, so the error shrinks with T."""
    c = legs_online(torch.full((1, 1), 2.5, dtype=F64), 4)
    u = torch.linspace(0, 1, 11, dtype=F64)
    torch.testing.assert_close(legs_reconstruct(c[0, -1], u), torch.full((11,), 2.5, dtype=F64))
    errors = []
    for T in (50, 200):
        s = (torch.arange(1, T + 1, dtype=F64) - 0.5) / T  # midpoints: the held value is exact there
        rec = legs_reconstruct(legs_online(s.unsqueeze(0), 16)[0, -1], s)
        errors.append((rec - s).abs().max().item())
    assert errors[1] < errors[0] / 3 and errors[1] < 0.01


def test_reconstruction_error_of_a_smooth_signal_falls_with_the_state_size():
    T = 400
    s = (torch.arange(1, T + 1, dtype=F64) - 0.5) / T
    signal = torch.sin(2 * math.pi * 2 * s) + 0.5 * torch.cos(2 * math.pi * 5 * s)
    c = legs_online(signal.unsqueeze(0), 48)[0, -1]
    rms = [(legs_reconstruct(c[:N], s) - signal).pow(2).mean().sqrt().item() for N in (8, 16, 32, 48)]
    assert all(later < earlier for earlier, later in zip(rms, rms[1:]))
    assert rms[0] > 0.1 and rms[-1] < 1e-3


def test_legendre_basis_matches_numpy_and_is_orthonormal():
    u = torch.linspace(0, 1, 7, dtype=F64)
    G = legendre_basis(6, u)
    for n in range(6):
        np.testing.assert_allclose(G[:, n].numpy(), math.sqrt(2 * n + 1) * npl.legval(2 * u.numpy() - 1, np.eye(n + 1)[n]),
                                   atol=1e-12)
    x, w = npl.leggauss(20)
    G = legendre_basis(6, torch.tensor((x + 1) / 2)).numpy()
    np.testing.assert_allclose(G.T @ (G * w[:, None] / 2), np.eye(6), atol=1e-12)  # ∫_0^1 g_m g_n du = δ_mn
    assert legendre_basis(1, u).shape == (7, 1)


def test_nplr_split_normal_part_and_dplr_form():
    N = 16
    A, _ = legs_matrices(N)
    S, P = legs_nplr(N)
    torch.testing.assert_close(S - torch.outer(P, P), A, rtol=0, atol=1e-12)
    torch.testing.assert_close(S + S.T, -torch.eye(N, dtype=F64), rtol=0, atol=1e-12)  # -½ I + skew
    torch.testing.assert_close(S @ S.T, S.T @ S, rtol=0, atol=1e-10)  # normal
    lam, V = legs_normal_eigenvalues(N)
    assert torch.all(lam.real == -0.5)
    # an independent general eigensolver finds the same spectrum, real parts -½
    general = torch.linalg.eigvals(S)
    torch.testing.assert_close(general.real, torch.full((N,), -0.5, dtype=F64), rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.sort(general.imag).values, torch.sort(lam.imag).values, rtol=0, atol=1e-10)
    eye = torch.eye(N, dtype=torch.complex128)
    torch.testing.assert_close(V.conj().T @ V, eye, rtol=0, atol=1e-12)
    Q = V.conj().T @ P.to(torch.complex128)
    torch.testing.assert_close(V.conj().T @ A.to(torch.complex128) @ V, torch.diag(lam) - torch.outer(Q, Q.conj()),
                               rtol=0, atol=1e-10)
    assert torch.all(lam.imag[: N // 2] > 0) and torch.all(lam.imag[:-1] >= lam.imag[1:])
    torch.testing.assert_close(lam.imag[: N // 2], -lam.imag.flip(0)[: N // 2], rtol=0, atol=1e-10)  # ±ω pairs


def test_s4d_inv_is_near_the_spectrum_of_the_normal_part():
    """S4D-Inv's formula follows the positive frequencies ω_n of LegS's normal part within a factor
    of 1.3 at N = 64, and its largest frequency within 2%; S4D-Lin's evenly spaced ones do not."""
    N = 64
    omega = legs_normal_eigenvalues(N)[0].imag[: N // 2]
    ratio = omega / s4d_imaginary_parts(N, "inv").double()
    assert 0.8 < ratio.min() and ratio.max() < 1.3 and abs(ratio[0] - 1) < 0.02
    lin = s4d_imaginary_parts(N, "lin").double().flip(0)  # decreasing, like omega
    assert (omega / lin).max() > 10


def test_errors_name_what_was_expected():
    with pytest.raises(ValueError, match="state_size must be >= 1"):
        legs_matrices(0)
    with pytest.raises(TypeError, match="state_size must be an int"):
        legs_nplr(4.0)
    with pytest.raises(ValueError, match=r"f must be a float tensor of shape \(B, T\)"):
        legs_online(torch.zeros(5), 4)
    with pytest.raises(ValueError, match="at least one time step"):
        legs_online(torch.zeros(1, 0), 4)
    with pytest.raises(ValueError, match=r"u must lie in \[0, 1\]"):
        legendre_basis(3, torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="last dimension"):
        legs_reconstruct(torch.tensor(1.0), torch.tensor([0.5]))
