"""Bidirectional against torch's bidirectional RNN/GRU/LSTM with copied weights (one layer, and a
stack of two wrappers against torch's two layers), the dependence on the future that rules out
left-to-right generation, the Tagger, and input checks."""
import pytest
import torch

from seqcourse.models.bidirectional import Bidirectional, Tagger, copy_bidirectional_from_torch
from seqcourse.models.gated import GRU, LSTM
from seqcourse.models.rnn import RNN

pytestmark = pytest.mark.usefixtures("one_thread")

B, T, D, H = 3, 7, 4, 5
F64 = torch.float64
KINDS = {"rnn": (RNN, torch.nn.RNN), "gru": (GRU, torch.nn.GRU), "lstm": (LSTM, torch.nn.LSTM)}


def _pair(kind, device, num_layers=1):
    ours_class, torch_class = KINDS[kind]
    torch.manual_seed(0)
    theirs = torch_class(D, H, num_layers, batch_first=True, bidirectional=True).to(device, F64)
    stack = []
    for layer in range(num_layers):
        size = D if layer == 0 else 2 * H
        wrapper = Bidirectional(ours_class(size, H), ours_class(size, H)).to(device, F64)
        copy_bidirectional_from_torch(wrapper, theirs, layer)
        stack.append(wrapper)
    return stack, theirs


def _split(state, kind, layer=0):
    """torch's (2L, B, H) state (pair for the LSTM), directions interleaved -> our (fw, bw) of (1, B, H)."""
    if kind == "lstm":
        h, c = state
        return ((h[2 * layer:2 * layer + 1], c[2 * layer:2 * layer + 1]),
                (h[2 * layer + 1:2 * layer + 2], c[2 * layer + 1:2 * layer + 2]))
    return state[2 * layer:2 * layer + 1], state[2 * layer + 1:2 * layer + 2]


def _assert_states_close(ours, theirs, kind):
    for a, b in zip(ours, theirs):
        if kind == "lstm":
            torch.testing.assert_close(a[0], b[0])
            torch.testing.assert_close(a[1], b[1])
        else:
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("with_state", [False, True])
def test_one_layer_matches_torch_bidirectional(kind, with_state, device):
    (ours,), theirs = _pair(kind, device)
    x = torch.randn(B, T, D, dtype=F64, device=device)
    if with_state:
        h0 = torch.randn(2, B, H, dtype=F64, device=device)
        state0 = (h0, torch.randn(2, B, H, dtype=F64, device=device)) if kind == "lstm" else h0
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out1, state1 = ours(x1, _split(state0, kind) if with_state else None)
    out2, state2 = theirs(x2, state0 if with_state else None)
    assert out1.shape == (B, T, 2 * H)
    torch.testing.assert_close(out1, out2)
    _assert_states_close(state1, _split(state2, kind), kind)
    w = torch.randn(B, T, 2 * H, dtype=F64, device=device)
    (out1 * w).sum().backward()
    (out2 * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_stack_of_two_wrappers_matches_torch_two_layers(kind, device):
    stack, theirs = _pair(kind, device, num_layers=2)
    x = torch.randn(B, T, D, dtype=F64, device=device)
    h, states = x, []
    for wrapper in stack:
        h, state = wrapper(h)
        states.append(state)
    out, state = theirs(x)
    torch.testing.assert_close(h, out)
    for layer in range(2):
        _assert_states_close(states[layer], _split(state, kind, layer), kind)


def test_output_at_step_t_depends_on_later_inputs(device):
    torch.manual_seed(0)
    bi = Bidirectional(LSTM(D, H), LSTM(D, H)).to(device)
    x = torch.randn(1, T, D, device=device)
    changed = x.clone()
    changed[:, -1] += 1.0  # change only the LAST input
    before, _ = bi(x)
    after, _ = bi(changed)
    # The forward half at t < T is untouched; the backward half changes at every step, even t = 1.
    torch.testing.assert_close(after[:, :-1, :H], before[:, :-1, :H])
    assert ((after[:, :, H:] - before[:, :, H:]).abs().amax(-1) > 1e-4).all()
    assert not hasattr(bi, "step")


def test_tagger_shapes_and_readout(device):
    torch.manual_seed(0)
    core = Bidirectional(GRU(3, H), GRU(3, H))
    tagger = Tagger(core, vocab_size=3, num_tags=4).to(device, F64)
    ids = torch.randint(0, 3, (B, T), device=device)
    logits = tagger(ids)
    assert logits.shape == (B, T, 4) and tagger.W_o.shape == (4, 2 * H)
    h, _ = core(torch.nn.functional.one_hot(ids, 3).to(F64))
    torch.testing.assert_close(logits, h @ tagger.W_o.T + tagger.b_o)
    assert Tagger(LSTM(3, H), 3, num_tags=2).W_o.shape == (2, H)


def test_tagger_reads_features_without_a_vocabulary(device):
    """vocab_size=None: the features go to the core as they are (two-hot vectors here), and a
    wrong feature size fails in the core with the expected shape."""
    torch.manual_seed(0)
    core = LSTM(5, H).to(device, F64)
    tagger = Tagger(core, None, num_tags=3).to(device, F64)
    x = torch.zeros(B, T, 5, dtype=F64, device=device)
    x[..., 0] = x[..., 3] = 1.0
    h, _ = core(x)
    torch.testing.assert_close(tagger(x), h @ tagger.W_o.T + tagger.b_o)
    with pytest.raises(ValueError, match=r"D=5"):
        tagger(torch.zeros(B, T, 4, dtype=F64, device=device))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="same \\(input_size, hidden_size\\)"):
        Bidirectional(GRU(D, H), GRU(D, H + 1))
    with pytest.raises(TypeError, match="forward_layer must be a seqcourse recurrent layer"):
        Bidirectional(torch.nn.Linear(D, H), GRU(D, H))
    bi = Bidirectional(GRU(D, H), GRU(D, H))
    with pytest.raises(ValueError, match=r"shape \(B, T, D=4\)"):
        bi(torch.randn(B, T, D + 1))
    with pytest.raises(TypeError, match="state must be a pair"):
        bi(torch.randn(B, T, D), torch.zeros(1, B, H))
    with pytest.raises(TypeError, match="bidirectional torch.nn.GRU"):
        copy_bidirectional_from_torch(bi, torch.nn.GRU(D, H, batch_first=True))
    with pytest.raises(TypeError, match="same kind"):
        copy_bidirectional_from_torch(Bidirectional(GRU(D, H), LSTM(D, H)),
                                      torch.nn.GRU(D, H, batch_first=True, bidirectional=True))
    with pytest.raises(ValueError, match="num_layers=1"):
        copy_bidirectional_from_torch(Bidirectional(GRU(D, H, num_layers=2), GRU(D, H, num_layers=2)),
                                      torch.nn.GRU(D, H, 2, batch_first=True, bidirectional=True))
    with pytest.raises(ValueError, match="layer must be <= 0"):
        copy_bidirectional_from_torch(bi, torch.nn.GRU(D, H, batch_first=True, bidirectional=True), layer=1)
    with pytest.raises(ValueError, match="core.input_size must equal vocab_size=3"):
        Tagger(bi, 3, num_tags=2)


