"""The vanilla (Elman) recurrent network, written from its equation.

Glossary (the symbols of the Recurrence chapter):

    B  batch size           T  sequence length        D  input features
    H  hidden units         L  stacked layers
    x_t  (B, D)  input at step t          h_t  (B, H)  hidden state after step t
    W_x  (H, D)  input weights            W_h  (H, H)  recurrent weights        b  (H,)  bias

One step of the recurrence:

    h_t = tanh(W_x x_t + W_h h_{t-1} + b),        h_0 = 0 unless given.

A stack of L layers feeds layer l the hidden states of layer l-1 as its inputs x_t.
``RNN`` computes the same function as ``torch.nn.RNN(..., batch_first=True)`` (whose two biases
b_ih + b_hh are our one b): ``copy_rnn_from_torch`` copies its weights, and the tests compare the two.

Fast path: ``RNN(..., fast=True)`` (or ``model.fast = True`` later) runs the same parameters through
torch's fused multi-layer kernel (``torch._VF.rnn_tanh``, what ``torch.nn.RNN`` itself calls) instead
of the Python loop; gradients flow to ``W_x``, ``W_h``, ``b`` as before, and tests/test_fast_paths.py
checks the two paths compute the same outputs, states and gradients. ``step`` is always the readable cell.
``torch._VF`` is a private interface; it is safe here because torch is pinned to exactly 2.13.0
(requirements.txt). The kernel's ``train`` flag is ``self.training or torch.is_grad_enabled()``
(``FastPath._kernel_train``), so a backward pass after ``model.eval()`` works on cuDNN too.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from ..validation import expect_int, expect_model_tensor, expect_nonempty_time

__all__ = ["FastPath", "RNN", "RNNCell", "StackedLayers", "cell_state", "copy_rnn_from_torch"]


class FastPath:
    """The ``fast`` switch shared by RNN, LSTM and GRU: ``False`` runs the readable Python loop over
    t, ``True`` hands the same parameters to torch's fused kernel (``_fused``, per class). Only a bool
    is accepted, at construction or later (``model.fast = True``)."""

    @property
    def fast(self) -> bool:
        return self._fast

    @fast.setter
    def fast(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"fast must be True or False; got {type(value).__name__} {value!r}")
        self._fast = value

    def _kernel_train(self) -> bool:
        """The kernels' ``train`` flag: ``self.training or torch.is_grad_enabled()``.

        With ``train=False`` cuDNN runs its inference kernel, which keeps no workspace for a backward
        pass, so ``loss.backward()`` after ``model.eval()`` (e.g. gradients of a trained model's
        outputs with respect to its inputs) would raise. The flag only chooses what is kept for the
        backward pass: dropout is 0, so the outputs are the same either way."""
        return self.training or torch.is_grad_enabled()

    def _call_fused(self, kernel, x: torch.Tensor, state, weights: list[torch.Tensor]):
        """Run a ``torch._VF`` recurrent kernel (rnn_tanh, lstm, gru) over the batch-first x with
        ``weights`` in torch's per-layer order [weight_ih, weight_hh, (bias_ih, bias_hh)], no dropout,
        one direction. Our weights live in separate tensors, not in one flat buffer as
        ``torch.nn``'s do; cuDNN warns that it compacts them on every call, which is expected here
        (the copy is part of the measured cost), so that one warning is silenced."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not part of single contiguous chunk of memory.*")
            return kernel(x, state, weights, self.bias, self.num_layers, 0.0, self._kernel_train(), False, True)

    def _one_bias_weights(self) -> list[torch.Tensor]:
        """Per layer [W_x, W_h, b, 0] for torch's [weight_ih, weight_hh, bias_ih, bias_hh]: our one
        bias b = b_ih + b_hh (RNN and LSTM; the GRU needs two)."""
        weights = []
        for cell in self.cells:
            weights += [cell.W_x, cell.W_h] + ([cell.b, torch.zeros_like(cell.b)] if self.bias else [])
        return weights


