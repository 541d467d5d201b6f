"""The Gradients chapter's analysis tools, each against an independent computation:
torch.nn.RNN autograd (state gradients), autograd Jacobians and exact matrix powers (Jacobian
chains), NumPy eigenvalues (spectra), exact rational arithmetic (the signal model)."""
from fractions import Fraction

import numpy as np
import pytest
import torch

from seqcourse.measure.analysis import (
    SIGNAL_FACTORS,
    eigenvalues,
    gradient_decay_curves,
    jacobian_chain_norms,
    random_recurrent_matrix,
    signal_magnitude,
    signal_table,
    spectral_norm,
    spectral_radius,
    state_gradient_norms,
)
from seqcourse.models.orthogonal import OrthogonalRNN
from seqcourse.models.rnn import RNN, copy_rnn_from_torch
from seqcourse.models.wrappers import LanguageModel


def _torch_tail_gradient(theirs: torch.nn.RNN, x: torch.Tensor, h_t: torch.Tensor) -> torch.Tensor:
    """dL/dh_t for L = sum of the last output, by torch.nn.RNN run from h_t over x_{t+1} ... x_T."""
    h0 = h_t.detach().clone().requires_grad_(True)
    out, _ = theirs(x, h0)
    (grad,) = torch.autograd.grad(out[:, -1].sum(), h0)
    return grad


@pytest.mark.parametrize("num_layers", [1, 2])
def test_state_gradient_norms_match_torch_rnn(device, num_layers):
    torch.manual_seed(0)
    theirs = torch.nn.RNN(3, 5, num_layers=num_layers, batch_first=True).double().to(device)
    ours = RNN(3, 5, num_layers=num_layers).double().to(device)
    copy_rnn_from_torch(ours, theirs)
    x = torch.randn(2, 7, 3, dtype=torch.float64, device=device)
    norms = state_gradient_norms(ours, x)
    assert norms.shape == (7,)
    # Independent: the state after step t, then torch.nn.RNN from there, autograd w.r.t. its h0.
    h = torch.zeros(num_layers, 2, 5, dtype=torch.float64, device=device)
    for t in range(7):
        expected = _torch_tail_gradient(theirs, x[:, t:], h).norm().item()
        assert norms[t].item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
        with torch.no_grad():
            _, h = theirs(x[:, t:t + 1], h)


def test_state_gradient_norms_custom_loss_and_initial_state(device):
    torch.manual_seed(1)
    ours = RNN(2, 4).double().to(device)
    x = torch.randn(3, 5, 2, dtype=torch.float64, device=device)
    h0 = 0.3 * torch.randn(1, 3, 4, dtype=torch.float64, device=device)
    target = torch.randn(3, 5, 4, dtype=torch.float64, device=device)

    def loss_fn(outputs):  # a loss at every step: each h_t also gets its own direct term
        return ((outputs - target) ** 2).sum()

    norms = state_gradient_norms(ours, x, loss_fn, state=h0)
    # Autograd through forward(): dL/dh_0 is the gradient w.r.t. the initial state.
    h0_leaf = h0.clone().requires_grad_(True)
    out, _ = ours(x, h0_leaf)
    (g0,) = torch.autograd.grad(loss_fn(out), h0_leaf)
    assert norms[0].item() == pytest.approx(g0.norm().item(), rel=1e-9)
    # The state after step 2 feeds steps 3..5: gradient of the loss terms of steps 3..5 only.
    with torch.no_grad():
        _, h2 = ours(x[:, :2], h0)
    h2 = h2.clone().requires_grad_(True)
    out_tail, _ = ours(x[:, 2:], h2)
    (g2,) = torch.autograd.grad(((out_tail - target[:, 2:]) ** 2).sum(), h2)
    assert norms[2].item() == pytest.approx(g2.norm().item(), rel=1e-9)
    assert not h0.requires_grad  # the caller's state is left alone


def test_state_gradient_norms_language_model_takes_ids(device):
    torch.manual_seed(2)
    model = LanguageModel(RNN(6, 8), vocab_size=6, hidden_size=8).to(device)
    ids = torch.randint(0, 6, (2, 9), device=device)
    norms = state_gradient_norms(model, ids, lambda logits: logits[:, -1, 0].sum())
    assert norms.shape == (9,)
    assert torch.isfinite(norms).all() and norms[-1] > 0


