"""Exact softmax attention computed block by block: the online softmax behind flash attention.

Glossary (the symbols of the Attention chapter; Milakov & Gimelshein 2018, Dao et al. 2022):
q (..., T_q, d_k) queries, k (..., T_k, d_k) keys, v (..., T_k, d_v) values; for one query the
scores s_j = q . k_j / sqrt(d_k) (-inf where the mask forbids key j); b_q, b_k the numbers of
queries and keys in a block.

Softmax attention for one query is out = sum_j e^{s_j} v_j / sum_j e^{s_j}. Visit the keys one
block at a time and keep, per query, three running quantities over the keys seen so far::

    m   the largest score                           m = max_j s_j            (starts at -inf)
    l   the normaliser, relative to m               l = sum_j e^{s_j - m}    (starts at 0)
    o   the unnormalised output, relative to m      o = sum_j e^{s_j - m} v_j  (starts at 0)

A new block with scores s_j (its b_k keys) and values v_j updates them as::

    m' = max(m, max_j s_j)
    p_j = e^{s_j - m'}                              (every exponent <= 0: no overflow)
    l' = e^{m - m'} l + sum_j p_j
    o' = e^{m - m'} o + sum_j p_j v_j

The factor e^{m - m'} <= 1 re-expresses what was summed relative to the old maximum relative to
the new one. After the last block out = o / l, exactly softmax attention: the same sums in another
order. The log-sum-exp of the row's scores, m + log l, is the one number per query that flash
attention keeps for its backward pass. When every key seen so far is masked, m' = -inf and the
exponents use 0 in its place (p_j = 0 and nothing to rescale), so no -inf - (-inf) = nan arises.

Memory: one step holds a (b_q, b_k) block of scores; the state (m, l, o) is (T_q,) + (T_q,) +
(T_q, d_v). The peak grows linearly in T, where the readable form holds the (T_q, T_k) scores and
weights. Causal attention skips the key blocks that lie wholly after a query block (about half).
"""
from __future__ import annotations

import math

import torch

from ..validation import expect_int, expect_tensor, same_device
from .attention import check_mask, check_qkv

__all__ = ["online_softmax_attention", "online_softmax_update"]


def _check_state(m, l, o, scores, v) -> None:
    """The shapes of one update: scores (..., b_q, b_k), v (..., b_k, d_v), m and l (..., b_q),
    o (..., b_q, d_v), all of the scores' dtype and device."""
    expect_tensor(scores, "scores", dtype="float")
    expect_tensor(v, "v", dtype=scores.dtype)
    if scores.ndim < 2 or v.ndim < 2:
        raise ValueError(f"scores and v must have at least 2 dimensions, (..., b_q, b_k) and (..., b_k, d_v); "
                         f"got {tuple(scores.shape)} and {tuple(v.shape)}")
    lead, (b_q, b_k), d_v = tuple(scores.shape[:-2]), scores.shape[-2:], v.shape[-1]
    expected = {
        "m": (m, lead + (b_q,), "(..., b_q)"),
        "l": (l, lead + (b_q,), "(..., b_q)"),
        "o": (o, lead + (b_q, d_v), "(..., b_q, d_v)"),
        "v": (v, lead + (b_k, d_v), "(..., b_k, d_v)"),
    }
    for name, (t, shape, letters) in expected.items():
        expect_tensor(t, name, dtype=scores.dtype)
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {letters} = {shape} to go with scores of shape "
                             f"{tuple(scores.shape)} (..., b_q, b_k); got {tuple(t.shape)}")
        if not same_device(t.device, scores.device):
            raise ValueError(f"{name} is on device {t.device}, but scores are on {scores.device}")


