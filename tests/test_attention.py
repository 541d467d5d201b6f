"""Scaled dot-product and multi-head attention: the readable version against the fused kernel,
our multi-head attention against torch.nn.MultiheadAttention with copied weights (outputs and
gradients), the masks (a masked key gets exactly zero weight), and the input checks."""
import math
import re

import pytest
import torch

from seqcourse.models.attention import (
    MultiHeadAttention,
    causal_mask,
    copy_mha_from_torch,
    merge_heads,
    padding_mask,
    scaled_dot_product_attention,
    sliding_window_mask,
    split_heads,
)

pytestmark = pytest.mark.usefixtures("one_thread")

B, T, D, NH = 3, 7, 8, 2
F64 = torch.float64


def test_masks_by_hand():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    # two new queries after a cache of two: aligned at the bottom right
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]
    assert sliding_window_mask(4, 2).tolist() == [
        [True, False, False, False],
        [True, True, False, False],
        [False, True, True, False],
        [False, False, True, True],
    ]
    assert torch.equal(sliding_window_mask(5, 5), causal_mask(5))
    pad = padding_mask(torch.tensor([1, 3]), 3)
    assert pad.shape == (2, 1, 3)
    assert pad.tolist() == [[[True, False, False]], [[True, True, True]]]


def test_readable_attention_matches_formula_and_rows_sum_to_one(device):
    torch.manual_seed(0)
    q, k, v = torch.randn(3, B, 5, 4, dtype=F64, device=device)
    out, w = scaled_dot_product_attention(q, k, v)
    scores = torch.einsum("bid,bjd->bij", q, k) / 2.0  # sqrt(d_k) = 2
    expected_w = scores.exp() / scores.exp().sum(-1, keepdim=True)
    torch.testing.assert_close(w, expected_w)
    torch.testing.assert_close(out, torch.einsum("bij,bjd->bid", expected_w, v))
    torch.testing.assert_close(w.sum(-1), torch.ones(B, 5, dtype=F64, device=device))


@pytest.mark.parametrize("mask_kind", ["none", "causal", "window", "padding"])
def test_readable_equals_fused_kernel(mask_kind, device):
    torch.manual_seed(1)
    q, k, v = (torch.randn(B, NH, T, 4, dtype=F64, device=device, requires_grad=True) for _ in range(3))
    mask = {
        "none": None,
        "causal": causal_mask(T, device=device),
        "window": sliding_window_mask(T, 3, device=device),
        "padding": padding_mask(torch.tensor([T, 4, 1], device=device), T).unsqueeze(1),  # (B, 1, 1, T)
    }[mask_kind]
    ours, _ = scaled_dot_product_attention(q, k, v, mask)
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(ours, fused)
    g = torch.randn_like(ours)
    grads_ours = torch.autograd.grad(ours, (q, k, v), g)
    grads_fused = torch.autograd.grad(fused, (q, k, v), g)
    for a, b in zip(grads_ours, grads_fused):
        torch.testing.assert_close(a, b)


def test_masked_positions_get_exactly_zero_weight(device):
    torch.manual_seed(2)
    q, k, v = torch.randn(3, B, T, 4, device=device)
    k[:, -1] = 1e4  # a key that would dominate every row if it were not masked
    for mask in (causal_mask(T, device=device), sliding_window_mask(T, 2, device=device),
                 padding_mask(torch.tensor([T - 1, 2, 5], device=device), T)):
        _, w = scaled_dot_product_attention(q, k, v, mask)
        full = mask.expand_as(w)
        assert torch.all(w[~full] == 0.0)
        assert torch.all(w[full] >= 0.0)
        torch.testing.assert_close(w.sum(-1), torch.ones(B, T, device=device))
    # and changing a masked value changes nothing
    mask = causal_mask(T, device=device)
    v2 = v.clone()
    v2[:, -1] += 100.0
    out1, _ = scaled_dot_product_attention(q, k, v, mask)
    out2, _ = scaled_dot_product_attention(q, k, v2, mask)
    torch.testing.assert_close(out1[:, :-1], out2[:, :-1])
    assert not torch.allclose(out1[:, -1], out2[:, -1])


