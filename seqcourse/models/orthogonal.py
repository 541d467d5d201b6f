r"""A recurrent network whose recurrent matrix is orthogonal by construction, before and after training.

Glossary (the symbols of the Recurrence and Gradients chapters):

    B  batch size       T  sequence length      D  input features      H  hidden units
    x_t (B, D)  input at step t                 h_t (B, H)  hidden state after step t
    W_x (H, D)  input weights                   b (H,)  bias
    A (H, H)    the free parameter              S = A − Aᵀ (H, H), skew-symmetric: Sᵀ = −S
    W_h = exp(S) (H, H), the matrix exponential: orthogonal, W_hᵀ W_h = I

One step is the vanilla RNN's,

    h_t = φ(W_x x_t + W_h h_{t-1} + b),     φ = tanh (default) or the identity,

but W_h is never stored: it is computed from A at every forward pass. Because S is skew-symmetric,
exp(S)ᵀ exp(S) = exp(Sᵀ) exp(S) = exp(−S) exp(S) = I, so every W_h the optimizer can reach is
orthogonal (a rotation: det W_h = +1), whatever the gradient steps do to A. An orthogonal matrix
keeps lengths, ‖W_h^k v‖ = ‖v‖ for every k, so the linear part of the backward pass,
W_hᵀ applied k times, neither shrinks nor grows a gradient (Arjovsky et al., 2016); only φ' can.

``A`` starts as the upper triangle of a block-diagonal S with 2×2 blocks [[0, θ], [−θ, 0]],
θ uniform in [−π, π], so that W_h starts as a random rotation in each plane of a pair of units
(eigenvalues e^{±iθ} spread around the unit circle) rather than as the identity.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..validation import WEIGHTS_DTYPE, expect_int, expect_nonempty_time, expect_tensor, module_dtype_device

__all__ = ["OrthogonalRNN", "skew_to_orthogonal"]

_NONLINEARITIES = {"tanh": torch.tanh, "identity": lambda z: z}


def skew_to_orthogonal(A: torch.Tensor) -> torch.Tensor:
    """W = exp(A − Aᵀ) for a square A (H, H): an orthogonal matrix (the matrix exponential, not entry-wise exp)."""
    expect_tensor(A, "A", dims=("H", "H"), dtype="float")
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square (H, H); got shape {tuple(A.shape)}")
    return torch.linalg.matrix_exp(A - A.T)


class OrthogonalRNN(nn.Module):
    """One layer of h_t = φ(W_x x_t + W_h h_{t-1} + b) with W_h = exp(A − Aᵀ) orthogonal.

    Same interface as ``seqcourse.models.rnn.RNN`` with one layer, so the two can be swapped:
    ``forward(x (B, T, D), h0 (1, B, H) | None) -> (outputs (B, T, H), h_n (1, B, H))`` and
    ``step(x_t (B, D), h (1, B, H) | None) -> (y_t (B, H), h (1, B, H))``.

    Args:
        input_size: D.   hidden_size: H.   bias: whether to learn b.
        nonlinearity: ``"tanh"`` (default) or ``"identity"`` (a linear recurrence).
        generator: a ``torch.Generator`` for the initial weights (default: torch's global RNG).
    """

    num_layers = 1

    def __init__(self, input_size: int, hidden_size: int, *, bias: bool = True, nonlinearity: str = "tanh",
                 generator: torch.Generator | None = None):
        super().__init__()
        self.input_size = expect_int(input_size, "input_size", minimum=1)
        self.hidden_size = expect_int(hidden_size, "hidden_size", minimum=1)
        if nonlinearity not in _NONLINEARITIES:
            choices = ", ".join(map(repr, _NONLINEARITIES))
            raise ValueError(f"nonlinearity must be one of {choices}; got {nonlinearity!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
        self.nonlinearity = nonlinearity
        self.bias = bool(bias)
        self.W_x = nn.Parameter(torch.empty(hidden_size, input_size))
        self.A = nn.Parameter(torch.zeros(hidden_size, hidden_size))
        self.b = nn.Parameter(torch.zeros(hidden_size)) if bias else None
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """W_x, b uniform in [-1/sqrt(H), 1/sqrt(H)] (torch's RNN default); A from random plane rotations."""
        k = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            self.W_x.copy_(torch.rand(self.W_x.shape, generator=generator) * 2 * k - k)
            if self.b is not None:
                self.b.copy_(torch.rand(self.b.shape, generator=generator) * 2 * k - k)
            angles = (torch.rand(self.hidden_size // 2, generator=generator) * 2 - 1) * math.pi
            A = torch.zeros(self.hidden_size, self.hidden_size)
            index = torch.arange(self.hidden_size // 2) * 2
            A[index, index + 1] = angles  # S = A − Aᵀ has the block [[0, θ], [−θ, 0]] at (2i, 2i+1)
            self.A.copy_(A)

    @property
    def W_h(self) -> torch.Tensor:
        """The recurrent matrix exp(A − Aᵀ) (H, H), orthogonal; recomputed from A on every access."""
        return skew_to_orthogonal(self.A)

    def _phi(self, z: torch.Tensor) -> torch.Tensor:
        return _NONLINEARITIES[self.nonlinearity](z)

    def _check_state(self, h: torch.Tensor, name: str, batch: int, dtype, device) -> None:
        expect_tensor(h, name, dims=("L", "B", "H"), size={"L": 1, "B": batch, "H": self.hidden_size},
                      dtype=dtype, device=device, dtype_reason=WEIGHTS_DTYPE)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, D), h0 (1, B, H) or None for zeros -> (outputs (B, T, H), h_n (1, B, H))."""
        dtype, device = module_dtype_device(self)
        expect_tensor(x, "x", dims=("B", "T", "D"), size={"D": self.input_size},
                      dtype=dtype, device=device, dtype_reason=WEIGHTS_DTYPE)
        expect_nonempty_time(x, "x")
        if h0 is not None:
            self._check_state(h0, "h0", x.shape[0], dtype, device)
        h = x.new_zeros(x.shape[0], self.hidden_size) if h0 is None else h0[0]
        W_h = self.W_h  # one matrix exponential per sequence, shared by every step
        input_part = nn.functional.linear(x, self.W_x, self.b)  # (B, T, H): W_x x_t + b for all t
        states = []
        for u_t in input_part.unbind(1):
            h = self._phi(u_t + h @ W_h.T)  # (B, H)
            states.append(h)
        return torch.stack(states, dim=1), h.unsqueeze(0)

    def step(self, x_t: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One token: x_t (B, D), h (1, B, H) or None for zeros -> (y_t = h_t (B, H), h (1, B, H))."""
        dtype, device = module_dtype_device(self)
        expect_tensor(x_t, "x_t", dims=("B", "D"), size={"D": self.input_size},
                      dtype=dtype, device=device, dtype_reason=WEIGHTS_DTYPE)
        if h is None:
            h_prev = x_t.new_zeros(x_t.shape[0], self.hidden_size)
        else:
            self._check_state(h, "h", x_t.shape[0], dtype, device)
            h_prev = h[0]
        h_t = self._phi(nn.functional.linear(x_t, self.W_x, self.b) + h_prev @ self.W_h.T)
        return h_t, h_t.unsqueeze(0)

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, bias={self.bias}, "
                f"nonlinearity={self.nonlinearity!r}")
