"""Our LSTM and GRU against torch.nn.LSTM / torch.nn.GRU with copied weights, the GRU gate
mapping, step() against forward(), the forget-gate bias, input checks, and use as wrapper cores."""
import pytest
import torch

from seqcourse.models.gated import GRU, LSTM, GRUCell, copy_gru_from_torch, copy_lstm_from_torch
from seqcourse.models.wrappers import Classifier, LanguageModel

pytestmark = pytest.mark.usefixtures("one_thread")

B, T, D, H = 3, 6, 4, 5
F64 = torch.float64


def _lstm_pair(num_layers, bias, device):
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(D, H, num_layers, bias=bias, batch_first=True).to(device, F64)
    ours = LSTM(D, H, num_layers=num_layers, bias=bias).to(device, F64)
    copy_lstm_from_torch(ours, theirs)
    return ours, theirs


def _gru_pair(num_layers, bias, device):
    torch.manual_seed(0)
    theirs = torch.nn.GRU(D, H, num_layers, bias=bias, batch_first=True).to(device, F64)
    ours = GRU(D, H, num_layers=num_layers, bias=bias).to(device, F64)
    copy_gru_from_torch(ours, theirs)
    return ours, theirs


def _leaf(t):
    return None if t is None else t.clone().requires_grad_()


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_state", [True, False])
def test_lstm_matches_torch_forward_and_gradients(num_layers, bias, with_state, device):
    ours, theirs = _lstm_pair(num_layers, bias, device)
    x = torch.randn(B, T, D, dtype=F64, device=device)
    h0 = torch.randn(num_layers, B, H, dtype=F64, device=device) if with_state else None
    c0 = torch.randn(num_layers, B, H, dtype=F64, device=device) if with_state else None
    x1, x2, h01, h02, c01, c02 = _leaf(x), _leaf(x), _leaf(h0), _leaf(h0), _leaf(c0), _leaf(c0)

    out1, (hn1, cn1) = ours(x1, (h01, c01) if with_state else None)
    out2, (hn2, cn2) = theirs(x2, (h02, c02) if with_state else None)
    assert out1.shape == (B, T, H) and hn1.shape == cn1.shape == (num_layers, B, H)
    torch.testing.assert_close(out1, out2)
    torch.testing.assert_close(hn1, hn2)
    torch.testing.assert_close(cn1, cn2)

    w_out = torch.randn(B, T, H, dtype=F64, device=device)
    w_h, w_c = torch.randn(2, num_layers, B, H, dtype=F64, device=device)
    ((out1 * w_out).sum() + (hn1 * w_h).sum() + (cn1 * w_c).sum()).backward()
    ((out2 * w_out).sum() + (hn2 * w_h).sum() + (cn2 * w_c).sum()).backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    if with_state:
        torch.testing.assert_close(h01.grad, h02.grad)
        torch.testing.assert_close(c01.grad, c02.grad)
    for k, cell in enumerate(ours.cells):
        torch.testing.assert_close(cell.W_x.grad, getattr(theirs, f"weight_ih_l{k}").grad)
        torch.testing.assert_close(cell.W_h.grad, getattr(theirs, f"weight_hh_l{k}").grad)
        if bias:
            torch.testing.assert_close(cell.b.grad, getattr(theirs, f"bias_ih_l{k}").grad)
        else:
            assert cell.b is None


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_h0", [True, False])
def test_gru_matches_torch_forward_and_gradients(num_layers, bias, with_h0, device):
    ours, theirs = _gru_pair(num_layers, bias, device)
    x = torch.randn(B, T, D, dtype=F64, device=device)
    h0 = torch.randn(num_layers, B, H, dtype=F64, device=device) if with_h0 else None
    x1, x2, h01, h02 = _leaf(x), _leaf(x), _leaf(h0), _leaf(h0)

    out1, hn1 = ours(x1, h01)
    out2, hn2 = theirs(x2, h02)
    assert out1.shape == (B, T, H) and hn1.shape == (num_layers, B, H)
    torch.testing.assert_close(out1, out2)
    torch.testing.assert_close(hn1, hn2)

    w_out = torch.randn(B, T, H, dtype=F64, device=device)
    w_hn = torch.randn(num_layers, B, H, dtype=F64, device=device)
    ((out1 * w_out).sum() + (hn1 * w_hn).sum()).backward()
    ((out2 * w_out).sum() + (hn2 * w_hn).sum()).backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    if with_h0:
        torch.testing.assert_close(h01.grad, h02.grad)
    # Our z-slice parameters are torch's negated, so their gradients are torch's negated too.
    sign = torch.ones(3 * H, 1, dtype=F64, device=device)
    sign[H:2 * H] = -1
    for k, cell in enumerate(ours.cells):
        torch.testing.assert_close(cell.W_x.grad, sign * getattr(theirs, f"weight_ih_l{k}").grad)
        torch.testing.assert_close(cell.W_h.grad, sign * getattr(theirs, f"weight_hh_l{k}").grad)
        if bias:
            torch.testing.assert_close(cell.b_x.grad, sign[:, 0] * getattr(theirs, f"bias_ih_l{k}").grad)
            torch.testing.assert_close(cell.b_h.grad, sign[:, 0] * getattr(theirs, f"bias_hh_l{k}").grad)
        else:
            assert cell.b_x is None and cell.b_h is None


