"""Rotary position embeddings and ALiBi: RoPE by hand and against complex multiplication, the
relative-position property (shifting every position leaves the scores unchanged to float64
precision), the rotary multi-head attention against the rotation applied by hand before torch's
fused attention, and ALiBi's slopes and bias against the paper's rule and explicit loops."""
import math

import pytest
import torch
import torch.nn.functional as F

from seqcourse.models.attention import MultiHeadAttention, causal_mask
from seqcourse.models.relative_positions import alibi_bias, alibi_slopes, apply_rotary, rotary_frequencies

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


def _rotary_by_complex_numbers(x, positions, base=10000.0):
    """The independent form: pairs (2i, 2i+1) as complex numbers z_i, multiplied by e^{j t theta_i}."""
    d = x.shape[-1]
    theta = torch.tensor([base ** (-2 * i / d) for i in range(d // 2)], dtype=F64)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())  # (..., T, d/2)
    turn = torch.polar(torch.ones(len(positions), d // 2, dtype=F64), positions.double().unsqueeze(1) * theta)
    return torch.view_as_real(z * turn).reshape(x.shape)


# ---- rotary embeddings ------------------------------------------------------------------------


def test_rotary_by_hand():
    # d = 2: one pair, theta_0 = 1, so position t turns (x_0, x_1) by t radians
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=F64)
    got = apply_rotary(x, torch.tensor([0, 1, 3]))
    expected = [[1.0, 0.0], [math.cos(1), math.sin(1)], [-2 * math.sin(3), 2 * math.cos(3)]]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=F64), rtol=0, atol=1e-15)
    # d = 4: the pairs are adjacent features (0, 1) and (2, 3), with theta = 1 and 10000^(-2/4) = 0.01
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=F64)
    got = apply_rotary(x, torch.tensor([5]))
    c0, s0, c1, s1 = math.cos(5), math.sin(5), math.cos(0.05), math.sin(0.05)
    expected = [[1 * c0 - 2 * s0, 1 * s0 + 2 * c0, 3 * c1 - 4 * s1, 3 * s1 + 4 * c1]]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=F64), rtol=0, atol=1e-14)
    torch.testing.assert_close(rotary_frequencies(8), torch.tensor([1.0, 0.1, 0.01, 0.001], dtype=F64))
    torch.testing.assert_close(rotary_frequencies(4, base=100.0), torch.tensor([1.0, 0.1], dtype=F64))


def test_rotary_equals_complex_multiplication():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 16, generator=g, dtype=F64)  # (B, nh, T, hs)
    for positions in (torch.arange(9), torch.tensor([7, 0, 3, 1000, 2, 2, 50, 9, 11]), torch.arange(9) + 12345):
        for base in (10000.0, 500.0):
            torch.testing.assert_close(apply_rotary(x, positions, base), _rotary_by_complex_numbers(x, positions, base),
                                       rtol=0, atol=1e-12)


def test_rotary_is_a_rotation_and_position_zero_is_the_identity():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 11, 8, generator=g, dtype=F64)
    rotated = apply_rotary(x, torch.arange(11) * 37)
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1), rtol=0, atol=1e-13)
    # each pair keeps its own length: a rotation within the pair, nothing mixed across pairs
    torch.testing.assert_close(rotated.view(4, 11, 4, 2).norm(dim=-1), x.view(4, 11, 4, 2).norm(dim=-1), rtol=0, atol=1e-13)
    assert torch.equal(apply_rotary(x, torch.zeros(11, dtype=torch.long)), x)


@pytest.mark.parametrize("offset", [1, 17, 1000])
def test_rotary_scores_depend_on_the_offset_only(offset):
    """R(q, i) . R(k, j) is unchanged when both positions move by the same offset."""
    g = torch.Generator().manual_seed(2)
    q, k = (torch.randn(2, 3, 12, 16, generator=g, dtype=F64) for _ in range(2))  # (B, nh, T, hs)
    positions = torch.arange(12)
    scores = apply_rotary(q, positions) @ apply_rotary(k, positions).transpose(-2, -1)
    shifted = apply_rotary(q, positions + offset) @ apply_rotary(k, positions + offset).transpose(-2, -1)
    torch.testing.assert_close(shifted, scores, rtol=0, atol=1e-12)
    # and they equal the complex form Re sum_i z_i(q) conj(z_i(k)) e^{j (i - j) theta_i}
    theta = rotary_frequencies(16)
    zq, zk = (torch.view_as_complex(t.reshape(2, 3, 12, 8, 2)) for t in (q, k))
    offsets = (positions.unsqueeze(1) - positions.unsqueeze(0)).double()  # (T, T): i - j
    turn = torch.polar(torch.ones(12, 12, 8, dtype=F64), offsets.unsqueeze(-1) * theta)
    by_offset = (zq.unsqueeze(-2) * zk.conj().unsqueeze(-3) * turn).sum(-1).real  # (2, 3, T, T)
    torch.testing.assert_close(scores, by_offset, rtol=0, atol=1e-12)
    # without the rotation's relative structure (absolute sinusoids added), a shift changes the scores
    from seqcourse.models.transformer import sinusoidal_positions
    P, P_shift = sinusoidal_positions(12, 16, dtype=F64), sinusoidal_positions(12, 16, start=offset, dtype=F64)
    added = (q + P) @ (k + P).transpose(-2, -1)
    assert ((q + P_shift) @ (k + P_shift).transpose(-2, -1) - added).abs().max() > 1e-2