def cell_state(cell: nn.Module, x_t: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
    """The checks at the top of a one-state cell's step (RNNCell, GRUCell): x_t (B, D) and h (B, H)
    against the cell's sizes, dtype and device; returns h, or zeros (B, H) when it is None."""
    expect_model_tensor(cell, x_t, "x_t", dims=("B", "D"), size={"D": cell.input_size})
    if h is None:
        return x_t.new_zeros(x_t.shape[0], cell.hidden_size)
    expect_model_tensor(cell, h, "h", dims=("B", "H"), size={"B": x_t.shape[0], "H": cell.hidden_size})
    return h


class RNNCell(nn.Module):
    """One step of a tanh RNN: ``h_t = tanh(W_x x_t + W_h h_{t-1} + b)``.

    Parameters ``W_x`` (H, D), ``W_h`` (H, H) and ``b`` (H,) (``None`` when ``bias=False``) start
    uniform in [-1/sqrt(H), 1/sqrt(H)], as in ``torch.nn.RNN``.
    """

    def __init__(self, input_size: int, hidden_size: int, *, bias: bool = True):
        super().__init__()
        self.input_size = expect_int(input_size, "input_size", minimum=1)
        self.hidden_size = expect_int(hidden_size, "hidden_size", minimum=1)
        self.W_x = nn.Parameter(torch.empty(hidden_size, input_size))
        self.W_h = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.b = nn.Parameter(torch.empty(hidden_size)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw every parameter uniform in [-1/sqrt(H), 1/sqrt(H)] (torch's default for RNNs)."""
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    def forward(self, x_t: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """x_t (B, D), h = h_{t-1} (B, H) or None for zeros -> h_t (B, H)."""
        h = cell_state(self, x_t, h)
        return torch.tanh(nn.functional.linear(x_t, self.W_x, self.b) + h @ self.W_h.T)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}, bias={self.b is not None}"


class StackedLayers(nn.Module):
    """The frame every stacked recurrent model shares (RNN, LSTM, GRU): ``num_layers`` cells in
    ``.cells``, where layer 0 reads the inputs x_t (D features) and layer l > 0 reads layer l-1's
    states (H features). The keyword ``cell_options`` go to every cell, with ``bias``.

    It checks the inputs and states, and runs ``forward`` and ``step`` for stacks whose state is one
    tensor per layer; a subclass gives its readable loop over one layer (``_layer``) and, through
    ``FastPath``, its fused kernel (``_fused``)."""

    def __init__(self, cell_class: type[nn.Module], input_size: int, *, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, **cell_options):
        super().__init__()
        self.num_layers = expect_int(num_layers, "num_layers", minimum=1)
        self.bias = bool(bias)
        self.cells = nn.ModuleList(
            cell_class(input_size if layer == 0 else hidden_size, hidden_size, bias=bias, **cell_options)
            for layer in range(num_layers)
        )
        # input_size and hidden_size reach the first cell under their own names, and it checks them.
        self.input_size, self.hidden_size = self.cells[0].input_size, self.cells[0].hidden_size

    def _check_input(self, x: torch.Tensor, name: str, dims: tuple[str, ...]) -> None:
        expect_model_tensor(self, x, name, dims=dims, size={"D": self.input_size})

    def _check_sequence(self, x: torch.Tensor) -> int:
        """The input of ``forward``: x (B, T, D) with T >= 1; returns B."""
        self._check_input(x, "x", ("B", "T", "D"))
        expect_nonempty_time(x, "x")
        return x.shape[0]

    def _check_layer_states(self, h: torch.Tensor, name: str, batch: int) -> None:
        """One (L, B, H) tensor holding every layer's state."""
        expect_model_tensor(self, h, name, dims=("L", "B", "H"),
                            size={"L": self.num_layers, "B": batch, "H": self.hidden_size})

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, D), h0 (L, B, H) or None for zeros -> (outputs (B, T, H), h_n (L, B, H)).

        For stacks whose state is one tensor per layer (RNN, GRU; the LSTM's (h, c) overrides it).
        ``outputs[:, t]`` is the top layer's h_t; ``h_n[l]`` is layer l's state after the last step.
        With ``fast`` (``FastPath``) torch's fused kernel runs the whole stack (the subclass's
        ``_fused``); otherwise each layer runs the subclass's readable loop ``_layer``.
        """
        batch = self._check_sequence(x)
        if h0 is not None:
            self._check_layer_states(h0, "h0", batch)
        if self.fast:
            return self._fused(x, h0)
        layer_input, last_states = x, []
        for layer, cell in enumerate(self.cells):
            h = x.new_zeros(batch, self.hidden_size) if h0 is None else h0[layer]
            layer_input, h = self._layer(cell, layer_input, h)
            last_states.append(h)
        return layer_input, torch.stack(last_states)

    def step(self, x_t: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One token: x_t (B, D), h (L, B, H) or None for zeros -> (y_t (B, H), h (L, B, H)).

        For stacks whose state is one tensor per layer (RNN, GRU; the LSTM's (h, c) overrides it).
        ``y_t`` is the top layer's new state. Calling ``step`` on x[:, 0], x[:, 1], ... while
        carrying ``h`` gives the same states as ``forward(x)``, in memory that does not grow with T.
        """
        self._check_input(x_t, "x_t", ("B", "D"))
        if h is not None:
            self._check_layer_states(h, "h", x_t.shape[0])
        new_states, layer_input = [], x_t
        for layer, cell in enumerate(self.cells):
            layer_input = cell(layer_input, None if h is None else h[layer])
            new_states.append(layer_input)
        return layer_input, torch.stack(new_states)

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"num_layers={self.num_layers}, bias={self.bias}")


class RNN(FastPath, StackedLayers):
    """A stack of L tanh RNN layers over a batch of sequences (batch-first).

    Layer l (1-indexed) runs ``h^l_t = tanh(W_x^l h^{l-1}_t + W_h^l h^l_{t-1} + b^l)`` with
    ``h^0_t = x_t``. ``forward`` returns the top layer's states for every step and every
    layer's last state, like ``torch.nn.RNN(..., batch_first=True)``. ``fast=True`` computes the
    same function with torch's fused kernel (module docstring).
    """

    def __init__(self, input_size: int, hidden_size: int, *, num_layers: int = 1, bias: bool = True,
                 fast: bool = False):
        super().__init__(RNNCell, input_size, hidden_size=hidden_size, num_layers=num_layers, bias=bias)
        self.fast = fast

    def _layer(self, cell: RNNCell, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer's readable loop: x (B, T, D_l), h (B, H) -> (states (B, T, H), last state (B, H))."""
        # W_x x_t + b for every t in one matrix multiply; only W_h h_{t-1} has to wait for the loop.
        input_part = nn.functional.linear(x, cell.W_x, cell.b)  # (B, T, H)
        states = []
        # Loop over unbind(1) and stack at the end: writing into a preallocated (B, T, H)
        # tensor would make autograd keep a full-size copy per step (an O(T^2) backward).
        for u_t in input_part.unbind(1):
            h = torch.tanh(u_t + h @ cell.W_h.T)  # (B, H)
            states.append(h)
        return torch.stack(states, dim=1), h

    def _fused(self, x: torch.Tensor, h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The same recurrence in torch's fused kernel (weights as in ``_one_bias_weights``)."""
        if h0 is None:
            h0 = x.new_zeros(self.num_layers, x.shape[0], self.hidden_size)
        return self._call_fused(torch._VF.rnn_tanh, x, h0, self._one_bias_weights())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, fast={self.fast}"


def copy_rnn_from_torch(ours: RNN, theirs: nn.RNN) -> None:
    """Copy the weights of ``torch.nn.RNN`` into our ``RNN`` so the two compute the same function.

    ``weight_ih_l{k}`` -> ``cells[k].W_x``, ``weight_hh_l{k}`` -> ``cells[k].W_h`` and
    ``bias_ih_l{k} + bias_hh_l{k}`` -> ``cells[k].b`` (torch adds two biases where one suffices).
    Raises ``ValueError`` when the two are not the same architecture.
    """
    if not isinstance(ours, RNN):
        raise TypeError(f"ours must be a seqcourse RNN; got {type(ours).__name__}")
    if not isinstance(theirs, nn.RNN):
        raise TypeError(f"theirs must be a torch.nn.RNN; got {type(theirs).__name__}")
    expected = {"input_size": ours.input_size, "hidden_size": ours.hidden_size,
                "num_layers": ours.num_layers, "bias": ours.bias,
                "nonlinearity": "tanh", "bidirectional": False, "proj_size": 0}
    wrong = [f"{k}={getattr(theirs, k)!r} (expected {v!r})" for k, v in expected.items() if getattr(theirs, k) != v]
    if wrong:
        raise ValueError("torch.nn.RNN does not match our RNN: " + ", ".join(wrong))
    with torch.no_grad():
        for k, cell in enumerate(ours.cells):
            cell.W_x.copy_(getattr(theirs, f"weight_ih_l{k}"))
            cell.W_h.copy_(getattr(theirs, f"weight_hh_l{k}"))
            if ours.bias:
                cell.b.copy_(getattr(theirs, f"bias_ih_l{k}") + getattr(theirs, f"bias_hh_l{k}"))
