"""The encoder–decoder Transformer (Vaswani et al. 2017): an encoder of self-attention blocks, a decoder
of blocks that add cross-attention to the encoder's output, with the API of ``seq2seq.Seq2Seq``.

Glossary (the Attention chapter's symbols; S, T and the token ids as in ``seq2seq``):

    B  batch size      S  source length      T  target length      D  model width (d_model)
    nh heads           hs head size D / nh   L  blocks in the encoder, and again in the decoder
    d_ff  width of the feed-forward layer (4D by default)       LN  LayerNorm over the D features
    m  (B, S, D)  the encoder's output, the "memory" every decoder block reads
    y  (B, T, D)  the decoder's residual stream (one vector per target position)

Inputs. Token embeddings plus positions (``transformer.sinusoidal_positions``, or learned)::

    x_0 = E_src[src] + P_{0..S-1}          y_0 = E_tgt[tgt_in] + P_{0..T-1}

Encoder: L ``transformer.Block`` (self-attention over the source, every position may read every
real source position, never a PAD), then in pre-norm a final LN: m = LN_enc(x_L).

Decoder block (``DecoderBlock``), three sublayers. A: causal self-attention (target position t reads
positions 1..t), C: **cross-attention**, whose queries come from the target and whose keys and
values come from the memory m, and F: the feed-forward network::

    C(y, m) = Concat_i softmax( (y W_q^i)(m W_k^i)^T / sqrt(hs) + M_src ) (m W_v^i)  W_o
    M_src[t, j] = 0 where source position j holds a token, -inf where it is PAD

    pre-norm:   h = y + A(LN_1(y)),   g = h + C(LN_c(h), m),   y' = g + F(LN_2(g))
    post-norm:  h = LN_1(y + A(y)),   g = LN_c(h + C(h, m)),   y' = LN_2(g + F(g))

Cross-attention is the Transformer's form of the attention of ``seq2seq`` (query: the decoder's state,
keys and values: the encoder's states), with learnt projections and several heads.
Output: logits = LN_dec(y_L) W_o^T + b_o (LN_dec in pre-norm only), (B, T, tgt_vocab).

``copy_encoder_layer_from_torch`` and ``copy_decoder_layer_from_torch`` copy a
``torch.nn.TransformerEncoderLayer`` / ``TransformerDecoderLayer`` (GELU, ``norm_first`` matching our
``norm``) into a ``Block`` / ``DecoderBlock``; the tests compare the two, and the whole model against
``torch.nn.Transformer``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.tasks import BOS, EOS, PAD
from ..validation import (expect_choice, expect_ids, expect_int, expect_model_tensor, expect_nonempty_time,
                          module_dtype_device)
from .attention import MultiHeadAttention, copy_mha_from_torch
from .norm import LayerNorm
from .seq2seq import source_mask
from .transformer import Block, ResidualBlock, expect_stack, sinusoidal_positions

POSITIONS = ("sinusoidal", "learned")
"""Positions the encoder–decoder adds to its embeddings (rotary ones would rotate inside attention)."""

__all__ = ["DecoderBlock", "TransformerSeq2Seq", "copy_decoder_layer_from_torch", "copy_encoder_layer_from_torch"]


class DecoderBlock(ResidualBlock):
    """One decoder block (module docstring): y (B, T, D), memory m (B, S, D) -> y' (B, T, D).

    Parameters: those of ``ResidualBlock`` (``ln_1`` and ``attn``: the causal self-attention A;
    ``ln_2`` and ``mlp``: the feed-forward F), plus ``ln_cross`` and ``cross_attn`` (a
    ``MultiHeadAttention`` whose W_q reads the target and whose W_k, W_v read the memory): C.
    """

    def __init__(self, d_model: int, n_heads: int, *, d_ff: int | None = None, norm: str = "pre"):
        super().__init__(d_model, MultiHeadAttention(d_model, n_heads), d_ff=d_ff, norm=norm)
        self.ln_cross = LayerNorm(d_model)
        self.cross_attn = MultiHeadAttention(d_model, n_heads)

    def _residual(self, x: torch.Tensor, sublayer, ln: nn.Module) -> torch.Tensor:
        """pre-norm: x + sublayer(LN(x));  post-norm: LN(x + sublayer(x))."""
        return x + sublayer(ln(x)) if self.norm == "pre" else ln(x + sublayer(x))

    def forward(self, y: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None = None,
                fast: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """y (B, T, D), memory (B, S, D), mask bool (B, 1, S): the source mask, True at real source
        tokens (``attention.padding_mask``), or None (every source position is real)
        -> (y' (B, T, D), cross-attention weights (B, nh, T, S), or None when ``fast``)."""
        expect_model_tensor(self, y, "y", dims=("B", "T", "D"), size={"D": self.d_model})
        expect_nonempty_time(y, "y")
        expect_model_tensor(self, memory, "memory", dims=("B", "S", "D"), size={"B": y.shape[0], "D": self.d_model})
        expect_nonempty_time(memory, "memory")
        cross = {}

        def cross_attention(h):
            q, k, v = self.cross_attn.project(h, memory)  # q (B, nh, T, hs), k, v (B, nh, S, hs)
            out, cross["weights"] = self.cross_attn.attend(q, k, v, mask=mask, fast=fast)
            return out

        h = self._residual(y, lambda x: self.attn(x, causal=True, fast=fast)[0], self.ln_1)
        g = self._residual(h, cross_attention, self.ln_cross)
        return self._residual(g, self.mlp, self.ln_2), cross["weights"]


class TransformerSeq2Seq(nn.Module):
    """Encoder–decoder Transformer (module docstring) with the API of ``seq2seq.Seq2Seq``.

    ``TransformerSeq2Seq(src_vocab, tgt_vocab, *, d_model, num_layers, n_heads, d_ff=None, norm="pre",
    positions="sinusoidal", max_len=512)``: ``num_layers`` blocks in the encoder and as many in the
    decoder. Parameters: ``src_embed`` (src_vocab, D), ``tgt_embed`` (tgt_vocab, D), ``P``
    (max_len, D) when ``positions="learned"``, ``encoder`` (L ``Block``), ``decoder`` (L
    ``DecoderBlock``), ``ln_enc`` and ``ln_dec`` (pre-norm only, else None), ``W_o`` (tgt_vocab, D),
    ``b_o`` (tgt_vocab,). Token ids as in ``seqcourse.data.tasks`` (PAD = 0, BOS = 1, EOS = 2).

    * ``forward(src (B, S), tgt_in (B, T), return_attention=False)`` -> logits (B, T, tgt_vocab), with
      ``return_attention=True`` (logits, cross-attention weights (B, L, nh, T, S)): block l's head i's
      weight of target position t on source position j, zero at PAD, rows summing to 1.
    * ``greedy(src, max_len, return_attention=False)`` -> ids (B, max_len): BOS first, then each
      step's argmax fed back; the encoder runs once and the decoder re-reads the whole prefix at
      every step (no key-value cache: simpler, and cheap at the course's lengths; the decoder-only
      ``transformer.Transformer`` shows the cache). After a sequence's EOS its ids are PAD. With
      ``return_attention=True``: (ids, weights (B, L, nh, max_len, S)).
    * ``encode(src)`` -> (memory (B, S, D), source mask (B, 1, S)).
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, *, d_model: int, num_layers: int, n_heads: int,
                 d_ff: int | None = None, norm: str = "pre", positions: str = "sinusoidal", max_len: int = 512):
        super().__init__()
        self.src_vocab = expect_int(src_vocab, "src_vocab", minimum=EOS + 1)
        self.tgt_vocab = expect_int(tgt_vocab, "tgt_vocab", minimum=EOS + 1)
        self.d_model, self.n_heads, self.num_layers, self.norm = expect_stack(d_model, n_heads, num_layers, norm,
                                                                              width_name="d_model")
        self.max_len = expect_int(max_len, "max_len", minimum=1)
        self.positions = expect_choice(positions, "positions", POSITIONS)
        self.fast = True  # the fused attention kernel, unless weights are asked for
        self.src_embed = nn.Embedding(src_vocab, d_model)
        self.tgt_embed = nn.Embedding(tgt_vocab, d_model)
        self.P = nn.Parameter(0.02 * torch.randn(max_len, d_model)) if positions == "learned" else None
        self.encoder = nn.ModuleList(Block(d_model, n_heads, d_ff=d_ff, norm=norm) for _ in range(num_layers))
        self.decoder = nn.ModuleList(DecoderBlock(d_model, n_heads, d_ff=d_ff, norm=norm) for _ in range(num_layers))
        self.ln_enc = LayerNorm(d_model) if norm == "pre" else None
        self.ln_dec = LayerNorm(d_model) if norm == "pre" else None
        out = nn.Linear(d_model, tgt_vocab)  # torch.nn.Linear's initialisation
        self.W_o, self.b_o = out.weight, out.bias
        self.d_ff = self.encoder[0].d_ff

    def embed(self, ids: torch.Tensor, table: nn.Embedding) -> torch.Tensor:
        """E[ids] + P_{0..n-1}: ids (B, n) -> (B, n, D)."""
        n = ids.shape[1]
        if self.P is None:
            P = sinusoidal_positions(n, self.d_model, device=ids.device, dtype=table.weight.dtype)
        else:
            if n > self.max_len:
                raise ValueError(f"learned positions go up to max_len={self.max_len}, but this sequence has "
                                 f"{n} positions; build the model with a larger max_len")
            P = self.P[:n]
        return table(ids) + P

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) ids, PAD only after the last token -> (memory m (B, S, D), mask (B, 1, S)).

        ``mask`` is True at real source tokens; no position of the encoder reads a PAD position, so
        the memory at real positions does not depend on the padding (the memory *at* PAD positions
        is computed but never read)."""
        mask = source_mask(src, self.src_vocab, module_dtype_device(self)[1])[:, None, :]  # (B, 1, S)
        x = self.embed(src, self.src_embed)
        for block in self.encoder:
            x = block(x, mask)
        return (x if self.ln_enc is None else self.ln_enc(x)), mask

    def decode(self, memory: torch.Tensor, mask: torch.Tensor, tgt_in: torch.Tensor, fast: bool = True):
        """memory (B, S, D), mask (B, 1, S) from ``encode``, tgt_in (B, T)
        -> (logits (B, T, tgt_vocab), [cross-attention weights (B, nh, T, S) per block] or None)."""
        expect_ids(tgt_in, "tgt_in", self.tgt_vocab, device=memory.device)
        if tgt_in.shape[0] != memory.shape[0] or tgt_in.shape[1] == 0:
            raise ValueError(f"tgt_in must have shape (B={memory.shape[0]}, T >= 1); got {tuple(tgt_in.shape)}")
        y = self.embed(tgt_in, self.tgt_embed)
        weights = []
        for block in self.decoder:
            y, w = block(y, memory, mask, fast=fast)
            weights.append(w)
        if self.ln_dec is not None:
            y = self.ln_dec(y)
        logits = nn.functional.linear(y, self.W_o, self.b_o)
        return logits, (None if fast else weights)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, return_attention: bool = False):
        """Teacher forcing: src (B, S), tgt_in (B, T) (BOS, then the target shifted right)
        -> logits (B, T, tgt_vocab), or (logits, weights (B, L, nh, T, S)) with ``return_attention``."""
        memory, mask = self.encode(src)
        logits, weights = self.decode(memory, mask, tgt_in, fast=self.fast and not return_attention)
        return (logits, torch.stack(weights, dim=1)) if return_attention else logits

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, max_len: int, return_attention: bool = False):
        """Greedy decoding: src (B, S) -> ids (B, max_len), each step's argmax fed back as the next
        input; after EOS a sequence's ids are PAD. ``return_attention=True`` -> (ids, weights
        (B, L, nh, max_len, S)), the weights of every step (causal: a later step does not change them)."""
        max_len = expect_int(max_len, "max_len", minimum=1)
        memory, mask = self.encode(src)
        fed = torch.full((src.shape[0], 1), BOS, dtype=torch.long, device=src.device)  # (B, t + 1)
        for t in range(max_len):
            last = t == max_len - 1
            logits, weights = self.decode(memory, mask, fed, fast=self.fast and not (last and return_attention))
            next_ids = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
            fed = torch.cat([fed, next_ids], dim=1)
        ids = fed[:, 1:]  # (B, max_len)
        ended = (ids == EOS).cumsum(dim=1) - (ids == EOS).long() > 0  # strictly after the first EOS
        ids = ids.masked_fill(ended, PAD)
        return (ids, torch.stack(weights, dim=1)) if return_attention else ids

    def extra_repr(self) -> str:
        return (f"src_vocab={self.src_vocab}, tgt_vocab={self.tgt_vocab}, d_model={self.d_model}, "
                f"num_layers={self.num_layers}, n_heads={self.n_heads}, d_ff={self.d_ff}, norm={self.norm!r}, "
                f"positions={self.positions!r}")


