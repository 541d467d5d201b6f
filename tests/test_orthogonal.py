"""OrthogonalRNN: W_h = exp(A - A^T) is orthogonal before and after training, the model computes
the vanilla RNN's function with that W_h, and step() agrees with forward()."""
import pytest
import torch

from seqcourse.measure.analysis import state_gradient_norms
from seqcourse.models.orthogonal import OrthogonalRNN, skew_to_orthogonal
from seqcourse.models.rnn import RNN
from seqcourse.models.wrappers import Classifier


def _expm_by_eigh(S: torch.Tensor) -> torch.Tensor:
    """exp(S) for a real skew-symmetric S, independently of torch.linalg.matrix_exp: iS is
    Hermitian, iS = V diag(mu) V^H, so S = V diag(-i mu) V^H and exp(S) = V diag(e^{-i mu}) V^H."""
    mu, V = torch.linalg.eigh(1j * S.to(torch.complex128))
    return (V @ torch.diag(torch.exp(-1j * mu)) @ V.conj().T).real


def test_skew_to_orthogonal_matches_eigendecomposition():
    A = torch.randn(7, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    W = skew_to_orthogonal(A)
    assert torch.allclose(W, _expm_by_eigh(A - A.T), atol=1e-10)
    assert torch.allclose(W.T @ W, torch.eye(7, dtype=torch.float64), atol=1e-12)
    assert torch.linalg.det(W).item() == pytest.approx(1.0)
    # Entry-wise exp is not orthogonal: the matrix exponential is what makes it work.
    E = torch.exp(A - A.T)
    assert not torch.allclose(E.T @ E, torch.eye(7, dtype=torch.float64), atol=1e-2)
    with pytest.raises(ValueError, match="square"):
        skew_to_orthogonal(torch.randn(2, 3))


def _power_norms(W: torch.Tensor, x: torch.Tensor, K: int) -> torch.Tensor:
    """||W^k x|| for k = 0..K, by repeated multiplication (x: (n, H) rows)."""
    norms, v = [x.norm(dim=1)], x
    for _ in range(K):
        v = v @ W.T
        norms.append(v.norm(dim=1))
    return torch.stack(norms)


def test_stays_orthogonal_after_training(device):
    torch.manual_seed(1)
    core = OrthogonalRNN(3, 8, generator=torch.Generator().manual_seed(1))
    model = Classifier(core, 8, num_classes=1).to(device)
    A_before = core.A.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x = torch.randn(16, 12, 3, device=device)
    y = torch.randn(16, device=device)
    for _ in range(20):
        opt.zero_grad()
        loss = ((model(x)[:, 0] - y) ** 2).mean()
        loss.backward()
        opt.step()
    assert not torch.allclose(core.A.detach(), A_before)  # training really moved A
    W = core.W_h.detach().double()
    eye = torch.eye(8, dtype=torch.float64, device=device)
    assert torch.allclose(W.T @ W, eye, atol=1e-5)
    vectors = torch.randn(5, 8, dtype=torch.float64, device=device)
    norms = _power_norms(W, vectors, 200)  # ||W^k x|| = ||x|| for every k
    assert torch.allclose(norms, norms[0].expand_as(norms), rtol=1e-4)
    # A vanilla RNN's W_h after the same training does not preserve norms.
    rnn = RNN(3, 8).to(device)
    V = rnn.cells[0].W_h.detach().double()
    assert not torch.allclose(_power_norms(V, vectors, 50)[-1], norms[0], rtol=0.1)


def test_same_function_as_vanilla_rnn_with_that_matrix(device):
    torch.manual_seed(2)
    ours = OrthogonalRNN(2, 6, generator=torch.Generator().manual_seed(2)).double().to(device)
    vanilla = RNN(2, 6).double().to(device)
    with torch.no_grad():
        vanilla.cells[0].W_x.copy_(ours.W_x)
        vanilla.cells[0].W_h.copy_(ours.W_h)
        vanilla.cells[0].b.copy_(ours.b)
    x = torch.randn(3, 9, 2, dtype=torch.float64, device=device)
    h0 = torch.randn(1, 3, 6, dtype=torch.float64, device=device)
    out, h_n = ours(x, h0)
    out_v, h_n_v = vanilla(x, h0)
    assert out.shape == (3, 9, 6) and h_n.shape == (1, 3, 6)
    assert torch.allclose(out, out_v, atol=1e-12) and torch.allclose(h_n, h_n_v, atol=1e-12)


def test_step_matches_forward_and_identity_is_linear(device):
    torch.manual_seed(3)
    for nonlinearity in ("tanh", "identity"):
        model = OrthogonalRNN(2, 4, nonlinearity=nonlinearity).double().to(device)
        x = torch.randn(2, 6, 2, dtype=torch.float64, device=device)
        out, h_n = model(x)
        state, ys = None, []
        for x_t in x.unbind(1):
            y_t, state = model.step(x_t, state)
            ys.append(y_t)
        assert torch.allclose(torch.stack(ys, 1), out, atol=1e-12) and torch.allclose(state, h_n, atol=1e-12)
    # Identity: h_T = sum_t W_h^(T-t) (W_x x_t + b), a linear recurrence.
    W, Wx, b = model.W_h.detach(), model.W_x.detach(), model.b.detach()
    h = torch.zeros(2, 4, dtype=torch.float64, device=device)
    for x_t in x.unbind(1):
        h = h @ W.T + x_t @ Wx.T + b
    assert torch.allclose(h, out[:, -1], atol=1e-12)


def test_gradients_through_W_h_match_finite_differences(device):
    torch.manual_seed(4)
    model = OrthogonalRNN(2, 4).double().to(device)
    x = torch.randn(2, 5, 2, dtype=torch.float64, device=device)

    def loss():
        return model(x)[0].pow(2).sum()

    value = loss()
    (g,) = torch.autograd.grad(value, model.A)
    eps = 1e-6
    for i, j in [(0, 1), (1, 3), (2, 0)]:
        with torch.no_grad():
            model.A[i, j] += eps
            up = loss().item()
            model.A[i, j] -= 2 * eps
            down = loss().item()
            model.A[i, j] += eps
        assert g[i, j].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)