def test_state_gradient_norms_orthogonal_linear_rnn_keeps_norm(device):
    # Identity nonlinearity: dL/dh_t = (W_h^T)^(T-t) dL/dh_T, and W_h is orthogonal, so every
    # norm is ||dL/dh_T|| = ||ones(B, H)||.
    model = OrthogonalRNN(2, 6, nonlinearity="identity", generator=torch.Generator().manual_seed(0))
    model = model.double().to(device)
    x = torch.randn(4, 30, 2, dtype=torch.float64, device=device)
    norms = state_gradient_norms(model, x)
    assert torch.allclose(norms, torch.full_like(norms, (4 * 6) ** 0.5), rtol=1e-10)


def test_state_gradient_norms_rejects_bad_input():
    with pytest.raises(TypeError, match="step"):
        state_gradient_norms(torch.nn.Linear(2, 2), torch.randn(1, 3, 2))
    with pytest.raises(ValueError, match=r"\(B, T, D\)"):
        state_gradient_norms(RNN(2, 3), torch.randn(3, 2, 2, 2))
    with pytest.raises(ValueError, match="scalar"):
        state_gradient_norms(RNN(2, 3), torch.randn(1, 3, 2), lambda out: out)


def test_jacobian_chain_powers_are_exact_matrix_powers():
    W = torch.tensor([[0.9, 0.0], [0.0, 1.1]], dtype=torch.float64)
    norms = jacobian_chain_norms(W, steps=100)
    assert norms.shape == (100,)
    # ||diag(0.9, 1.1)^k||_2 = 1.1^k exactly (the largest diagonal entry).
    assert norms[48].item() == pytest.approx(1.1 ** 49, rel=1e-12)
    assert norms[99].item() == pytest.approx(1.1 ** 100, rel=1e-12)
    torch.manual_seed(3)
    G = torch.randn(5, 5, dtype=torch.float64) / 5 ** 0.5
    got = jacobian_chain_norms(G, steps=12)
    for k in (1, 2, 7, 12):
        expected = torch.linalg.matrix_norm(torch.linalg.matrix_power(G, k), ord=2)
        assert got[k - 1].item() == pytest.approx(expected.item(), rel=1e-10)


def test_jacobian_chain_matches_autograd_through_the_rnn(device):
    torch.manual_seed(4)
    rnn = RNN(2, 4).double().to(device)
    cell = rnn.cells[0]
    x = torch.randn(1, 6, 2, dtype=torch.float64, device=device)
    out, _ = rnn(x)
    h = out[0].detach()  # (T, H)
    norms = jacobian_chain_norms(cell.W_h, 1 - h ** 2)  # tanh'(z_t) = 1 - h_t^2
    T = 6
    states = torch.cat([torch.zeros(1, 4, dtype=torch.float64, device=device), h])  # h_0 ... h_T
    for k in range(1, T + 1):
        def h_T_from(h_start, k=k):
            state = h_start.unsqueeze(0)
            for s in range(T - k, T):
                state = cell(x[:, s], state)
            return state[0]

        J = torch.autograd.functional.jacobian(h_T_from, states[T - k])
        assert norms[k - 1].item() == pytest.approx(torch.linalg.matrix_norm(J, ord=2).item(), rel=1e-9)


def test_jacobian_chain_order_matters_and_batches():
    # The latest Jacobian is on the left: reversing the time order changes the answer.
    W = torch.tensor([[0.0, 2.0], [0.5, 0.0]], dtype=torch.float64)
    d = torch.tensor([[1.0, 0.1], [0.2, 1.0]], dtype=torch.float64)  # d_1, d_2
    norms = jacobian_chain_norms(W, d)
    J1, J2 = torch.diag(d[0]) @ W, torch.diag(d[1]) @ W
    assert norms[0].item() == pytest.approx(torch.linalg.matrix_norm(J2, ord=2).item())
    assert norms[1].item() == pytest.approx(torch.linalg.matrix_norm(J2 @ J1, ord=2).item())
    assert norms[0].item() != pytest.approx(torch.linalg.matrix_norm(J1, ord=2).item())
    batched = jacobian_chain_norms(W, torch.stack([d, d.flip(0)]))
    assert batched.shape == (2, 2)
    assert torch.allclose(batched[0], norms)
    assert not torch.allclose(batched[1], norms)


