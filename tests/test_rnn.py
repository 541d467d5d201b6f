"""Our RNN against torch.nn.RNN with copied weights, step() against forward(), and input checks."""
import pytest
import torch

from seqcourse.models.rnn import RNN, RNNCell, copy_rnn_from_torch

B, T, D, H = 3, 6, 4, 5


def _pair(num_layers, bias, device, dtype=torch.float64):
    torch.manual_seed(0)
    theirs = torch.nn.RNN(D, H, num_layers, bias=bias, batch_first=True).to(device, dtype)
    ours = RNN(D, H, num_layers=num_layers, bias=bias).to(device, dtype)
    copy_rnn_from_torch(ours, theirs)
    return ours, theirs


@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_h0", [True, False])
def test_matches_torch_rnn_forward_and_gradients(num_layers, bias, with_h0, device):
    ours, theirs = _pair(num_layers, bias, device)
    x = torch.randn(B, T, D, dtype=torch.float64, device=device)
    h0 = torch.randn(num_layers, B, H, dtype=torch.float64, device=device) if with_h0 else None
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    h01 = h0.clone().requires_grad_() if with_h0 else None
    h02 = h0.clone().requires_grad_() if with_h0 else None

    out1, hn1 = ours(x1, h01)
    out2, hn2 = theirs(x2, h02)
    assert out1.shape == (B, T, H) and hn1.shape == (num_layers, B, H)
    torch.testing.assert_close(out1, out2)
    torch.testing.assert_close(hn1, hn2)

    # A loss that uses both outputs and h_n with unequal weights, so every path is exercised.
    w_out = torch.randn(B, T, H, dtype=torch.float64, device=device)
    w_hn = torch.randn(num_layers, B, H, dtype=torch.float64, device=device)
    ((out1 * w_out).sum() + (hn1 * w_hn).sum()).backward()
    ((out2 * w_out).sum() + (hn2 * w_hn).sum()).backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    if with_h0:
        torch.testing.assert_close(h01.grad, h02.grad)
    for k, cell in enumerate(ours.cells):
        torch.testing.assert_close(cell.W_x.grad, getattr(theirs, f"weight_ih_l{k}").grad)
        torch.testing.assert_close(cell.W_h.grad, getattr(theirs, f"weight_hh_l{k}").grad)
        if bias:
            # b = b_ih + b_hh, so dL/db equals the gradient of either torch bias.
            torch.testing.assert_close(cell.b.grad, getattr(theirs, f"bias_ih_l{k}").grad)
            torch.testing.assert_close(cell.b.grad, getattr(theirs, f"bias_hh_l{k}").grad)
        else:
            assert cell.b is None


def test_float32_default_matches_torch(device):
    torch.manual_seed(1)
    theirs = torch.nn.RNN(D, H, 2, batch_first=True).to(device)
    ours = RNN(D, H, num_layers=2).to(device)
    copy_rnn_from_torch(ours, theirs)
    x = torch.randn(B, T, D, device=device)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0])


@pytest.mark.parametrize("num_layers", [1, 3])
def test_step_repeated_equals_forward(num_layers, device):
    torch.manual_seed(2)
    model = RNN(D, H, num_layers=num_layers).to(device, torch.float64)
    x = torch.randn(B, T, D, dtype=torch.float64, device=device)
    h0 = torch.randn(num_layers, B, H, dtype=torch.float64, device=device)
    outputs, h_n = model(x, h0)
    for start in (None, h0):
        h, ys = start, []
        for x_t in x.unbind(1):
            y, h = model.step(x_t, h)
            ys.append(y)
        if start is None:
            torch.testing.assert_close(torch.stack(ys, 1), model(x)[0])
        else:
            torch.testing.assert_close(torch.stack(ys, 1), outputs)
            torch.testing.assert_close(h, h_n)


def test_forward_in_two_halves_equals_one_pass():
    torch.manual_seed(3)
    model = RNN(D, H, num_layers=2).double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    out, h_n = model(x)
    out_a, h_a = model(x[:, :2])
    out_b, h_b = model(x[:, 2:], h_a)
    torch.testing.assert_close(torch.cat([out_a, out_b], 1), out)
    torch.testing.assert_close(h_b, h_n)


def test_cell_is_the_equation():
    torch.manual_seed(4)
    cell = RNNCell(D, H).double()
    x_t = torch.randn(B, D, dtype=torch.float64)
    h = torch.randn(B, H, dtype=torch.float64)
    expected = torch.tanh(x_t @ cell.W_x.T + h @ cell.W_h.T + cell.b)
    torch.testing.assert_close(cell(x_t, h), expected)
    torch.testing.assert_close(cell(x_t), torch.tanh(x_t @ cell.W_x.T + cell.b))
    assert cell.W_x.shape == (H, D) and cell.W_h.shape == (H, H) and cell.b.shape == (H,)


def test_init_is_uniform_within_one_over_sqrt_h():
    torch.manual_seed(5)
    hidden = 64
    model = RNN(3, hidden, num_layers=2)
    k = hidden**-0.5
    values = torch.cat([p.flatten() for p in model.parameters()])
    assert values.abs().max() <= k
    # Uniform on [-k, k] has standard deviation k/sqrt(3); a constant or tiny init would not.
    assert abs(values.std().item() - k / 3**0.5) < 0.1 * k


