"""Questions for the Attention chapter: causal scaled dot-product attention, multi-head attention
(splitting into heads and merging them back), a sliding-window mask, one merge step of byte-pair
encoding, rotary position embeddings, and one block of the online softmax.

Symbols as in the chapter: queries Q, keys K and values V, one row per position; d_k the size of
a query or key vector; a head of size d_k = d_model / n_heads. Causal attention is

    weights = softmax(Q K^T / sqrt(d_k) + mask) over the keys,   out = weights V,

where the mask puts -inf on every key j > i of query i.

The references take other routes than the formulas students write:

* causal-attention: explicit loops over batch entries, queries and the keys each query may see,
  in float64, with the softmax written out (largest score subtracted first);
* multi-head-attention: ``torch.nn.MultiheadAttention`` (float64, no biases) with the given
  weights copied in, so the head layout is PyTorch's, not the solution's reshapes;
* sliding-window-mask: a double loop that tests i - window < j <= i entry by entry;
* bpe-merge: ``collections.Counter`` over pairs of Python ints, the best pair by sorting, and a
  left-to-right scan that rewrites the sequence;
* rotary-embedding: Python complex numbers, x_{2i} + j x_{2i+1} multiplied by e^{j t theta_i}
  (``cmath.exp``), one pair at a time;
* online-softmax-update: the old state as one extra key, with score m + log l and value o / l, next
  to the block's keys, and ``torch.logsumexp`` and ``torch.softmax`` over them (no rescaling step).

The cases are drawn so that the usual mistakes fail at least one case: a missing 1/sqrt(d_k)
(every case with d_k > 1), the scale of the whole model sqrt(d_model) instead of the head's, a
mask off by one (the diagonal masked, which leaves the first query with nothing to attend to, or
one key of the future let in), the mask transposed, the mask applied after the softmax, the
softmax over the queries instead of the keys, an exp without the largest score subtracted (a case
with scores beyond float32's exp range), heads cut out of the wrong axis or interleaved,
weights used untransposed, a window one too wide or one too narrow or two-sided, overlapping
pairs merged right to left, only the first occurrence merged, ties broken by first occurrence
instead of by the smaller pair; pairs of features taken as (i, i + d/2) instead of (2i, 2i + 1),
the frequency exponent -i/d or +2i/d instead of -2i/d, a rotation the wrong way, sine and cosine
swapped, positions 0 ... T - 1 assumed instead of the given ones; the old output or the old
normaliser (or both) not rescaled, the rescaling factor inverted, the new maximum taken over the
block alone, the output normalised at every block, and an update that forms e^m (a case with
scores beyond float32's exp range). The random cases are built so that each of these mistakes
fails them on any draw (the maximum rises in every row by construction, the positions are never
0 ... T - 1), so fresh draws of the cases catch the same mistakes.
"""
from __future__ import annotations

import cmath
import math
from collections import Counter

import torch

from ..registry import Case, Question

F64 = torch.float64


def _tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ---- causal-attention ------------------------------------------------------------------------


def _causal_reference(Q, K, V):
    """Loops: for each query i, a softmax over the scores of keys 0 ... i only."""
    B, T, d_k = Q.shape
    d_v = V.shape[-1]
    out = torch.zeros(B, T, d_v, dtype=F64)
    weights = torch.zeros(B, T, T, dtype=F64)
    scale = 1.0 / math.sqrt(d_k)
    for b in range(B):
        for i in range(T):
            scores = [scale * sum(float(Q[b, i, c]) * float(K[b, j, c]) for c in range(d_k)) for j in range(i + 1)]
            top = max(scores)
            exps = [math.exp(s - top) for s in scores]
            total = sum(exps)
            for j, e in enumerate(exps):
                weights[b, i, j] = e / total
                for c in range(d_v):
                    out[b, i, c] += e / total * float(V[b, j, c])
    return out, weights


def _causal_worked(g):
    return {
        "Q": _tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]]),
        "K": _tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]]),
        "V": _tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]]),
    }


def _causal_random(B, T, d_k, d_v, scale=1.0):
    def build(g):
        return {
            "Q": scale * torch.randn(B, T, d_k, generator=g),
            "K": scale * torch.randn(B, T, d_k, generator=g),
            "V": torch.randn(B, T, d_v, generator=g),
        }

    return build


