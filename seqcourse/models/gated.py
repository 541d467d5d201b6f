"""Gated recurrent networks: the LSTM and the GRU, written from their equations.

Glossary (the symbols of the Recurrence chapter, plus the gates):

    B  batch size           T  sequence length        D  input features
    H  hidden units         L  stacked layers         σ  the logistic sigmoid    ⊙  elementwise product
    x_t  (B, D)  input at step t          h_t  (B, H)  hidden state (the output y_t) after step t
    c_t  (B, H)  LSTM cell state          [x_t; h_{t-1}]  the two vectors stacked into one

LSTM (gates in torch's order i, f, g, o)::

    i_t = σ(W_i [x_t; h_{t-1}] + b_i)          input gate: how much of the candidate to write
    f_t = σ(W_f [x_t; h_{t-1}] + b_f)          forget gate: how much of c_{t-1} to keep
    g_t = tanh(W_g [x_t; h_{t-1}] + b_g)       candidate cell content
    o_t = σ(W_o [x_t; h_{t-1}] + b_o)          output gate
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

GRU (the text's convention: z_t = 1 means "take the new candidate")::

    r_t = σ(W_r [x_t; h_{t-1}] + b_r)          reset gate
    z_t = σ(W_z [x_t; h_{t-1}] + b_z)          update gate
    h̃_t = tanh(W_x^h x_t + r_t ⊙ (W_h^h h_{t-1} + b_hh^h) + b^h)
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t

Each ``W_• [x_t; h_{t-1}]`` is stored split into its input part and its hidden part, and the gates are
fused into one matrix so that one matrix multiply computes them all: the LSTM keeps
``W_x`` (4H, D) = [W_x^i; W_x^f; W_x^g; W_x^o], ``W_h`` (4H, H) and ``b`` (4H,); the GRU keeps
``W_x`` (3H, D) = [W_x^r; W_x^z; W_x^h], ``W_h`` (3H, H) and two biases ``b_x``, ``b_h`` (3H,),
because r_t multiplies the hidden part of the candidate *including its bias* b_hh^h, so that bias
cannot be merged with the input bias b^h.

``LSTM`` computes the same function as ``torch.nn.LSTM(..., batch_first=True)`` and ``GRU`` the same
as ``torch.nn.GRU(..., batch_first=True)``; ``copy_lstm_from_torch`` and ``copy_gru_from_torch`` copy
their weights (mind the GRU's update-gate convention, explained there), and the tests compare them.

Fast path: ``LSTM(..., fast=True)`` / ``GRU(..., fast=True)`` (or ``model.fast = True`` later) runs the
same parameters through torch's fused kernels (``torch._VF.lstm`` / ``torch._VF.gru``, what
``torch.nn.LSTM`` / ``torch.nn.GRU`` call; on CPU the float32 LSTM runs oneDNN's kernel and the GRU
torch's generic one; cuDNN on a GPU) instead of the Python loop.
Gradients flow to our parameters; tests/test_fast_paths.py checks both paths give the same outputs,
states and gradients. The long training runs use it; ``step`` is always the readable cell.
``torch._VF`` is a private interface; it is safe here because torch is pinned to exactly 2.13.0
(requirements.txt). The kernels' ``train`` flag is ``self.training or torch.is_grad_enabled()``
(see ``rnn.FastPath._kernel_train``): a backward pass after ``model.eval()`` works on cuDNN too.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..validation import expect_float, expect_int, expect_model_tensor
from .rnn import FastPath, StackedLayers, cell_state

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "copy_gru_from_torch", "copy_lstm_from_torch"]

def _init_uniform(module: nn.Module, hidden_size: int) -> None:
    """Every parameter uniform in [-1/sqrt(H), 1/sqrt(H)] (torch's default for LSTM and GRU)."""
    k = 1.0 / math.sqrt(hidden_size)
    for p in module.parameters():
        nn.init.uniform_(p, -k, k)


def _lstm_update(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """gates (B, 4H) = W_x x_t + W_h h_{t-1} + b in the order i, f, g, o; c = c_{t-1} -> (h_t, c_t).

    ``addcmul(f ⊙ c, i, g)`` is f ⊙ c + i ⊙ g in one operation: in a loop over t every operation
    costs a fixed overhead forward and backward, more than its arithmetic at small sizes."""
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.addcmul(torch.sigmoid(f) * c, torch.sigmoid(i), torch.tanh(g))
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_update(a: torch.Tensor, m: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """a = W_x x_t + b_x, m = W_h h_{t-1} + b_h (both (B, 3H), order r, z, h), h = h_{t-1} -> h_t.

    r and z share one sigmoid (their slices are adjacent), a_h + r ⊙ m_h is one ``addcmul``, and
    (1 - z) ⊙ h + z ⊙ h̃ = h + z ⊙ (h̃ - h) is one ``lerp``: fewer operations per step, each of
    which costs a fixed overhead forward and backward in a loop over t."""
    H = h.shape[-1]
    a_rz, a_h = a.split([2 * H, H], dim=-1)
    m_rz, m_h = m.split([2 * H, H], dim=-1)
    r, z = torch.sigmoid(a_rz + m_rz).chunk(2, dim=-1)
    candidate = torch.tanh(torch.addcmul(a_h, r, m_h))  # h̃_t
    return torch.lerp(h, candidate, z)  # (1 - z) ⊙ h + z ⊙ h̃


def _check_pair(state, names: tuple[str, str], shape: str) -> tuple[torch.Tensor, torch.Tensor]:
    """An LSTM state must be a pair (h, c); return it as a tuple."""
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        got = f"{type(state).__name__} of length {len(state)}" if isinstance(state, (tuple, list)) else type(state).__name__
        raise TypeError(
            f"the LSTM state must be a pair ({names[0]}, {names[1]}) of tensors of shape {shape}; got {got}"
        )
    return tuple(state)


# ---- LSTM ------------------------------------------------------------------------------------


class LSTMCell(nn.Module):
    """One LSTM step: ``c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t``, ``h_t = o_t ⊙ tanh(c_t)`` (module docstring).

    Parameters ``W_x`` (4H, D), ``W_h`` (4H, H) and ``b`` (4H,) (``None`` when ``bias=False``), with
    the gates stacked in the order i, f, g, o, start uniform in [-1/sqrt(H), 1/sqrt(H)]; then the
    forget-gate slice ``b[H:2H]`` is set to ``forget_bias`` (default 1.0) so that f_t starts near
    σ(1) ≈ 0.73 and the cell remembers by default. ``forget_bias`` has no effect when ``bias=False``.
    """

    def __init__(self, input_size: int, hidden_size: int, *, bias: bool = True, forget_bias: float = 1.0):
        super().__init__()
        self.input_size = expect_int(input_size, "input_size", minimum=1)
        self.hidden_size = expect_int(hidden_size, "hidden_size", minimum=1)
        self.forget_bias = expect_float(forget_bias, "forget_bias")
        self.W_x = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.W_h = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.b = nn.Parameter(torch.empty(4 * hidden_size)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in [-1/sqrt(H), 1/sqrt(H)], then the forget-gate bias b[H:2H] = forget_bias."""
        _init_uniform(self, self.hidden_size)
        if self.b is not None:
            with torch.no_grad():
                self.b[self.hidden_size:2 * self.hidden_size] = self.forget_bias

    def forward(self, x_t: torch.Tensor, state=None) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t (B, D), state = (h_{t-1}, c_{t-1}) each (B, H), or None for zeros -> (h_t, c_t) each (B, H)."""
        expect_model_tensor(self, x_t, "x_t", dims=("B", "D"), size={"D": self.input_size})
        batch = x_t.shape[0]
        if state is None:
            h = c = x_t.new_zeros(batch, self.hidden_size)
        else:
            h, c = _check_pair(state, ("h", "c"), f"(B={batch}, H={self.hidden_size})")
            for t, name in ((h, "h"), (c, "c")):
                expect_model_tensor(self, t, name, dims=("B", "H"), size={"B": batch, "H": self.hidden_size})
        gates = nn.functional.linear(x_t, self.W_x, self.b) + h @ self.W_h.T  # (B, 4H)
        return _lstm_update(gates, c)

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"bias={self.b is not None}, forget_bias={self.forget_bias}")


class LSTM(FastPath, StackedLayers):
    """A stack of L LSTM layers over a batch of sequences (batch-first).

    Layer l feeds its h_t to layer l+1 as that layer's x_t. ``forward`` returns the top layer's h_t
    for every step and every layer's last (h, c), like ``torch.nn.LSTM(..., batch_first=True)``.
    ``.cells`` is a ModuleList of ``LSTMCell``. ``fast=True`` computes the same function with
    torch's fused kernel (module docstring).
    """

    def __init__(self, input_size: int, hidden_size: int, *, num_layers: int = 1, bias: bool = True,
                 forget_bias: float = 1.0, fast: bool = False):
        super().__init__(LSTMCell, input_size, hidden_size=hidden_size, num_layers=num_layers, bias=bias,
                         forget_bias=forget_bias)
        self.forget_bias = self.cells[0].forget_bias  # checked by the cell, under the same name
        self.fast = fast

    def _check_states(self, state, names: tuple[str, str], batch: int):
        h, c = _check_pair(state, names, f"(L={self.num_layers}, B={batch}, H={self.hidden_size})")
        for t, name in ((h, names[0]), (c, names[1])):
            self._check_layer_states(t, name, batch)
        return h, c

    def forward(self, x: torch.Tensor, state=None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, T, D), state = (h0, c0) each (L, B, H) or None for zeros
        -> (outputs (B, T, H), (h_n, c_n) each (L, B, H)).

        ``outputs[:, t]`` is the top layer's h_t; ``h_n[l]``, ``c_n[l]`` are layer l's after the last step.
        """
        batch = self._check_sequence(x)
        if state is not None:
            h0, c0 = self._check_states(state, ("h0", "c0"), batch)
        if self.fast:
            return self._fused(x, state)
        layer_input, last_h, last_c = x, [], []
        for layer, cell in enumerate(self.cells):
            if state is None:
                h = c = x.new_zeros(batch, self.hidden_size)
            else:
                h, c = h0[layer], c0[layer]
            # W_x x_t + b for every t and all four gates in one matrix multiply, time-major so that
            # each step's (B, 4H) slice is contiguous; only W_h h_{t-1} (one fused (B, H) x (H, 4H)
            # multiply per step, added to u_t by the same addmm) has to wait for the loop.
            input_part = nn.functional.linear(layer_input.transpose(0, 1), cell.W_x, cell.b)  # (T, B, 4H)
            W_h_T = cell.W_h.T  # transposed once, not once per step
            states = []
            # unbind + stack, never writes into a preallocated tensor (an O(T^2) backward).
            for u_t in input_part.unbind(0):
                h, c = _lstm_update(torch.addmm(u_t, h, W_h_T), c)  # u_t + h_{t-1} W_h^T
                states.append(h)
            layer_input = torch.stack(states, dim=1)  # (B, T, H)
            last_h.append(h)
            last_c.append(c)
        return layer_input, (torch.stack(last_h), torch.stack(last_c))

    def _fused(self, x: torch.Tensor, state) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The same stack in torch's fused kernel (weights as in ``_one_bias_weights``; torch's gate
        order i, f, g, o is ours)."""
        if state is None:
            zeros = x.new_zeros(self.num_layers, x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        out, h_n, c_n = self._call_fused(torch._VF.lstm, x, tuple(state), self._one_bias_weights())
        return out, (h_n, c_n)

    def step(self, x_t: torch.Tensor, state=None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One token: x_t (B, D), state = (h, c) each (L, B, H) or None -> (y_t (B, H), (h, c)).

        ``y_t`` is the top layer's new h. Carrying the state through ``step`` on x[:, 0], x[:, 1], ...
        gives the same states as ``forward(x)``, in memory that does not grow with T.
        """
        self._check_input(x_t, "x_t", ("B", "D"))
        if state is not None:
            h, c = self._check_states(state, ("h", "c"), x_t.shape[0])
        new_h, new_c, layer_input = [], [], x_t
        for layer, cell in enumerate(self.cells):
            layer_input, c_l = cell(layer_input, None if state is None else (h[layer], c[layer]))
            new_h.append(layer_input)
            new_c.append(c_l)
        return layer_input, (torch.stack(new_h), torch.stack(new_c))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, forget_bias={self.forget_bias}, fast={self.fast}"


# ---- GRU -------------------------------------------------------------------------------------


class GRUCell(nn.Module):
    """One GRU step in the text's convention: ``h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t`` (module docstring).

    Parameters ``W_x`` (3H, D), ``W_h`` (3H, H), ``b_x`` (3H,) and ``b_h`` (3H,) (the biases ``None``
    when ``bias=False``), gates stacked in the order r, z, h̃, start uniform in [-1/sqrt(H), 1/sqrt(H)].
    """

    def __init__(self, input_size: int, hidden_size: int, *, bias: bool = True):
        super().__init__()
        self.input_size = expect_int(input_size, "input_size", minimum=1)
        self.hidden_size = expect_int(hidden_size, "hidden_size", minimum=1)
        self.W_x = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.W_h = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.b_x = nn.Parameter(torch.empty(3 * hidden_size)) if bias else None
        self.b_h = nn.Parameter(torch.empty(3 * hidden_size)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw every parameter uniform in [-1/sqrt(H), 1/sqrt(H)] (torch's default for GRUs)."""
        _init_uniform(self, self.hidden_size)

    def forward(self, x_t: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """x_t (B, D), h = h_{t-1} (B, H) or None for zeros -> h_t (B, H)."""
        h = cell_state(self, x_t, h)
        a = nn.functional.linear(x_t, self.W_x, self.b_x)  # (B, 3H)
        return _gru_update(a, nn.functional.linear(h, self.W_h, self.b_h), h)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}, bias={self.b_x is not None}"


class GRU(FastPath, StackedLayers):
    """A stack of L GRU layers over a batch of sequences (batch-first), in the text's convention.

    Layer l feeds its h_t to layer l+1 as that layer's x_t. ``forward`` returns the top layer's h_t
    for every step and every layer's last state, like ``torch.nn.GRU(..., batch_first=True)`` — the
    same function once ``copy_gru_from_torch`` has mapped torch's update gate to ours.
    ``.cells`` is a ModuleList of ``GRUCell``. ``fast=True`` computes the same function with
    torch's fused kernel (module docstring).
    """

    def __init__(self, input_size: int, hidden_size: int, *, num_layers: int = 1, bias: bool = True,
                 fast: bool = False):
        super().__init__(GRUCell, input_size, hidden_size=hidden_size, num_layers=num_layers, bias=bias)
        self.fast = fast

    def _layer(self, cell: GRUCell, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer's readable loop: x (B, T, D_l), h (B, H) -> (states (B, T, H), last state (B, H))."""
        # W_x x_t + b_x for every t in one multiply, time-major: each step's slice is contiguous.
        input_part = nn.functional.linear(x.transpose(0, 1), cell.W_x, cell.b_x)  # (T, B, 3H)
        W_h_T = cell.W_h.T  # transposed once, not once per step
        states = []
        for a_t in input_part.unbind(0):
            m_t = h @ W_h_T if cell.b_h is None else torch.addmm(cell.b_h, h, W_h_T)  # one fused multiply
            h = _gru_update(a_t, m_t, h)
            states.append(h)
        return torch.stack(states, dim=1), h

    def _fused(self, x: torch.Tensor, h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The same stack in torch's fused kernel. torch's update gate is 1 - ours, and σ(-a) = 1 - σ(a),
        so the z-rows [H:2H] of every weight and bias go in negated (``copy_gru_from_torch`` in reverse);
        the negation is part of the graph, so the gradients reach W_x, W_h, b_x, b_h unchanged in layout."""
        if h0 is None:
            h0 = x.new_zeros(self.num_layers, x.shape[0], self.hidden_size)
        H = self.hidden_size

        def torch_convention(p: torch.Tensor) -> torch.Tensor:
            return torch.cat([p[:H], -p[H:2 * H], p[2 * H:]])

        weights = []
        for cell in self.cells:
            weights += [torch_convention(p) for p in (cell.W_x, cell.W_h)]
            if self.bias:
                weights += [torch_convention(p) for p in (cell.b_x, cell.b_h)]
        return self._call_fused(torch._VF.gru, x, h0, weights)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, fast={self.fast}"



# ---- copying torch's weights -----------------------------------------------------------------


def _check_same_architecture(ours, theirs, torch_class, our_class) -> None:
    if not isinstance(ours, our_class):
        raise TypeError(f"ours must be a seqcourse {our_class.__name__}; got {type(ours).__name__}")
    if not isinstance(theirs, torch_class):
        raise TypeError(f"theirs must be a torch.nn.{torch_class.__name__}; got {type(theirs).__name__}")
    expected = {"input_size": ours.input_size, "hidden_size": ours.hidden_size,
                "num_layers": ours.num_layers, "bias": ours.bias, "bidirectional": False, "proj_size": 0}
    wrong = [f"{k}={getattr(theirs, k)!r} (expected {v!r})" for k, v in expected.items() if getattr(theirs, k) != v]
    if wrong:
        raise ValueError(f"torch.nn.{torch_class.__name__} does not match our {our_class.__name__}: " + ", ".join(wrong))


def copy_lstm_from_torch(ours: LSTM, theirs: nn.LSTM) -> None:
    """Copy the weights of ``torch.nn.LSTM`` into our ``LSTM`` so the two compute the same function.

    Both stack the gates in the order i, f, g, o: ``weight_ih_l{k}`` -> ``cells[k].W_x``,
    ``weight_hh_l{k}`` -> ``cells[k].W_h`` and ``bias_ih_l{k} + bias_hh_l{k}`` -> ``cells[k].b``.
    Raises ``ValueError`` when the two are not the same architecture.
    """
    _check_same_architecture(ours, theirs, nn.LSTM, LSTM)
    with torch.no_grad():
        for k, cell in enumerate(ours.cells):
            cell.W_x.copy_(getattr(theirs, f"weight_ih_l{k}"))
            cell.W_h.copy_(getattr(theirs, f"weight_hh_l{k}"))
            if ours.bias:
                cell.b.copy_(getattr(theirs, f"bias_ih_l{k}") + getattr(theirs, f"bias_hh_l{k}"))


def copy_gru_from_torch(ours: GRU, theirs: nn.GRU) -> None:
    """Copy the weights of ``torch.nn.GRU`` into our ``GRU`` so the two compute the same function.

    torch stacks its gates as r, z, n (our r, z, h̃) but updates ``h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}``:
    its z is the fraction of the OLD state kept, ours the fraction of the candidate taken, so our
    z_t = 1 - z_t(torch). Since σ(-a) = 1 - σ(a), negating the pre-activation of torch's z gives ours:
    the z-slice rows [H:2H] of ``weight_ih``, ``weight_hh``, ``bias_ih`` and ``bias_hh`` are copied
    negated, everything else as is (``weight_ih_l{k}`` -> ``W_x``, ``weight_hh_l{k}`` -> ``W_h``,
    ``bias_ih_l{k}`` -> ``b_x``, ``bias_hh_l{k}`` -> ``b_h``).
    Raises ``ValueError`` when the two are not the same architecture.
    """
    _check_same_architecture(ours, theirs, nn.GRU, GRU)
    H = ours.hidden_size
    sign = torch.ones(3 * H)
    sign[H:2 * H] = -1.0  # the update gate z

    def mapped(name: str) -> torch.Tensor:
        p = getattr(theirs, name)
        s = sign.to(p.device, p.dtype)
        return p * (s if p.ndim == 1 else s[:, None])

    with torch.no_grad():
        for k, cell in enumerate(ours.cells):
            cell.W_x.copy_(mapped(f"weight_ih_l{k}"))
            cell.W_h.copy_(mapped(f"weight_hh_l{k}"))
            if ours.bias:
                cell.b_x.copy_(mapped(f"bias_ih_l{k}"))
                cell.b_h.copy_(mapped(f"bias_hh_l{k}"))
