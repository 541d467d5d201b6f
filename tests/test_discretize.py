"""Zero-order hold and bilinear discretization, checked against the matrix exponential and
against a fine-step numerical integration of the continuous system."""
import math

import pytest
import torch

from seqcourse.ops.discretize import discretize, discretize_diagonal, integrate, run_recurrence

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def stable_system(N, M, seed, device="cpu"):
    """A random A with eigenvalues in the left half plane (A = -S S^T/N - 0.1 I + a skew part), and B."""
    g = torch.Generator().manual_seed(seed)
    S = torch.randn(N, N, generator=g, dtype=F64)
    W = torch.randn(N, N, generator=g, dtype=F64)
    A = -S @ S.T / N - 0.1 * torch.eye(N, dtype=F64) + (W - W.T)
    B = torch.randn(N, M, generator=g, dtype=F64)
    return A.to(device), B.to(device)


def test_zoh_is_the_matrix_exponential_formula(device):
    A, B = stable_system(5, 2, seed=0, device=device)
    for delta in (0.01, 0.3, 2.0):
        A_bar, B_bar = discretize(A, B, delta, "zoh")
        E = torch.linalg.matrix_exp(delta * A)
        torch.testing.assert_close(A_bar, E, rtol=1e-10, atol=1e-12)
        # B̄ = A^{-1} (exp(ΔA) - I) B for an invertible A
        want = torch.linalg.solve(A, (E - torch.eye(5, dtype=F64, device=device)) @ B)
        torch.testing.assert_close(B_bar, want, rtol=1e-9, atol=1e-11)


def test_zoh_recurrence_matches_fine_step_integration_of_the_continuous_system(device):
    A, B = stable_system(4, 3, seed=1, device=device)
    x = torch.randn(2, 10, 3, dtype=F64, generator=torch.Generator().manual_seed(2)).to(device)
    h0 = torch.randn(2, 4, dtype=F64, generator=torch.Generator().manual_seed(3)).to(device)
    delta = 0.25
    A_bar, B_bar = discretize(A, B, delta, "zoh")
    continuous = integrate(A, B, x, delta, h0=h0, substeps=200)
    torch.testing.assert_close(run_recurrence(A_bar, B_bar, x, h0), continuous, rtol=1e-9, atol=1e-10)


def test_zoh_handles_a_singular_A():
    """A pure integrator h' = x (A = 0): Ā = I and B̄ = ΔB exactly; no inverse of A is needed."""
    A_bar, B_bar = discretize(torch.zeros(2, 2, dtype=F64), torch.ones(2, 1, dtype=F64), 0.5)
    torch.testing.assert_close(A_bar, torch.eye(2, dtype=F64))
    torch.testing.assert_close(B_bar, torch.full((2, 1), 0.5, dtype=F64))


def test_bilinear_is_its_formula_and_second_order_accurate(device):
    A, B = stable_system(4, 1, seed=4, device=device)
    I = torch.eye(4, dtype=F64, device=device)
    A_bar, B_bar = discretize(A, B, 0.1, "bilinear")
    torch.testing.assert_close(A_bar, torch.linalg.inv(I - 0.05 * A) @ (I + 0.05 * A))
    torch.testing.assert_close(B_bar, torch.linalg.inv(I - 0.05 * A) @ (0.1 * B))

    def error_at_time_one(delta):
        """Step response h(1) of the bilinear recurrence against the integrated continuous system."""
        steps = round(1 / delta)
        x = torch.ones(1, steps, 1, dtype=F64, device=device)
        A_bar, B_bar = discretize(A, B, delta, "bilinear")
        exact = integrate(A, B, x[:, -1:], 1.0, substeps=400)[:, -1]
        return (run_recurrence(A_bar, B_bar, x)[:, -1] - exact).abs().max().item()

    ratios = [error_at_time_one(d) / error_at_time_one(d / 2) for d in (0.1, 0.05)]
    assert all(3.6 < r < 4.4 for r in ratios), ratios  # halving Δ quarters the error: O(Δ²)
    assert discretize(A, B, 0.1, "zoh")[0].sub(A_bar).abs().max() > 1e-4  # the two methods differ


