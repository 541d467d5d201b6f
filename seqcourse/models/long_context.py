"""Three ways to stretch attention to long inputs: a sliding window, a segment memory, linear attention.

Glossary (as in ``attention`` and ``transformer``): B batch, T positions, H model width, nh heads,
hs = H / nh head size, w window, S segment length, M memory length, phi the feature map.

Sliding-window attention (Longformer-style, causal): query t attends to keys t-w+1, ..., t only::

    out_t = sum_{j = t-w+1..t} softmax_j(q_t . k_j / sqrt(hs)) v_j      cost O(T w), not O(T^2)

``sliding_window_attention`` computes exactly that on the band, without forming the (T, T) scores;
it equals full attention with ``attention.sliding_window_mask(T, w)``.

Transformer-XL segment recurrence (Dai et al. 2019): a long sequence is fed in segments of S
positions; each block also attends to a memory m of the last M hidden states *it received as
inputs* in earlier segments, with the gradient stopped::

    m_l <- stopgrad(last M rows of [m_l; h_{l-1}])      (B, M, H), one per block l
    block l: keys and values from [m_l; h_{l-1}], queries from h_{l-1} (causal)

Within its reach (a query sees M earlier positions in its block's input) this is exactly attention
over the concatenated context, at the cost of one segment. Positions here are absolute sinusoids
at the global index (the paper uses a relative encoding, which lets it generalise to unseen lengths).

Linear attention (Katharopoulos et al. 2020) replaces exp(q . k) by phi(q) . phi(k), with the
positive feature map phi(x) = elu(x) + 1, so the causal sum factorises::

    out_t = phi(q_t)^T S_t / (phi(q_t)^T z_t),   S_t = sum_{j<=t} phi(k_j) v_j^T  (hs, hs),
                                                 z_t = sum_{j<=t} phi(k_j)          (hs,)

Recurrent form: S_t = S_{t-1} + phi(k_t) v_t^T, z_t = z_{t-1} + phi(k_t): a state of fixed size
nh (hs^2 + hs) per sequence, whatever t is (``step``). Parallel form: within a chunk of C positions
the masked (C, C) matrix (phi(Q) phi(K)^T) ⊙ causal does the sum at once; the state carries it
across chunks (cost O(T C hs)). With C >= T it is one masked matrix product, the "attention" view.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..validation import (expect_choice, expect_float, expect_int, expect_model_tensor, expect_nonempty_time,
                          module_dtype_device)
from .attention import check_qkv, causal_mask, head_sizes, merge_heads, split_heads
from .norm import LayerNorm
from .transformer import ResidualBlock, Transformer, expect_stack, sinusoidal_positions

__all__ = [
    "FORMS",
    "LinearAttention",
    "LinearBlock",
    "LinearTransformer",
    "TransformerXL",
    "elu_feature_map",
    "sliding_window_attention",
]

FORMS = ("parallel", "recurrent")


# ---- sliding window ---------------------------------------------------------------------------


def sliding_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int) -> torch.Tensor:
    """Causal attention restricted to the last ``window`` keys, computed on the band only.

    q, k (..., T, d_k), v (..., T, d_v) (self-attention: the same T) -> out (..., T, d_v).
    Time and memory O(T w d) (band copies of K and V, scores (..., T, w)) instead of O(T^2 d):
    key j of query t sits at band column s = j - t + w - 1.
    """
    check_qkv(q, k, v)
    window = expect_int(window, "window", minimum=1)
    T = q.shape[-2]
    if k.shape[-2] != T:
        raise ValueError(f"sliding-window self-attention needs as many keys as queries; got T_q={T}, T_k={k.shape[-2]}")
    w = min(window, T)
    # pad w - 1 positions in front, so window t of the padded keys holds keys t-w+1 .. t
    k_band = nn.functional.pad(k, (0, 0, w - 1, 0)).unfold(-2, w, 1)  # (..., T, d_k, w)
    v_band = nn.functional.pad(v, (0, 0, w - 1, 0)).unfold(-2, w, 1)  # (..., T, d_v, w)
    scores = torch.einsum("...td,...tdw->...tw", q, k_band) / math.sqrt(q.shape[-1])  # (..., T, w)
    s = torch.arange(w, device=q.device)
    t = torch.arange(T, device=q.device).unsqueeze(1)
    real = s >= w - 1 - t  # (T, w): False for the padding in front of the first w - 1 queries
    weights = torch.softmax(scores.masked_fill(~real, float("-inf")), dim=-1)  # (..., T, w)
    return torch.einsum("...tw,...tdw->...td", weights, v_band)


# ---- Transformer-XL ---------------------------------------------------------------------------


class TransformerXL(Transformer):
    """A causal Transformer fed segment by segment, each block attending to a memory of its last
    ``mem_len`` inputs from earlier segments (module docstring); gradients stop at the memory.

    forward(x (B, S, D), state=None) -> (outputs (B, S, H), state) where
    state = (memory, t): memory a tuple with one (B, M, H) tensor per block (M <= mem_len,
    detached), t the global position of the next input. Parameters as ``Transformer`` (sinusoidal
    positions); the same weights in a ``Transformer`` compute the full-context function.
    ``step(x_t (B, D), state)`` (inherited) feeds segments of one position: each token then sees its
    last mem_len + 1 positions in every block, in memory bounded by mem_len.

    ``max_len`` (inherited from ``Transformer``) is not used: positions are sinusoidal, with no limit,
    so the repr leaves it out. ``attention_weights`` is not available (it would ignore the memory).
    """

    def __init__(self, input_size: int, hidden_size: int, *, num_layers: int, n_heads: int, mem_len: int,
                 norm: str = "pre", d_ff: int | None = None):
        super().__init__(input_size, hidden_size, num_layers=num_layers, n_heads=n_heads, norm=norm,
                         positions="sinusoidal", d_ff=d_ff)
        self.mem_len = expect_int(mem_len, "mem_len", minimum=1)

    def _check_memory(self, state, batch: int):
        expected = (f"a pair (memory, t): memory a tuple of num_layers={self.num_layers} tensors "
                    f"(B={batch}, M, H={self.hidden_size}), t an int")
        if not isinstance(state, (tuple, list)) or len(state) != 2 or not isinstance(state[1], int):
            raise TypeError(f"state must be {expected}; got {type(state).__name__}")
        memory, t = state
        if not isinstance(memory, (tuple, list)) or len(memory) != self.num_layers:
            raise TypeError(f"state must be {expected}; got a memory of type {type(memory).__name__}")
        for layer, m in enumerate(memory):
            name = f"memory[{layer}]"
            expect_model_tensor(self, m, name, dims=("B", "M", "H"), size={"B": batch, "H": self.hidden_size})
            if not 1 <= m.shape[1] <= self.mem_len:
                raise ValueError(f"{name} must hold 1 <= M <= mem_len={self.mem_len} positions; "
                                 f"got shape {tuple(m.shape)}")
            if m.shape[1] > t:
                raise ValueError(f"{name} holds M={m.shape[1]} positions, more than the t={t} seen so far")
        return memory, t

    def forward(self, x: torch.Tensor, state=None):
        """One segment: x (B, S, D), state (memory, t) or None -> (outputs (B, S, H), (memory, t + S))."""
        expect_model_tensor(self, x, "x", dims=("B", "S", "D"), size={"D": self.input_size})
        expect_nonempty_time(x, "x")
        memory, start = (None, 0) if state is None else self._check_memory(state, x.shape[0])
        h = self.embed(x, start)  # (B, S, H)
        new_memory = []
        for layer, block in enumerate(self.blocks):
            m = None if memory is None else memory[layer]  # (B, M, H)
            context = h if m is None else torch.cat([m, h], dim=1)  # (B, M + S, H)
            new_memory.append(context[:, -self.mem_len:].detach())  # stop-gradient
            past = None if m is None else block.kv(m)  # (B, nh, M, hs) each
            h, _, _ = block.forward_cached(h, past, fast=self.fast)
        if self.ln_f is not None:
            h = self.ln_f(h)
        return h, (tuple(new_memory), start + x.shape[1])

    def attention_weights(self, x: torch.Tensor):
        """Not available: ``Transformer.attention_weights`` would run without the segment memory."""
        raise NotImplementedError(
            "TransformerXL.attention_weights is not available: the inherited version would ignore the "
            "segment memory; load the weights into a Transformer (model.load_state_dict) to see full-context weights"
        )

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, num_layers={self.num_layers}, "
                f"n_heads={self.n_heads}, norm={self.norm!r}, mem_len={self.mem_len}")


# ---- linear attention -------------------------------------------------------------------------


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1 (= exp(x) for x < 0, x + 1 otherwise): positive, so every similarity
    phi(q) . phi(k) is too. (In floating point it rounds to 0 below about x = -17 in float32, which
    is why the normaliser gets an ``eps``.)"""
    return nn.functional.elu(x) + 1


