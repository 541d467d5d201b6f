"""The online softmax: block by block, it equals softmax attention (the course's readable version
and torch's fused kernel, in float64) for block sizes that do and do not divide T, for queries in
blocks or all at once, with causal, padding, window and arbitrary masks; its log-sum-exp equals
torch.logsumexp; the block update by hand; no overflow with huge scores; and its peak memory grows
linearly in T where the readable form's grows quadratically."""
import math

import pytest
import torch
import torch.nn.functional as F

from seqcourse.measure.analysis import peak_tensor_bytes
from seqcourse.models.attention import causal_mask, padding_mask, scaled_dot_product_attention, sliding_window_mask
from seqcourse.models.online_softmax import online_softmax_attention, online_softmax_update

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
B, NH, T, DK, DV = 2, 3, 37, 8, 5  # T = 37: a prime, so no block size above 1 divides it


def _qkv(device, T_q=T, T_k=T, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, NH, T_q, DK, generator=g, dtype=F64)
    k = torch.randn(B, NH, T_k, DK, generator=g, dtype=F64)
    v = torch.randn(B, NH, T_k, DV, generator=g, dtype=F64)
    return q.to(device), k.to(device), v.to(device)


def _masks(device):
    g = torch.Generator().manual_seed(1)
    random = torch.rand(B, NH, T, T, generator=g) < 0.3
    random[..., 0] = True  # every query keeps at least one key
    random[0, 0, 5] = False
    random[0, 0, 5, 30] = True  # and one query keeps only a key in the last block
    return {
        "none": None,
        "causal": causal_mask(T, device=device),
        "padding": padding_mask(torch.tensor([T, 9], device=device), T).unsqueeze(1),  # (B, 1, 1, T)
        "window": sliding_window_mask(T, 6, device=device),
        "random": random.to(device),
    }


@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding", "window", "random"])
@pytest.mark.parametrize("block_k", [1, 4, 7, 16, T, 64])
@pytest.mark.parametrize("block_q", [None, 1, 5, 16])
def test_equals_softmax_attention(mask_kind, block_k, block_q, device):
    q, k, v = _qkv(device)
    mask = _masks(device)[mask_kind]
    expected, weights = scaled_dot_product_attention(q, k, v, mask)
    out, lse = online_softmax_attention(q, k, v, mask=mask, block_k=block_k, block_q=block_q)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-13)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), rtol=0, atol=1e-13)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(DK))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(lse, torch.logsumexp(scores, dim=-1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("block_k", [1, 3, 8, 100])
@pytest.mark.parametrize("block_q", [None, 2, 6])
@pytest.mark.parametrize("T_q", [1, 6, T])
def test_causal_flag_equals_the_causal_mask_also_after_a_cache(block_k, block_q, T_q, device):
    """causal=True, which skips key blocks after a query block and masks the diagonal ones, against
    the explicit mask; with T_q < T_k the queries are the last T_q positions (causal_mask's alignment)."""
    q, k, v = _qkv(device, T_q=T_q, seed=2)
    expected, _ = scaled_dot_product_attention(q, k, v, causal_mask(T_q, T, device=device))
    out, _ = online_softmax_attention(q, k, v, causal=True, block_k=block_k, block_q=block_q)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-13)
    # with a padding mask as well (each sequence keeps its first key)
    pad = padding_mask(torch.tensor([T, 20], device=device), T).unsqueeze(1)
    expected, _ = scaled_dot_product_attention(q, k, v, pad & causal_mask(T_q, T, device=device))
    out, _ = online_softmax_attention(q, k, v, mask=pad, causal=True, block_k=block_k, block_q=block_q)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-13)