def test_copy_checks_sizes_projection_and_direction():
    """Mismatched sizes, an LSTM projection or a one-direction module fail with a clear message,
    not inside copy_; a correct layer > 0 (input 2H) still copies."""
    theirs = torch.nn.GRU(D, H, 2, batch_first=True, bidirectional=True)
    with pytest.raises(ValueError,
                       match=r"forward layer must have \(input_size, hidden_size\) = \(4, 5\).*got \(4, 6\)"):
        copy_bidirectional_from_torch(Bidirectional(GRU(D, H + 1), GRU(D, H + 1)), theirs)
    with pytest.raises(ValueError, match=r"\(input_size, hidden_size\) = \(4, 5\).*got \(3, 5\)"):
        copy_bidirectional_from_torch(Bidirectional(GRU(D - 1, H), GRU(D - 1, H)), theirs)
    with pytest.raises(ValueError, match=r"= \(10, 5\) to hold layer 1.*2 \* hidden_size.*got \(4, 5\)"):
        copy_bidirectional_from_torch(Bidirectional(GRU(D, H), GRU(D, H)), theirs, layer=1)
    upper = Bidirectional(GRU(2 * H, H), GRU(2 * H, H))
    copy_bidirectional_from_torch(upper, theirs, layer=1)
    W_x, reference = upper.backward_layer.cells[0].W_x.detach(), theirs.weight_ih_l1_reverse.detach()
    assert W_x.shape == (3 * H, 2 * H)
    torch.testing.assert_close(W_x[:H], reference[:H])  # reset gate as is
    torch.testing.assert_close(W_x[H:2 * H], -reference[H:2 * H])  # update gate negated (text's convention)
    with pytest.raises(ValueError, match="proj_size=0.*got proj_size=2"):
        copy_bidirectional_from_torch(Bidirectional(LSTM(D, H), LSTM(D, H)),
                                      torch.nn.LSTM(D, H, batch_first=True, bidirectional=True, proj_size=2))
    with pytest.raises(TypeError, match="bidirectional torch.nn.LSTM"):
        copy_bidirectional_from_torch(Bidirectional(LSTM(D, H), LSTM(D, H)), torch.nn.LSTM(D, H, batch_first=True))