# ---- weights from torch.nn ----------------------------------------------------------------------


def _check_torch_layer(ours: ResidualBlock, theirs: nn.Module, kind: type, converter: str) -> None:
    """The configuration a torch Transformer layer must have to compute our block's function."""
    if not isinstance(theirs, kind):
        raise TypeError(f"{converter}(ours, theirs) needs a torch.nn.{kind.__name__} as theirs; "
                        f"got {type(theirs).__name__}")
    attn = theirs.self_attn
    if (attn.embed_dim, attn.num_heads, theirs.linear1.out_features) != (ours.d_model, ours.attn.n_heads, ours.d_ff):
        raise ValueError(f"sizes differ: ours d_model={ours.d_model}, n_heads={ours.attn.n_heads}, d_ff={ours.d_ff}; "
                         f"theirs d_model={attn.embed_dim}, nhead={attn.num_heads}, "
                         f"dim_feedforward={theirs.linear1.out_features}")
    if theirs.norm_first != (ours.norm == "pre"):
        raise ValueError(f"ours is {ours.norm}-norm, so theirs needs norm_first={ours.norm == 'pre'}; "
                         f"got norm_first={theirs.norm_first}")
    act = theirs.activation
    exact_gelu = act is nn.functional.gelu or (isinstance(act, nn.GELU) and act.approximate == "none")
    if not exact_gelu:
        raise ValueError(f"ours uses the exact GELU, so theirs needs activation='gelu'; got {act}")
    if theirs.linear1.bias is None or theirs.norm1.bias is None:
        raise ValueError("ours has biases in every linear layer and LayerNorm, so theirs needs bias=True")
    if theirs.norm1.eps != ours.ln_1.eps:
        raise ValueError(f"LayerNorm eps differs: ours {ours.ln_1.eps}, theirs {theirs.norm1.eps}")