def test_gradients_equal_those_of_softmax_attention():
    q, k, v = (t.requires_grad_() for t in _qkv("cpu", seed=3))
    w = torch.randn(B, NH, T, DV, dtype=F64)
    grads_online = torch.autograd.grad((online_softmax_attention(q, k, v, causal=True, block_k=5, block_q=8)[0] * w).sum(),
                                       (q, k, v))
    grads_readable = torch.autograd.grad((scaled_dot_product_attention(q, k, v, causal_mask(T))[0] * w).sum(), (q, k, v))
    for a, b in zip(grads_online, grads_readable):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_huge_scores_do_not_overflow_in_float32():
    g = torch.Generator().manual_seed(4)
    q, k = (30 * torch.randn(1, 1, 20, 16, generator=g) for _ in range(2))  # scores in the hundreds
    v = torch.randn(1, 1, 20, 4, generator=g)
    assert torch.isinf(torch.exp(q @ k.transpose(-2, -1) / 4)).any()
    out, lse = online_softmax_attention(q, k, v, causal=True, block_k=3, block_q=4)
    assert torch.isfinite(out).all() and torch.isfinite(lse).all()
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), rtol=0, atol=1e-5)


def test_block_update_by_hand():
    """One query, scores [1, 3] then [4, 0] (values 1, 2, 3, 4): after the first block m = 3,
    l = e^-2 + 1; the second raises the maximum to 4, so the old sums are scaled by e^(3 - 4)."""
    m, l, o = torch.tensor([float("-inf")], dtype=F64), torch.zeros(1, dtype=F64), torch.zeros(1, 1, dtype=F64)
    m, l, o = online_softmax_update(m, l, o, torch.tensor([[1.0, 3.0]], dtype=F64), torch.tensor([[1.0], [2.0]], dtype=F64))
    e = math.exp
    assert m.item() == 3.0
    assert l.item() == pytest.approx(e(-2) + 1, abs=1e-15)
    assert o.item() == pytest.approx(e(-2) * 1 + 1 * 2, abs=1e-15)
    m, l, o = online_softmax_update(m, l, o, torch.tensor([[4.0, 0.0]], dtype=F64), torch.tensor([[3.0], [4.0]], dtype=F64))
    assert m.item() == 4.0
    assert l.item() == pytest.approx(e(-1) * (e(-2) + 1) + 1 + e(-4), abs=1e-15)
    weights = torch.softmax(torch.tensor([1.0, 3.0, 4.0, 0.0], dtype=F64), 0)
    assert (o / l).item() == pytest.approx((weights @ torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64)).item(), abs=1e-15)
    assert (m + l.log()).item() == pytest.approx(math.log(sum(e(s) for s in (1, 3, 4, 0))), abs=1e-14)


def test_block_update_handles_rows_with_nothing_allowed_yet():
    """A row whose first block is all masked keeps m = -inf and l = o = 0, without a nan; its next
    block then starts it as if it were the first."""
    inf = float("-inf")
    m, l, o = torch.full((2,), inf, dtype=F64), torch.zeros(2, dtype=F64), torch.zeros(2, 3, dtype=F64)
    v = torch.ones(2, 3, dtype=F64)
    m, l, o = online_softmax_update(m, l, o, torch.tensor([[inf, inf], [0.5, inf]], dtype=F64), v)
    assert m.tolist() == [inf, 0.5] and l.tolist() == [0.0, 1.0] and not torch.isnan(o).any()
    m, l, o = online_softmax_update(m, l, o, torch.tensor([[2.0, inf], [inf, inf]], dtype=F64), v)
    assert m.tolist() == [2.0, 0.5] and l.tolist() == [1.0, 1.0]
    torch.testing.assert_close(o / l.unsqueeze(-1), torch.ones(2, 3, dtype=F64))