def online_softmax_update(m: torch.Tensor, l: torch.Tensor, o: torch.Tensor, scores: torch.Tensor,
                          v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One block of the online softmax (module docstring):

        m' = max(m, max_j s_j),  p_j = e^{s_j - m'},  l' = e^{m - m'} l + sum_j p_j,  o' = e^{m - m'} o + p V

    Args:
        m, l: (..., b_q) running maximum and normaliser (start: -inf and 0).
        o: (..., b_q, d_v) running unnormalised output (start: 0).
        scores: (..., b_q, b_k) this block's scaled scores, -inf where masked.
        v: (..., b_k, d_v) this block's values.
    Returns:
        the new (m', l', o'), shapes as m, l, o. Nothing is modified in place.
    """
    _check_state(m, l, o, scores, v)
    return _update(m, l, o, scores, v)


def _update(m, l, o, scores, v):
    """``online_softmax_update`` without the checks (the blocks of ``online_softmax_attention`` fit by construction)."""
    m_new = torch.maximum(m, scores.amax(dim=-1))  # (..., b_q)
    ref = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)  # 0 where nothing was allowed yet
    p = torch.exp(scores - ref.unsqueeze(-1))  # (..., b_q, b_k), entries in [0, 1]
    rescale = torch.exp(m - ref)  # (..., b_q): e^{m - m'} <= 1, 0 when m = -inf
    return m_new, rescale * l + p.sum(dim=-1), rescale.unsqueeze(-1) * o + p @ v


def online_softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                             causal: bool = False, block_k: int = 64,
                             block_q: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T / sqrt(d_k), masked) V without ever holding the (T_q, T_k) scores.

    Args:
        q: (..., T_q, d_k), k: (..., T_k, d_k), v: (..., T_k, d_v), as ``scaled_dot_product_attention``.
        mask: bool, broadcastable to (..., T_q, T_k) (its query axis may be 1); True = may attend.
        causal: query i (the last T_q of T_k positions, as ``causal_mask``) sees keys j <= i only.
        block_k: keys per block, any size >= 1 (the last block may be shorter).
        block_q: queries per block; None takes all queries at once (the state is then the whole
            (T_q,) and (T_q, d_v), and a step holds (T_q, block_k) scores).
    Returns:
        out (..., T_q, d_v) and lse (..., T_q), the log-sum-exp of each query's allowed scores.
    """
    check_qkv(q, k, v)
    T_q, T_k, d_k = q.shape[-2], k.shape[-2], q.shape[-1]
    block_k = expect_int(block_k, "block_k", minimum=1)
    block_q = T_q if block_q is None else expect_int(block_q, "block_q", minimum=1)
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be True or False; got {type(causal).__name__} {causal!r}")
    if causal and T_k < T_q:
        raise ValueError(f"causal attention aligns the T_q queries with the last T_q keys, so it needs "
                         f"T_k >= T_q; got T_q={T_q}, T_k={T_k}")
    scores_shape = q.shape[:-1] + (T_k,)
    if mask is not None:
        check_mask(mask, T_q, T_k, q.device, scores_shape=scores_shape)
        if causal:  # the two together may leave a query with no key
            positions = torch.arange(T_q, device=q.device).unsqueeze(1) + (T_k - T_q)  # (T_q, 1)
            check_mask(mask & (torch.arange(T_k, device=q.device) <= positions), T_q, T_k)
    out = q.new_empty(q.shape[:-1] + (v.shape[-1],))  # (..., T_q, d_v)
    lse = q.new_empty(q.shape[:-1])  # (..., T_q)
    scale = math.sqrt(d_k)
    for q0 in range(0, T_q, block_q):
        q1 = min(q0 + block_q, T_q)
        q_blk = q[..., q0:q1, :]  # (..., b_q, d_k)
        last_position = q1 - 1 + (T_k - T_q)  # of this block's last query, for causal attention
        m = q.new_full(q_blk.shape[:-1], float("-inf"))  # (..., b_q)
        l = q.new_zeros(q_blk.shape[:-1])
        o = q.new_zeros(q_blk.shape[:-1] + (v.shape[-1],))  # (..., b_q, d_v)
        for k0 in range(0, T_k, block_k):
            if causal and k0 > last_position:
                break  # this key block and every later one lie after every query of the block
            k1 = min(k0 + block_k, T_k)
            scores = q_blk @ k[..., k0:k1, :].transpose(-2, -1) / scale  # (..., b_q, b_k)
            if mask is not None:
                rows = slice(None) if mask.shape[-2] == 1 else slice(q0, q1)
                scores = scores.masked_fill(~mask[..., rows, k0:k1], float("-inf"))
            if causal and k1 - 1 > q0 + (T_k - T_q):  # the block reaches past the first query: a diagonal block
                i = torch.arange(q0, q1, device=q.device).unsqueeze(1) + (T_k - T_q)
                j = torch.arange(k0, k1, device=q.device)
                scores = scores.masked_fill(j > i, float("-inf"))
            m, l, o = _update(m, l, o, scores, v[..., k0:k1, :])
        out[..., q0:q1, :] = o / l.unsqueeze(-1)
        lse[..., q0:q1] = m + torch.log(l)
    return out, lse
