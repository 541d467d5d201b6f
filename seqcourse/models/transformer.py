"""A decoder-only (causal) Transformer, as a core with the same protocol as the recurrent ones.

Glossary (the symbols of the Attention chapter; Vaswani et al. 2017, GPT-2):

    B  batch size      T  sequence length      D  input features (V for one-hot tokens)
    H  model width (d_model)    nh  heads     hs  head size H / nh     L  stacked blocks
    d_ff  width of the feed-forward layer (4H by default)      LN  LayerNorm over the H features

Positions. Attention alone ignores order, so the input of the first block is

    h_0 = x W_in^T + b_in + P_t,     P (T, H),

with P either learned (a parameter, up to ``max_len`` positions) or sinusoidal:
P[t, 2i] = sin(t / 10000^(2i/H)), P[t, 2i+1] = cos(t / 10000^(2i/H)). With ``positions="rotary"``
nothing is added (h_0 = x W_in^T + b_in): instead every block's attention rotates its queries and
keys by their positions (rotary position embeddings, Su et al. 2021; ``relative_positions``), so
the scores depend on i - j only.

A block has two sublayers, causal multi-head self-attention A and a feed-forward network
F(h) = W_2 GELU(W_1 h + b_1) + b_2, each with a residual connection and a LayerNorm, placed either

    pre-norm  (GPT-2):             h = x + A(LN_1(x)),     y = h + F(LN_2(h))
    post-norm (the 2017 paper):    h = LN_1(x + A(x)),     y = LN_2(h + F(h))

A pre-norm stack ends with a final LN (``ln_f``): its residual stream is never normalised otherwise.

Generation with a KV cache: the keys and values of past positions do not change when a token is
appended (causal attention), so ``step`` keeps them, per block, as (k, v) each (B, nh, T_seen, hs) and
computes only the new token's query, key and value: cost per token grows with T_seen (the cache),
unlike a recurrence's fixed-size state. The tests check that generation equals full recomputation.
"""
from __future__ import annotations

import torch
from torch import nn

from ..validation import (expect_choice, expect_int, expect_model_tensor, expect_nonempty_time, module_dtype_device,
                          same_device)
from .attention import MultiHeadAttention, head_sizes
from .norm import LayerNorm

__all__ = ["NORMS", "POSITIONS", "Block", "ResidualBlock", "Transformer", "expect_stack", "sinusoidal_positions"]

NORMS = ("pre", "post")
POSITIONS = ("sinusoidal", "learned", "rotary")


def sinusoidal_positions(T: int, d: int, start: int = 0, device=None, dtype=torch.float32) -> torch.Tensor:
    """P (T, d) for positions start, ..., start + T - 1:
    P[t, 2i] = sin(t / 10000^(2i/d)),  P[t, 2i+1] = cos(t / 10000^(2i/d)).

    For odd d the last column is a sine (its cosine partner is cut). T = 0 gives an empty (0, d)."""
    T = expect_int(T, "T", minimum=0)
    d = expect_int(d, "d", minimum=1)
    start = expect_int(start, "start", minimum=0)
    t = torch.arange(start, start + T, device=device, dtype=torch.float64).unsqueeze(1)  # (T, 1)
    two_i = torch.arange(0, d, 2, device=device, dtype=torch.float64)  # 2i = 0, 2, 4, ...
    angle = t / 10000.0 ** (two_i / d)  # (T, ceil(d/2))
    P = torch.stack([angle.sin(), angle.cos()], dim=-1).view(T, 2 * angle.shape[1])[:, :d]  # interleave sin, cos
    return P.to(dtype)


