"""Scaled dot-product attention and multi-head attention, written from their equations.

Glossary (the symbols of the Attention chapter; Vaswani et al. 2017):

    B   batch size        T_q  query positions       T_k  key (and value) positions
    D   model width (d_model)   nh  heads (n_heads)   hs  head size D / nh (= d_k = d_v)
    Q (..., T_q, d_k) queries     K (..., T_k, d_k) keys     V (..., T_k, d_v) values
    M (..., T_q, T_k) bool mask: True where query i may attend to key j

Scaled dot-product attention::

    S = Q K^T / sqrt(d_k)                        scores (..., T_q, T_k)
    A = softmax(S with -inf where M is False)    weights, each row sums to 1 over the allowed keys
    out = A V                                    (..., T_q, d_v)

A masked key gets exactly zero weight (exp(-inf) = 0). Every query must be allowed at least one key.

Multi-head attention on inputs x_q (B, T_q, D) and x_kv (B, T_k, D) (x_kv = x_q: self-attention)::

    [Q; K; V] = x W_qkv^T + b_qkv,   W_qkv (3D, D) = [W_q; W_k; W_v]   (as torch's in_proj_weight)
    head_i = Attention(Q_i, K_i, V_i)           Q_i = columns i*hs .. (i+1)*hs of Q, (B, T, hs)
    out = Concat(head_1, ..., head_nh) W_o^T + b_o,   W_o (D, D)

``split_heads`` reshapes (B, T, D) -> (B, nh, T, hs) so all heads run in one batched matmul, and
``merge_heads`` undoes it. ``MultiHeadAttention(..., fast=True)`` runs the same parameters through
``torch.nn.functional.scaled_dot_product_attention`` (a fused, flash-attention kernel that never
stores the (T_q, T_k) weights); ``fast=False`` runs the readable version and also returns the weights.
``copy_mha_from_torch`` copies a ``torch.nn.MultiheadAttention``'s weights; the tests compare them.

``MultiHeadAttention(..., rotary=True)`` rotates every head's queries and keys by their positions
before the scores (rotary position embeddings, ``relative_positions.apply_rotary``), so the scores
depend on positions through i - j only: q_i -> R(q_i, i), k_j -> R(k_j, j). ``start`` says the
position of the first row (a cache of T_past positions continues at start = T_past).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..validation import expect_float, expect_int, expect_model_tensor, expect_nonempty_time, expect_tensor, same_device
from .relative_positions import apply_rotary

__all__ = [
    "MultiHeadAttention",
    "causal_mask",
    "check_mask",
    "check_qkv",
    "copy_mha_from_torch",
    "head_sizes",
    "merge_heads",
    "padding_mask",
    "scaled_dot_product_attention",
    "sliding_window_mask",
    "split_heads",
]


# ---- masks: bool, True = "may attend" (the convention of torch's scaled_dot_product_attention) ----


def causal_mask(T_q: int, T_k: int | None = None, device=None) -> torch.Tensor:
    """Bool (T_q, T_k): query i may attend to key j iff j <= i + (T_k - T_q).

    With T_k = T_q (the default) this is the lower triangle: position t sees positions 1..t.
    With T_k > T_q the queries are the *last* T_q of T_k positions (new tokens after a cache of
    T_k - T_q earlier ones), so the triangle is aligned at the bottom right.
    """
    T_q = expect_int(T_q, "T_q", minimum=1)
    T_k = T_q if T_k is None else expect_int(T_k, "T_k", minimum=T_q)
    i = torch.arange(T_q, device=device).unsqueeze(1) + (T_k - T_q)  # absolute position of query i
    j = torch.arange(T_k, device=device).unsqueeze(0)
    return j <= i


def padding_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """lengths (B,) long -> bool (B, 1, T): key j of sequence b may be attended to iff j < lengths[b].

    The middle axis of size 1 broadcasts over the queries, so the result can be combined with a
    causal mask: ``causal_mask(T) & padding_mask(lengths, T)`` is (B, T, T).
    """
    T = expect_int(T, "T", minimum=1)
    expect_tensor(lengths, "lengths", dims=("B",), dtype="long")
    if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > T):
        raise ValueError(f"lengths must lie in [1, T={T}] (every sequence needs a key); got {lengths.tolist()}")
    return (torch.arange(T, device=lengths.device) < lengths.unsqueeze(1)).unsqueeze(1)


def sliding_window_mask(T: int, window: int, device=None) -> torch.Tensor:
    """Bool (T, T): query i may attend to key j iff i - window < j <= i (the last ``window`` positions,
    itself included): a causal band. ``window >= T`` gives ``causal_mask(T)``."""
    T = expect_int(T, "T", minimum=1)
    window = expect_int(window, "window", minimum=1)
    offset = torch.arange(T, device=device).unsqueeze(1) - torch.arange(T, device=device).unsqueeze(0)  # i - j
    return (offset >= 0) & (offset < window)


def check_mask(mask, T_q: int, T_k: int, device=None, scores_shape=None) -> torch.Tensor:
    """Check a bool mask whose last two dimensions are (T_q or 1, T_k) and in which every query may
    attend to at least one key; return it unchanged.

    ``scores_shape``, when given, is the full shape of the scores the mask is applied to, e.g.
    (B, nh, T_q, T_k): the mask's leading dimensions must then broadcast to it *without changing it*
    (a mask (3, 1, T_q, T_k) on scores (2, T_q, T_k) would silently make 3 copies of the batch).
    ``device``: the queries' device; the mask must be on the same device.
    """
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = f"dtype {mask.dtype}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(
            f"mask must be a bool tensor (True = may attend) of shape (..., T_q={T_q}, T_k={T_k}); got {got}"
        )
    if mask.ndim < 2 or mask.shape[-1] != T_k or mask.shape[-2] not in (1, T_q):
        raise ValueError(
            f"mask must have shape (..., T_q={T_q}, T_k={T_k}) (or (..., 1, T_k={T_k}) for all queries); "
            f"got shape {tuple(mask.shape)}"
        )
    if scores_shape is not None:
        scores_shape = tuple(scores_shape)
        try:
            fits = torch.broadcast_shapes(tuple(mask.shape), scores_shape) == scores_shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to the attention scores' shape "
                f"{scores_shape} (each leading dimension of the mask must be 1 or the scores' size, and "
                "the mask may not add dimensions)"
            )
    if device is not None and not same_device(mask.device, torch.device(device)):
        raise ValueError(f"mask is on device {mask.device}, but the queries are on {device}; move it with mask.to(...)")
    if not bool(mask.any(dim=-1).all()):
        raise ValueError("every query must be allowed at least one key, but mask has a row that is all False")
    return mask


# ---- scaled dot-product attention --------------------------------------------------------------


def check_qkv(q, k, v) -> None:
    """Queries, keys and values for attention: float tensors q (..., T_q, d), k (..., T_k, d) and
    v (..., T_k, d_v) with the same leading dimensions, dtype and device; a ValueError or TypeError
    that names the mismatch otherwise."""
    for t, name in ((q, "q"), (k, "k"), (v, "v")):
        expect_tensor(t, name, dtype="float")
        if t.ndim < 2:
            raise ValueError(
                f"{name} must have shape (..., T, d) with at least 2 dimensions; got shape {tuple(t.shape)}"
            )
    if not (q.ndim == k.ndim == v.ndim):
        raise ValueError(
            f"q, k and v must have the same rank: q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v); "
            f"got shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same last dimension d_k; got q {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of positions T_k; got k {tuple(k.shape)} and v {tuple(v.shape)}"
        )
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ValueError(
            f"q, k and v must have the same leading (batch, head) dimensions; got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape[-2] == 0:
        raise ValueError(f"k and v must have at least one position (T_k >= 1); got k {tuple(k.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must have the same dtype; got {q.dtype}, {k.dtype} and {v.dtype}")
    if not (same_device(q.device, k.device) and same_device(q.device, v.device)):
        raise ValueError(f"q, k and v must be on the same device; got {q.device}, {k.device} and {v.device}")


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """out = softmax(Q K^T / sqrt(d_k), masked) V, the readable way.

    Args:
        q: (..., T_q, d_k) queries.  k: (..., T_k, d_k) keys.  v: (..., T_k, d_v) values.
        mask: bool, broadcastable to (..., T_q, T_k); True where query i may attend to key j.
    Returns:
        out (..., T_q, d_v) and the weights A (..., T_q, T_k) (rows sum to 1; masked entries are 0).
    """
    check_qkv(q, k, v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T_q, T_k)
    if mask is not None:
        check_mask(mask, q.shape[-2], k.shape[-2], q.device, scores_shape=scores.shape)
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (..., T_q, T_k)
    return weights @ v, weights


# ---- multi-head attention ----------------------------------------------------------------------


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, D) -> (B, nh, T, hs): head i gets features i*hs .. (i+1)*hs - 1, hs = D / nh."""
    n_heads = expect_int(n_heads, "n_heads", minimum=1)
    expect_tensor(x, "x", dims=("B", "T", "D"))
    B, T, D = x.shape
    if D % n_heads:
        raise ValueError(f"x's last dimension D must be divisible by n_heads; got D={D}, n_heads={n_heads}")
    return x.view(B, T, n_heads, D // n_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, nh, T, hs) -> (B, T, nh * hs): the heads' outputs side by side (Concat(head_1, ..., head_nh))."""
    expect_tensor(x, "x", dims=("B", "nh", "T", "hs"))
    B, nh, T, hs = x.shape
    return x.transpose(1, 2).reshape(B, T, nh * hs)


def head_sizes(d_model: int, n_heads: int, *, width_name: str = "d_model") -> tuple[int, int, int]:
    """Check a multi-head layer's sizes; return (d_model, n_heads, head size d_model / n_heads).

    ``width_name`` is what the caller calls the width (a Transformer's ``hidden_size``), so that the
    error names the argument the user passed."""
    expect_int(d_model, width_name, minimum=1)
    expect_int(n_heads, "n_heads", minimum=1)
    if d_model % n_heads:
        raise ValueError(f"{width_name} must be divisible by n_heads; got {width_name}={d_model}, n_heads={n_heads}")
    return d_model, n_heads, d_model // n_heads


class MultiHeadAttention(nn.Module):
    """Multi-head attention (module docstring): x_q (B, T_q, D), x_kv (B, T_k, D) -> (B, T_q, D).

    Parameters: ``W_qkv`` (3D, D) and ``b_qkv`` (3D,) hold [W_q; W_k; W_v] and their biases (like
    torch's ``in_proj_weight``, nanoGPT's ``c_attn``); ``W_o`` (D, D), ``b_o`` (D,) the output
    projection. Biases are ``None`` when ``bias=False``. Initialisation as torch.nn.MultiheadAttention:
    W_qkv Xavier-uniform, W_o uniform in [-1/sqrt(D), 1/sqrt(D)], biases 0.

    ``rotary=True`` (self-attention only; the head size must be even) rotates the queries and keys
    of every head by their positions (rotary position embeddings with frequencies
    ``rotary_base``^(-2i/hs)); it adds no parameter. ``rotary=False`` (the default) leaves them as
    projected.
    """

    def __init__(self, d_model: int, n_heads: int, *, bias: bool = True, rotary: bool = False,
                 rotary_base: float = 10000.0):
        super().__init__()
        self.d_model, self.n_heads, self.head_size = head_sizes(d_model, n_heads)
        if not isinstance(rotary, bool):
            raise TypeError(f"rotary must be True or False; got {type(rotary).__name__} {rotary!r}")
        if rotary and self.head_size % 2:
            raise ValueError(f"rotary embeddings rotate pairs of features, so the head size d_model / n_heads must "
                             f"be even; got d_model={d_model}, n_heads={n_heads} (head size {self.head_size})")
        self.rotary = rotary
        self.rotary_base = expect_float(rotary_base, "rotary_base", positive=True)
        self.W_qkv = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.b_qkv = nn.Parameter(torch.zeros(3 * d_model)) if bias else None
        self.W_o = nn.Parameter(torch.empty(d_model, d_model))
        self.b_o = nn.Parameter(torch.zeros(d_model)) if bias else None
        nn.init.xavier_uniform_(self.W_qkv)
        nn.init.uniform_(self.W_o, -1 / math.sqrt(d_model), 1 / math.sqrt(d_model))

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, nh, T, hs)."""
        return split_heads(x, self.n_heads)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, nh, T, hs) -> (B, T, D)."""
        return merge_heads(x)

    def _check_input(self, x, name: str) -> None:
        expect_model_tensor(self, x, name, dims=("B", "T", "D"), size={"D": self.d_model})
        expect_nonempty_time(x, name)

    def _rotate(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Heads (B, nh, T, hs) at positions start, ..., start + T - 1 -> rotated (rotary=True only)."""
        positions = torch.arange(start, start + x.shape[2], device=x.device)
        return apply_rotary(x, positions, self.rotary_base)

    def project(self, x_q: torch.Tensor, x_kv: torch.Tensor | None = None, start: int = 0):
        """Q, K, V split into heads: x_q (B, T_q, D), x_kv (B, T_k, D) or None (self-attention)
        -> q (B, nh, T_q, hs), k and v (B, nh, T_k, hs).

        With ``rotary=True`` (self-attention only) q and k come out rotated, row t at position
        start + t; ``start`` is ignored otherwise.
        """
        self._check_input(x_q, "x_q")
        start = expect_int(start, "start", minimum=0)
        D = self.d_model
        if x_kv is None:  # self-attention: one matrix multiply for Q, K and V
            q, k, v = nn.functional.linear(x_q, self.W_qkv, self.b_qkv).split(D, dim=-1)  # 3 x (B, T, D)
        elif self.rotary:
            raise ValueError("rotary=True rotates queries and keys by positions on one axis, so it needs "
                             "self-attention (x_kv=None); got a separate x_kv")
        else:
            self._check_input(x_kv, "x_kv")
            if x_kv.shape[0] != x_q.shape[0]:
                raise ValueError(
                    f"x_q and x_kv must have the same batch size B; got {x_q.shape[0]} and {x_kv.shape[0]}"
                )
            b_q, b_kv = (None, None) if self.b_qkv is None else (self.b_qkv[:D], self.b_qkv[D:])
            q = nn.functional.linear(x_q, self.W_qkv[:D], b_q)  # (B, T_q, D)
            k, v = nn.functional.linear(x_kv, self.W_qkv[D:], b_kv).split(D, dim=-1)  # (B, T_k, D) each
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)  # (B, nh, T, hs)
        if self.rotary:
            q, k = self._rotate(q, start), self._rotate(k, start)
        return q, k, v

    def project_kv(self, x_kv: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """x_kv (B, T_k, D) -> k, v (B, nh, T_k, hs) (what a KV cache stores; with ``rotary=True``
        k rotated, row t at position start + t)."""
        self._check_input(x_kv, "x_kv")
        start = expect_int(start, "start", minimum=0)
        b_kv = None if self.b_qkv is None else self.b_qkv[self.d_model:]
        k, v = nn.functional.linear(x_kv, self.W_qkv[self.d_model:], b_kv).split(self.d_model, dim=-1)
        k = self.split_heads(k)
        return (self._rotate(k, start) if self.rotary else k), self.split_heads(v)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
               causal: bool = False, fast: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Heads in, projected output out: q (B, nh, T_q, hs), k, v (B, nh, T_k, hs)
        -> (out (B, T_q, D), weights (B, nh, T_q, T_k) or None on the fast path).

        ``mask``: bool (T_q, T_k), (B, T_q, T_k) or (B, 1, T_k) (from ``padding_mask``), the same for
        every head, or (B, nh, T_q, T_k); True = may attend. ``causal=True`` adds ``causal_mask(T_q, T_k)``
        (aligned at the bottom right, for queries that follow a cache; torch's ``is_causal`` aligns
        a non-square mask at the top left, so it is used only when T_q = T_k).
        """
        nh, hs = self.n_heads, self.head_size
        expect_model_tensor(self, q, "q", dims=("B", "nh", "T_q", "hs"), size={"nh": nh, "hs": hs})
        for t, name in ((k, "k"), (v, "v")):
            size = {"B": q.shape[0], "nh": nh, "hs": hs}
            expect_model_tensor(self, t, name, dims=("B", "nh", "T_k", "hs"), size=size)
        if k.shape[2] != v.shape[2]:
            raise ValueError(f"k and v must have the same number of positions T_k; got {k.shape[2]} and {v.shape[2]}")
        T_q, T_k = q.shape[-2], k.shape[-2]
        if mask is not None:
            check_mask(mask, T_q, T_k, q.device)
            if mask.ndim not in (2, 3, 4):
                raise ValueError(
                    "mask must have shape (T_q, T_k), (B, T_q, T_k), (B, 1, T_k) or (B, nh, T_q, T_k); "
                    f"got {tuple(mask.shape)}"
                )
            given = tuple(mask.shape)
            if mask.ndim == 3:
                mask = mask.unsqueeze(1)  # (B, 1, T_q or 1, T_k): the same for every head
            B = q.shape[0]
            if mask.ndim == 4 and (mask.shape[0] not in (1, B) or mask.shape[1] not in (1, nh)):
                raise ValueError(
                    f"mask's batch dimension must be 1 or B={B} and its head dimension 1 or nh={nh} "
                    f"(scores (B={B}, nh={nh}, T_q={T_q}, T_k={T_k})); got mask of shape {given}"
                )
        if causal and (mask is not None or T_q != T_k):
            both = causal_mask(T_q, T_k, device=q.device)
            mask, causal = (both if mask is None else mask & both), False
            check_mask(mask, T_q, T_k)  # a padding mask and the causal mask may leave a row empty
        if fast:
            y = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
            weights = None
        else:
            if causal:
                mask = causal_mask(T_q, T_k, device=q.device)
            y, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, nh, T_q, hs)
        return nn.functional.linear(self.merge_heads(y), self.W_o, self.b_o), weights  # (B, T_q, D)

    def forward(self, x_q: torch.Tensor, x_kv: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                fast: bool = True, causal: bool = False, start: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x_q (B, T_q, D), x_kv (B, T_k, D) or None for self-attention
        -> (out (B, T_q, D), weights (B, nh, T_q, T_k) when ``fast=False``, else None).

        ``mask`` and ``causal`` as in ``attend``; ``fast`` picks the fused kernel (same function);
        ``start``, the position of the first row, matters only with ``rotary=True``.
        """
        q, k, v = self.project(x_q, x_kv, start)  # (B, nh, T, hs)
        return self.attend(q, k, v, mask=mask, causal=causal, fast=fast)

    def extra_repr(self) -> str:
        rotary = f", rotary=True, rotary_base={self.rotary_base:g}" if self.rotary else ""
        return f"d_model={self.d_model}, n_heads={self.n_heads}, bias={self.b_qkv is not None}{rotary}"


def copy_mha_from_torch(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    """Copy a ``torch.nn.MultiheadAttention``'s weights into ours (in place; same function after).

    in_proj_weight -> W_qkv, in_proj_bias -> b_qkv, out_proj.weight -> W_o, out_proj.bias -> b_o.
    Only the plain configuration maps: same embed_dim and num_heads, kdim = vdim = embed_dim,
    no add_bias_kv, no add_zero_attn; ``batch_first`` does not change the weights.
    """
    if not isinstance(ours, MultiHeadAttention) or not isinstance(theirs, nn.MultiheadAttention):
        raise TypeError(
            "copy_mha_from_torch(ours, theirs) needs a seqcourse MultiHeadAttention and a torch.nn.MultiheadAttention; "
            f"got {type(ours).__name__} and {type(theirs).__name__}"
        )
    if (theirs.embed_dim, theirs.num_heads) != (ours.d_model, ours.n_heads):
        raise ValueError(
            f"sizes differ: ours d_model={ours.d_model}, n_heads={ours.n_heads}; "
            f"theirs embed_dim={theirs.embed_dim}, num_heads={theirs.num_heads}"
        )
    if not theirs._qkv_same_embed_dim or theirs.bias_k is not None or theirs.add_zero_attn:
        raise ValueError("theirs must have kdim = vdim = embed_dim, add_bias_kv=False and add_zero_attn=False")
    if (theirs.in_proj_bias is None) != (ours.b_qkv is None):
        raise ValueError(
            f"bias differs: ours bias={ours.b_qkv is not None}, theirs bias={theirs.in_proj_bias is not None}"
        )
    with torch.no_grad():
        ours.W_qkv.copy_(theirs.in_proj_weight)
        ours.W_o.copy_(theirs.out_proj.weight)
        if ours.b_qkv is not None:
            ours.b_qkv.copy_(theirs.in_proj_bias)
            ours.b_o.copy_(theirs.out_proj.bias)
