"""seqcourse.measure.gating: forget gates against torch.nn.LSTM's, the isolated cell path's Jacobian equal to
diag(∏ f_t), the full Jacobian against finite differences, and input checks."""
import pytest
import torch

from seqcourse.measure.gating import cell_state_jacobian, forget_gate_product, forget_gates
from seqcourse.models.gated import GRU, LSTM, copy_lstm_from_torch

pytestmark = pytest.mark.usefixtures("one_thread")

B, T, D, H = 2, 6, 3, 4
F64 = torch.float64


def _lstm(device):
    torch.manual_seed(0)
    return LSTM(D, H).to(device, F64)


def test_forget_gates_match_torch_lstm(device):
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(D, H, batch_first=True).to(device, F64)
    ours = LSTM(D, H).to(device, F64)
    copy_lstm_from_torch(ours, theirs)
    x = torch.randn(B, T, D, dtype=F64, device=device)
    out, _ = theirs(x)
    h_prev = torch.cat([torch.zeros(B, 1, H, dtype=F64, device=device), out[:, :-1]], dim=1)
    rows = slice(H, 2 * H)  # torch's gate order i, f, g, o
    expected = torch.sigmoid(x @ theirs.weight_ih_l0[rows].T + h_prev @ theirs.weight_hh_l0[rows].T
                             + theirs.bias_ih_l0[rows] + theirs.bias_hh_l0[rows])
    f = forget_gates(ours, x)
    assert f.shape == (B, T, H) and ((f > 0) & (f < 1)).all()
    torch.testing.assert_close(f, expected)
    torch.testing.assert_close(forget_gate_product(ours.cells[0], x), expected.prod(dim=1))


def test_isolated_cell_path_jacobian_is_the_diagonal_forget_product(device):
    model = _lstm(device)
    x = torch.randn(B, T, D, dtype=F64, device=device)
    J = cell_state_jacobian(model, x, isolate_cell_path=True)
    assert J.shape == (B, H, H)
    torch.testing.assert_close(J, torch.diag_embed(forget_gate_product(model, x)))
    full = cell_state_jacobian(model, x, isolate_cell_path=False)
    assert (full - J).abs().max() > 1e-6  # the h paths add something when T > 1


def test_full_jacobian_matches_finite_differences(device):
    model = _lstm(device)
    x = torch.randn(1, T, D, dtype=F64, device=device)
    J = cell_state_jacobian(model, x, isolate_cell_path=False)[0]
    eps = 1e-6
    zeros = torch.zeros(1, 1, H, dtype=F64, device=device)
    columns = []
    for j in range(H):
        bump = zeros.clone()
        bump[..., j] = eps
        (_, (_, c_plus)), (_, (_, c_minus)) = model(x, (zeros, bump)), model(x, (zeros, -bump))
        columns.append((c_plus - c_minus)[0, 0] / (2 * eps))
    torch.testing.assert_close(J, torch.stack(columns, dim=1), atol=1e-7, rtol=1e-6)


def test_one_step_has_only_the_cell_path(device):
    model = _lstm(device)
    x = torch.randn(B, 1, D, dtype=F64, device=device)
    full = cell_state_jacobian(model, x, isolate_cell_path=False)
    torch.testing.assert_close(full, torch.diag_embed(forget_gates(model, x)[:, 0]))


def test_bad_arguments():
    with pytest.raises(TypeError, match="LSTMCell or single-layer LSTM"):
        forget_gates(GRU(D, H), torch.randn(B, T, D))
    with pytest.raises(ValueError, match="num_layers=1"):
        cell_state_jacobian(LSTM(D, H, num_layers=2), torch.randn(B, T, D))
    with pytest.raises(ValueError, match=r"D=3"):
        forget_gate_product(LSTM(D, H), torch.randn(B, T, D + 1))
    with pytest.raises(ValueError, match="at least one time step"):
        forget_gates(LSTM(D, H), torch.randn(B, 0, D))
