"""The Transformer: positions, the pre/post-norm switch tied to its equations, causality, KV-cache
generation against full recomputation, and use as a core inside the wrappers."""
import math

import pytest
import torch

from seqcourse.models.attention import causal_mask
from seqcourse.models.norm import LayerNorm
from seqcourse.models.transformer import Block, Transformer, sinusoidal_positions
from seqcourse.models.wrappers import Classifier, LanguageModel

pytestmark = pytest.mark.usefixtures("one_thread")

B, T, D, H, NH = 2, 6, 5, 8, 2
F64 = torch.float64


def test_sinusoidal_positions_by_hand():
    P = sinusoidal_positions(3, 4, dtype=F64)
    assert P.shape == (3, 4)
    # position 0: sin 0 = 0, cos 0 = 1
    assert P[0].tolist() == [0.0, 1.0, 0.0, 1.0]
    # position 2: angles 2 / 10000^(0/4) = 2 and 2 / 10000^(2/4) = 0.02
    expected = [math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)]
    torch.testing.assert_close(P[2], torch.tensor(expected, dtype=F64))
    torch.testing.assert_close(sinusoidal_positions(2, 4, start=1, dtype=F64), P[1:])
    assert sinusoidal_positions(4, 5).shape == (4, 5)  # odd width: the last sine column is kept


def _block(norm, device):
    torch.manual_seed(0)
    block = Block(H, NH, norm=norm).to(device, F64)
    with torch.no_grad():  # make the LayerNorms' affine parameters matter
        for ln in (block.ln_1, block.ln_2):
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.normal_()
    return block


def test_pre_norm_computes_x_plus_F_of_LN_x(device):
    block = _block("pre", device)
    x = torch.randn(B, T, H, dtype=F64, device=device)
    mask = causal_mask(T, device=device)

    def A(h):
        return block.attn(h, mask=mask)[0]

    h = x + A(block.ln_1(x))
    expected = h + block.mlp(block.ln_2(h))
    torch.testing.assert_close(block(x, mask), expected)


def test_post_norm_computes_LN_of_x_plus_F_x(device):
    block = _block("post", device)
    x = torch.randn(B, T, H, dtype=F64, device=device)
    mask = causal_mask(T, device=device)
    h = block.ln_1(x + block.attn(x, mask=mask)[0])
    expected = block.ln_2(h + block.mlp(h))
    y = block(x, mask)
    torch.testing.assert_close(y, expected)
    # a post-norm block's output is a LayerNorm's: with weight 1 and bias 0 each position has
    # mean 0 and variance 1, which a pre-norm block's output does not
    for ln in (block.ln_1, block.ln_2):
        with torch.no_grad():
            ln.weight.fill_(1.0)
            ln.bias.zero_()
    y = block(x, mask)
    torch.testing.assert_close(y.mean(-1), torch.zeros(B, T, dtype=F64, device=device))
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(B, T, dtype=F64, device=device), atol=1e-4, rtol=0)
    pre = Block(H, NH, norm="pre").to(device, F64)
    pre.load_state_dict(block.state_dict())  # same parameters, other wiring
    y_pre = pre(x * 3, mask)
    assert (y_pre.var(-1, unbiased=False) - 1).abs().max() > 0.1


def test_block_uses_our_layernorm_and_validates():
    block = Block(H, NH)
    assert isinstance(block.ln_1, LayerNorm) and isinstance(block.ln_2, LayerNorm)
    assert block.d_ff == 4 * H
    with pytest.raises(ValueError, match="norm must be one of"):
        Block(H, NH, norm="sandwich")
    with pytest.raises(ValueError, match=r"\(B, T, H=8\)"):
        block(torch.randn(B, T, H + 1))