def _copy_feed_forward_and_norms(ours: ResidualBlock, theirs: nn.Module, norms) -> None:
    with torch.no_grad():
        for mine, their in ((ours.mlp[0], theirs.linear1), (ours.mlp[2], theirs.linear2), *norms):
            mine.weight.copy_(their.weight)
            mine.bias.copy_(their.bias)


def copy_encoder_layer_from_torch(ours: Block, theirs: nn.TransformerEncoderLayer) -> None:
    """Copy a ``torch.nn.TransformerEncoderLayer``'s weights into our ``Block`` (in place).

    self_attn -> attn (``copy_mha_from_torch``), linear1 / linear2 -> mlp[0] / mlp[2],
    norm1 / norm2 -> ln_1 / ln_2. Theirs must have our sizes, activation="gelu", norm_first=True for
    a pre-norm block (False for post-norm), biases and the same LayerNorm eps; with dropout 0 (or in
    eval mode) the two compute the same function.
    """
    if not isinstance(ours, Block):
        raise TypeError(f"copy_encoder_layer_from_torch(ours, theirs) needs a seqcourse Block as ours; "
                        f"got {type(ours).__name__}")
    _check_torch_layer(ours, theirs, nn.TransformerEncoderLayer, "copy_encoder_layer_from_torch")
    copy_mha_from_torch(ours.attn, theirs.self_attn)
    _copy_feed_forward_and_norms(ours, theirs, ((ours.ln_1, theirs.norm1), (ours.ln_2, theirs.norm2)))


