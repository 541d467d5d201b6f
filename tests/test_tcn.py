"""Causal convolutions and the TCN: against torch.nn.Conv1d, causality by perturbation, step() and
chunked forward against forward(), the wrappers, and input checks."""
import pytest
import torch

from seqcourse.models.tcn import TCN, CausalConv1d, TCNBlock, receptive_field
from seqcourse.models.wrappers import Classifier, LanguageModel

B, T, D, H = 2, 23, 3, 4
F64 = torch.float64


def _x(device, length=T, features=D, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, length, features, generator=g, dtype=F64).to(device)


# Every layer of the family, and full stacks: (name, builder taking the input size).
LAYERS = {
    "conv k=1": lambda d: CausalConv1d(d, H, kernel_size=1),
    "conv k=2 d=1": lambda d: CausalConv1d(d, H, kernel_size=2),
    "conv k=3 d=4": lambda d: CausalConv1d(d, H, kernel_size=3, dilation=4),
    "conv k=4 d=3 no bias": lambda d: CausalConv1d(d, H, kernel_size=4, dilation=3, bias=False),
    "block c=1 (1x1 shortcut)": lambda d: TCNBlock(d, H, kernel_size=3, dilation=2, convs_per_block=1),
    "block c=2 (identity shortcut)": lambda d: TCNBlock(d, d, kernel_size=2, dilation=4, convs_per_block=2),
    "TCN k=2 L=4 c=2": lambda d: TCN(d, H, num_levels=4, kernel_size=2, convs_per_block=2),
    "TCN k=3 L=3 c=1": lambda d: TCN(d, H, num_levels=3, kernel_size=3, convs_per_block=1),
}


def _build(name, device, seed=0):
    torch.manual_seed(seed)
    return LAYERS[name](D).to(device, F64)


@pytest.mark.parametrize("kernel_size, dilation", [(1, 1), (2, 1), (3, 2), (5, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_matches_torch_conv1d(kernel_size, dilation, bias, device):
    """Independent reference: nn.Conv1d padded (k-1)d on BOTH sides, with the last (k-1)d outputs
    (the ones that saw the right padding) cut off."""
    torch.manual_seed(1)
    ours = CausalConv1d(D, H, kernel_size=kernel_size, dilation=dilation, bias=bias).to(device, F64)
    pad = (kernel_size - 1) * dilation
    theirs = torch.nn.Conv1d(D, H, kernel_size, dilation=dilation, padding=pad, bias=bias).to(device, F64)
    with torch.no_grad():
        theirs.weight.copy_(ours.weight)
        if bias:
            theirs.bias.copy_(ours.bias)
    x = _x(device)
    y, buffer = ours(x)
    expected = theirs(x.transpose(1, 2))[:, :, : x.shape[1]].transpose(1, 2)  # drop the right-padded outputs
    assert y.shape == (B, T, H) and buffer.shape == (B, pad, D)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(buffer, x[:, T - pad:])


def test_conv_taps_follow_the_equation(device):
    """y_t = b + sum_j W_j x_{t-(k-1-j)d}: a single 1 at step s shows up at s, s+d, s+2d with the
    taps in reverse order (W_{k-1} sees x_t itself)."""
    conv = CausalConv1d(1, 1, kernel_size=3, dilation=2).to(device, F64)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[10.0, 20.0, 30.0]]]))
        conv.bias.zero_()
    x = torch.zeros(1, 12, 1, dtype=F64, device=device)
    x[0, 3, 0] = 1.0
    y, _ = conv(x)
    expected = torch.zeros(12, dtype=F64, device=device)
    expected[3], expected[5], expected[7] = 30.0, 20.0, 10.0
    torch.testing.assert_close(y[0, :, 0], expected)


@pytest.mark.parametrize("name", list(LAYERS))
def test_future_inputs_never_change_past_outputs(name, device):
    model = _build(name, device)
    x = _x(device)
    y, _ = model(x)
    # Copy t of the sequences gets noise on every input after step t; all copies run as one batch.
    noise = torch.randn(T - 1, B, T, D, generator=torch.Generator().manual_seed(5), dtype=F64).to(device)
    after = torch.arange(T, device=device)[None, :] > torch.arange(T - 1, device=device)[:, None]  # (T-1, T)
    perturbed = x.unsqueeze(0) + noise * after[:, None, :, None]
    y_perturbed, _ = model(perturbed.reshape((T - 1) * B, T, D))
    y_perturbed = y_perturbed.reshape(T - 1, B, T, -1)
    for t in range(T - 1):
        assert (y_perturbed[t, :, : t + 1] - y[:, : t + 1]).abs().max() <= 1e-12, f"an output at <= {t} changed"
        # ...while the perturbation does reach the output at t + 1 (so the check can fail).
        assert (y_perturbed[t, :, t + 1] - y[:, t + 1]).abs().max() > 1e-6