CAUSAL_ATTENTION = Question(
    id="causal-attention",
    title="causal scaled dot-product attention: softmax(Q K^T / sqrt(d_k) + causal mask) V",
    points=3,
    args=("Q", "K", "V"),
    outputs=("out", "weights"),
    reference=_causal_reference,
    cases=(
        Case("worked example (B=1, T=3, d_k=2)", _causal_worked),
        Case("a batch, values narrower than keys (B=2, T=5, d_k=8, d_v=3)", _causal_random(2, 5, 8, 3), seed=1),
        Case("one long sequence (B=1, T=9, d_k=4, d_v=4)", _causal_random(1, 9, 4, 4), seed=2),
        Case("large scores, beyond float32's exp range unless the largest is subtracted (B=2, T=6, d_k=4)",
             _causal_random(2, 6, 4, 2, scale=8.0), seed=3),
    ),
    tol=1e-4,
)


# ---- multi-head-attention --------------------------------------------------------------------


def _multi_head_reference(x, W_q, W_k, W_v, W_o, n_heads):
    """torch.nn.MultiheadAttention in float64 with the weights copied in (no biases). Built on the
    meta device and then given uninitialised CPU storage, so it draws no random numbers: checking an
    answer leaves the notebook's global torch RNG where it was."""
    d_model = x.shape[-1]
    mha = torch.nn.MultiheadAttention(d_model, int(n_heads), bias=False, batch_first=True, dtype=F64,
                                      device="meta").to_empty(device="cpu")
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([W_q, W_k, W_v]).double())
        mha.out_proj.weight.copy_(W_o.double())
        x = x.double()
        out, _ = mha(x, x, x, need_weights=False)
    return out


def _multi_head_random(B, T, d_model, n_heads):
    def build(g):
        weights = {name: torch.randn(d_model, d_model, generator=g) / math.sqrt(d_model) for name in ("W_q", "W_k", "W_v", "W_o")}
        return {"x": torch.randn(B, T, d_model, generator=g), **weights, "n_heads": torch.tensor(n_heads)}

    return build


MULTI_HEAD_ATTENTION = Question(
    id="multi-head-attention",
    title="multi-head self-attention: split Q, K, V into heads, attend in each, merge, project with W_o",
    points=3,
    args=("x", "W_q", "W_k", "W_v", "W_o", "n_heads"),
    outputs=("out",),
    reference=_multi_head_reference,
    cases=(
        Case("one head (B=1, T=3, d_model=4)", _multi_head_random(1, 3, 4, 1), seed=4),
        Case("two heads of size 3 (B=2, T=5, d_model=6)", _multi_head_random(2, 5, 6, 2), seed=5),
        Case("four heads of size 2, as many heads as positions (B=1, T=4, d_model=8)", _multi_head_random(1, 4, 8, 4), seed=6),
        Case("three heads of size 4 (B=2, T=7, d_model=12)", _multi_head_random(2, 7, 12, 3), seed=7),
    ),
)


# ---- sliding-window-mask ---------------------------------------------------------------------


def _window_reference(T, window):
    T, w = int(T), int(window)
    mask = torch.zeros(T, T, dtype=F64)
    for i in range(T):
        for j in range(T):
            if i - w < j <= i:
                mask[i, j] = 1.0
    return mask


def _window(T, w):
    return lambda g: {"T": torch.tensor(T), "window": torch.tensor(w)}


SLIDING_WINDOW_MASK = Question(
    id="sliding-window-mask",
    title="causal sliding-window mask: query i may attend to keys i - window + 1 ... i",
    points=2,
    args=("T", "window"),
    outputs=("mask",),
    reference=_window_reference,
    cases=(
        Case("T=6, window=3", _window(6, 3)),
        Case("window=1: each position sees only itself (T=4)", _window(4, 1)),
        Case("a window longer than the sequence: the plain causal mask (T=5, window=8)", _window(5, 8)),
        Case("T=9, window=2", _window(9, 2)),
    ),
)


# ---- bpe-merge -------------------------------------------------------------------------------


def _bpe_reference(ids, V):
    sequence = [int(i) for i in ids]
    V = int(V)
    pairs = Counter(zip(sequence, sequence[1:]))
    counts = torch.zeros(V, V, dtype=F64)
    for (a, b), n in pairs.items():
        counts[a, b] = n
    best = sorted(pairs, key=lambda pair: (-pairs[pair], pair))[0]
    merged, i = [], 0
    while i < len(sequence):
        if i + 1 < len(sequence) and (sequence[i], sequence[i + 1]) == best:
            merged.append(V)
            i += 2
        else:
            merged.append(sequence[i])
            i += 1
    return counts, torch.tensor(merged, dtype=F64)


def _ids(values, V):
    return lambda g: {"ids": torch.tensor(values), "V": torch.tensor(V)}