def test_linear_orthogonal_gradient_does_not_vanish_but_vanilla_does(device):
    x = torch.randn(8, 60, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5)).to(device)
    orth = OrthogonalRNN(2, 16, nonlinearity="identity", generator=torch.Generator().manual_seed(5))
    orth = orth.double().to(device)
    torch.manual_seed(5)
    vanilla = RNN(2, 16).double().to(device)
    g_orth = state_gradient_norms(orth, x)
    g_vanilla = state_gradient_norms(vanilla, x)
    assert g_orth[0] / g_orth[-1] == pytest.approx(1.0, rel=1e-9)
    assert g_vanilla[0] / g_vanilla[-1] < 1e-6


def test_initial_rotation_and_bad_arguments():
    model = OrthogonalRNN(1, 6, generator=torch.Generator().manual_seed(6))
    eig = torch.linalg.eigvals(model.W_h.detach().double())
    assert torch.allclose(eig.abs(), torch.ones(6, dtype=torch.float64), atol=1e-6)
    assert not torch.allclose(model.W_h.detach(), torch.eye(6))  # not the identity at the start
    same = OrthogonalRNN(1, 6, generator=torch.Generator().manual_seed(6))
    assert torch.equal(model.A, same.A) and torch.equal(model.W_x, same.W_x)
    with pytest.raises(ValueError, match="nonlinearity"):
        OrthogonalRNN(1, 4, nonlinearity="relu")
    with pytest.raises(ValueError, match=r"\(B, T, D=1\)"):
        model(torch.randn(5, 1))
    with pytest.raises(ValueError, match="L=1"):
        model(torch.randn(2, 3, 1), torch.zeros(2, 2, 6))
    assert OrthogonalRNN(1, 3, bias=False).b is None
