"""An encoder–decoder (seq2seq) model with a recurrent encoder and decoder, and optional attention.

Glossary (the Gating chapter's symbols; the attention chapter reuses them):

    B  batch size        S  source length        T  target length       E  embedding size
    H  hidden units      L  stacked layers       V  vocabulary size (src_vocab, tgt_vocab)
    h_j  (B, H)  encoder state after reading source token j (top layer): the "memory" (B, S, H)
    s_t  (B, H)  decoder state after writing target step t (top layer); s_0 = the encoder's last state
    e(y)  (B, E) embedding of token y         y_{t-1}  the previous target token (BOS at t = 1)
    c_t  (B, H)  context vector given to step t          α_{t,j}  attention weight of step t on source j

The encoder (our ``RNN``, ``GRU`` or ``LSTM``, ``cell=``) reads e(x_1) ... e(x_S); padded positions
(``PAD`` after the last token) leave its state unchanged, so h_S is the state after the last real token.
The decoder (the same kind of layer) starts from the encoder's last state (h and, for the LSTM, c)
and, for t = 1 ... T, depending on ``attention``::

    None       c_t = h_S  (the same vector at every step: the bottleneck)
               s_t = cell([e(y_{t-1}); c_t], s_{t-1})
    "additive" (Bahdanau) score_{t,j} = v^T tanh(W_q s_{t-1} + W_k h_j)
               α_{t,·} = softmax_j(score_{t,·}) over the real source positions,  c_t = Σ_j α_{t,j} h_j
               s_t = cell([e(y_{t-1}); c_t], s_{t-1})
    "dot"      (Luong-style) s_t = cell(e(y_{t-1}), s_{t-1}),  score_{t,j} = s_t · h_j,
               α and c_t as above (the query is the NEW state s_t)

    logits_t = W_o [s_t; c_t] + b_o            (B, V)

API
---
``Seq2Seq(src_vocab, tgt_vocab, *, embed_size, hidden_size, cell="gru", attention=None, num_layers=1)``

* ``forward(src (B, S), tgt_in (B, T), return_attention=False)`` -> logits (B, T, V), and with
  ``return_attention=True`` the pair (logits, α (B, T, S)). Teacher forcing: ``tgt_in`` is the target
  shifted right (``BOS`` first), as ``seqcourse.data.tasks.reverse_task`` returns it.
* ``greedy(src, max_len, return_attention=False)`` -> ids (B, max_len): feeds back its own argmax,
  starting from ``BOS``; after a sequence's ``EOS`` every later id is ``PAD``. With
  ``return_attention=True``: (ids, α (B, max_len, S)) (rows after EOS are still computed).
* ``encode(src)`` -> (memory (B, S, H) zero at PAD, state): the encoder alone.
* α is zero at PAD positions and each row sums to 1; asking for it when ``attention=None`` raises.

Token ids follow ``seqcourse.data.tasks``: ``PAD = 0`` (right padding of ``src`` and of the targets),
``BOS = 1``, ``EOS = 2``. ``seq2seq_loss`` (the cross-entropy over non-PAD targets, usable as
``train``'s ``loss_fn``) and ``exact_match`` (a sequence counts only if every token matches) go with it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..data.tasks import BOS, EOS, PAD
from ..validation import expect_ids, expect_int, expect_tensor, module_dtype_device, same_device
from .gated import GRU, LSTM
from .rnn import RNN

__all__ = ["Seq2Seq", "exact_match", "seq2seq_loss", "source_mask"]

_CELLS = {"rnn": RNN, "gru": GRU, "lstm": LSTM}
_ATTENTION = (None, "additive", "dot")


def _top(state) -> torch.Tensor:
    """The top layer's hidden state (B, H) of a layer's state ((L, B, H), or (h, c) for the LSTM)."""
    return state[0][-1] if isinstance(state, tuple) else state[-1]


def _keep_where(mask: torch.Tensor, new, old):
    """new where mask (B,) is True, old elsewhere, for a state (L, B, H) or a pair of them."""
    m = mask[None, :, None]
    if isinstance(new, tuple):
        return tuple(torch.where(m, n, o) for n, o in zip(new, old))
    return torch.where(m, new, old)


def source_mask(src: torch.Tensor, src_vocab: int, device=None) -> torch.Tensor:
    """Check a batch of source ids and return where its real tokens are: src (B, S) long, ids in
    [0, src_vocab), on ``device``, S >= 1, every row starting with a token and padded with PAD only
    on the right -> bool (B, S), True at real tokens. Every encoder–decoder of the course reads its
    source through this check."""
    expect_ids(src, "src", src_vocab, device=device)
    if src.shape[1] == 0:
        raise ValueError("src must have at least one step (S >= 1)")
    mask = src != PAD
    if not mask[:, 0].all():
        raise ValueError(f"every source sequence needs at least one token; some start with PAD={PAD}")
    if (mask[:, 1:] & ~mask[:, :-1]).any():
        raise ValueError(f"src may hold PAD={PAD} only after its last token (right padding); "
                         "found a token after a PAD")
    return mask


class Seq2Seq(nn.Module):
    """Recurrent encoder–decoder with context c = h_S, or additive / dot attention (module docstring).

    Parameters: ``src_embed`` (src_vocab, E), ``tgt_embed`` (tgt_vocab, E), ``encoder`` and
    ``decoder`` (seqcourse ``RNN``/``GRU``/``LSTM``, decoder input E + H, or E for ``"dot"``),
    ``W_o`` (tgt_vocab, 2H), ``b_o`` (tgt_vocab,), and for ``"additive"`` ``W_q``, ``W_k`` (H, H), ``v`` (H,).
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, *, embed_size: int, hidden_size: int,
                 cell: str = "gru", attention: str | None = None, num_layers: int = 1):
        super().__init__()
        self.src_vocab = expect_int(src_vocab, "src_vocab", minimum=EOS + 1)
        self.tgt_vocab = expect_int(tgt_vocab, "tgt_vocab", minimum=EOS + 1)
        self.embed_size = expect_int(embed_size, "embed_size", minimum=1)
        if cell not in _CELLS:
            raise ValueError(f"cell must be one of {', '.join(map(repr, _CELLS))}; got {cell!r}")
        if attention not in _ATTENTION:
            raise ValueError(f"attention must be one of {', '.join(map(repr, _ATTENTION))}; got {attention!r}")
        self.cell, self.attention = cell, attention
        layer = _CELLS[cell]
        self.src_embed = nn.Embedding(src_vocab, embed_size)
        self.tgt_embed = nn.Embedding(tgt_vocab, embed_size)
        self.encoder = layer(embed_size, hidden_size, num_layers=num_layers)
        # hidden_size and num_layers reach the encoder under their own names, and it checks them.
        self.hidden_size, self.num_layers = self.encoder.hidden_size, self.encoder.num_layers
        H = self.hidden_size
        self.decoder = layer(embed_size + (0 if attention == "dot" else H), H, num_layers=num_layers)
        if attention == "additive":
            self.W_q = nn.Linear(H, H, bias=False)
            self.W_k = nn.Linear(H, H, bias=False)
            self.v = nn.Parameter(torch.empty(H).uniform_(-1 / math.sqrt(H), 1 / math.sqrt(H)))
        k = 1.0 / math.sqrt(2 * H)  # torch.nn.Linear's initialisation for 2H inputs
        self.W_o = nn.Parameter(torch.empty(tgt_vocab, 2 * H).uniform_(-k, k))
        self.b_o = nn.Parameter(torch.empty(tgt_vocab).uniform_(-k, k))

    # ---- encoder ------------------------------------------------------------------------------

    def encode(self, src: torch.Tensor):
        """src (B, S) ids, PAD only after the last token -> (memory (B, S, H), state).

        ``memory[:, j]`` is h_j (zero at PAD positions); ``state`` is the encoder's state after each
        sequence's last real token ((L, B, H), or (h, c) for the LSTM): h_S and the decoder's s_0.
        """
        mask = self._source_mask(src)  # (B, S) True at real tokens
        state, memory = None, []
        for x_t, m_t in zip(self.src_embed(src).unbind(1), mask.unbind(1)):
            y_t, new = self.encoder.step(x_t, state)  # (B, H)
            state = new if state is None else _keep_where(m_t, new, state)  # PAD: keep the state
            memory.append(y_t * m_t[:, None])
        return torch.stack(memory, dim=1), state

    def _source_mask(self, src: torch.Tensor) -> torch.Tensor:
        return source_mask(src, self.src_vocab, module_dtype_device(self)[1])

    # ---- decoder ------------------------------------------------------------------------------

    def _attend(self, query: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor | None,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, H), memory (B, S, H), keys = W_k h_j (B, S, H) or None -> (c_t (B, H), α (B, S))."""
        if self.attention == "additive":
            scores = torch.tanh(self.W_q(query)[:, None, :] + keys) @ self.v  # (B, S)
        else:
            scores = (memory @ query[:, :, None]).squeeze(-1)  # (B, S): s_t · h_j
        alpha = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)  # (B, S)
        return (alpha[:, None, :] @ memory).squeeze(1), alpha

    def _decode(self, memory, state, mask, next_input):
        """Run the decoder. ``next_input(t, logits_prev)`` gives y_{t-1} (B,) or None to stop.
        Yields (logits_t (B, V), α_t (B, S) or None) per step."""
        keys = self.W_k(memory) if self.attention == "additive" else None  # W_k h_j, once per sequence
        context = _top(state)  # c = h_S, used as is when attention is None
        logits, t = None, 0
        while (y_prev := next_input(t, logits)) is not None:
            e = self.tgt_embed(y_prev)  # (B, E)
            alpha = None
            if self.attention == "dot":
                s_t, state = self.decoder.step(e, state)
                context, alpha = self._attend(s_t, memory, None, mask)
            else:
                if self.attention == "additive":
                    context, alpha = self._attend(_top(state), memory, keys, mask)  # query s_{t-1}
                s_t, state = self.decoder.step(torch.cat([e, context], dim=-1), state)
            logits = nn.functional.linear(torch.cat([s_t, context], dim=-1), self.W_o, self.b_o)
            yield logits, alpha
            t += 1

    def _check_attention_request(self, return_attention: bool) -> None:
        if return_attention and self.attention is None:
            raise ValueError("this model has attention=None, so it has no attention weights; "
                             "build it with attention='additive' or 'dot'")

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, return_attention: bool = False):
        """Teacher forcing: src (B, S), tgt_in (B, T) (BOS, then the target shifted right)
        -> logits (B, T, V), or (logits, α (B, T, S)) with ``return_attention=True``."""
        self._check_attention_request(return_attention)
        memory, state = self.encode(src)
        _, device = module_dtype_device(self)
        expect_ids(tgt_in, "tgt_in", self.tgt_vocab, device=device)
        if tgt_in.shape[0] != src.shape[0] or tgt_in.shape[1] == 0:
            raise ValueError(f"tgt_in must have shape (B={src.shape[0]}, T >= 1); got {tuple(tgt_in.shape)}")
        steps = tgt_in.unbind(1)
        out = list(self._decode(memory, state, src != PAD,
                                lambda t, _: steps[t] if t < len(steps) else None))
        logits = torch.stack([o[0] for o in out], dim=1)  # (B, T, V)
        if return_attention:
            return logits, torch.stack([o[1] for o in out], dim=1)  # (B, T, S)
        return logits

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, max_len: int, return_attention: bool = False):
        """Greedy decoding: src (B, S) -> ids (B, max_len), each step's argmax fed back as the next
        input; after EOS a sequence's ids are PAD. ``return_attention=True`` -> (ids, α (B, max_len, S))."""
        self._check_attention_request(return_attention)
        expect_int(max_len, "max_len", minimum=1)
        memory, state = self.encode(src)
        start = torch.full((src.shape[0],), BOS, dtype=torch.long, device=src.device)

        def next_input(t, logits):
            if t == 0:
                return start
            return logits.argmax(-1) if t < max_len else None

        out = list(self._decode(memory, state, src != PAD, next_input))
        ids = torch.stack([o[0].argmax(-1) for o in out], dim=1)  # (B, max_len)
        ended = (ids == EOS).cumsum(dim=1) - (ids == EOS).long() > 0  # strictly after the first EOS
        ids = ids.masked_fill(ended, PAD)
        if return_attention:
            return ids, torch.stack([o[1] for o in out], dim=1)
        return ids

    def extra_repr(self) -> str:
        return (f"src_vocab={self.src_vocab}, tgt_vocab={self.tgt_vocab}, embed_size={self.embed_size}, "
                f"hidden_size={self.hidden_size}, cell={self.cell!r}, attention={self.attention!r}, "
                f"num_layers={self.num_layers}")


