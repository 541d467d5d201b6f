"""Mamba: its scans give the same block (values and gradients), and its default (the fast loop on the
CPU) gives the outputs of the readable loop it replaced; step()
repeated equals forward, and forward in chunks with the carried state equals forward on the whole;
the initialisation; the parameters really depend on the input; the wrappers; the selective-copying
task; clear errors."""
import math

import pytest
import torch

from seqcourse.models.mamba import Mamba, MambaBlock
from seqcourse.models.wrappers import Classifier, LanguageModel
from seqcourse.ops.scan import selective_scan
from seqcourse.data.tasks import BLANK, IGNORE_INDEX, selective_copy_task

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def make(device, scan="sequential", layers=2, conv_size=4, seed=0):
    torch.manual_seed(seed)
    return Mamba(5, 8, state_size=4, num_layers=layers, conv_size=conv_size, dt_min=0.01, dt_max=0.5,
                 scan=scan).double().to(device)


@pytest.mark.parametrize("T", [1, 6, 33])
def test_sequential_and_parallel_scans_give_the_same_model(device, T):
    model = make(device)
    x = torch.randn(3, T, 5, dtype=F64, device=device)
    results = []
    for scan in ("sequential", "parallel", "fast", "auto"):
        model.scan = scan
        out, (conv_state, ssm_state) = model(x)
        loss = out.sin().sum() + ssm_state.square().sum()
        results.append((out, ssm_state, torch.autograd.grad(loss, list(model.parameters()))))
    o1, s1, g1 = results[0]
    for o2, s2, g2 in results[1:]:
        torch.testing.assert_close(o1, o2, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(s1, s2, rtol=1e-10, atol=1e-12)
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_the_default_scan_keeps_mambas_float32_outputs():
    """Mamba's default changed from the readable loop to "auto" (the fast loop on the CPU): a float32
    model's outputs, last states and gradients stay those of the readable loop, to 1e-6."""
    torch.manual_seed(4)
    model = Mamba(6, 16, state_size=16, num_layers=2)
    assert model.scan == "auto" and "scan='auto'" in repr(model)
    x = torch.randn(3, 57, 6)
    results = []
    for scan in ("sequential", "auto"):
        model.scan = scan
        out, (_, ssm_state) = model(x)
        results.append((out, ssm_state, torch.autograd.grad(out.square().mean(), list(model.parameters()))))
    (o1, s1, g1), (o2, s2, g2) = results
    torch.testing.assert_close(o2, o1, rtol=0, atol=1e-6)
    torch.testing.assert_close(s2, s1, rtol=0, atol=1e-6)
    for a, b in zip(g2, g1):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scan", ["sequential", "parallel", "fast"])
@pytest.mark.parametrize("conv_size", [1, 4])
def test_step_repeated_equals_forward(device, scan, conv_size):
    model = make(device, scan, conv_size=conv_size)
    x = torch.randn(2, 17, 5, dtype=F64, device=device)
    out, (conv_state, ssm_state) = model(x)
    assert out.shape == (2, 17, 8)
    assert conv_state.shape == (2, 2, 16, conv_size - 1) and ssm_state.shape == (2, 2, 16, 4)
    state, outs = None, []
    for x_t in x.unbind(1):
        y_t, state = model.step(x_t, state)
        outs.append(y_t)
    torch.testing.assert_close(torch.stack(outs, 1), out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(state[0], conv_state)
    torch.testing.assert_close(state[1], ssm_state, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("split", [1, 2, 9])
def test_forward_in_chunks_with_the_carried_state_equals_forward(device, split):
    """The cached convolution inputs replace the zero padding across the chunk boundary (split < K
    tests a chunk shorter than the convolution)."""
    model = make(device, "parallel")
    x = torch.randn(2, 12, 5, dtype=F64, device=device)
    whole, (conv_state, ssm_state) = model(x)
    first, state = model(x[:, :split])
    second, state = model(x[:, split:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(state[1], ssm_state, rtol=1e-10, atol=1e-12)


def test_initialisation():
    torch.manual_seed(1)
    block = MambaBlock(32, state_size=6, expand=2, dt_min=0.002, dt_max=0.2)
    assert block.inner_size == 64 and block.dt_rank == math.ceil(32 / 16)
    torch.testing.assert_close(block.A, -torch.arange(1.0, 7.0).repeat(64, 1))  # S4D-Real: A_n = -(n+1)
    delta0 = torch.nn.functional.softplus(block.W_delta.bias)  # Δ for an input of zeros
    assert delta0.min() >= 0.002 * 0.999 and delta0.max() <= 0.2 * 1.001
    assert torch.all(block.D == 1)


def test_selection_returns_the_scan_inputs_and_they_depend_on_the_input():
    """selection(v) gives what forward feeds the scan; two inputs give different Δ_t, B_t, C_t
    (an LTI layer would use the same ones for every input)."""
    torch.manual_seed(2)
    block = MambaBlock(8, state_size=4).double()
    v = torch.randn(2, 7, 8, dtype=F64)
    x, delta, B, C = block.selection(v)
    assert x.shape == delta.shape == (2, 7, 16) and B.shape == C.shape == (2, 7, 4)
    y, _ = selective_scan(x, delta, block.A, B, C, block.D)
    z = block.W_in(v).chunk(2, dim=-1)[1]
    torch.testing.assert_close(block.W_out(y * torch.nn.functional.silu(z)), block(v)[0])
    for value in (delta, B, C):
        assert (value[0] - value[1]).abs().max() > 1e-4


def test_wrappers_work_with_the_mamba_core(device):
    torch.manual_seed(3)
    lm = LanguageModel(Mamba(6, 8, state_size=4), vocab_size=6, hidden_size=8).to(device)
    ids = torch.randint(0, 6, (2, 9), device=device)
    logits, state = lm(ids)
    more, _ = lm(ids[:, :4])
    rest, _ = lm(ids[:, 4:], _)
    torch.testing.assert_close(torch.cat([more, rest], 1), logits, rtol=1e-4, atol=1e-5)
    sample = lm.sample(torch.tensor([1, 2]), 5, generator=torch.Generator().manual_seed(0))
    assert sample.shape == (7,)
    classifier = Classifier(Mamba(6, 8, state_size=4), hidden_size=8, num_classes=2, vocab_size=6).to(device)
    assert classifier(ids).shape == (2, 2)


def test_selective_copy_task():
    inputs, targets = selective_copy_task(200, length=10, n_tokens=3, n_symbols=4,
                                          generator=torch.Generator().manual_seed(0))
    assert inputs.shape == targets.shape == (200, 13)
    assert torch.all(inputs[:, 10:] == 5) and torch.all(targets[:, :10] == IGNORE_INDEX)
    for row, target in zip(inputs, targets):
        symbols = row[:10][row[:10] != BLANK]
        assert torch.equal(symbols, target[10:])  # the symbols, in the order they appear
    assert set(targets[:, 10:].unique().tolist()) == {1, 2, 3, 4}
    first_positions = (inputs[:, :10] != BLANK).int().argmax(1)
    assert len(first_positions.unique()) > 4  # the positions vary from sequence to sequence
    again, _ = selective_copy_task(200, 10, 3, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, inputs)
    with pytest.raises(ValueError, match="length must be >= 3"):
        selective_copy_task(5, length=2, n_tokens=3)


def test_clear_errors():
    with pytest.raises(ValueError, match="scan must be one of"):
        Mamba(3, 4, scan="blelloch")
    model = Mamba(3, 4, state_size=2, num_layers=2)
    with pytest.raises(ValueError, match="scan must be one of"):
        model.scan = "chunked"
    with pytest.raises(ValueError, match=r"x must be a float32 tensor of shape \(B, T, D=3\).*unsqueeze\(0\)"):
        model(torch.randn(7, 3))
    with pytest.raises(ValueError, match=r"x_t must be a float32 tensor of shape \(B, D=3\)"):
        model.step(torch.randn(2, 4))
    with pytest.raises(TypeError, match="state must be the pair"):
        model(torch.randn(2, 5, 3), torch.zeros(2, 2, 8, 2))
    _, state = model(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match=r"conv_state must be a float32 tensor of shape \(B=3, E=8, K-1=3\)"):
        model(torch.randn(3, 5, 3), state)
    with pytest.raises(ValueError, match=r"conv_state must hold one entry per layer \(L=2\)"):
        model(torch.randn(2, 5, 3), (state[0][:1], state[1]))
    with pytest.raises(ValueError, match="dt_min must be <= dt_max"):
        MambaBlock(4, dt_min=0.5, dt_max=0.1)
    with pytest.raises(ValueError, match=r"v must be a float32 tensor of shape \(B, T, H=4\)"):
        MambaBlock(4)(torch.randn(2, 5, 3))