@pytest.mark.parametrize("method", ["zoh", "bilinear"])
def test_diagonal_matches_dense_for_real_and_complex_eigenvalues(device, method):
    g = torch.Generator().manual_seed(5)
    A_real = -torch.rand(3, generator=g, dtype=F64) - 0.1
    B = torch.randn(3, generator=g, dtype=F64)
    A_bar, B_bar = discretize_diagonal(A_real.to(device), B.to(device), 0.7, method)
    A_dense, B_dense = discretize(torch.diag(A_real).to(device), B.unsqueeze(1).to(device), 0.7, method)
    torch.testing.assert_close(A_bar, torch.diagonal(A_dense))
    torch.testing.assert_close(B_bar, B_dense.squeeze(1))
    # A complex mode a = -α + iω is the real 2x2 block [[-α, -ω], [ω, -α]] acting on (Re h, Im h).
    a, b = torch.tensor(-0.3 + 2.0j, dtype=torch.complex128), torch.tensor(0.5 - 1.0j, dtype=torch.complex128)
    A_c, B_c = discretize_diagonal(a.reshape(1).to(device), b.reshape(1).to(device), 0.4, method)
    block = torch.tensor([[a.real, -a.imag], [a.imag, a.real]], dtype=F64, device=device)
    A_d, B_d = discretize(block, torch.tensor([[b.real], [b.imag]], dtype=F64, device=device), 0.4, method)
    torch.testing.assert_close(A_d, torch.tensor([[A_c.real.item(), -A_c.imag.item()],
                                                   [A_c.imag.item(), A_c.real.item()]], dtype=F64, device=device))
    torch.testing.assert_close(B_d.squeeze(1), torch.stack([B_c.real, B_c.imag]).squeeze(1))


def test_diagonal_broadcasts_one_step_size_per_system():
    A = -torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64)  # two systems, N = 2
    delta = torch.tensor([0.1, 0.5], dtype=F64)
    A_bar, B_bar = discretize_diagonal(A, torch.ones(2, 2, dtype=F64), delta)
    torch.testing.assert_close(A_bar, torch.exp(delta.unsqueeze(1) * A))
    torch.testing.assert_close(B_bar[1, 0], torch.tensor((math.exp(-1.5) - 1) / -3.0, dtype=F64))


def test_zoh_diagonal_is_accurate_when_delta_times_a_is_tiny():
    """(exp(Δa) - 1)/a → Δ; expm1 keeps float32 accurate where exp(Δa) - 1 would cancel."""
    _, B_bar = discretize_diagonal(torch.tensor([-1e-6]), torch.tensor([1.0]), 0.01)
    assert abs(B_bar.item() - 0.01) < 1e-8


def test_clear_errors():
    A, B = stable_system(3, 2, seed=6)
    with pytest.raises(ValueError, match="delta .* must be finite and > 0"):
        discretize(A, B, 0.0)
    with pytest.raises(TypeError, match="delta must be a positive number"):
        discretize(A, B, "0.1")
    with pytest.raises(ValueError, match="method must be one of"):
        discretize(A, B, 0.1, "euler")
    with pytest.raises(ValueError, match="square"):
        discretize(A[:, :2], B, 0.1)
    with pytest.raises(ValueError, match=r"B must be a .*tensor of shape \(N=3, M\)"):
        discretize(A, B[:2], 0.1)
    with pytest.raises(ValueError, match="single step size"):
        discretize(A, B, torch.tensor([0.1, 0.2], dtype=F64))
    with pytest.raises(ValueError, match=r"x must be a .*tensor of shape \(B, T, M=2\)"):
        run_recurrence(A, B, torch.zeros(4, 2, dtype=F64))
    with pytest.raises(ValueError, match=r"h0 must be .*\(B=1, N=3\)"):
        run_recurrence(A, B, torch.zeros(1, 4, 2, dtype=F64), h0=torch.zeros(1, 2, dtype=F64))
    with pytest.raises(ValueError, match="substeps must be >= 1"):
        integrate(A, B, torch.zeros(1, 2, 2, dtype=F64), 0.1, substeps=0)
    with pytest.raises(ValueError, match=r"A must hold the diagonal entries"):
        discretize_diagonal(torch.tensor(-1.0), torch.tensor(1.0), 0.1)
    with pytest.raises(TypeError, match="A must be a floating-point or complex tensor"):
        discretize_diagonal(torch.tensor([-1, -2]), torch.tensor([1.0, 1.0]), 0.1)