def _letters(word):
    """'abdc' -> [0, 1, 3, 2]: a is 0, b is 1, ..."""
    return [ord(c) - ord("a") for c in word]


def _bpe_random(N, V):
    return lambda g: {"ids": torch.randint(0, V, (N,), generator=g), "V": torch.tensor(V)}


BPE_MERGE = Question(
    id="bpe-merge",
    title="one BPE merge: count adjacent pairs, replace the most frequent pair by a new id, left to right",
    points=3,
    args=("ids", "V"),
    outputs=("counts", "merged"),
    reference=_bpe_reference,
    cases=(
        Case("worked example: 'aaabdaaabac' (a=0, b=1, c=2, d=3, V=4)", _ids(_letters("aaabdaaabac"), 4)),
        Case("a three-way tie, won by the smallest pair, not the first seen: 'cdabcdab' (V=4)", _ids(_letters("cdabcdab"), 4)),
        Case("overlapping pairs count: 'aaaaabcbcbcbc' (V=3)", _ids(_letters("aaaaabcbcbcbc"), 3)),
        Case("two tokens (V=5)", _ids([3, 1], 5)),
        Case("a random sequence (N=40, V=5)", _bpe_random(40, 5), seed=8),
    ),
)


# ---- rotary-embedding ------------------------------------------------------------------------

ROTARY_BASE = 10000.0


def _rotary_reference(x, positions):
    """Each pair (x_{2i}, x_{2i+1}) as the complex number x_{2i} + j x_{2i+1}, times e^{j t theta_i}."""
    x = x.double()
    d = x.shape[-1]
    out = torch.zeros_like(x)
    for index in torch.cartesian_prod(*(torch.arange(n) for n in x.shape[:-1])).view(-1, x.ndim - 1).tolist():
        t = int(positions[index[-1]])
        row = x[tuple(index)].tolist()
        for i in range(d // 2):
            z = complex(row[2 * i], row[2 * i + 1]) * cmath.exp(1j * t * ROTARY_BASE ** (-2 * i / d))
            out[tuple(index) + (2 * i,)] = z.real
            out[tuple(index) + (2 * i + 1,)] = z.imag
    return out


def _rotary_worked(g):
    return {"x": _tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]]]), "positions": torch.tensor([0, 1, 3])}


def _rotary_random(B, T, d, largest):
    """Positions: T distinct values in 1 ... largest, shuffled, so never 0, 1, ..., T - 1."""
    def build(g):
        positions = 1 + torch.randperm(largest, generator=g)[:T]
        return {"x": torch.randn(B, T, d, generator=g), "positions": positions}

    return build


ROTARY_EMBEDDING = Question(
    id="rotary-embedding",
    title="rotary position embedding: turn each pair (x_2i, x_2i+1) by the angle t * 10000^(-2i/d)",
    points=2,
    args=("x", "positions"),
    outputs=("rotated",),
    reference=_rotary_reference,
    cases=(
        Case("worked example: one pair, theta_0 = 1 (B=1, T=3, d=2, positions 0, 1, 3)", _rotary_worked),
        Case("two pairs at positions 0 ... 3 (B=1, T=4, d=4)",
             lambda g: {"x": torch.randn(1, 4, 4, generator=g), "positions": torch.arange(4)}, seed=9),
        Case("shuffled positions up to 60 (B=2, T=5, d=8)", _rotary_random(2, 5, 8, 60), seed=10),
        Case("shuffled positions up to 90 (B=2, T=6, d=16)", _rotary_random(2, 6, 16, 90), seed=11),
    ),
)


# ---- online-softmax-update -------------------------------------------------------------------


def _online_reference(m, l, o, scores, V):
    """The state (m, l, o) stands for the keys seen so far; together they weigh as one key with
    score m + log l (their log-sum-exp) and value o / l (their softmax average). Softmax over that
    key and the block's keys, then back to the state: l' from the log-sum-exp, o' = l' * average."""
    m, l, o, scores, V = (t.double() for t in (m, l, o, scores, V))
    old_score = torch.where(l > 0, m + torch.log(l), torch.full_like(m, float("-inf")))  # (B, n)
    old_value = torch.where(l.unsqueeze(-1) > 0, o / l.clamp_min(1e-300).unsqueeze(-1), torch.zeros_like(o))
    all_scores = torch.cat([old_score.unsqueeze(-1), scores], dim=-1)  # (B, n, 1 + b)
    m_new = torch.maximum(m, scores.amax(dim=-1))  # the largest score itself (not m + log l)
    l_new = torch.exp(torch.logsumexp(all_scores, dim=-1) - m_new)
    weights = torch.softmax(all_scores, dim=-1)  # (B, n, 1 + b)
    out = weights[..., :1] * old_value + weights[..., 1:] @ V  # normalised output over every key so far
    return m_new, l_new, out * l_new.unsqueeze(-1)