def expect_stack(width: int, n_heads: int, num_layers: int, norm: str, *, width_name: str = "hidden_size",
                 rotary: bool = False) -> tuple[int, int, int, str]:
    """Check the configuration of a stack of attention blocks where the user passed it, and return it:
    (width, n_heads, num_layers, norm), each size >= 1, n_heads dividing the width (into an even head
    size when the blocks are ``rotary``: they rotate pairs of features), norm one of NORMS.

    The models built of blocks (``Transformer``, ``encoder_decoder.TransformerSeq2Seq``,
    ``long_context.LinearTransformer``) call it, so that a bad size is reported under the argument
    the user gave (``width_name``: ``hidden_size`` or ``d_model``), before a block would report it
    under its own name. The blocks still check their own arguments: they are built directly too."""
    width, n_heads, head_size = head_sizes(width, n_heads, width_name=width_name)
    if rotary and head_size % 2:
        raise ValueError(f"rotary positions rotate pairs of features, so the head size {width_name} / n_heads must be "
                         f"even; got {width_name}={width}, n_heads={n_heads} (head size {head_size})")
    return width, n_heads, expect_int(num_layers, "num_layers", minimum=1), expect_choice(norm, "norm", NORMS)


class ResidualBlock(nn.Module):
    """The wiring every block shares, whatever its attention sublayer: ``ln_1``, ``attn``, ``ln_2``
    and ``mlp`` (Linear(H, d_ff), GELU, Linear(d_ff, H); ``d_ff`` defaults to 4H), combined by
    ``sublayers`` as pre-norm or post-norm (module docstring). ``Block`` puts multi-head softmax
    attention in it; ``long_context.LinearBlock`` puts linear attention.
    """

    def __init__(self, d_model: int, attn: nn.Module, *, d_ff: int | None = None, norm: str = "pre"):
        super().__init__()
        self.d_model = expect_int(d_model, "d_model", minimum=1)
        self.d_ff = 4 * d_model if d_ff is None else expect_int(d_ff, "d_ff", minimum=1)
        self.norm = expect_choice(norm, "norm", NORMS)
        self.ln_1 = LayerNorm(d_model)
        self.attn = attn
        self.ln_2 = LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, self.d_ff), nn.GELU(), nn.Linear(self.d_ff, d_model))

    def attention_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the attention sublayer reads from the block input x: LN_1(x) for pre-norm, x for post-norm."""
        return self.ln_1(x) if self.norm == "pre" else x

    def sublayers(self, x: torch.Tensor, attention):
        """The residual wiring, for any attention sublayer ``attention(h) -> (a, extra)``:
        x (B, T, H) -> (y (B, T, H), extra). This is the only place ``norm`` acts::

            pre:  h = x + A(LN_1(x)),   y = h + F(LN_2(h))
            post: h = LN_1(x + A(x)),   y = LN_2(h + F(h))
        """
        a, extra = attention(self.attention_input(x))
        if self.norm == "pre":
            h = x + a
            return h + self.mlp(self.ln_2(h)), extra
        h = self.ln_1(x + a)
        return self.ln_2(h + self.mlp(h)), extra

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_ff={self.d_ff}, norm={self.norm!r}"


class Block(ResidualBlock):
    """One Transformer block (module docstring): x (B, T, H) -> y (B, T, H).

    ``norm="pre"``: h = x + A(LN_1(x)), y = h + F(LN_2(h)); ``norm="post"``: h = LN_1(x + A(x)),
    y = LN_2(h + F(h)), with A a ``MultiHeadAttention`` (``attn``) and F the feed-forward ``mlp``.
    ``rotary=True`` makes A rotate its queries and keys by their positions (rotary embeddings).
    """

    def __init__(self, d_model: int, n_heads: int, *, d_ff: int | None = None, norm: str = "pre", rotary: bool = False):
        super().__init__(d_model, MultiHeadAttention(d_model, n_heads, rotary=rotary), d_ff=d_ff, norm=norm)

    def _check(self, x) -> None:
        expect_model_tensor(self, x, "x", dims=("B", "T", "H"), size={"H": self.d_model})
        expect_nonempty_time(x, "x")

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, H), mask bool (T, T) / (B, T, T) / (B, 1, T) or None (every position sees every
        other; pass ``causal_mask(T)`` for a decoder) -> y (B, T, H). A rotary block puts x at
        positions 0, ..., T - 1."""
        self._check(x)
        y, _ = self.sublayers(x, lambda h: self.attn(h, mask=mask))
        return y

    def forward_cached(self, x: torch.Tensor, past=None, fast: bool = True):
        """Causal self-attention continuing a cache: x (B, T, H) are the next T positions,
        past = (k, v) each (B, nh, T_past, hs) or None
        -> (y (B, T, H), (k, v) each (B, nh, T_past + T, hs), weights (B, nh, T, T_past + T) or None).

        ``weights`` are returned when ``fast=False`` (the readable attention), else None. A rotary
        block puts x at positions T_past, ..., T_past + T - 1 (the cached keys are stored rotated).
        """
        self._check(x)
        if past is not None:
            self._check_past(past, x.shape[0])
        start = 0 if past is None else past[0].shape[2]

        def attention(h):
            q, k, v = self.attn.project(h, start=start)  # (B, nh, T, hs)
            if past is not None:
                k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, nh, T_past + T, hs)
            a, weights = self.attn.attend(q, k, v, causal=h.shape[1] > 1, fast=fast)
            return a, (k, v, weights)

        y, (k, v, weights) = self.sublayers(x, attention)
        return y, (k, v), weights

    def _check_past(self, past, batch: int) -> None:
        """A cache for ``forward_cached``: (k, v), each (B, nh, T_past, hs) with the same T_past."""
        nh, hs = self.attn.n_heads, self.attn.head_size
        expected = f"a pair (k, v), each (B={batch}, nh={nh}, T_past, hs={hs})"
        if not isinstance(past, (tuple, list)) or len(past) != 2:
            raise TypeError(f"past must be {expected}, or None; got {type(past).__name__}")
        for t, name in zip(past, ("past k", "past v")):
            expect_model_tensor(self, t, name, dims=("B", "nh", "T_past", "hs"), size={"B": batch, "nh": nh, "hs": hs})
        if past[0].shape[2] != past[1].shape[2]:
            raise ValueError(f"past k and past v must hold the same number of positions T_past; "
                             f"got {past[0].shape[2]} and {past[1].shape[2]}")

    def kv(self, x: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values this block's attention computes from block inputs x (B, T, H):
        (k, v) each (B, nh, T, hs), a rotary block's keys rotated to positions start, start + 1, ...
        (Transformer-XL recomputes them from its memory.)"""
        self._check(x)
        return self.attn.project_kv(self.attention_input(x), start)


class Transformer(nn.Module):
    """A causal Transformer core: x (B, T, D) -> (outputs (B, T, H), cache), like a recurrent core.

    ``outputs[:, t]`` depends on x[:, :t+1] only. The cache (the "state") is a tuple with one (k, v)
    pair per block, each (B, nh, T_seen, hs); passing it back continues the sequence at position
    T_seen. Parameters: ``W_in`` (Linear(D, H): for one-hot inputs, a table of token embeddings),
    ``P`` (max_len, H) when ``positions="learned"`` (sinusoidal and rotary positions need no parameter
    and no limit), ``blocks`` (L ``Block``, rotary when ``positions="rotary"``), and ``ln_f``
    (LayerNorm, pre-norm only; None for post-norm).
    ``fast`` (attribute, default True) runs attention through the fused kernel.
    """

    def __init__(self, input_size: int, hidden_size: int, *, num_layers: int, n_heads: int, max_len: int = 1024,
                 norm: str = "pre", positions: str = "sinusoidal", d_ff: int | None = None):
        super().__init__()
        self.input_size = expect_int(input_size, "input_size", minimum=1)
        self.positions = expect_choice(positions, "positions", POSITIONS)
        self.hidden_size, self.n_heads, self.num_layers, self.norm = expect_stack(
            hidden_size, n_heads, num_layers, norm, rotary=self.positions == "rotary")
        self.max_len = expect_int(max_len, "max_len", minimum=1)
        self.fast = True
        self.W_in = nn.Linear(input_size, hidden_size)
        self.P = nn.Parameter(0.02 * torch.randn(max_len, hidden_size)) if positions == "learned" else None
        rotary = positions == "rotary"
        self.blocks = nn.ModuleList(Block(hidden_size, n_heads, d_ff=d_ff, norm=norm, rotary=rotary)
                                    for _ in range(num_layers))
        self.ln_f = LayerNorm(hidden_size) if norm == "pre" else None

    def embed(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """h_0 = x W_in^T + b_in + P_t for t = start, ..., start + T - 1: x (B, T, D) -> (B, T, H)
        (rotary positions: h_0 = x W_in^T + b_in, the blocks rotate by position)."""
        T = x.shape[1]
        if self.positions == "rotary":
            return self.W_in(x)  # (B, T, H)
        if self.P is None:
            P = sinusoidal_positions(T, self.hidden_size, start, device=x.device, dtype=x.dtype)
        else:
            if start + T > self.max_len:
                raise ValueError(
                    f"learned positions go up to max_len={self.max_len}, but this input reaches position "
                    f"{start + T} (cache of {start} + {T} new); build the model with a larger max_len"
                )
            P = self.P[start:start + T]
        return self.W_in(x) + P  # (B, T, H)

    def _check_cache(self, cache, batch: int) -> int:
        """Validate a cache; return T_seen, the number of positions it holds."""
        hs = self.hidden_size // self.n_heads
        expected = (f"a tuple of num_layers={self.num_layers} pairs (k, v), "
                    f"each (B={batch}, nh={self.n_heads}, T_seen, hs={hs})")
        if not isinstance(cache, (tuple, list)) or len(cache) != self.num_layers:
            raise TypeError(f"cache must be {expected}; got {type(cache).__name__}")
        dtype, device = module_dtype_device(self)
        T_seen = None
        for pair in cache:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"cache must be {expected}; got an entry of type {type(pair).__name__}")
            for t in pair:
                shape_ok = isinstance(t, torch.Tensor) and t.ndim == 4 and t.shape[:2] == (batch, self.n_heads)
                if not shape_ok or t.shape[3] != hs:
                    got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                    raise ValueError(f"cache must be {expected}; got an entry of shape {got}")
                if T_seen is not None and t.shape[2] != T_seen:
                    raise ValueError(f"every cache entry must hold the same T_seen; got {T_seen} and {t.shape[2]}")
                T_seen = t.shape[2]
                if t.dtype != dtype or not same_device(t.device, device):
                    raise ValueError(f"cache tensors must be {dtype} on {device}; got {t.dtype} on {t.device}")
        return T_seen

    def _run(self, x: torch.Tensor, cache, fast: bool):
        expect_model_tensor(self, x, "x", dims=("B", "T", "D"), size={"D": self.input_size})
        expect_nonempty_time(x, "x")
        start = 0 if cache is None else self._check_cache(cache, x.shape[0])
        h = self.embed(x, start)  # (B, T, H)
        new_cache, weights = [], []
        for layer, block in enumerate(self.blocks):
            h, kv, w = block.forward_cached(h, None if cache is None else cache[layer], fast=fast)
            new_cache.append(kv)
            weights.append(w)
        if self.ln_f is not None:
            h = self.ln_f(h)
        return h, tuple(new_cache), weights

    def forward(self, x: torch.Tensor, state=None):
        """x (B, T, D), state = cache from an earlier call or None
        -> (outputs (B, T, H), cache: per block (k, v) each (B, nh, T_seen + T, hs))."""
        outputs, cache, _ = self._run(x, state, self.fast)
        return outputs, cache

    def step(self, x_t: torch.Tensor, state=None):
        """One token: x_t (B, D), cache or None -> (y_t (B, H), cache grown by one position).

        Equal to ``forward`` on the whole prefix, but computes only the new position's q, k, v.
        """
        expect_model_tensor(self, x_t, "x_t", dims=("B", "D"), size={"D": self.input_size})
        y, cache = self.forward(x_t.unsqueeze(1), state)
        return y[:, 0], cache

    @torch.no_grad()
    def attention_weights(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The readable attention's weights for x (B, T, D): a list with one (B, nh, T, T) per block."""
        return self._run(x, None, fast=False)[2]

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, num_layers={self.num_layers}, "
                f"n_heads={self.n_heads}, norm={self.norm!r}, positions={self.positions!r}, max_len={self.max_len}")