def test_inputs_are_not_modified():
    model = RNN(D, H, num_layers=2)
    x = torch.randn(B, T, D)
    h0 = torch.randn(2, B, H)
    x_copy, h0_copy = x.clone(), h0.clone()
    model(x, h0)
    model.step(x[:, 0], h0)
    assert torch.equal(x, x_copy) and torch.equal(h0, h0_copy)


def test_layers_feed_each_other():
    torch.manual_seed(6)
    model = RNN(D, H, num_layers=2).double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    first = RNN(D, H).double()
    second = RNN(H, H).double()
    first.cells[0].load_state_dict(model.cells[0].state_dict())
    second.cells[0].load_state_dict(model.cells[1].state_dict())
    out1, h1 = first(x)
    out2, h2 = second(out1)
    out, h_n = model(x)
    torch.testing.assert_close(out, out2)
    torch.testing.assert_close(h_n, torch.cat([h1, h2]))


# ---- bad input: each error names what was expected -------------------------------------------

def test_wrong_rank_suggests_unsqueeze():
    model = RNN(3, H)
    with pytest.raises(ValueError, match=r"x must be a float32 tensor of shape \(B, T, D=3\); got shape \(7, 3\) \(rank 2\)"):
        model(torch.randn(7, 3))
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        model(torch.randn(7, 3))
    with pytest.raises(ValueError, match=r"shape \(B, T, D=3\); got shape \(1, 2, 7, 3\) \(rank 4\)"):
        model(torch.randn(1, 2, 7, 3))


def test_wrong_feature_size():
    model = RNN(3, H)
    with pytest.raises(ValueError, match=r"\(B, T, D=3\); got shape \(4, 7, 2\).*D = 2 \(expected 3\)"):
        model(torch.randn(4, 7, 2))
    with pytest.raises(ValueError, match=r"x_t must be a float32 tensor of shape \(B, D=3\); got shape \(4, 2\)"):
        model.step(torch.randn(4, 2))


@pytest.mark.parametrize("bad_dtype, fix", [(torch.int64, r"x\.float\(\)"), (torch.float64, r"x\.float\(\)")])
def test_wrong_dtype_names_expected_dtype(bad_dtype, fix):
    model = RNN(3, H)
    x = torch.ones(2, 4, 3).to(bad_dtype)
    with pytest.raises(TypeError, match=rf"x must have dtype torch\.float32 .*got dtype {bad_dtype}\. Convert it with {fix}"):
        model(x)


def test_float64_model_suggests_double():
    model = RNN(3, H).double()
    with pytest.raises(TypeError, match=r"torch\.float64.*got dtype torch\.float32.*x\.double\(\)"):
        model(torch.randn(2, 4, 3))


def test_wrong_h0_shape_names_l_b_h():
    model = RNN(3, 5, num_layers=2)
    x = torch.randn(4, 7, 3)
    with pytest.raises(ValueError, match=r"h0 must be a float32 tensor of shape \(L=2, B=4, H=5\); got shape \(4, 5\)"):
        model(x, torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"\(L=2, B=4, H=5\); got shape \(1, 4, 5\).*L = 1 \(expected 2\)"):
        model(x, torch.randn(1, 4, 5))
    with pytest.raises(ValueError, match=r"h must be a float32 tensor of shape \(L=2, B=4, H=5\); got shape \(2, 3, 5\)"):
        model.step(x[:, 0], torch.randn(2, 3, 5))
    with pytest.raises(TypeError, match=r"h0 must have dtype torch\.float32"):
        model(x, torch.zeros(2, 4, 5, dtype=torch.float64))


def test_empty_sequence():
    with pytest.raises(ValueError, match=r"x must have at least one time step \(T >= 1\); got shape \(2, 0, 3\)"):
        RNN(3, H)(torch.zeros(2, 0, 3))


def test_not_a_tensor():
    with pytest.raises(TypeError, match=r"x must be a float32 torch\.Tensor of shape \(B, T, D=3\); got list"):
        RNN(3, H)([[0.0, 1.0, 2.0]])


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"hidden_size must be >= 1; got 0"):
        RNN(3, 0)
    with pytest.raises(TypeError, match=r"num_layers must be an int; got float"):
        RNN(3, 4, num_layers=2.0)


def test_device_mismatch_is_named():
    # A tensor on the meta device stands in for a tensor on another device than the weights.
    model = RNN(3, H)
    with pytest.raises(ValueError, match=r"x is on device meta, but the model's parameters are on cpu; move it with x\.to\('cpu'\)"):
        model(torch.empty(2, 4, 3, device="meta"))
    with pytest.raises(ValueError, match=r"h0 is on device meta"):
        model(torch.randn(2, 4, 3), torch.empty(1, 2, H, device="meta"))


def test_copy_rnn_from_torch_rejects_other_architectures():
    ours = RNN(D, H, num_layers=2)
    with pytest.raises(ValueError, match=r"num_layers=1 \(expected 2\)"):
        copy_rnn_from_torch(ours, torch.nn.RNN(D, H, 1, batch_first=True))
    with pytest.raises(ValueError, match=r"nonlinearity='relu' \(expected 'tanh'\)"):
        copy_rnn_from_torch(ours, torch.nn.RNN(D, H, 2, nonlinearity="relu"))
    with pytest.raises(TypeError, match=r"torch\.nn\.RNN; got LSTM"):
        copy_rnn_from_torch(ours, torch.nn.LSTM(D, H, 2))