def test_gru_update_gate_is_one_minus_torch_z():
    ours, theirs = _gru_pair(1, True, "cpu")
    cell = ours.cells[0]
    x_t = torch.randn(B, D, dtype=F64)
    h = torch.randn(B, H, dtype=F64)
    z_slice = slice(H, 2 * H)
    # torch's update gate, from torch's own weights (its order is r, z, n).
    z_torch = torch.sigmoid(x_t @ theirs.weight_ih_l0[z_slice].T + theirs.bias_ih_l0[z_slice]
                            + h @ theirs.weight_hh_l0[z_slice].T + theirs.bias_hh_l0[z_slice])
    z_ours = torch.sigmoid(x_t @ cell.W_x[z_slice].T + cell.b_x[z_slice] + h @ cell.W_h[z_slice].T + cell.b_h[z_slice])
    torch.testing.assert_close(z_ours, 1 - z_torch)
    # And the cell is the text's equation h_t = (1 - z) h_{t-1} + z h̃ with that z.
    r = torch.sigmoid(x_t @ cell.W_x[:H].T + cell.b_x[:H] + h @ cell.W_h[:H].T + cell.b_h[:H])
    candidate = torch.tanh(x_t @ cell.W_x[2 * H:].T + cell.b_x[2 * H:] + r * (h @ cell.W_h[2 * H:].T + cell.b_h[2 * H:]))
    torch.testing.assert_close(cell(x_t, h), (1 - z_ours) * h + z_ours * candidate)
    torch_cell = torch.nn.GRUCell(D, H).double()
    torch_cell.load_state_dict({k.removesuffix("_l0"): v for k, v in theirs.state_dict().items()})
    torch.testing.assert_close(cell(x_t, h), torch_cell(x_t, h))


def test_lstm_cell_is_the_equation():
    torch.manual_seed(4)
    cell = LSTM(D, H).double().cells[0]
    x_t, h, c = torch.randn(B, D, dtype=F64), torch.randn(B, H, dtype=F64), torch.randn(B, H, dtype=F64)
    pre = x_t @ cell.W_x.T + h @ cell.W_h.T + cell.b
    i, f, g, o = (pre[:, k * H:(k + 1) * H] for k in range(4))
    c_t = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_t, c_new = cell(x_t, (h, c))
    torch.testing.assert_close(c_new, c_t)
    torch.testing.assert_close(h_t, torch.sigmoid(o) * torch.tanh(c_t))
    assert cell.W_x.shape == (4 * H, D) and cell.W_h.shape == (4 * H, H) and cell.b.shape == (4 * H,)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_step_repeated_equals_forward(kind, num_layers, device):
    torch.manual_seed(2)
    model = (LSTM if kind == "lstm" else GRU)(D, H, num_layers=num_layers).to(device, F64)
    x = torch.randn(B, T, D, dtype=F64, device=device)
    h0 = torch.randn(num_layers, B, H, dtype=F64, device=device)
    start = (h0, torch.randn_like(h0)) if kind == "lstm" else h0
    for initial in (None, start):
        outputs, final = model(x, initial)
        state, ys = initial, []
        for x_t in x.unbind(1):
            y, state = model.step(x_t, state)
            ys.append(y)
        torch.testing.assert_close(torch.stack(ys, 1), outputs)
        if kind == "lstm":
            torch.testing.assert_close(state[0], final[0])
            torch.testing.assert_close(state[1], final[1])
        else:
            torch.testing.assert_close(state, final)