@pytest.mark.parametrize("name", list(LAYERS))
def test_step_repeated_equals_forward(name, device):
    model = _build(name, device)
    x = _x(device)
    y, final_state = model(x)
    state, ys = None, []
    for x_t in x.unbind(1):
        y_t, state = model.step(x_t, state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y)
    for ours, theirs in zip(_flatten(state), _flatten(final_state), strict=True):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("name", list(LAYERS))
def test_forward_in_chunks_equals_forward(name, device):
    model = _build(name, device)
    x = _x(device)
    y, _ = model(x)
    state, pieces = None, []
    for chunk in x.split([1, 6, 9, 7], dim=1):  # chunks shorter and longer than the buffers
        y_chunk, state = model(chunk, state)
        pieces.append(y_chunk)
    torch.testing.assert_close(torch.cat(pieces, 1), y)


def _flatten(state):
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for part in state for t in _flatten(part)]


@pytest.mark.parametrize("kernel_size, num_levels, convs_per_block", [(2, 5, 1), (3, 3, 2), (1, 2, 2)])
def test_stack_dilations_and_state_size(kernel_size, num_levels, convs_per_block, device):
    model = TCN(D, H, num_levels=num_levels, kernel_size=kernel_size, convs_per_block=convs_per_block).to(device)
    assert model.dilations == tuple(2**level for level in range(num_levels))
    assert [conv.dilation for block in model.blocks for conv in block.convs] == [
        2**level for level in range(num_levels) for _ in range(convs_per_block)
    ]
    _, state = model.step(torch.zeros(B, D, device=device))
    # The buffers hold R - 1 past steps in all, whatever the stream's length.
    assert sum(buffer.shape[1] for buffer in _flatten(state)) == model.receptive_field - 1
    assert model.receptive_field == receptive_field(kernel_size, [
        2**level for level in range(num_levels) for _ in range(convs_per_block)])


def test_every_parameter_gets_a_gradient(device):
    model = TCN(D, H, num_levels=3, kernel_size=2).to(device)
    outputs, _ = model(torch.randn(B, 16, D, device=device))
    (outputs * torch.randn_like(outputs)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_classifier_and_language_model_wrap_a_tcn(device):
    torch.manual_seed(3)
    classifier = Classifier(TCN(5, H, num_levels=2), hidden_size=H, num_classes=3, vocab_size=5).to(device)
    ids = torch.randint(0, 5, (B, 9), device=device)
    assert classifier(ids).shape == (B, 3)

    lm = LanguageModel(TCN(6, H, num_levels=3, kernel_size=3), vocab_size=6, hidden_size=H).to(device, F64)
    ids = torch.randint(0, 6, (B, 11), device=device)
    logits, _ = lm(ids)
    state, stepped = None, []
    for ids_t in ids.unbind(1):
        logits_t, state = lm.step(ids_t, state)
        stepped.append(logits_t)
    torch.testing.assert_close(torch.stack(stepped, 1), logits)
    sample = lm.sample(ids[0, :3].cpu(), 5, generator=torch.Generator().manual_seed(0))
    assert sample.shape == (8,) and torch.equal(sample[:3], ids[0, :3].cpu())


def test_bad_inputs_raise_clear_errors():
    model = TCN(D, H, num_levels=2, kernel_size=3)
    with pytest.raises(ValueError, match=r"x must be a float32 tensor of shape \(B, T, D=3\).*unsqueeze\(0\)"):
        model(torch.randn(T, D))
    with pytest.raises(ValueError, match=r"D = 5 \(expected 3\)"):
        model(torch.randn(B, T, 5))
    with pytest.raises(TypeError, match=r"x must have dtype torch.float32.*got dtype torch.int64"):
        model(torch.ones(B, T, D, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one time step"):
        model(torch.randn(B, 0, D))
    with pytest.raises(ValueError, match=r"x_t must be a float32 tensor of shape \(B, D=3\)"):
        model.step(torch.randn(B, T, D))
    with pytest.raises(TypeError, match="tuple of 2 block states"):
        model(torch.randn(B, T, D), state=torch.zeros(3))
    _, state = model(torch.randn(B, T, D))
    with pytest.raises(ValueError, match=r"buffer must be .*\(B=1, \(k-1\)d=2, C_in=3\).*B = 2 \(expected 1\)"):
        model(torch.randn(1, T, D), state)  # a state from a batch of 2 for a batch of 1
    with pytest.raises(TypeError, match="tuple of 2 buffers"):
        model.step(torch.randn(B, D), (state[0][:1], state[1]))
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        CausalConv1d(D, H, kernel_size=0)
    with pytest.raises(TypeError, match="dilation must be an int"):
        CausalConv1d(D, H, kernel_size=2, dilation=1.5)
    with pytest.raises(ValueError, match="num_levels must be >= 1"):
        TCN(D, H, num_levels=0)
