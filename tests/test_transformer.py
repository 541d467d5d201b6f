"""The Transformer: positions (sinusoidal, learned, rotary), the pre/post-norm switch tied to its
equations, causality, KV-cache generation against full recomputation, and use as a core inside the
wrappers; the default positions leave the model exactly as it was before rotary ones existed."""
import math

import pytest
import torch
import torch.nn.functional as F

from seqcourse.models.attention import causal_mask
from seqcourse.models.long_context import LinearTransformer, TransformerXL
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
    # odd width: the columns are those of the next even width, minus its last cosine
    P5 = sinusoidal_positions(4, 5, dtype=F64)
    assert P5.shape == (4, 5)
    t = torch.arange(4, dtype=F64)
    torch.testing.assert_close(P5[:, 4], torch.sin(t / 10000 ** (4 / 5)))
    torch.testing.assert_close(P5[:, 3], torch.cos(t / 10000 ** (2 / 5)))
    assert not torch.allclose(P5[:, :4], sinusoidal_positions(4, 4, dtype=F64))  # the rates use d = 5
    # T = 0: an empty table of the right width (what a slice P[start:start + 0] would give)
    assert sinusoidal_positions(0, 5).shape == (0, 5)
    assert sinusoidal_positions(0, 4, start=7).shape == (0, 4)
    with pytest.raises(ValueError, match="T must be >= 0"):
        sinusoidal_positions(-1, 4)


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
    return Transformer(D, H, num_layers=num_layers, n_heads=NH, max_len=32, norm=norm, positions=positions).to(device, F64)


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("positions", ["sinusoidal", "learned", "rotary"])
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