def seq2seq_loss(model: Seq2Seq, src: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``model(src, tgt_in)`` against ``tgt_out`` (B, T) over its non-PAD
    positions: the ``loss_fn`` for ``seqcourse.train.train`` on ``reverse_task`` batches.

    ``tgt_out`` must be on the model's device, shaped like ``tgt_in``, and hold at least one non-PAD id."""
    logits = model(src, tgt_in)  # (B, T, V)
    expect_ids(tgt_out, "tgt_out", logits.shape[-1], device=logits.device)
    if tgt_out.shape != logits.shape[:2]:
        raise ValueError(f"tgt_out must have the shape of tgt_in (B, T) = {tuple(logits.shape[:2])}; "
                         f"got {tuple(tgt_out.shape)}")
    if not bool((tgt_out != PAD).any()):
        raise ValueError(f"every position of tgt_out is PAD={PAD}, so the mean over non-PAD targets is undefined")
    return nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)


def exact_match(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """predicted (B, T1), target (B, T2) long -> bool (B,): True where the two sequences are equal
    after padding the shorter with PAD (every token up to and including EOS right, nothing after it).
    The batch sizes must agree and both tensors be on the same device; the lengths T1, T2 may differ."""
    expect_tensor(predicted, "predicted", dims=("B", "T"), dtype="long")
    expect_tensor(target, "target", dims=("B", "T"), size={"B": predicted.shape[0]}, dtype="long")
    if not same_device(predicted.device, target.device):
        raise ValueError(f"predicted and target must be on the same device; got {predicted.device} and {target.device}")
    width = max(predicted.shape[1], target.shape[1])
    pad = lambda x: nn.functional.pad(x, (0, width - x.shape[1]), value=PAD)  # noqa: E731
    return (pad(predicted) == pad(target)).all(dim=1)