class LinearAttention(nn.Module):
    """Causal multi-head linear attention (module docstring): x (B, T, H) -> (B, T, H), with a
    carried state (S (B, nh, hs, hs), z (B, nh, hs)) of fixed size.

    Parameters as ``MultiHeadAttention``: ``W_qkv`` (3H, H), ``b_qkv`` (3H,), ``W_o`` (H, H), ``b_o`` (H,).
    ``eps`` keeps the division safe: out = phi(q)^T S / (phi(q)^T z + eps), in both forms.
    """

    def __init__(self, d_model: int, n_heads: int, *, eps: float = 1e-6):
        super().__init__()
        self.d_model, self.n_heads, self.head_size = head_sizes(d_model, n_heads)
        self.eps = expect_float(eps, "eps", positive=True)
        self.W_qkv = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.b_qkv = nn.Parameter(torch.zeros(3 * d_model))
        self.W_o = nn.Parameter(torch.empty(d_model, d_model))
        self.b_o = nn.Parameter(torch.zeros(d_model))
        nn.init.xavier_uniform_(self.W_qkv)
        nn.init.uniform_(self.W_o, -1 / math.sqrt(d_model), 1 / math.sqrt(d_model))

    def _check_state(self, state, batch: int):
        nh, hs = self.n_heads, self.head_size
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"state must be a pair (S (B, nh={nh}, hs={hs}, hs={hs}), z (B, nh={nh}, hs={hs})); "
                            f"got {type(state).__name__}")
        S, z = state
        size = {"B": batch, "nh": nh, "hs": hs, "hs_v": hs}
        expect_model_tensor(self, S, "S", dims=("B", "nh", "hs", "hs_v"), size=size)
        expect_model_tensor(self, z, "z", dims=("B", "nh", "hs"), size={"B": batch, "nh": nh, "hs": hs})
        return S, z

    def forward(self, x: torch.Tensor, state=None, form: str = "parallel", chunk_size: int = 64):
        """x (B, T, H), state (S, z) or None for zeros -> (out (B, T, H), (S_T, z_T)).

        ``form="parallel"``: chunks of ``chunk_size`` positions, each one masked matrix product;
        ``form="recurrent"``: one position at a time. The two compute the same function.
        """
        expect_model_tensor(self, x, "x", dims=("B", "T", "H"), size={"H": self.d_model})
        expect_nonempty_time(x, "x")
        expect_choice(form, "form", FORMS)
        chunk_size = expect_int(chunk_size, "chunk_size", minimum=1)
        B, nh, hs = x.shape[0], self.n_heads, self.head_size
        if state is None:
            S, z = x.new_zeros(B, nh, hs, hs), x.new_zeros(B, nh, hs)
        else:
            S, z = self._check_state(state, B)
        q, k, v = nn.functional.linear(x, self.W_qkv, self.b_qkv).split(self.d_model, dim=-1)
        fq = elu_feature_map(split_heads(q, nh))  # phi(q)   (B, nh, T, hs)
        fk = elu_feature_map(split_heads(k, nh))  # phi(k)   (B, nh, T, hs)
        v = split_heads(v, nh)  # (B, nh, T, hs)
        outs = []
        if form == "recurrent":
            for fq_t, fk_t, v_t in zip(fq.unbind(2), fk.unbind(2), v.unbind(2)):  # each (B, nh, hs)
                S = S + fk_t.unsqueeze(-1) * v_t.unsqueeze(-2)  # S_t = S_{t-1} + phi(k_t) v_t^T
                z = z + fk_t  # z_t = z_{t-1} + phi(k_t)
                num = (fq_t.unsqueeze(-2) @ S).squeeze(-2)  # phi(q_t)^T S_t      (B, nh, hs)
                den = (fq_t * z).sum(-1, keepdim=True)  # phi(q_t)^T z_t        (B, nh, 1)
                outs.append(num / (den + self.eps))
            y = torch.stack(outs, dim=2)  # (B, nh, T, hs)
        else:
            for fq_c, fk_c, v_c in zip(fq.split(chunk_size, 2), fk.split(chunk_size, 2), v.split(chunk_size, 2)):
                C = fq_c.shape[2]
                A = (fq_c @ fk_c.transpose(-2, -1)).masked_fill(~causal_mask(C, device=x.device), 0.0)  # (B, nh, C, C)
                num = fq_c @ S + A @ v_c  # earlier chunks through S, this chunk through A   (B, nh, C, hs)
                den = (fq_c @ z.unsqueeze(-1)) + A.sum(-1, keepdim=True)  # (B, nh, C, 1)
                outs.append(num / (den + self.eps))
                S = S + fk_c.transpose(-2, -1) @ v_c  # (B, nh, hs, hs)
                z = z + fk_c.sum(2)  # (B, nh, hs)
            y = torch.cat(outs, dim=2)  # (B, nh, T, hs)
        return nn.functional.linear(merge_heads(y), self.W_o, self.b_o), (S, z)  # (B, T, H)

    def step(self, x_t: torch.Tensor, state=None):
        """One position: x_t (B, H), state (S, z) or None -> (y_t (B, H), (S, z)), in constant memory."""
        expect_model_tensor(self, x_t, "x_t", dims=("B", "H"), size={"H": self.d_model})
        y, state = self.forward(x_t.unsqueeze(1), state, form="recurrent")
        return y[:, 0], state

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, eps={self.eps}"