@pytest.mark.parametrize("positions", ["sinusoidal", "rotary"])
def test_outputs_are_causal(positions, device):
    model = _transformer(device, positions=positions)
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
    lm = LanguageModel(Transformer(V, H, num_layers=2, n_heads=NH, max_len=20), V, hidden_size=H).to(device, F64)
    ids = torch.randint(0, V, (B, T), device=device)
    logits, cache = lm(ids)
    assert logits.shape == (B, T, V)
    assert len(cache) == 2 and cache[0][0].shape == (B, NH, T, H // NH)  # the core's KV cache
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
    clf = Classifier(Transformer(V, H, num_layers=1, n_heads=NH), H, num_classes=3, vocab_size=V).to(device, F64)
    scores = clf(ids)
    assert scores.shape == (B, 3)
    # the readout of the core's last output, with the ids one-hot encoded
    h, _ = clf.core(torch.nn.functional.one_hot(ids, V).to(F64))
    torch.testing.assert_close(scores, h[:, -1] @ clf.W_o.T + clf.b_o)
    # and only the last output: changing the first token changes the scores (causal attention reaches it)
    ids2 = ids.clone()
    ids2[:, 0] = (ids2[:, 0] + 1) % V
    assert (clf(ids2) - scores).abs().max() > 1e-6


def test_transformer_errors():
    model = Transformer(D, H, num_layers=2, n_heads=NH, max_len=8, positions="learned")
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
        Transformer(D, H, num_layers=1, n_heads=NH, positions="relative")
    with pytest.raises(ValueError, match="head size hidden_size / n_heads must be even"):
        Transformer(D, 6, num_layers=1, n_heads=2, positions="rotary")
    with pytest.raises(ValueError, match="divisible"):
        Transformer(D, H, num_layers=1, n_heads=3)


@pytest.mark.parametrize("model", [Transformer, TransformerXL, LinearTransformer])
def test_a_bad_size_names_the_argument_the_user_gave_the_model(model):
    """A stack checks its sizes where they enter, under its own names: its width is hidden_size,
    which its blocks call d_model; the error must not name an argument the user never passed."""
    options = {"mem_len": 4} if model is TransformerXL else {}
    with pytest.raises(ValueError, match=r"^hidden_size must be divisible by n_heads; got hidden_size=10, n_heads=4$"):
        model(D, 10, num_layers=1, n_heads=4, **options)
    with pytest.raises(ValueError, match=r"^hidden_size must be >= 1; got 0$"):
        model(D, 0, num_layers=1, n_heads=4, **options)
    with pytest.raises(ValueError, match=r"^d_model must be divisible by n_heads; got d_model=10, n_heads=4$"):
        Block(10, 4)  # a block built directly checks its own arguments, under its own names


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("causal", [False, True])
def test_block_equals_torch_transformer_encoder_layer(norm, causal, device):
    """An independent reference for the whole block: torch.nn.TransformerEncoderLayer with the same
    wiring (norm_first for pre-norm), exact GELU, d_ff = 4H, LayerNorm eps 1e-5, dropout 0 and our
    weights copied in. Outputs and the gradients of x and of every parameter agree in float64.
    torch's mask is the opposite convention (True = may NOT attend), hence ~causal_mask."""
    torch.manual_seed(3)
    block = _block(norm, device)
    theirs = torch.nn.TransformerEncoderLayer(H, NH, dim_feedforward=block.d_ff, dropout=0.0, activation="gelu",
                                              batch_first=True, norm_first=(norm == "pre")).to(device, F64)
    assert theirs.norm1.eps == block.ln_1.eps == 1e-5 and block.mlp[1].approximate == "none"
    pairs = [(theirs.self_attn.in_proj_weight, block.attn.W_qkv), (theirs.self_attn.in_proj_bias, block.attn.b_qkv),
             (theirs.self_attn.out_proj.weight, block.attn.W_o), (theirs.self_attn.out_proj.bias, block.attn.b_o),
             (theirs.linear1.weight, block.mlp[0].weight), (theirs.linear1.bias, block.mlp[0].bias),
             (theirs.linear2.weight, block.mlp[2].weight), (theirs.linear2.bias, block.mlp[2].bias),
             (theirs.norm1.weight, block.ln_1.weight), (theirs.norm1.bias, block.ln_1.bias),
             (theirs.norm2.weight, block.ln_2.weight), (theirs.norm2.bias, block.ln_2.bias)]
    assert len(pairs) == len(list(block.parameters())) == len(list(theirs.parameters()))
    with torch.no_grad():
        for t, o in pairs:
            t.copy_(o)
    x = torch.randn(B, T, H, dtype=F64, device=device)
    mask = causal_mask(T, device=device) if causal else None
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours = block(x1, mask)
    y_theirs = theirs(x2, src_mask=None if mask is None else ~mask, is_causal=causal)
    torch.testing.assert_close(y_ours, y_theirs)
    w = torch.randn(B, T, H, dtype=F64, device=device)
    (y_ours * w).sum().backward()
    (y_theirs * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    for t, o in pairs:
        torch.testing.assert_close(o.grad, t.grad)
    if causal:  # the mask matters: without it the outputs differ
        assert (block(x) - y_ours).abs().max() > 1e-3


def test_forward_cached_checks_the_cache(device):
    block = _block("pre", device)
    x = torch.randn(B, T, H, dtype=F64, device=device)
    y, (k, v), _ = block.forward_cached(x[:, :4])
    y2, _, _ = block.forward_cached(x[:, 4:], (k, v))
    torch.testing.assert_close(torch.cat([y, y2], 1), block(x, causal_mask(T, device=device)))
    with pytest.raises(TypeError, match=r"past must be a pair \(k, v\), each \(B=2, nh=2, T_past, hs=4\)"):
        block.forward_cached(x, k)
    with pytest.raises(ValueError, match=r"past k must be a float64 tensor of shape \(B=2, nh=2, T_past, hs=4\)"):
        block.forward_cached(x, (k[:1], v))
    with pytest.raises(ValueError, match=r"past v must be .*hs=4"):
        block.forward_cached(x, (k, v[..., :3]))
    with pytest.raises(ValueError, match="same number of positions T_past; got 4 and 3"):
        block.forward_cached(x, (k, v[:, :, :3]))
    with pytest.raises(TypeError, match="past k must have dtype torch.float64"):
        block.forward_cached(x, (k.float(), v))


def test_rotary_transformer_puts_positions_in_attention_only(device):
    """positions="rotary": no parameter and nothing added to the input; every block's attention
    rotates q and k (block by block, the same as the rotary layer applied by hand)."""
    model = _transformer(device, positions="rotary")
    plain = _transformer(device)
    assert list(model.state_dict()) == list(plain.state_dict())
    assert all(block.attn.rotary for block in model.blocks) and not any(b.attn.rotary for b in plain.blocks)
    x = torch.randn(B, T, D, dtype=F64, device=device)
    assert torch.equal(model.embed(x, 3), model.W_in(x))
    h = model.W_in(x)
    for block in model.blocks:
        a, _ = block.attn(block.ln_1(h), causal=True)
        h = h + a
        h = h + block.mlp(block.ln_2(h))
    torch.testing.assert_close(model(x)[0], model.ln_f(h))
    # a block's keys for positions 3, 4, ...: what its cache holds there
    block = model.blocks[0]
    _, (k_cached, v_cached), _ = block.forward_cached(h[:, :T])
    k3, v3 = block.kv(h[:, 3:T], start=3)
    torch.testing.assert_close(k3, k_cached[:, :, 3:])
    torch.testing.assert_close(v3, v_cached[:, :, 3:])
    assert (block.kv(h[:, 3:T])[0] - k3).abs().max() > 1e-3  # at positions 0, 1, ... instead
    # a model with rotary positions and one with sinusoids, same weights: different functions
    plain.load_state_dict(model.state_dict())
    assert (plain(x)[0] - model(x)[0]).abs().max() > 1e-3
    assert "positions='rotary'" in repr(model)


def test_default_positions_leave_the_model_unchanged():
    """The default (sinusoidal) model has the parameters, the random draws and the operations it had
    before rotary positions were added: the plain equations, op for op, give bitwise the same outputs."""
    torch.manual_seed(7)
    model = Transformer(D, H, num_layers=2, n_heads=NH)
    torch.manual_seed(7)  # the construction order: W_in, then each block (W_qkv, W_o, mlp), then ln_f
    W_in = torch.nn.Linear(D, H)
    blocks = [Block(H, NH) for _ in range(2)]
    names = ["W_in.weight", "W_in.bias"] + [f"blocks.{i}.{p}" for i in range(2) for p in (
        "ln_1.weight", "ln_1.bias", "attn.W_qkv", "attn.b_qkv", "attn.W_o", "attn.b_o", "ln_2.weight", "ln_2.bias",
        "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias")] + ["ln_f.weight", "ln_f.bias"]
    assert list(model.state_dict()) == names
    assert torch.equal(model.W_in.weight, W_in.weight)
    for ours, fresh in zip(model.blocks, blocks):
        for (name, p), q in zip(ours.state_dict().items(), fresh.state_dict().values()):
            assert torch.equal(p, q), name
    x = torch.randn(B, T, D)
    h = model.W_in(x) + sinusoidal_positions(T, H)
    for block in model.blocks:
        attn = block.attn
        q, k, v = (attn.split_heads(t) for t in F.linear(block.ln_1(h), attn.W_qkv, attn.b_qkv).split(H, dim=-1))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + F.linear(attn.merge_heads(a), attn.W_o, attn.b_o)
        h = h + block.mlp(block.ln_2(h))
    assert torch.equal(model(x)[0], model.ln_f(h))
