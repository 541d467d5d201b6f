"""Long-context attention: the banded sliding window against full attention masked to the band,
Transformer-XL's memory against attention over the concatenated context (and its stopped gradient),
linear attention's parallel form against its recurrent form and the defining sum, and the
LinearTransformer core's step() in constant memory."""
import math

import pytest
import torch

from seqcourse.models.attention import scaled_dot_product_attention, sliding_window_mask
from seqcourse.models.long_context import (
    LinearAttention,
    LinearTransformer,
    TransformerXL,
    elu_feature_map,
    sliding_window_attention,
)
from seqcourse.models.transformer import Transformer
from seqcourse.models.wrappers import LanguageModel

pytestmark = pytest.mark.usefixtures("one_thread")

B, D, H, NH = 2, 5, 8, 2
F64 = torch.float64


@pytest.mark.parametrize("window", [1, 3, 9, 20])
def test_sliding_window_equals_full_attention_masked_to_the_band(window, device):
    torch.manual_seed(0)
    T = 9
    q, k, v = (torch.randn(B, NH, T, 4, dtype=F64, device=device, requires_grad=True) for _ in range(3))
    band = sliding_window_attention(q, k, v, window)
    full, _ = scaled_dot_product_attention(q, k, v, sliding_window_mask(T, window, device=device))
    torch.testing.assert_close(band, full)
    g = torch.randn_like(band)
    for a, b in zip(torch.autograd.grad(band, (q, k, v), g), torch.autograd.grad(full, (q, k, v), g)):
        torch.testing.assert_close(a, b)
    if window == 1:  # each query sees only itself, so the output is its own value
        torch.testing.assert_close(band, v)


def _xl_and_full(device, num_layers, mem_len, norm="pre"):
    torch.manual_seed(1)
    xl = TransformerXL(D, H, num_layers=num_layers, n_heads=NH, mem_len=mem_len, norm=norm).to(device, F64)
    full = Transformer(D, H, num_layers=num_layers, n_heads=NH, norm=norm).to(device, F64)
    full.load_state_dict(xl.state_dict())
    return xl, full


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_xl_within_memory_reach_equals_full_context(norm, device):
    # two segments of S, memory of S: the second segment sees everything before it, in every block
    S = 4
    xl, full = _xl_and_full(device, num_layers=2, mem_len=S, norm=norm)
    x = torch.randn(B, 2 * S, D, dtype=F64, device=device)
    y1, state = xl(x[:, :S])
    y2, state = xl(x[:, S:], state)
    expected, _ = full(x)
    torch.testing.assert_close(torch.cat([y1, y2], 1), expected)
    memory, t = state
    assert t == 2 * S and len(memory) == 2 and memory[0].shape == (B, S, H)