@pytest.mark.parametrize("forget_bias", [1.0, 2.5, -0.5])
def test_forget_gate_bias_is_set_and_the_others_are_not(forget_bias):
    torch.manual_seed(5)
    hidden = 32
    model = LSTM(3, hidden, num_layers=2, forget_bias=forget_bias)
    k = hidden**-0.5
    for cell in model.cells:
        b = cell.b.detach()
        assert torch.all(b[hidden:2 * hidden] == forget_bias)
        others = torch.cat([b[:hidden], b[2 * hidden:]])
        assert others.abs().max() <= k and others.std() > 0.2 * k
    assert LSTM(3, hidden, forget_bias=forget_bias).cells[0].b[hidden:2 * hidden].eq(forget_bias).all()


def test_inputs_are_not_modified():
    lstm, gru = LSTM(D, H, num_layers=2), GRU(D, H, num_layers=2)
    x, h0, c0 = torch.randn(B, T, D), torch.randn(2, B, H), torch.randn(2, B, H)
    copies = [t.clone() for t in (x, h0, c0)]
    lstm(x, (h0, c0))
    lstm.step(x[:, 0], (h0, c0))
    gru(x, h0)
    gru.step(x[:, 0], h0)
    assert all(torch.equal(a, b) for a, b in zip((x, h0, c0), copies))


# ---- bad input: each error names what was expected -------------------------------------------

@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_wrong_rank_feature_size_and_dtype(cls):
    model = cls(3, H)
    with pytest.raises(ValueError, match=r"x must be a float32 tensor of shape \(B, T, D=3\); got shape \(7, 3\) \(rank 2\).*unsqueeze\(0\)"):
        model(torch.randn(7, 3))
    with pytest.raises(ValueError, match=r"\(B, T, D=3\); got shape \(4, 7, 2\).*D = 2 \(expected 3\)"):
        model(torch.randn(4, 7, 2))
    with pytest.raises(ValueError, match=r"x_t must be a float32 tensor of shape \(B, D=3\); got shape \(4, 2\)"):
        model.step(torch.randn(4, 2))
    with pytest.raises(TypeError, match=r"x must have dtype torch\.float32 .*got dtype torch\.int64\. Convert it with x\.float\(\)"):
        model(torch.ones(2, 4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"x must have at least one time step \(T >= 1\)"):
        model(torch.zeros(2, 0, 3))


def test_lstm_state_shape_and_pair():
    model = LSTM(3, 5, num_layers=2)
    x = torch.randn(4, 7, 3)
    good = torch.zeros(2, 4, 5)
    with pytest.raises(ValueError, match=r"h0 must be a float32 tensor of shape \(L=2, B=4, H=5\); got shape \(4, 5\)"):
        model(x, (torch.zeros(4, 5), good))
    with pytest.raises(ValueError, match=r"c0 must be a float32 tensor of shape \(L=2, B=4, H=5\); got shape \(1, 4, 5\).*L = 1 \(expected 2\)"):
        model(x, (good, torch.zeros(1, 4, 5)))
    with pytest.raises(TypeError, match=r"LSTM state must be a pair \(h0, c0\) of tensors of shape \(L=2, B=4, H=5\); got Tensor"):
        model(x, good)
    with pytest.raises(TypeError, match=r"pair \(h, c\) .*\(L=2, B=4, H=5\); got tuple of length 3"):
        model.step(x[:, 0], (good, good, good))
    with pytest.raises(ValueError, match=r"h must be a float32 tensor of shape \(L=2, B=4, H=5\); got shape \(2, 3, 5\)"):
        model.step(x[:, 0], (torch.zeros(2, 3, 5), good))
    with pytest.raises(TypeError, match=r"c0 must have dtype torch\.float32"):
        model(x, (good, good.double()))


def test_gru_state_shape():
    model = GRU(3, 5, num_layers=2)
    x = torch.randn(4, 7, 3)
    with pytest.raises(ValueError, match=r"h0 must be a float32 tensor of shape \(L=2, B=4, H=5\); got shape \(4, 5\)"):
        model(x, torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"h must be a float32 tensor of shape \(L=2, B=4, H=5\); got shape \(2, 3, 5\)"):
        model.step(x[:, 0], torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match=r"h must be a float32 tensor of shape \(B=4, H=5\)"):
        GRUCell(3, 5)(x[:, 0], torch.zeros(4, 6))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"hidden_size must be >= 1; got 0"):
        LSTM(3, 0)
    with pytest.raises(TypeError, match=r"num_layers must be an int; got float"):
        GRU(3, 4, num_layers=2.0)
    with pytest.raises(TypeError, match=r"forget_bias must be a number; got str"):
        LSTM(3, 4, forget_bias="1")