def test_rotary_in_float32_keeps_large_positions_accurate():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 32, generator=g)
    positions = torch.arange(5) + 100_000
    got = apply_rotary(x, positions)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _rotary_by_complex_numbers(x, positions), rtol=0, atol=1e-5)


def test_rotary_errors():
    x = torch.randn(2, 4, 6)
    with pytest.raises(ValueError, match="d must be even; got d=5"):
        apply_rotary(torch.randn(4, 5), torch.arange(4))
    with pytest.raises(TypeError, match="positions must be a long"):
        apply_rotary(x, torch.arange(4.0))
    with pytest.raises(ValueError, match=r"positions must be a long tensor of shape \(T=4\); got shape \(3,\)"):
        apply_rotary(x, torch.arange(3))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        apply_rotary(torch.ones(4, 6, dtype=torch.long), torch.arange(4))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        apply_rotary(torch.randn(6), torch.arange(1))
    with pytest.raises(ValueError, match="base must be > 0"):
        apply_rotary(x, torch.arange(4), base=-1.0)


# ---- rotary multi-head attention ----------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
def test_rotary_attention_equals_rotation_by_hand_then_torch_attention(causal, device):
    torch.manual_seed(4)
    mha = MultiHeadAttention(16, 2, rotary=True).to(device, F64)
    plain = MultiHeadAttention(16, 2).to(device, F64)
    plain.load_state_dict(mha.state_dict())  # rotary adds no parameter: the same state
    x = torch.randn(3, 9, 16, dtype=F64, device=device)
    q, k, v = plain.project(x)  # (B, nh, T, hs), unrotated
    positions = torch.arange(4, 13, device=device)
    q, k = (_rotary_by_complex_numbers(t.cpu(), positions.cpu()).to(device) for t in (q, k))
    heads = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    expected = F.linear(plain.merge_heads(heads), plain.W_o, plain.b_o)
    for fast in (False, True):
        got, _ = mha(x, causal=causal, fast=fast, start=4)
        torch.testing.assert_close(got, expected)


def test_rotary_attention_sees_offsets_only(device):
    torch.manual_seed(5)
    mha = MultiHeadAttention(16, 4, rotary=True).to(device, F64)
    x = torch.randn(2, 10, 16, dtype=F64, device=device)
    at_zero, _ = mha(x, causal=True)
    for start in (1, 250, 4000):
        torch.testing.assert_close(mha(x, causal=True, start=start)[0], at_zero, rtol=0, atol=1e-12)
    # the plain layer ignores start altogether
    plain = MultiHeadAttention(16, 4).to(device, F64)
    assert torch.equal(plain(x, start=250)[0], plain(x)[0])


def test_rotary_attention_errors_and_repr():
    with pytest.raises(ValueError, match="head size d_model / n_heads must be even.*head size 3"):
        MultiHeadAttention(6, 2, rotary=True)
    with pytest.raises(TypeError, match="rotary must be True or False"):
        MultiHeadAttention(8, 2, rotary="yes")
    mha = MultiHeadAttention(8, 2, rotary=True)
    with pytest.raises(ValueError, match="needs self-attention"):
        mha(torch.randn(1, 3, 8), torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match="start must be >= 0"):
        mha(torch.randn(1, 3, 8), start=-1)
    assert "rotary=True, rotary_base=10000" in repr(mha)
    assert "rotary" not in repr(MultiHeadAttention(8, 2))


# ---- ALiBi ---------------------------------------------------------------------------------------


def test_alibi_slopes_follow_the_papers_rule():
    assert alibi_slopes(8).tolist() == [2.0 ** -h for h in range(1, 9)]
    assert alibi_slopes(4).tolist() == [2.0 ** -(2 * h) for h in range(1, 5)]
    # 6 heads: the 4 slopes of 4 heads, then every other slope of 8 heads (1/2, 1/8)
    assert alibi_slopes(6).tolist() == [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]
    assert alibi_slopes(1).tolist() == [2.0 ** -8]


def test_alibi_bias_by_loops_and_cache_alignment():
    nh, T = 3, 5
    bias = alibi_bias(nh, T)
    m = alibi_slopes(nh)
    assert bias.shape == (nh, T, T) and bias.dtype == F64
    for h in range(nh):
        for i in range(T):
            for j in range(T):
                assert bias[h, i, j] == -m[h] * (i - j)
    # the last 2 queries of 5 positions: the last 2 rows of the square bias
    assert torch.equal(alibi_bias(nh, 2, 5), bias[:, 3:])


def test_alibi_attention_equals_loops_and_ignores_a_shift():
    """Causal attention with the ALiBi bias (torch's fused kernel, bias as a float mask) against a
    loop over queries; the bias depends on i - j only, so the same keys later in a longer sequence
    get the same weights."""
    g = torch.Generator().manual_seed(6)
    nh, T, d = 4, 7, 8
    q, k, v = (torch.randn(1, nh, T, d, generator=g, dtype=F64) for _ in range(3))
    bias = alibi_bias(nh, T).masked_fill(~causal_mask(T), float("-inf"))
    got = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    m = alibi_slopes(nh)
    for h in range(nh):
        for i in range(T):
            scores = torch.stack([q[0, h, i] @ k[0, h, j] / math.sqrt(d) - m[h] * (i - j) for j in range(i + 1)])
            torch.testing.assert_close(got[0, h, i], torch.softmax(scores, 0) @ v[0, h, : i + 1])
    assert torch.equal(alibi_bias(nh, T, T + 9)[:, :, 9:], alibi_bias(nh, T))