def test_jacobian_chain_rejects_bad_input():
    with pytest.raises(ValueError, match="square"):
        jacobian_chain_norms(torch.randn(3, 4), steps=2)
    with pytest.raises(ValueError, match="steps"):
        jacobian_chain_norms(torch.eye(3))
    with pytest.raises(ValueError, match="H=3"):
        jacobian_chain_norms(torch.eye(3), torch.ones(5, 4))
    with pytest.raises(ValueError, match="either"):
        jacobian_chain_norms(torch.eye(3), torch.ones(5, 3), steps=5)


def test_spectra_against_numpy_and_known_matrices():
    torch.manual_seed(5)
    W = torch.randn(6, 6, dtype=torch.float64)
    ours = eigenvalues(W).numpy()
    theirs = np.linalg.eigvals(W.numpy())
    assert np.allclose(np.sort(np.abs(ours)), np.sort(np.abs(theirs)))
    assert np.all(np.diff(np.abs(ours)) <= 1e-12)  # sorted by modulus, largest first
    assert spectral_radius(W) == pytest.approx(np.abs(theirs).max())
    assert spectral_norm(W) == pytest.approx(np.linalg.svd(W.numpy(), compute_uv=False).max())
    # A rotation: eigenvalues e^{±iθ}, radius 1 and norm 1. A shear: radius 1, norm > 1.
    theta = 0.7
    R = torch.tensor([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    assert spectral_radius(R) == pytest.approx(1.0) and spectral_norm(R) == pytest.approx(1.0)
    shear = torch.tensor([[1.0, 3.0], [0.0, 1.0]])
    assert spectral_radius(shear) == pytest.approx(1.0)
    assert spectral_norm(shear) == pytest.approx((3 + 13 ** 0.5) / 2)  # largest singular value


def test_random_recurrent_matrix_has_the_radius_and_gelfand_limit():
    g = torch.Generator().manual_seed(6)
    for radius in (0.5, 1.0, 1.3):
        W = random_recurrent_matrix(32, radius, generator=g, dtype=torch.float64)
        assert W.shape == (32, 32) and W.dtype == torch.float64
        assert spectral_radius(W) == pytest.approx(radius, rel=1e-9)
        assert spectral_norm(W) > radius  # a non-normal Gaussian matrix stretches more than rho
    W = random_recurrent_matrix(16, 0.9, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    norms = jacobian_chain_norms(W, steps=400)
    assert norms[-1].item() ** (1 / 400) == pytest.approx(0.9, rel=0.02)  # ||W^k||^(1/k) -> rho
    same = random_recurrent_matrix(16, 0.9, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert torch.equal(W, same)
    with pytest.raises(ValueError, match="> 0"):
        random_recurrent_matrix(4, 0.0)


def test_signal_model_exact():
    for L in (1, 2, 100, 500):
        for name, factor in SIGNAL_FACTORS.items():
            exact = Fraction(factor).limit_denominator(1000) ** (L - 1)
            assert signal_magnitude(L, factor) == pytest.approx(float(exact), rel=1e-12)
    assert signal_magnitude(100, 0.9, alpha=2.0) == pytest.approx(2 * float(Fraction(9, 10) ** 99), rel=1e-12)
    assert list(SIGNAL_FACTORS.values()) == pytest.approx([0.90, 0.99, 0.95])
    table = signal_table()
    assert list(table) == list(SIGNAL_FACTORS)
    assert table["vanilla RNN (ρ = 0.90)"][500] == pytest.approx(float(Fraction(9, 10) ** 499), rel=1e-12)
    with pytest.raises(ValueError, match=">= 1"):
        signal_magnitude(0, 0.9)


def test_gradient_decay_curves_linear_powers_and_tanh_autograd():
    K, H, radius, scale = 6, 5, 1.3, 0.8
    curves = gradient_decay_curves(radius, K, hidden_size=H, input_scale=scale, seed=3)
    assert set(curves) == {"linear", "tanh"} and curves["linear"].shape == curves["tanh"].shape == (K,)
    # Rebuild the same draws, in the documented order, and compute the chain by autograd
    # through torch.nn.RNN (W_ih = W_x, W_hh = W_h, no bias).
    g = torch.Generator().manual_seed(3)
    W = random_recurrent_matrix(H, radius, generator=g, dtype=torch.float64)
    W_x = scale * torch.randn(H, 1, generator=g, dtype=torch.float64)
    x = torch.randn(K, 1, generator=g, dtype=torch.float64)
    theirs = torch.nn.RNN(1, H, bias=False, batch_first=True).double()
    with torch.no_grad():
        theirs.weight_ih_l0.copy_(W_x)
        theirs.weight_hh_l0.copy_(W)
    with torch.no_grad():
        h, _ = theirs(x.unsqueeze(0), torch.zeros(1, 1, H, dtype=torch.float64))
    states = torch.cat([torch.zeros(1, H, dtype=torch.float64), h[0]])
    for k in range(1, K + 1):
        def h_K(start, k=k):
            out, _ = theirs(x[K - k:].unsqueeze(0), start.reshape(1, 1, H))
            return out[0, -1]

        J = torch.autograd.functional.jacobian(h_K, states[K - k])
        assert curves["tanh"][k - 1].item() == pytest.approx(torch.linalg.matrix_norm(J, ord=2).item(), rel=1e-9)
        power = torch.linalg.matrix_power(W, k)
        assert curves["linear"][k - 1].item() == pytest.approx(torch.linalg.matrix_norm(power, ord=2).item(), rel=1e-9)
    assert not torch.allclose(curves["tanh"], curves["linear"])  # the tanh' factors change the chain
    with pytest.raises(ValueError, match="radius must be > 0"):
        gradient_decay_curves(0.0, 5)


# ---- the chapter's figures and explorer (seqcourse.viz.plots / seqcourse.viz.widgets additions) --------


def test_gradient_figures_hold_the_data():
    from seqcourse.viz import plots

    x = np.arange(1, 6)
    fig = plots.gradient_norms(x, {"a": [1.0, 0.5, 0.25, 0.0, float("nan")], "b": np.ones(5)})
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and [line.get_label() for line in ax.lines[:2]] == ["a", "b"]
    ys = ax.lines[0].get_ydata()
    assert np.allclose(ys[:3], [1.0, 0.5, 0.25]) and np.isnan(ys[3:]).all()  # zero and nan left out
    with pytest.raises(ValueError, match="one per x"):
        plots.gradient_norms(x, {"a": [1.0, 2.0]})
    fig = plots.loss_curves({"short": [3.0, 2.0], "long": [1.0, 0.9, 0.8]}, baseline=0.5, logy=True)
    ax = fig.axes[0]
    assert [len(line.get_xdata()) for line in ax.lines[:2]] == [2, 3] and ax.get_yscale() == "log"
    eig = eigenvalues(torch.tensor([[0.0, -1.0], [1.0, 0.0]]))
    fig = plots.eigenvalue_plot({"rotation": eig})
    offsets = fig.axes[0].collections[0].get_offsets()
    assert np.allclose(sorted(offsets[:, 1]), [-1.0, 1.0]) and np.allclose(offsets[:, 0], 0.0)
    fig = plots.metric_vs_length([7, 22], {"m": [0.5, 1.0]}, baseline=0.25)
    assert np.allclose(fig.axes[0].lines[1].get_ydata(), [0.25, 0.25])
    with pytest.raises(ValueError, match="empty"):
        plots.metric_vs_length([7], {})


def test_gradient_norm_explorer_follows_the_sliders():
    pytest.importorskip("ipywidgets")
    from seqcourse.viz.widgets import GradientNormExplorer

    explorer = GradientNormExplorer(radius=0.9, distance=20, hidden_size=8)
    assert explorer.png.startswith(b"\x89PNG")
    expected = gradient_decay_curves(0.9, 20, hidden_size=8)
    assert torch.equal(explorer.curves["linear"], expected["linear"])
    assert torch.equal(explorer.curves["tanh"], expected["tanh"])
    explorer.radius.value = 2.0  # moving a slider recomputes and redraws
    explorer.distance.value = 40
    assert explorer.curves["linear"].shape == (40,)
    assert torch.equal(explorer.curves["linear"], gradient_decay_curves(2.0, 40, hidden_size=8)["linear"])
    assert "K = 40" in explorer.message.value