def _transformer(device, norm="pre", positions="sinusoidal", num_layers=2):
    torch.manual_seed(1)
    return Transformer(D, H, num_layers, NH, max_len=32, norm=norm, positions=positions).to(device, F64)


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_kv_cache_generation_equals_full_recomputation(norm, positions, device):
    model = _transformer(device, norm, positions)
    x = torch.randn(B, T, D, dtype=F64, device=device)
    full, cache = model(x)
    assert full.shape == (B, T, H)
    assert len(cache) == 2 and cache[0][0].shape == (B, NH, T, H // NH)
    state, steps = None, []
    for x_t in x.unbind(1):
        y_t, state = model.step(x_t, state)
        steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, 1), full)
    for (k1, v1), (k2, v2) in zip(state, cache):
        torch.testing.assert_close(k1, k2)
        torch.testing.assert_close(v1, v2)
    # a prefix, then the rest as one chunk continuing the cache
    first, c = model(x[:, :4])
    rest, _ = model(x[:, 4:], c)
    torch.testing.assert_close(torch.cat([first, rest], 1), full)


def test_readable_and_fast_attention_give_the_same_model(device):
    model = _transformer(device)
    x = torch.randn(B, T, D, dtype=F64, device=device)
    fast, _ = model(x)
    model.fast = False
    slow, _ = model(x)
    torch.testing.assert_close(fast, slow)
    weights = model.attention_weights(x)
    assert len(weights) == 2 and weights[0].shape == (B, NH, T, T)
    upper = ~causal_mask(T, device=device)
    assert torch.all(weights[1][..., upper] == 0.0)


def test_outputs_are_causal(device):
    model = _transformer(device)
    x = torch.randn(B, T, D, dtype=F64, device=device)
    x2 = x.clone()
    x2[:, 3] += 1.0
    y1, _ = model(x)
    y2, _ = model(x2)
    torch.testing.assert_close(y1[:, :3], y2[:, :3])
    assert (y1[:, 3:] - y2[:, 3:]).abs().min() > 0  # every later position sees the change


def test_gradient_path_to_the_first_input_does_not_shrink_with_distance(device):
    # the last output reaches x_0 through one attention step, whatever T is
    model = _transformer(device)
    x = torch.randn(1, 24, D, dtype=F64, device=device, requires_grad=True)
    y, _ = model(x)
    w = torch.randn(H, dtype=F64, device=device)  # not .sum(): a LayerNorm's outputs sum to a constant
    (g,) = torch.autograd.grad(y[0, -1] @ w, x)
    assert g[0, 0].norm() > 1e-3 * g[0, -1].norm()


def test_language_model_and_classifier_use_it_as_a_core(device):
    V = 7
    torch.manual_seed(2)
    lm = LanguageModel(Transformer(V, H, 2, NH, max_len=20), V, H).to(device, F64)
    ids = torch.randint(0, V, (B, T), device=device)
    logits, cache = lm(ids)
    assert logits.shape == (B, T, V)
    state, step_logits = None, []
    for t in range(T):
        lt, state = lm.step(ids[:, t], state)
        step_logits.append(lt)
    torch.testing.assert_close(torch.stack(step_logits, 1), logits)
    out = lm.sample(ids[0, :3], 5, temperature=0.0)
    assert out.shape == (8,) and torch.equal(out[:3], ids[0, :3])
    # greedy sampling continues with the argmax of full recomputation
    full, _ = lm(out[:-1].unsqueeze(0))
    assert torch.equal(full[0, 2:].argmax(-1), out[3:])
    clf = Classifier(Transformer(V, H, 1, NH), H, 3, vocab_size=V).to(device, F64)
    assert clf(ids).shape == (B, 3)


def test_transformer_errors():
    model = Transformer(D, H, 2, NH, max_len=8, positions="learned")
    with pytest.raises(ValueError, match="max_len=8"):
        model(torch.randn(1, 9, D))
    _, cache = model(torch.randn(1, 6, D))
    with pytest.raises(ValueError, match="max_len=8"):
        model(torch.randn(1, 3, D), cache)
    with pytest.raises(ValueError, match=r"\(B, T, D=5\)"):
        model(torch.randn(1, 3, D + 1))
    with pytest.raises(TypeError, match="num_layers=2 pairs"):
        model(torch.randn(1, 2, D), cache[:1])
    with pytest.raises(ValueError, match="B=2"):
        model(torch.randn(2, 2, D), cache)
    with pytest.raises(ValueError, match="positions must be one of"):
        Transformer(D, H, 1, NH, positions="rotary")
    with pytest.raises(ValueError, match="divisible"):
        Transformer(D, H, 1, 3)