def test_xl_beyond_reach_equals_attention_masked_to_the_memory(device):
    # one block, segments of S = 3 and a memory of M = 2: a query in a segment starting at s sees
    # keys s - M .. t, which is full attention with that mask over the concatenated input
    S, M, n = 3, 2, 3
    xl, _ = _xl_and_full(device, num_layers=1, mem_len=M)
    x = torch.randn(B, n * S, D, dtype=F64, device=device)
    state, outs = None, []
    for seg in x.split(S, dim=1):
        y, state = xl(seg, state)
        outs.append(y)
    i = torch.arange(n * S, device=device).unsqueeze(1)
    j = torch.arange(n * S, device=device).unsqueeze(0)
    mask = (j <= i) & (j >= (i // S) * S - M)
    with torch.no_grad():
        expected = xl.ln_f(xl.blocks[0](xl.embed(x, 0), mask))
    torch.testing.assert_close(torch.cat(outs, 1), expected)
    # and token-by-token steps with memory M are a sliding window of M + 1
    state, steps = None, []
    for x_t in x.unbind(1):
        y_t, state = xl.step(x_t, state)
        steps.append(y_t)
        assert state[0][0].shape[1] <= M
    with torch.no_grad():
        window = xl.ln_f(xl.blocks[0](xl.embed(x, 0), sliding_window_mask(n * S, M + 1, device=device)))
    torch.testing.assert_close(torch.stack(steps, 1), window)


def test_xl_gradient_stops_at_the_memory(device):
    S = 4
    xl, _ = _xl_and_full(device, num_layers=2, mem_len=S)
    x1 = torch.randn(B, S, D, dtype=F64, device=device, requires_grad=True)
    x2 = torch.randn(B, S, D, dtype=F64, device=device, requires_grad=True)
    _, state = xl(x1)
    assert all(not m.requires_grad for m in state[0])
    y2, _ = xl(x2, state)
    w = torch.randn_like(y2)
    g1, g2 = torch.autograd.grad((y2 * w).sum(), (x1, x2), allow_unused=True)
    assert g1 is None  # no path back into the previous segment
    assert g2.abs().sum() > 0
    assert xl.blocks[0].attn.W_qkv.requires_grad
    # ... although the forward pass does read the memory
    _, other = xl(x1 + 1.0)
    y2_other, _ = xl(x2, other)
    assert not torch.allclose(y2, y2_other)


def _linear_by_definition(fq, fk, v, eps):
    """out_t = sum_{j<=t} (phi(q_t) . phi(k_j)) v_j / (sum_{j<=t} phi(q_t) . phi(k_j) + eps), by loops."""
    T = fq.shape[-2]
    outs = []
    for t in range(T):
        sims = [(fq[..., t, :] * fk[..., j, :]).sum(-1, keepdim=True) for j in range(t + 1)]  # each (..., 1)
        num = sum(s * v[..., j, :] for j, s in enumerate(sims))
        outs.append(num / (sum(sims) + eps))
    return torch.stack(outs, dim=-2)


def test_linear_attention_forms_agree_with_the_definition(device):
    torch.manual_seed(2)
    T = 7
    att = LinearAttention(H, NH).to(device, F64)
    with torch.no_grad():
        att.b_qkv.normal_()
    x = torch.randn(B, T, H, dtype=F64, device=device)
    y_rec, (S_rec, z_rec) = att(x, form="recurrent")
    for chunk_size in (1, 3, T, 100):
        y_par, (S_par, z_par) = att(x, form="parallel", chunk_size=chunk_size)
        torch.testing.assert_close(y_par, y_rec)
        torch.testing.assert_close(S_par, S_rec)
        torch.testing.assert_close(z_par, z_rec)
    # the definition, from the same projections
    q, k, v = torch.nn.functional.linear(x, att.W_qkv, att.b_qkv).split(H, dim=-1)
    heads = [t.view(B, T, NH, H // NH).transpose(1, 2) for t in (q, k, v)]
    o = _linear_by_definition(elu_feature_map(heads[0]), elu_feature_map(heads[1]), heads[2], att.eps)
    expected = torch.nn.functional.linear(o.transpose(1, 2).reshape(B, T, H), att.W_o, att.b_o)
    torch.testing.assert_close(y_rec, expected)
    # continuing from a state equals running the whole sequence
    first, st = att(x[:, :3])
    rest, _ = att(x[:, 3:], st, chunk_size=2)
    torch.testing.assert_close(torch.cat([first, rest], 1), y_rec)


def test_linear_attention_feature_map_is_positive_and_gradients_agree(device):
    assert elu_feature_map(torch.tensor([-10.0, -1.0, 0.0, 2.0])).min() > 0
    assert elu_feature_map(torch.tensor([0.0, 2.0])).tolist() == [1.0, 3.0]
    torch.testing.assert_close(elu_feature_map(torch.tensor([-1.0])), torch.tensor([math.exp(-1)]))
    torch.manual_seed(3)
    att = LinearAttention(H, NH).to(device, F64)
    x = torch.randn(B, 6, H, dtype=F64, device=device)
    w = torch.randn(B, 6, H, dtype=F64, device=device)
    grads = []
    for form in ("recurrent", "parallel"):
        att.zero_grad()
        (att(x, form=form, chunk_size=4)[0] * w).sum().backward()
        grads.append(att.W_qkv.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_linear_step_state_size_does_not_depend_on_position(device):
    torch.manual_seed(4)
    att = LinearAttention(H, NH).to(device, F64)
    x = torch.randn(B, 12, H, dtype=F64, device=device)
    full, _ = att(x)
    state, sizes, steps = None, set(), []
    for x_t in x.unbind(1):
        y_t, state = att.step(x_t, state)
        steps.append(y_t)
        sizes.add(sum(s.numel() for s in state))
    torch.testing.assert_close(torch.stack(steps, 1), full)
    assert sizes == {B * NH * (H // NH) ** 2 + B * NH * (H // NH)}


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_linear_transformer_step_equals_forward_in_constant_memory(norm, device):
    torch.manual_seed(5)
    model = LinearTransformer(D, H, num_layers=2, n_heads=NH, norm=norm, chunk_size=4).to(device, F64)
    x = torch.randn(B, 10, D, dtype=F64, device=device)
    full, (states, t) = model(x)
    assert full.shape == (B, 10, H) and t == 10
    state, steps, sizes = None, [], set()
    for x_t in x.unbind(1):
        y_t, state = model.step(x_t, state)
        steps.append(y_t)
        sizes.add(sum(s.numel() for layer in state[0] for s in layer))
    torch.testing.assert_close(torch.stack(steps, 1), full)
    assert len(sizes) == 1
    model.form = "recurrent"
    torch.testing.assert_close(model(x)[0], full)
    # causal: a change at position 6 leaves positions 0..5 alone
    x2 = x.clone()
    x2[:, 6] += 1.0
    y2, _ = model(x2)
    torch.testing.assert_close(y2[:, :6], full[:, :6])
    assert not torch.allclose(y2[:, 6:], full[:, 6:])


def test_linear_transformer_as_a_language_model(device):
    V = 6
    torch.manual_seed(6)
    lm = LanguageModel(LinearTransformer(V, H, num_layers=1, n_heads=NH), V, hidden_size=H).to(device, F64)
    ids = torch.randint(0, V, (B, 7), device=device)
    logits, _ = lm(ids)
    state, step_logits = None, []
    for t in range(7):
        lt, state = lm.step(ids[:, t], state)
        step_logits.append(lt)
    torch.testing.assert_close(torch.stack(step_logits, 1), logits)
    assert lm.sample(ids[0, :2], 4, temperature=0.0).shape == (6,)


def test_long_context_errors():
    q = torch.randn(1, 5, 4)
    with pytest.raises(ValueError, match="as many keys as queries"):
        sliding_window_attention(q, torch.randn(1, 6, 4), torch.randn(1, 6, 4), 2)
    with pytest.raises(ValueError, match="window must be >= 1"):
        sliding_window_attention(q, q, q, 0)
    att = LinearAttention(H, NH)
    with pytest.raises(ValueError, match="form must be one of"):
        att(torch.randn(1, 3, H), form="fft")
    with pytest.raises(ValueError, match=r"\(B, T, H=8\)"):
        att(torch.randn(1, 3, H + 1))
    with pytest.raises(ValueError, match="hs=4"):
        att(torch.randn(1, 3, H), (torch.zeros(1, NH, 3, 4), torch.zeros(1, NH, 4)))
    xl = TransformerXL(D, H, num_layers=2, n_heads=NH, mem_len=3)
    with pytest.raises(TypeError, match="num_layers=2"):
        xl(torch.randn(1, 3, D), ((torch.zeros(1, 3, H),), 3))
    with pytest.raises(ValueError, match=r"\(B, S, D=5\)"):
        xl(torch.randn(1, 3, D + 1))
    lt = LinearTransformer(D, H, num_layers=2, n_heads=NH)
    with pytest.raises(TypeError, match="num_layers=2"):
        lt(torch.randn(1, 3, D), ((), 0))


def test_empty_sequence_and_xl_memory_checks():
    empty = torch.randn(1, 0, 4)
    with pytest.raises(ValueError, match=r"at least one position \(T_k >= 1\)"):
        sliding_window_attention(empty, empty, empty, 2)
    torch.manual_seed(0)
    xl = TransformerXL(D, H, num_layers=2, n_heads=NH, mem_len=3)
    x = torch.randn(2, 4, D)
    _, (memory, t) = xl(x)
    assert t == 4 and [m.shape for m in memory] == [(2, 3, H)] * 2
    assert xl(x, (memory, t))[0].shape == (2, 4, H)
    too_long = (torch.zeros(2, 4, H), memory[1])
    with pytest.raises(ValueError, match=r"memory\[0\] must hold 1 <= M <= mem_len=3 positions; got shape \(2, 4, 8\)"):
        xl(x, (too_long, 8))
    with pytest.raises(ValueError, match=r"memory\[1\] must hold 1 <= M <= mem_len=3 positions; got shape \(2, 0, 8\)"):
        xl(x, ((memory[0], torch.zeros(2, 0, H)), t))
    with pytest.raises(ValueError, match=r"memory\[0\] must be a float32 tensor of shape \(B=1, M, H=8\)"):
        xl(x[:1], (memory, t))
    with pytest.raises(ValueError, match=r"memory\[0\] holds M=3 positions, more than the t=2 seen so far"):
        xl(x, (memory, 2))
    with pytest.raises(NotImplementedError, match="would ignore the segment memory"):
        xl.attention_weights(x)
    assert "mem_len=3" in repr(xl) and "max_len" not in repr(xl)
    assert "max_len=1024" in repr(Transformer(D, H, num_layers=1, n_heads=NH))