def test_the_order_of_the_blocks_does_not_matter():
    g = torch.Generator().manual_seed(5)
    scores, v = torch.randn(4, 9, generator=g, dtype=F64) * 3, torch.randn(9, 2, generator=g, dtype=F64)
    results = []
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        m, l, o = torch.full((4,), float("-inf"), dtype=F64), torch.zeros(4, dtype=F64), torch.zeros(4, 2, dtype=F64)
        for b in order:
            m, l, o = online_softmax_update(m, l, o, scores[:, 3 * b:3 * b + 3], v[3 * b:3 * b + 3])
        results.append(o / l.unsqueeze(-1))
        torch.testing.assert_close(m, scores.amax(-1), rtol=0, atol=0)
    for r in results:
        torch.testing.assert_close(r, torch.softmax(scores, -1) @ v, rtol=0, atol=1e-14)


def test_peak_memory_grows_linearly_where_the_readable_forms_grows_quadratically():
    """With blocks of 32 x 32 the peak is the output and the log-sum-exp, (1, 2, T, 16) and (1, 2, T)
    float32, plus the same few blocks whatever T is; the readable form holds (1, 2, T, T) tensors."""
    def peaks(T):
        q, k, v = (torch.randn(1, 2, T, 16) for _ in range(3))
        with torch.no_grad():
            readable = peak_tensor_bytes(lambda: scaled_dot_product_attention(q, k, v, causal_mask(T)))
            online = peak_tensor_bytes(lambda: online_softmax_attention(q, k, v, causal=True, block_k=32, block_q=32))
        return readable, online - 2 * T * (16 + 1) * 4

    (r1, blocks1), (r2, blocks2), (r4, blocks4) = peaks(128), peaks(256), peaks(512)
    assert r1 >= 2 * (2 * 128 * 128 * 4)  # scores and weights at once
    assert r2 / r1 == pytest.approx(4, rel=0.02) and r4 / r2 == pytest.approx(4, rel=0.01)
    assert blocks1 == blocks2 == blocks4 > 0
    assert blocks4 < 2 * 4 * (32 * 32 * 4 + 32 * 17 * 4)  # a few (32, 32) blocks and (32, 16 + 1) states per head


def test_errors():
    q, k, v = _qkv("cpu")
    with pytest.raises(ValueError, match="block_k must be >= 1"):
        online_softmax_attention(q, k, v, block_k=0)
    with pytest.raises(TypeError, match="block_q must be an int"):
        online_softmax_attention(q, k, v, block_q=2.0)
    with pytest.raises(ValueError, match="needs T_k >= T_q"):
        online_softmax_attention(q, k[..., :5, :], v[..., :5, :], causal=True)
    with pytest.raises(TypeError, match="causal must be True or False"):
        online_softmax_attention(q, k, v, causal=1)
    with pytest.raises(ValueError, match="does not broadcast"):
        online_softmax_attention(q, k, v, mask=torch.ones(3, 1, T, T, dtype=torch.bool))
    empty_row = torch.ones(T, T, dtype=torch.bool)
    empty_row[4, :5] = False
    empty_row[4, 5:] = False
    with pytest.raises(ValueError, match="all False"):
        online_softmax_attention(q, k, v, mask=empty_row)
    late = torch.zeros(T, T, dtype=torch.bool)
    late[:, -1] = True  # only the last key: with causal=True every query but the last has none
    with pytest.raises(ValueError, match="all False"):
        online_softmax_attention(q, k, v, mask=late, causal=True)
    with pytest.raises(ValueError, match="k and v must have the same number of positions"):
        online_softmax_attention(q, k, v[..., :4, :])
    m, l, o = torch.zeros(3), torch.zeros(3), torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"o must have shape \(\.\.\., b_q, d_v\) = \(3, 4\)"):
        online_softmax_update(m, l, o, torch.zeros(3, 5), torch.zeros(5, 4))
    with pytest.raises(ValueError, match=r"v must have shape \(\.\.\., b_k, d_v\) = \(5, 2\)"):
        online_softmax_update(m, l, o, torch.zeros(3, 5), torch.zeros(4, 2))
    with pytest.raises(TypeError, match="l must have dtype torch.float32"):
        online_softmax_update(m, l.double(), o, torch.zeros(3, 5), torch.zeros(5, 2))