class LinearBlock(ResidualBlock):
    """A Transformer block with ``LinearAttention`` as its attention sublayer (pre- or post-norm,
    as ``transformer.Block``): x (B, T, H), state -> (y (B, T, H), state)."""

    def __init__(self, d_model: int, n_heads: int, *, d_ff: int | None = None, norm: str = "pre"):
        super().__init__(d_model, LinearAttention(d_model, n_heads), d_ff=d_ff, norm=norm)

    def forward(self, x: torch.Tensor, state=None, form: str = "parallel", chunk_size: int = 64):
        """x (B, T, H), state (S, z) or None -> (y (B, T, H), (S, z)); ``form`` as in ``LinearAttention``."""
        return self.sublayers(x, lambda h: self.attn(h, state, form=form, chunk_size=chunk_size))


class LinearTransformer(nn.Module):
    """A causal core of ``LinearBlock``: x (B, T, D) -> (outputs (B, T, H), state), like a recurrence.

    h_0 = x W_in^T + b_in + P_t (sinusoidal positions at the global index t), L linear-attention
    blocks, and a final LayerNorm for pre-norm. state = (per-block (S, z), t): its size does not
    depend on t, so ``step`` generates in constant memory. Attributes ``form`` ("parallel" or
    "recurrent") and ``chunk_size`` choose how ``forward`` computes (the same function).
    """

    def __init__(self, input_size: int, hidden_size: int, *, num_layers: int, n_heads: int, norm: str = "pre",
                 d_ff: int | None = None, chunk_size: int = 64):
        super().__init__()
        self.input_size = expect_int(input_size, "input_size", minimum=1)
        self.hidden_size, self.n_heads, self.num_layers, self.norm = expect_stack(hidden_size, n_heads, num_layers, norm)
        self.chunk_size = expect_int(chunk_size, "chunk_size", minimum=1)
        self.form = "parallel"
        self.W_in = nn.Linear(input_size, hidden_size)
        self.blocks = nn.ModuleList(LinearBlock(hidden_size, n_heads, d_ff=d_ff, norm=norm) for _ in range(num_layers))
        self.ln_f = LayerNorm(hidden_size) if norm == "pre" else None

    def _check_state(self, state):
        if (not isinstance(state, (tuple, list)) or len(state) != 2 or not isinstance(state[1], int)
                or not isinstance(state[0], (tuple, list)) or len(state[0]) != self.num_layers):
            raise TypeError(f"state must be a pair (per-block states: a tuple of num_layers={self.num_layers} "
                            f"pairs (S, z), t: an int); got {type(state).__name__}")
        return state

    def forward(self, x: torch.Tensor, state=None):
        """x (B, T, D), state (per-block (S, z), t) or None -> (outputs (B, T, H), (per-block (S, z), t + T))."""
        expect_model_tensor(self, x, "x", dims=("B", "T", "D"), size={"D": self.input_size})
        expect_nonempty_time(x, "x")
        return self._run(x, state, expect_choice(self.form, "form", FORMS))

    def _run(self, x: torch.Tensor, state, form: str):
        states, start = (None, 0) if state is None else self._check_state(state)
        dtype, device = module_dtype_device(self)
        h = self.W_in(x) + sinusoidal_positions(x.shape[1], self.hidden_size, start, device=device, dtype=dtype)
        new_states = []
        for layer, block in enumerate(self.blocks):
            h, s = block(h, None if states is None else states[layer], form=form, chunk_size=self.chunk_size)
            new_states.append(s)
        if self.ln_f is not None:
            h = self.ln_f(h)
        return h, (tuple(new_states), start + x.shape[1])

    def step(self, x_t: torch.Tensor, state=None):
        """One token: x_t (B, D), state or None -> (y_t (B, H), state), in memory independent of t."""
        expect_model_tensor(self, x_t, "x_t", dims=("B", "D"), size={"D": self.input_size})
        y, state = self._run(x_t.unsqueeze(1), state, "recurrent")
        return y[:, 0], state

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, num_layers={self.num_layers}, "
                f"n_heads={self.n_heads}, norm={self.norm!r}, chunk_size={self.chunk_size}")