def _state_after(scores, V):
    """(m, l, o) after one block from the empty state, in float32: what a real earlier block leaves."""
    m = scores.amax(dim=-1)
    p = torch.exp(scores - m.unsqueeze(-1))
    return m, p.sum(dim=-1), p @ V


def _online_inputs(m, l, o, scores, V):
    return {"m": m, "l": l, "o": o, "scores": scores, "V": V}


def _online_worked(g):
    """One query; the first block had scores 1, 3 and values 1, 2; the next has scores 4, 0 and values 3, 4."""
    m, l, o = _state_after(_tensor([[[1.0, 3.0]]]), _tensor([[[1.0], [2.0]]]))
    return _online_inputs(m, l, o, _tensor([[[4.0, 0.0]]]), _tensor([[[3.0], [4.0]]]))


def _online_first(B, n, b, d_v):
    def build(g):
        return _online_inputs(torch.full((B, n), float("-inf")), torch.zeros(B, n), torch.zeros(B, n, d_v),
                              torch.randn(B, n, b, generator=g), torch.randn(B, b, d_v, generator=g))

    return build


def _online_random(B, n, b, d_v, rises, shift=0.0, scale=1.0, masked=False):
    """An earlier block of 3 keys (scores shift + scale * N(0, 1)) sets the state; the new block's
    row maximum is then placed above the old maximum (by 0.5 to 2.5) in the rows where
    ``rises(row)`` is True, below it otherwise. ``masked``: some scores are -inf, and row 0 of the
    first batch entry is masked entirely."""
    def build(g):
        m, l, o = _state_after(shift + scale * torch.randn(B, n, 3, generator=g), torch.randn(B, 3, d_v, generator=g))
        scores = scale * torch.randn(B, n, b, generator=g)
        gap = 0.5 + 2 * torch.rand(B, n, generator=g)
        up = torch.tensor([bool(rises(row)) for row in range(n)]).expand(B, n)
        target = torch.where(up, m + gap, m - gap)  # the new block's row maximum
        scores = scores - scores.amax(dim=-1, keepdim=True) + target.unsqueeze(-1)
        if masked:
            hidden = torch.rand(B, n, b, generator=g) < 0.3
            hidden &= scores < target.unsqueeze(-1)  # keep each row's maximum
            hidden[0, 0] = True
            scores = scores.masked_fill(hidden, float("-inf"))
        return _online_inputs(m, l, o, scores, torch.randn(B, b, d_v, generator=g))

    return build


ONLINE_SOFTMAX_UPDATE = Question(
    id="online-softmax-update",
    title="one block of the online softmax: new running maximum, rescaled normaliser and output",
    points=3,
    args=("m", "l", "o", "scores", "V"),
    outputs=("m_new", "l_new", "o_new"),
    reference=_online_reference,
    cases=(
        Case("worked example: scores 1, 3 then 4, 0, one query (B=1, n=1, b=2, d_v=1)", _online_worked),
        Case("the first block: m = -inf, l = 0, o = 0 (B=2, n=3, b=4, d_v=2)", _online_first(2, 3, 4, 2), seed=12),
        Case("the maximum rises in every row (B=2, n=4, b=3, d_v=3)",
             _online_random(2, 4, 3, 3, rises=lambda row: True), seed=13),
        Case("the maximum rises in rows 0 and 2 only (B=1, n=5, b=6, d_v=2)",
             _online_random(1, 5, 6, 2, rises=lambda row: row in (0, 2)), seed=14),
        Case("masked keys (-inf), one row's whole block masked (B=2, n=3, b=5, d_v=2)",
             _online_random(2, 3, 5, 2, rises=lambda row: row != 0, masked=True), seed=15),
        Case("scores in the hundreds, beyond float32's exp range (B=1, n=4, b=5, d_v=3)",
             _online_random(1, 4, 5, 3, rises=lambda row: True, shift=150.0, scale=10.0), seed=16),
    ),
)

QUESTIONS = (CAUSAL_ATTENTION, MULTI_HEAD_ATTENTION, SLIDING_WINDOW_MASK, BPE_MERGE, ROTARY_EMBEDDING,
             ONLINE_SOFTMAX_UPDATE)
