"""Output layers that turn any recurrent-style core into a classifier or a language model.

A *core* is a module with

    forward(x (B, T, D), state=None) -> (outputs (B, T, H), state)
    step(x_t (B, D), state=None)     -> (y_t (B, H), state)

(``RNN`` here; the LSTM, GRU, S4D and Mamba cores of later chapters follow the same protocol).
Token ids become one-hot vectors e(id) of length V, in the dtype of the core's parameters, so the
core's ``W_x e(id)`` is simply column ``id`` of ``W_x``. The output layer is

    y = W_o h + b_o,    W_o (C, H), b_o (C,)

applied to the last state h_T (``Classifier``, C = num_classes) or to every h_t
(``LanguageModel``, C = V, the logits of the next token).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..validation import expect_float, expect_ids, expect_int, module_dtype_device

__all__ = ["Classifier", "LanguageModel"]


def _check_core(core) -> None:
    if not isinstance(core, nn.Module) or not callable(getattr(core, "step", None)):
        raise TypeError(
            "core must be a torch.nn.Module with forward(x, state) -> (outputs, state) and "
            f"step(x_t, state) -> (y_t, state); got {type(core).__name__}"
        )


def _check_core_input(core, expected: int, what: str) -> None:
    size = getattr(core, "input_size", None)
    if size is not None and size != expected:
        raise ValueError(f"core.input_size is {size}, but {what} needs input_size={expected}")


class _Readout(nn.Module):
    """Shared part: the core, the output layer y = W_o h + b_o, and one-hot encoding of ids."""

    def __init__(self, core: nn.Module, hidden_size: int, *, out_size: int, vocab_size: int | None):
        super().__init__()
        _check_core(core)
        self.core = core
        self.hidden_size = expect_int(hidden_size, "hidden_size", minimum=1)
        self.vocab_size = None if vocab_size is None else expect_int(vocab_size, "vocab_size", minimum=1)
        # torch.nn.Linear's initialisation: uniform in [-1/sqrt(H), 1/sqrt(H)].
        k = 1.0 / math.sqrt(hidden_size)
        self.W_o = nn.Parameter(torch.empty(out_size, hidden_size).uniform_(-k, k))
        self.b_o = nn.Parameter(torch.empty(out_size).uniform_(-k, k))

    def _one_hot(self, ids: torch.Tensor) -> torch.Tensor:
        dtype, _ = module_dtype_device(self.core)
        return nn.functional.one_hot(ids, self.vocab_size).to(dtype)

    def _readout(self, h: torch.Tensor) -> torch.Tensor:
        if h.shape[-1] != self.hidden_size:
            raise ValueError(
                f"the core returns states of size {h.shape[-1]}, but this layer was built with "
                f"hidden_size={self.hidden_size}"
            )
        return nn.functional.linear(h, self.W_o, self.b_o)


class Classifier(_Readout):
    """Sequence classifier: logits = W_o h_T + b_o from the core's last output h_T.

    Input: ids (B, T) long when ``vocab_size`` is given (one-hot encoded), otherwise x (B, T, D).
    Output: logits (B, num_classes).
    """

    def __init__(self, core: nn.Module, hidden_size: int, *, num_classes: int, vocab_size: int | None = None):
        expect_int(num_classes, "num_classes", minimum=1)
        super().__init__(core, hidden_size, out_size=num_classes, vocab_size=vocab_size)
        self.num_classes = num_classes
        if vocab_size is not None:
            _check_core_input(core, vocab_size, f"one-hot input with vocab_size={vocab_size}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ids (B, T) long or x (B, T, D) float -> logits (B, num_classes)."""
        _, device = module_dtype_device(self)
        if self.vocab_size is not None:
            x = self._one_hot(expect_ids(x, "ids", self.vocab_size, device=device))
        outputs, _ = self.core(x)  # (B, T, H)
        return self._readout(outputs[:, -1])  # (B, num_classes)


class LanguageModel(_Readout):
    """Next-token model: logits_t = W_o h_t + b_o for every t, where h_t has read ids[:, :t+1].

    ``forward`` scores whole sequences (training); ``step`` and ``sample`` go one token at a
    time with the core's carried state, so generation memory does not grow with its length.
    """

    def __init__(self, core: nn.Module, vocab_size: int, *, hidden_size: int):
        super().__init__(core, hidden_size, out_size=vocab_size, vocab_size=vocab_size)  # checks vocab_size
        _check_core_input(core, vocab_size, f"a language model with vocab_size={vocab_size}")

    def forward(self, ids: torch.Tensor, state=None):
        """ids (B, T) long, state (the core's) or None -> (logits (B, T, V), state)."""
        _, device = module_dtype_device(self)
        expect_ids(ids, "ids", self.vocab_size, device=device)
        outputs, state = self.core(self._one_hot(ids), state)  # (B, T, H)
        return self._readout(outputs), state

    def step(self, ids_t: torch.Tensor, state=None):
        """One token per sequence: ids_t (B,) long, state -> (logits (B, V), state)."""
        _, device = module_dtype_device(self)
        expect_ids(ids_t, "ids_t", self.vocab_size, dims=("B",), device=device)
        y_t, state = self.core.step(self._one_hot(ids_t), state)  # (B, H)
        return self._readout(y_t), state

    @torch.no_grad()
    def sample(self, prefix: torch.Tensor, n: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue ``prefix`` (T0,) long by ``n`` tokens; return ids (T0 + n,) on prefix's device.

        Each new token is drawn from softmax(logits / temperature); ``temperature=0`` takes the
        argmax (greedy). The same ``generator`` state gives the same tokens. Uses ``step`` only.
        """
        expect_ids(prefix, "prefix", self.vocab_size, dims=("T",))
        if prefix.numel() == 0:
            raise ValueError("prefix must hold at least one token (the model needs something to continue)")
        expect_int(n, "n", minimum=0)
        temperature = expect_float(temperature, "temperature", minimum=0.0)
        _, device = module_dtype_device(self)
        state, logits = None, None
        for token in prefix.to(device).unbind(0):
            logits, state = self.step(token.view(1), state)  # (1, V)
        out = [prefix]
        for i in range(n):
            if temperature == 0.0:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits.double() / temperature, dim=-1)
                where = generator.device if generator is not None else probs.device
                nxt = torch.multinomial(probs.to(where), 1, generator=generator).view(1).to(device)
            out.append(nxt.to(prefix.device))
            if i + 1 < n:
                logits, state = self.step(nxt, state)
        return torch.cat(out)