def test_split_and_merge_heads_are_inverse_and_slice_features():
    x = torch.arange(B * T * D, dtype=F64).view(B, T, D)
    heads = split_heads(x, NH)
    assert heads.shape == (B, NH, T, D // NH)
    torch.testing.assert_close(heads[:, 1], x[..., D // NH:])  # head 1 = the second block of features
    torch.testing.assert_close(merge_heads(heads), x)


def _mha_pair(device, bias=True):
    torch.manual_seed(3)
    theirs = torch.nn.MultiheadAttention(D, NH, bias=bias, batch_first=True).to(device, F64)
    if bias:  # torch starts its biases at zero; make them matter
        with torch.no_grad():
            theirs.in_proj_bias.normal_()
            theirs.out_proj.bias.normal_()
    ours = MultiHeadAttention(D, NH, bias=bias).to(device, F64)
    copy_mha_from_torch(ours, theirs)
    return ours, theirs


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("setting", ["self", "causal", "causal_padding", "cross_padding"])
def test_multihead_matches_torch_outputs_and_gradients(setting, fast, bias, device):
    ours, theirs = _mha_pair(device, bias)
    x = torch.randn(B, T, D, dtype=F64, device=device)
    S = 5
    x_kv = torch.randn(B, S, D, dtype=F64, device=device) if setting == "cross_padding" else None
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    if setting == "self":
        out1, w1 = ours(x1, fast=fast)
        out2, w2 = theirs(x2, x2, x2, average_attn_weights=False)
    elif setting == "causal":
        out1, w1 = ours(x1, causal=True, fast=fast)
        out2, w2 = theirs(x2, x2, x2, attn_mask=~causal_mask(T, device=device), average_attn_weights=False)
    elif setting == "causal_padding":
        lengths = torch.tensor([T, 3, 1], device=device)
        out1, w1 = ours(x1, mask=padding_mask(lengths, T), causal=True, fast=fast)
        out2, w2 = theirs(x2, x2, x2, attn_mask=~causal_mask(T, device=device),
                          key_padding_mask=~padding_mask(lengths, T)[:, 0], average_attn_weights=False)
    else:
        lengths = torch.tensor([S, 2, 4], device=device)
        out1, w1 = ours(x1, x_kv, mask=padding_mask(lengths, S), fast=fast)
        out2, w2 = theirs(x2, x_kv, x_kv, key_padding_mask=~padding_mask(lengths, S)[:, 0],
                          average_attn_weights=False)
    assert out1.shape == (B, T, D)
    torch.testing.assert_close(out1, out2)
    if fast:
        assert w1 is None
    else:
        torch.testing.assert_close(w1, w2)
    g = torch.randn_like(out1)
    out1.backward(g)
    out2.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(ours.W_qkv.grad, theirs.in_proj_weight.grad)
    torch.testing.assert_close(ours.W_o.grad, theirs.out_proj.weight.grad)
    if bias:
        torch.testing.assert_close(ours.b_qkv.grad, theirs.in_proj_bias.grad)
        torch.testing.assert_close(ours.b_o.grad, theirs.out_proj.bias.grad)


def test_fast_and_readable_multihead_agree_with_cache_alignment(device):
    ours, _ = _mha_pair(device)
    x = torch.randn(B, T, D, dtype=F64, device=device)
    q, k, v = ours.project(x)
    # the last 2 queries against all T keys, causal aligned at the bottom right
    fast, _ = ours.attend(q[:, :, -2:], k, v, causal=True, fast=True)
    slow, w = ours.attend(q[:, :, -2:], k, v, causal=True, fast=False)
    full, _ = ours(x, causal=True)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(fast, full[:, -2:])
    assert torch.all(w[..., 0, -1] == 0.0) and torch.all(w[..., 1, -1] > 0.0)
    # project_kv gives the same keys and values as project
    k2, v2 = ours.project_kv(x)
    torch.testing.assert_close(k2, k)
    torch.testing.assert_close(v2, v)


def test_scores_are_scaled_by_sqrt_dk():
    q = torch.ones(1, 1, 16)
    k = torch.tensor([[[1.0] * 16, [0.0] * 16]])
    v = torch.tensor([[[1.0], [0.0]]])
    _, w = scaled_dot_product_attention(q, k, v)
    # scores 16/sqrt(16) = 4 and 0, so the weights are softmax([4, 0])
    expected = math.exp(4) / (math.exp(4) + 1)
    assert abs(w[0, 0, 0].item() - expected) < 1e-6


def test_clear_errors():
    q = torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match="same last dimension d_k"):
        scaled_dot_product_attention(q, torch.randn(2, 5, 3), torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="same number of positions T_k"):
        scaled_dot_product_attention(q, torch.randn(2, 6, 4), torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="same rank"):
        scaled_dot_product_attention(q, torch.randn(5, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match="batch, head"):
        scaled_dot_product_attention(q, torch.randn(3, 5, 4), torch.randn(3, 5, 4))
    with pytest.raises(ValueError, match=r"T_q=5, T_k=5"):
        scaled_dot_product_attention(q, q, q, torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool tensor"):
        scaled_dot_product_attention(q, q, q, torch.ones(5, 5))
    with pytest.raises(ValueError, match="at least one key"):
        scaled_dot_product_attention(q, q, q, torch.zeros(5, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="floating-point"):
        scaled_dot_product_attention(q.long(), q, q)
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"\(B, T, D=8\)"):
        mha(torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match="unsqueeze"):
        mha(torch.randn(5, 8))
    with pytest.raises(ValueError, match=r"T_q=5, T_k=5"):
        mha(torch.randn(2, 5, 8), mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="same batch size"):
        mha(torch.randn(2, 5, 8), torch.randn(3, 5, 8))
    q, k, v = mha.project(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"\(B, nh=2, T_q, hs=4\)"):
        mha.attend(q.transpose(1, 2), k, v)
    with pytest.raises(ValueError, match="same number of positions"):
        mha.attend(q, k, v[:, :, :3])
    with pytest.raises(ValueError, match="divisible by n_heads"):
        MultiHeadAttention(8, 3)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=4\]"):
        padding_mask(torch.tensor([0, 4]), 4)
    with pytest.raises(ValueError, match="num_heads"):
        copy_mha_from_torch(mha, torch.nn.MultiheadAttention(8, 4))
    with pytest.raises(TypeError, match="torch.nn.MultiheadAttention"):
        copy_mha_from_torch(mha, torch.nn.Linear(8, 8))


def test_mask_leading_dims_must_fit_the_scores():
    """A mask may broadcast over batch and heads but never enlarge them: (3, 1, 5, 5) on q (2, 5, 4)
    would otherwise give a (3, 2, 5, 4) output."""
    q = torch.randn(2, 5, 4)
    full = torch.ones(5, 5, dtype=torch.bool)
    for ok in (full, full.expand(2, 5, 5), full[:1].expand(1, 1, 5)):
        out, w = scaled_dot_product_attention(q, q, q, ok)
        assert out.shape == (2, 5, 4) and w.shape == (2, 5, 5)
    for bad in (full.expand(3, 1, 5, 5), full.expand(3, 5, 5)):
        with pytest.raises(ValueError, match=rf"mask of shape {re.escape(str(tuple(bad.shape)))} does not broadcast "
                                             r"to the attention scores' shape \(2, 5, 5\)"):
            scaled_dot_product_attention(q, q, q, bad)
    mha = MultiHeadAttention(D, NH)
    x = torch.randn(B, T, D)
    ok = torch.ones(T, T, dtype=torch.bool)
    for fast in (True, False):
        assert mha(x, mask=ok.expand(1, NH, T, T), fast=fast)[0].shape == (B, T, D)
        assert mha(x, mask=ok.expand(B, 1, T, T), fast=fast)[0].shape == (B, T, D)
        for bad, got in ((ok.expand(B + 1, T, T), rf"\({B + 1}, {T}, {T}\)"),
                         (ok.expand(B, NH + 1, T, T), rf"\({B}, {NH + 1}, {T}, {T}\)"),
                         (ok.expand(2 * B, NH, T, T), rf"\({2 * B}, {NH}, {T}, {T}\)")):
            with pytest.raises(ValueError, match=rf"batch dimension must be 1 or B={B} and its head dimension "
                                                 rf"1 or nh={NH}.*got mask of shape {got}"):
                mha(x, mask=bad, fast=fast)
    with pytest.raises(ValueError, match=r"mask must have shape \(T_q, T_k\), \(B, T_q, T_k\)"):
        mha(x, mask=ok.expand(1, 1, 1, T, T))


def test_q_k_v_must_share_dtype_and_device():
    q = torch.randn(2, 5, 4)
    with pytest.raises(TypeError, match="same dtype; got torch.float32, torch.float64 and torch.float32"):
        scaled_dot_product_attention(q, q.double(), q)
    with pytest.raises(ValueError, match="same device; got cpu, cpu and meta"):
        scaled_dot_product_attention(q, q, q.to("meta"))
    with pytest.raises(ValueError, match="mask is on device meta, but the queries are on cpu"):
        scaled_dot_product_attention(q, q, q, causal_mask(5, device="meta"))
    with pytest.raises(ValueError, match=r"at least one position \(T_k >= 1\)"):
        scaled_dot_product_attention(q, q[:, :0], q[:, :0])


def test_split_and_merge_heads_check_their_input():
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(B, T, D\); got shape \(7, 8\)"):
        split_heads(torch.randn(7, 8), 2)
    with pytest.raises(ValueError, match="D must be divisible by n_heads; got D=8, n_heads=3"):
        split_heads(torch.randn(1, 7, 8), 3)
    with pytest.raises(ValueError, match="n_heads must be >= 1"):
        split_heads(torch.randn(1, 7, 8), 0)
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(B, nh, T, hs\); got shape \(1, 7, 8\)"):
        merge_heads(torch.randn(1, 7, 8))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        merge_heads([[1.0]])
