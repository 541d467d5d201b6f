"""Classifier and LanguageModel around any core with forward() and step()."""
import pytest
import torch
from torch import nn

from seqcourse.models.rnn import RNN
from seqcourse.models.wrappers import Classifier, LanguageModel

V, H, B, T = 7, 6, 3, 5


class DecayCore(nn.Module):
    """A different core with the same protocol: h_t = 0.5 h_{t-1} + W x_t (state (B, H))."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size = input_size
        self.W = nn.Parameter(torch.randn(hidden_size, input_size))

    def step(self, x_t, state=None):
        h = x_t @ self.W.T if state is None else 0.5 * state + x_t @ self.W.T
        return h, h

    def forward(self, x, state=None):
        outputs = []
        for x_t in x.unbind(1):
            y, state = self.step(x_t, state)
            outputs.append(y)
        return torch.stack(outputs, 1), state


def _lm(device, core="rnn"):
    torch.manual_seed(0)
    core = RNN(V, H, num_layers=2) if core == "rnn" else DecayCore(V, H)
    return LanguageModel(core, V, hidden_size=H).to(device, torch.float64)


def test_classifier_on_ids_is_readout_of_last_state(device):
    torch.manual_seed(0)
    model = Classifier(RNN(V, H), H, num_classes=3, vocab_size=V).to(device)
    ids = torch.randint(0, V, (B, T), device=device)
    logits = model(ids)
    assert logits.shape == (B, 3)
    x = nn.functional.one_hot(ids, V).float()
    outputs, _ = model.core(x)
    torch.testing.assert_close(logits, outputs[:, -1] @ model.W_o.T + model.b_o)


def test_classifier_on_features(device):
    torch.manual_seed(0)
    model = Classifier(RNN(4, H), H, num_classes=2).to(device)
    x = torch.randn(B, T, 4, device=device)
    outputs, _ = model.core(x)
    torch.testing.assert_close(model(x), outputs[:, -1] @ model.W_o.T + model.b_o)


def test_classifier_checks():
    with pytest.raises(ValueError, match=r"core\.input_size is 5, but one-hot input with vocab_size=7 needs input_size=7"):
        Classifier(RNN(5, H), H, num_classes=2, vocab_size=7)
    model = Classifier(RNN(V, H), H, num_classes=2, vocab_size=V)
    with pytest.raises(ValueError, match=r"token ids in \[0, 6\] \(vocab_size=7\); got values from 0 to 9"):
        model(torch.tensor([[0, 9]]))
    with pytest.raises(TypeError, match=r"ids must be a long \(torch\.int64\) tensor.*got dtype torch\.float32.*ids\.long\(\)"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"ids must be a long tensor of shape \(B, T\); got shape \(4,\).*unsqueeze\(0\)"):
        model(torch.zeros(4, dtype=torch.long))
    wrong_h = Classifier(RNN(V, H), H + 1, num_classes=2, vocab_size=V)
    with pytest.raises(ValueError, match=r"states of size 6, but this layer was built with hidden_size=7"):
        wrong_h(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(TypeError, match=r"core must be a torch\.nn\.Module with forward.*step"):
        Classifier(nn.Linear(V, H), H, num_classes=2)


@pytest.mark.parametrize("core", ["rnn", "decay"])
def test_lm_step_logits_equal_forward_logits(core, device):
    model = _lm(device, core)
    ids = torch.randint(0, V, (B, T), device=device)
    logits, state = model(ids)
    assert logits.shape == (B, T, V)
    step_state, step_logits = None, []
    for ids_t in ids.unbind(1):
        out, step_state = model.step(ids_t, step_state)
        step_logits.append(out)
    torch.testing.assert_close(torch.stack(step_logits, 1), logits)
    torch.testing.assert_close(step_state, state)


@pytest.mark.parametrize("core", ["rnn", "decay"])
def test_sample_draws_from_forward_logits(core, device):
    """Independent reference: rescore the whole sequence with forward() before every draw."""
    model = _lm(device, core)
    prefix = torch.tensor([1, 4, 2])
    temperature = 0.8
    got = model.sample(prefix, 8, temperature=temperature, generator=torch.Generator().manual_seed(3))
    assert got.shape == (11,) and got.dtype == torch.long and torch.equal(got[:3], prefix)

    g = torch.Generator().manual_seed(3)
    seq = prefix.clone()
    with torch.no_grad():
        for _ in range(8):
            logits, _ = model(seq.to(device).unsqueeze(0))
            probs = torch.softmax(logits[0, -1].double() / temperature, -1).cpu()
            seq = torch.cat([seq, torch.multinomial(probs, 1, generator=g)])
    assert torch.equal(got, seq)


def test_sample_is_deterministic_given_a_generator_and_varies_with_it(device):
    model = _lm(device)
    prefix = torch.tensor([0])
    a = model.sample(prefix, 30, generator=torch.Generator().manual_seed(1))
    b = model.sample(prefix, 30, generator=torch.Generator().manual_seed(1))
    c = model.sample(prefix, 30, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_low_temperature_is_greedy(device):
    model = _lm(device)
    prefix = torch.tensor([3, 3])
    greedy = model.sample(prefix, 10, temperature=0.0)
    cold = model.sample(prefix, 10, temperature=1e-6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(greedy, cold)
    seq = prefix.clone()
    with torch.no_grad():
        for _ in range(10):
            logits, _ = model(seq.to(device).unsqueeze(0))
            seq = torch.cat([seq, logits[0, -1].argmax().view(1).cpu()])
    assert torch.equal(greedy, seq)


def test_sample_uses_step_not_forward(monkeypatch):
    model = _lm("cpu")

    def no_forward(*args, **kwargs):
        raise AssertionError("sample() must not rescore the sequence with core.forward")

    monkeypatch.setattr(model.core, "forward", no_forward)
    out = model.sample(torch.tensor([1, 2]), 5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (7,)


def test_sample_checks():
    model = _lm("cpu")
    with pytest.raises(ValueError, match=r"prefix must hold at least one token"):
        model.sample(torch.tensor([], dtype=torch.long), 3)
    with pytest.raises(ValueError, match=r"temperature must be >= 0"):
        model.sample(torch.tensor([1]), 3, temperature=-1.0)
    with pytest.raises(ValueError, match=r"prefix must be a long tensor of shape \(T\); got shape \(1, 2\)"):
        model.sample(torch.tensor([[1, 2]]), 3)
    assert torch.equal(model.sample(torch.tensor([5, 1]), 0), torch.tensor([5, 1]))


def test_lm_is_trainable_end_to_end():
    """Gradients reach the core through the one-hot input and the readout."""
    model = _lm("cpu")
    ids = torch.randint(0, V, (B, T))
    logits, _ = model(ids[:, :-1])
    nn.functional.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