def test_copy_rejects_other_architectures():
    with pytest.raises(ValueError, match=r"torch\.nn\.LSTM does not match our LSTM: num_layers=1 \(expected 2\)"):
        copy_lstm_from_torch(LSTM(D, H, num_layers=2), torch.nn.LSTM(D, H, 1))
    with pytest.raises(ValueError, match=r"proj_size=2 \(expected 0\)"):
        copy_lstm_from_torch(LSTM(D, H), torch.nn.LSTM(D, H, proj_size=2))
    with pytest.raises(ValueError, match=r"torch\.nn\.GRU does not match our GRU: hidden_size=6 \(expected 5\)"):
        copy_gru_from_torch(GRU(D, H), torch.nn.GRU(D, 6))
    with pytest.raises(ValueError, match=r"bidirectional=True \(expected False\)"):
        copy_gru_from_torch(GRU(D, H), torch.nn.GRU(D, H, bidirectional=True))
    with pytest.raises(TypeError, match=r"theirs must be a torch\.nn\.GRU; got LSTM"):
        copy_gru_from_torch(GRU(D, H), torch.nn.LSTM(D, H))
    with pytest.raises(TypeError, match=r"ours must be a seqcourse LSTM; got GRU"):
        copy_lstm_from_torch(GRU(D, H), torch.nn.LSTM(D, H))


# ---- as cores of the output wrappers ---------------------------------------------------------

V = 7


def test_lstm_as_classifier_core(device):
    torch.manual_seed(0)
    model = Classifier(LSTM(V, H, num_layers=2), H, num_classes=3, vocab_size=V).to(device)
    ids = torch.randint(0, V, (B, T), device=device)
    logits = model(ids)
    assert logits.shape == (B, 3)
    outputs, _ = model.core(torch.nn.functional.one_hot(ids, V).float())
    torch.testing.assert_close(logits, outputs[:, -1] @ model.W_o.T + model.b_o)


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_language_model_step_equals_forward_and_samples(cls, device):
    torch.manual_seed(0)
    model = LanguageModel(cls(V, H, num_layers=2), V, hidden_size=H).to(device, F64)
    ids = torch.randint(0, V, (B, T), device=device)
    logits, _ = model(ids)
    assert logits.shape == (B, T, V)
    state, step_logits = None, []
    for ids_t in ids.unbind(1):
        out, state = model.step(ids_t, state)
        step_logits.append(out)
    torch.testing.assert_close(torch.stack(step_logits, 1), logits)
    prefix = torch.tensor([1, 2, 3])
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    sample = model.sample(prefix, 5, generator=g1)
    assert sample.shape == (8,) and torch.equal(sample[:3], prefix) and int(sample.max()) < V
    assert torch.equal(sample, model.sample(prefix, 5, generator=g2))
