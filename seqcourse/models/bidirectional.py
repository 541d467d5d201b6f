"""Bidirectional recurrent layers (Schuster & Paliwal, 1997) and a per-step tagger.

Glossary (the Gating chapter's symbols):

    B  batch size   T  sequence length   D  input features   H  hidden units of one direction
    →h_t  (B, H)  forward state after reading x_1 ... x_t   (a left-to-right layer)
    ←h_t  (B, H)  backward state after reading x_T ... x_t  (a second layer run right to left)
    h_t = [→h_t; ←h_t]  (B, 2H)  what the bidirectional layer outputs at step t

Because ←h_t has read x_{t+1} ... x_T, the output at step t depends on inputs that, in
left-to-right generation, have not been written yet: a bidirectional layer can tag or encode a
whole given sequence but cannot generate one token at a time, so it has no ``step()``.

``Bidirectional(fw, bw)`` with single-layer directions computes the same function as
``torch.nn.RNN/GRU/LSTM(..., bidirectional=True, batch_first=True)`` (``copy_bidirectional_from_torch``
copies the weights); torch's L-layer bidirectional network is a stack of L such wrappers, layer
l > 0 reading the 2H features of the layer below.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..validation import expect_ids, expect_int, expect_model_tensor, expect_nonempty_time, module_dtype_device
from .gated import GRU, LSTM, copy_gru_from_torch, copy_lstm_from_torch
from .rnn import RNN, copy_rnn_from_torch

__all__ = ["Bidirectional", "Tagger", "copy_bidirectional_from_torch"]

_COPY = {RNN: (nn.RNN, copy_rnn_from_torch), GRU: (nn.GRU, copy_gru_from_torch), LSTM: (nn.LSTM, copy_lstm_from_torch)}


class Bidirectional(nn.Module):
    """Two recurrent layers over the same sequence, one left to right and one right to left.

    ``forward_layer`` and ``backward_layer`` are any seqcourse recurrent layers with
    ``forward(x (B, T, D), state) -> (outputs (B, T, H), state)`` and the same ``input_size`` and
    ``hidden_size`` (e.g. two ``LSTM``). The backward layer reads the time-reversed input and its
    outputs are reversed back, so ``outputs[:, t] = [→h_t; ←h_t]``.
    """

    def __init__(self, forward_layer: nn.Module, backward_layer: nn.Module):
        super().__init__()
        for name, layer in (("forward_layer", forward_layer), ("backward_layer", backward_layer)):
            if not isinstance(layer, nn.Module) or not hasattr(layer, "hidden_size") or not hasattr(layer, "input_size"):
                raise TypeError(f"{name} must be a seqcourse recurrent layer (RNN, GRU, LSTM) with "
                                f"input_size and hidden_size; got {type(layer).__name__}")
        sizes = [(layer.input_size, layer.hidden_size) for layer in (forward_layer, backward_layer)]
        if sizes[0] != sizes[1]:
            raise ValueError(f"the two directions must have the same (input_size, hidden_size); got "
                             f"{sizes[0]} forward and {sizes[1]} backward")
        self.forward_layer, self.backward_layer = forward_layer, backward_layer
        self.input_size, self.hidden_size = sizes[0]
        self.output_size = 2 * self.hidden_size

    def forward(self, x: torch.Tensor, state=None):
        """x (B, T, D), state = (forward state, backward state) or None
        -> (outputs (B, T, 2H), (forward state after x_T, backward state after x_1)).

        Each direction's state has the format of its layer ((L, B, H), or (h, c) for the LSTM).
        """
        expect_model_tensor(self, x, "x", dims=("B", "T", "D"), size={"D": self.input_size})
        expect_nonempty_time(x, "x")
        if state is None:
            state = (None, None)
        elif not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError("state must be a pair (forward state, backward state), or None for zeros; "
                            f"got {type(state).__name__}")
        fw_out, fw_state = self.forward_layer(x, state[0])  # (B, T, H): →h_1 ... →h_T
        bw_out, bw_state = self.backward_layer(x.flip(1), state[1])  # ←h_T ... ←h_1
        return torch.cat([fw_out, bw_out.flip(1)], dim=-1), (fw_state, bw_state)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size} per direction"


def copy_bidirectional_from_torch(ours: Bidirectional, theirs: nn.Module, layer: int = 0) -> None:
    """Copy layer ``layer`` of a bidirectional ``torch.nn.RNN``/``GRU``/``LSTM`` into ``ours``.

    ``ours`` must wrap two single-layer seqcourse layers of the matching kind: torch's
    ``*_l{layer}`` weights go to ``ours.forward_layer`` and ``*_l{layer}_reverse`` to
    ``ours.backward_layer``, each through the single-direction copy function (which, for the GRU,
    maps torch's update gate to the text's convention).
    """
    if not isinstance(ours, Bidirectional):
        raise TypeError(f"ours must be a Bidirectional; got {type(ours).__name__}")
    kind = type(ours.forward_layer)
    if kind not in _COPY or type(ours.backward_layer) is not kind:
        raise TypeError("ours must wrap two seqcourse layers of the same kind (RNN, GRU or LSTM); got "
                        f"{kind.__name__} and {type(ours.backward_layer).__name__}")
    torch_class, copy = _COPY[kind]
    if not isinstance(theirs, torch_class) or not theirs.bidirectional:
        raise TypeError(f"theirs must be a bidirectional torch.nn.{torch_class.__name__}; got {theirs!r}")
    expect_int(layer, "layer", minimum=0, maximum=theirs.num_layers - 1)
    if getattr(theirs, "proj_size", 0) != 0:
        raise ValueError(f"theirs must have proj_size=0 (no LSTM projection); got proj_size={theirs.proj_size}")
    expected_input = theirs.input_size if layer == 0 else 2 * theirs.hidden_size
    for ours_layer, direction in ((ours.forward_layer, "forward"), (ours.backward_layer, "backward")):
        got = (ours_layer.input_size, ours_layer.hidden_size)
        if got != (expected_input, theirs.hidden_size):
            why = "input_size" if layer == 0 else "2 * hidden_size: it reads both directions of the layer below"
            raise ValueError(
                f"the {direction} layer must have (input_size, hidden_size) = ({expected_input}, {theirs.hidden_size}) "
                f"to hold layer {layer} of theirs (input size = theirs' {why}); got {got}"
            )
    for ours_layer, suffix in ((ours.forward_layer, ""), (ours.backward_layer, "_reverse")):
        if ours_layer.num_layers != 1:
            raise ValueError(f"each direction must have num_layers=1; got {ours_layer.num_layers} "
                             "(stack Bidirectional wrappers for more layers, as torch does)")
        # A one-layer, one-direction torch module holding this direction's weights.
        reference = next(theirs.parameters())
        single = torch_class(ours_layer.input_size, ours_layer.hidden_size, 1, bias=theirs.bias,
                             batch_first=True).to(reference.device, reference.dtype)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if theirs.bias else ()):
                getattr(single, f"{name}_l0").copy_(getattr(theirs, f"{name}_l{layer}{suffix}"))
        copy(ours_layer, single)


class Tagger(nn.Module):
    """One label per step: logits_t = W_o h_t + b_o, with h_t from any recurrent layer, e.g. a
    ``Bidirectional`` one (h_t = [→h_t; ←h_t], 2H features) or a left-to-right ``LSTM`` (H).

    Token ids (B, T) become one-hot vectors of size ``vocab_size`` (the core's ``input_size``);
    ``forward(ids)`` returns logits (B, T, num_tags). With ``vocab_size=None`` the tagger reads
    feature vectors instead: ``forward(x)``, x (B, T, D) float with D the core's ``input_size``.
    """

    def __init__(self, core: nn.Module, vocab_size: int | None, *, num_tags: int):
        super().__init__()
        self.core = core
        self.vocab_size = None if vocab_size is None else expect_int(vocab_size, "vocab_size", minimum=1)
        self.num_tags = expect_int(num_tags, "num_tags", minimum=1)
        if vocab_size is not None and getattr(core, "input_size", None) != vocab_size:
            raise ValueError(f"core.input_size must equal vocab_size={vocab_size} (one-hot inputs); "
                             f"got {getattr(core, 'input_size', None)}")
        width = getattr(core, "output_size", getattr(core, "hidden_size", None))
        if not isinstance(width, int):
            raise TypeError(f"core must say its output width (output_size or hidden_size); got {type(core).__name__}")
        k = 1.0 / math.sqrt(width)  # torch.nn.Linear's initialisation
        self.W_o = nn.Parameter(torch.empty(num_tags, width).uniform_(-k, k))
        self.b_o = nn.Parameter(torch.empty(num_tags).uniform_(-k, k))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) long (or x (B, T, D) float when ``vocab_size`` is None) -> logits (B, T, num_tags)."""
        dtype, device = module_dtype_device(self)
        if self.vocab_size is None:
            x = ids  # the core checks the features' shape, dtype and device
        else:
            expect_ids(ids, "ids", self.vocab_size, device=device)
            x = nn.functional.one_hot(ids, self.vocab_size).to(dtype)
        h, _ = self.core(x)  # (B, T, width)
        return nn.functional.linear(h, self.W_o, self.b_o)