def copy_decoder_layer_from_torch(ours: DecoderBlock, theirs: nn.TransformerDecoderLayer) -> None:
    """Copy a ``torch.nn.TransformerDecoderLayer``'s weights into our ``DecoderBlock`` (in place).

    self_attn -> attn, multihead_attn -> cross_attn (``copy_mha_from_torch``), linear1 / linear2 ->
    mlp[0] / mlp[2], norm1 / norm2 / norm3 -> ln_1 / ln_cross / ln_2. Theirs must have our sizes,
    activation="gelu", norm_first=True for a pre-norm block (False for post-norm), biases and the
    same LayerNorm eps; with dropout 0 (or in eval mode) the two compute the same function.
    """
    if not isinstance(ours, DecoderBlock):
        raise TypeError(f"copy_decoder_layer_from_torch(ours, theirs) needs a seqcourse DecoderBlock as ours; "
                        f"got {type(ours).__name__}")
    _check_torch_layer(ours, theirs, nn.TransformerDecoderLayer, "copy_decoder_layer_from_torch")
    copy_mha_from_torch(ours.attn, theirs.self_attn)
    copy_mha_from_torch(ours.cross_attn, theirs.multihead_attn)
    _copy_feed_forward_and_norms(ours, theirs, ((ours.ln_1, theirs.norm1), (ours.ln_cross, theirs.norm2),
                                                (ours.ln_2, theirs.norm3)))
