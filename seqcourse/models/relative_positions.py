"""Relative positions inside attention: rotary position embeddings (RoPE) and ALiBi biases.

Glossary (the symbols of the Attention chapter): x (..., T, d) the queries or keys of one head
(d = hs, the head size, even for RoPE), t the position of a row, i = 0, ..., d/2 - 1 a pair of
features, nh heads, m_h the ALiBi slope of head h.

Rotary position embeddings (Su et al. 2021, RoFormer). Instead of adding a vector to the input,
rotate each pair of features (2i, 2i + 1) of a query or key at position t by the angle t theta_i,
with the geometrically spaced frequencies of the sinusoidal encodings::

    theta_i = base^(-2i/d)                                   (base = 10000)
    R(x, t)_{2i}     = x_{2i} cos(t theta_i) - x_{2i+1} sin(t theta_i)
    R(x, t)_{2i+1}   = x_{2i} sin(t theta_i) + x_{2i+1} cos(t theta_i)

The pairs are adjacent features (2i, 2i + 1), as in the paper and in ``sinusoidal_positions``
(some libraries pair feature i with i + d/2 instead: another layout, not the same function). Read a
pair as the complex number z_i = x_{2i} + j x_{2i+1}: the rotation is z_i e^{j t theta_i}. A
rotation is orthogonal and two rotations in one plane add their angles, so the score of a query
rotated to position m and a key rotated to position n is

    R(q, m) . R(k, n) = Re sum_i z_i(q) conj(z_i(k)) e^{j (m - n) theta_i},

a function of the offset m - n only: shifting every position by the same amount leaves every
score, and so the attention, unchanged.

ALiBi (Press et al. 2022): no positional information in the inputs at all; head h adds a linear
penalty to its causal scores, with slopes a geometric sequence over the heads::

    score_{h, i, j} = q_i . k_j / sqrt(d_k) - m_h (i - j)    for j <= i,
    m_h = 2^(-8h / nh),  h = 1, ..., nh                      (nh a power of two)

(for other nh the paper takes the slopes of the power of two below and every other slope of the one
above). The bias is a function of i - j only, so ALiBi is relative too.
"""
from __future__ import annotations

import math

import torch

from ..validation import expect_float, expect_int, expect_tensor, same_device

__all__ = ["alibi_bias", "alibi_slopes", "apply_rotary", "rotary_frequencies"]


def rotary_frequencies(d: int, base: float = 10000.0) -> torch.Tensor:
    """theta (d/2,) float64: theta_i = base^(-2i/d) for i = 0, ..., d/2 - 1 (d even)."""
    d = expect_int(d, "d", minimum=2)
    if d % 2:
        raise ValueError(f"rotary embeddings rotate pairs of features, so d must be even; got d={d}")
    base = expect_float(base, "base", positive=True)
    two_i = torch.arange(0, d, 2, dtype=torch.float64)  # 2i = 0, 2, ..., d - 2
    return base ** (-two_i / d)


def apply_rotary(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate each pair of features (2i, 2i + 1) of x by the angle t theta_i (module docstring).

    Args:
        x: (..., T, d) float queries or keys of one or more heads, d even; e.g. (B, nh, T, hs).
        positions: (T,) integer (torch.int64) position t of each row of x; any integers, not only
            0, ..., T - 1 (a cache continues at T_past, T_past + 1, ...).
        base: the base of the frequencies, theta_i = base^(-2i/d).
    Returns:
        R(x, t), the same shape and dtype as x. The angles t theta_i and their sines and cosines are
        computed in float64, so a position in the thousands loses no precision before the cast.
    """
    expect_tensor(x, "x", dtype="float")
    if x.ndim < 2:
        raise ValueError(f"x must have shape (..., T, d) with at least 2 dimensions; got shape {tuple(x.shape)}")
    T, d = x.shape[-2], x.shape[-1]
    expect_tensor(positions, "positions", dims=("T",), size={"T": T}, dtype="long")
    if not same_device(positions.device, x.device):
        raise ValueError(f"positions is on device {positions.device}, but x is on {x.device}; move it with positions.to(...)")
    theta = rotary_frequencies(d, base).to(x.device)  # (d/2,)
    angle = positions.to(torch.float64).unsqueeze(-1) * theta  # (T, d/2): t theta_i
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]  # (..., T, d/2): x_{2i}, x_{2i+1}
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)  # (..., T, d/2, 2)
    return rotated.flatten(-2)  # pairs back in place: (..., T, d)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """m (nh,) float64, the ALiBi slopes: 2^(-8h/nh) for h = 1, ..., nh when nh is a power of two;
    otherwise the slopes of the power of two n below nh, then every other slope of 2n (the paper's rule)."""
    n_heads = expect_int(n_heads, "n_heads", minimum=1)
    n = 2 ** int(math.floor(math.log2(n_heads)))

    def geometric(count: int) -> list[float]:
        return [2.0 ** (-8.0 * h / count) for h in range(1, count + 1)]

    slopes = geometric(n) + geometric(2 * n)[0::2][: n_heads - n]
    return torch.tensor(slopes, dtype=torch.float64)


def alibi_bias(n_heads: int, T_q: int, T_k: int | None = None, device=None) -> torch.Tensor:
    """The ALiBi bias (nh, T_q, T_k) float64: -m_h (i - j) added to head h's score of query i and key j.

    With T_k > T_q the queries are the last T_q of the T_k positions (as in ``causal_mask``), so
    query row r sits at position i = r + T_k - T_q. Use it with the causal mask: for a key j > i the
    entry is positive and must be masked out.
    """
    T_q = expect_int(T_q, "T_q", minimum=1)
    T_k = T_q if T_k is None else expect_int(T_k, "T_k", minimum=T_q)
    i = torch.arange(T_q, device=device, dtype=torch.float64).unsqueeze(1) + (T_k - T_q)
    j = torch.arange(T_k, device=device, dtype=torch.float64).unsqueeze(0)
    return alibi_slopes(n_heads).to(device=device).view(-1, 1, 1) * (j - i)  # (nh, T_q, T_k): -m_h (i - j), no -0.0
