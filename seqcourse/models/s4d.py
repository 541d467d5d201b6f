"""S4D: a diagonal state-space layer with two faces, a convolution and a recurrence.

Glossary (the symbols of the State-space chapter; S4D paper, Gu et al. 2022)::

    B  batch size     T  sequence length     H  channels (hidden size)     N  state size (even)
    x_k (B, H)   input at step k          y_k (B, H)   output at step k
    h_k (B, H, N/2)   complex state: N/2 complex modes per channel, each standing for a
                      conjugate pair, so the real state has N dimensions
    A (H, N/2)   diagonal of each channel's state matrix, complex with Re(A) < 0
    B, C (H, N/2)  complex input and output vectors      D (H,)  real skip term
    Δ (H,)       step size of each channel (learned, through log Δ)

Every channel is its own single-input single-output system h'(t) = A h(t) + B x(t),
y(t) = C h(t) + D x(t), discretized by zero-order hold (``seqcourse.ops.discretize``):

    Ā = exp(ΔA),   B̄ = (exp(ΔA) - 1)/A · B,
    h_k = Ā ⊙ h_{k-1} + B̄ x_k,        y_k = 2 Re(C · h_k) + D x_k

(the factor 2 Re adds each mode's complex conjugate). Unrolled from h_0 = 0 this is a causal
convolution with the kernel K_l = 2 Re(Σ_n C_n B̄_n Ā_n^l), l = 0 ... T-1:

    y_k = Σ_{l=0}^{k-1} K_l x_{k-l} + D x_k,

and K = 2 Re((C ⊙ B̄) · V) with the Vandermonde matrix V_{n,l} = Ā_n^l. ``S4DLayer.forward``
builds K and convolves by FFT in O(T log T) (training: the whole sequence at once);
``S4DLayer.step`` runs the recurrence one step at a time with a constant-size state (generation);
``S4DLayer.forward_recurrent`` loops the recurrence over a whole sequence, the reference the
tests compare the convolution against.

Initialisation of A (S4D paper): Re(A_n) = -1/2 and, for mode n = 0 ... N/2-1,
"lin": Im(A_n) = π n;  "inv": Im(A_n) = (N/π)(N/(2n+1) - 1). log Δ is uniform in
[log Δ_min, log Δ_max], B = 1, C complex standard normal, D standard normal.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..ops.discretize import discretize_diagonal
from ..validation import (WEIGHTS_DTYPE, expect_int, expect_model_tensor, expect_nonempty_time, expect_step_range,
                          expect_tensor, module_dtype_device)

__all__ = ["S4D", "S4DLayer", "s4d_imaginary_parts"]

INITS = ("lin", "inv")


def s4d_imaginary_parts(state_size: int, init: str = "inv") -> torch.Tensor:
    """Im(A_n) for n = 0 ... N/2-1: π n ("lin", S4D-Lin) or (N/π)(N/(2n+1) - 1) ("inv", S4D-Inv)."""
    _check_state_size(state_size)
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}; got {init!r}")
    n = torch.arange(state_size // 2, dtype=torch.float64)
    if init == "lin":
        return (math.pi * n).float()
    return (state_size / math.pi * (state_size / (2 * n + 1) - 1)).float()


def _check_state_size(state_size) -> None:
    expect_int(state_size, "state_size", minimum=2)
    if state_size % 2:
        raise ValueError(f"state_size N must be even (N/2 complex modes, each with its conjugate); got {state_size}")


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


class S4DLayer(nn.Module):
    """H independent diagonal SSMs, one per channel: x (B, T, H) -> y (B, T, H) (module docstring).

    Parameters: ``log_delta`` (H,); ``log_neg_A_real`` and ``A_imag`` (H, N/2), with
    A = -exp(log_neg_A_real) + i A_imag, so Re(A) stays negative; ``B_ri`` and ``C_ri``
    (H, N/2, 2), the real and imaginary parts of B and C; ``D`` (H,). The properties ``delta``,
    ``A``, ``B``, ``C`` give Δ, A, B and C as (complex) tensors.
    """

    def __init__(self, channels: int, state_size: int = 64, *, init: str = "inv",
                 dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        self.channels = expect_int(channels, "channels", minimum=1)
        _check_state_size(state_size)
        self.state_size = state_size
        self.init = init
        dt_min, dt_max = expect_step_range(dt_min, dt_max)
        H, modes = channels, state_size // 2
        self.log_delta = nn.Parameter(torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.log_neg_A_real = nn.Parameter(torch.full((H, modes), math.log(0.5)))
        self.A_imag = nn.Parameter(s4d_imaginary_parts(state_size, init).repeat(H, 1))
        self.B_ri = nn.Parameter(torch.view_as_real(torch.ones(H, modes, dtype=torch.complex64)).clone())
        self.C_ri = nn.Parameter(torch.view_as_real(torch.randn(H, modes, dtype=torch.complex64)).clone())
        self.D = nn.Parameter(torch.randn(H))

    @property
    def delta(self) -> torch.Tensor:
        return self.log_delta.exp()  # (H,)

    @property
    def A(self) -> torch.Tensor:
        return torch.complex(-self.log_neg_A_real.exp(), self.A_imag)  # (H, N/2)

    @property
    def B(self) -> torch.Tensor:
        return torch.view_as_complex(self.B_ri)  # (H, N/2)

    @property
    def C(self) -> torch.Tensor:
        return torch.view_as_complex(self.C_ri)  # (H, N/2)

    def discretize(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Ā, B̄), each (H, N/2) complex, by zero-order hold with each channel's Δ."""
        return discretize_diagonal(self.A, self.B, self.delta, method="zoh")

    def _powers(self, T: int) -> torch.Tensor:
        """The Vandermonde matrix V[h, n, l] = Ā_n^l = exp(l Δ A_n), l = 0 ... T-1: (H, N/2, T).

        Computed in two factors, Ā^{qm + r} = exp(qm ΔA) · exp(r ΔA) with q = ⌈√T⌉, r < q: about
        2√T complex exponentials per mode and one product per entry, instead of T exponentials
        (the complex exp dominated the convolution mode's time; this halves it at T = 4096).
        The tests compare the result with the recurrence, which never forms V.
        """
        dA = (self.delta.unsqueeze(-1) * self.A).unsqueeze(-1)  # (H, N/2, 1)
        q = math.isqrt(T - 1) + 1  # ⌈√T⌉, so q · ⌈T/q⌉ >= T
        steps = torch.arange(q, device=dA.device, dtype=self.log_delta.dtype)
        fine = torch.exp(dA * steps)  # Ā^r, r = 0 ... q-1: (H, N/2, q)
        coarse = torch.exp(dA * (steps[: -(-T // q)] * q))  # Ā^{qm}, m = 0 ... ⌈T/q⌉-1
        return (coarse.unsqueeze(-1) * fine.unsqueeze(-2)).flatten(-2)[..., :T]

    def kernel(self, T: int) -> torch.Tensor:
        """K (H, T) with K_l = 2 Re(Σ_n C_n B̄_n Ā_n^l): y = K * x + D x from h_0 = 0."""
        expect_int(T, "T", minimum=1)
        _, B_bar = self.discretize()
        return 2 * torch.einsum("hn,hnl->hl", self.C * B_bar, self._powers(T)).real

    def _check_input(self, x: torch.Tensor, state, dims=("B", "T", "H")) -> None:
        dtype, device = expect_model_tensor(self, x, "x" if len(dims) == 3 else "x_t", dims=dims,
                                            size={"H": self.channels})
        if len(dims) == 3:
            expect_nonempty_time(x, "x")
        if state is not None:
            expect_tensor(state, "state", dims=("B", "H", "N/2"),
                          size={"B": x.shape[0], "H": self.channels, "N/2": self.state_size // 2},
                          dtype=_complex_dtype(dtype), device=device, dtype_reason="(complex, as the state the layer returns)")

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Convolution mode. x (B, T, H), state h_0 (B, H, N/2) complex or None for zeros
        -> (y (B, T, H), h_T (B, H, N/2)).

        y = K * x + D x by FFT (zero-padded to 2T, so the circular convolution is the causal one);
        a given h_0 adds 2 Re(C Ā^k h_0) to y_k, and h_T = Ā^T h_0 + Σ_k Ā^{T-k} B̄ x_k.
        """
        self._check_input(x, state)
        T = x.shape[1]
        A_bar, B_bar = self.discretize()
        V = self._powers(T)  # (H, N/2, T): Ā^0 ... Ā^{T-1}
        K = 2 * torch.einsum("hn,hnl->hl", self.C * B_bar, V).real  # (H, T)
        u = x.transpose(1, 2)  # (B, H, T)
        spectrum = torch.fft.rfft(u, n=2 * T) * torch.fft.rfft(K, n=2 * T)
        y = torch.fft.irfft(spectrum, n=2 * T)[..., :T] + self.D.unsqueeze(-1) * u  # (B, H, T)
        # h_T: the inputs weighted by Ā^{T-1} ... Ā^0 (V reversed), one matrix product per channel.
        h_T = B_bar * torch.einsum("bhl,hnl->bhn", u.to(V.dtype), V.flip(-1))
        if state is not None:
            V_1 = V * A_bar.unsqueeze(-1)  # Ā^1 ... Ā^T
            y = y + 2 * torch.einsum("bhn,hnl->bhl", state * self.C, V_1).real  # y_k += 2 Re(C Ā^k h_0)
            h_T = h_T + V_1[..., -1] * state  # + Ā^T h_0
        return y.transpose(1, 2), h_T

    def forward_recurrent(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Recurrent mode over a whole sequence: the same results as ``forward``, by a loop over k."""
        self._check_input(x, state)
        A_bar, B_bar = self.discretize()
        Bx = B_bar * x.unsqueeze(-1)  # (B, T, H, N/2): B̄ x_k for every k, before the loop
        h = torch.zeros_like(Bx[:, 0]) if state is None else state
        states = []
        for Bx_k in Bx.unbind(1):
            h = A_bar * h + Bx_k
            states.append(h)
        y = 2 * (torch.stack(states, dim=1) * self.C).sum(-1).real + self.D * x  # C applied once, after
        return y, h

    def step(self, x_t: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: x_t (B, H), state h_{k-1} (B, H, N/2) or None -> (y_t (B, H), h_k (B, H, N/2))."""
        self._check_input(x_t, state, dims=("B", "H"))
        A_bar, B_bar = self.discretize()
        h = B_bar * x_t.unsqueeze(-1)
        if state is not None:
            h = h + A_bar * state
        return 2 * (h * self.C).sum(-1).real + self.D * x_t, h

    def extra_repr(self) -> str:
        return f"channels={self.channels}, state_size={self.state_size}, init={self.init!r}"


class S4D(nn.Module):
    """A stack of S4D blocks: the core that ``Classifier`` and ``LanguageModel`` wrap.

    x (B, T, D) -> v = W_in x + b_in (B, T, H), then for each of the L blocks (pre-norm residual)

        z = LayerNorm(v),   y = S4DLayer(z),   v = v + GLU(W_out GELU(y) + b_out),

    where W_out (2H, H) and GLU(a, b) = a ⊙ σ(b) splits its input in two halves. The outputs are
    LayerNorm(v) after the last block. Everything but the S4D layers acts on each step alone, so
    ``step`` only has to carry the layers' states: ``state`` is (L, B, H, N/2) complex.
    """

    def __init__(self, input_size: int, hidden_size: int, *, state_size: int = 64, num_layers: int = 1,
                 init: str = "inv", dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        self.input_size = expect_int(input_size, "input_size", minimum=1)
        self.hidden_size = expect_int(hidden_size, "hidden_size", minimum=1)
        self.num_layers = expect_int(num_layers, "num_layers", minimum=1)
        H = hidden_size
        self.W_in = nn.Linear(input_size, H)
        self.norms = nn.ModuleList(nn.LayerNorm(H) for _ in range(num_layers))
        self.ssms = nn.ModuleList(S4DLayer(H, state_size, init=init, dt_min=dt_min, dt_max=dt_max)
                                  for _ in range(num_layers))
        self.W_out = nn.ModuleList(nn.Linear(H, 2 * H) for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(H)
        self.state_size = state_size

    def _check_state(self, state, batch: int) -> None:
        dtype, device = module_dtype_device(self)
        expect_tensor(state, "state", dims=("L", "B", "H", "N/2"),
                      size={"L": self.num_layers, "B": batch, "H": self.hidden_size, "N/2": self.state_size // 2},
                      dtype=_complex_dtype(dtype), device=device, dtype_reason="(complex, as the state S4D returns)")

    def _mix(self, layer: int, v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return v + nn.functional.glu(self.W_out[layer](nn.functional.gelu(y)), dim=-1)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, D), state (L, B, H, N/2) or None -> (outputs (B, T, H), state (L, B, H, N/2))."""
        dtype, device = module_dtype_device(self)
        expect_tensor(x, "x", dims=("B", "T", "D"), size={"D": self.input_size}, dtype=dtype, device=device,
                      dtype_reason=WEIGHTS_DTYPE)
        expect_nonempty_time(x, "x")
        if state is not None:
            self._check_state(state, x.shape[0])
        v, states = self.W_in(x), []
        for layer, (norm, ssm) in enumerate(zip(self.norms, self.ssms)):
            y, h = ssm(norm(v), None if state is None else state[layer])
            v = self._mix(layer, v, y)
            states.append(h)
        return self.norm_out(v), torch.stack(states)

    def step(self, x_t: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: x_t (B, D), state (L, B, H, N/2) or None -> (y_t (B, H), state)."""
        dtype, device = module_dtype_device(self)
        expect_tensor(x_t, "x_t", dims=("B", "D"), size={"D": self.input_size}, dtype=dtype, device=device,
                      dtype_reason=WEIGHTS_DTYPE)
        if state is not None:
            self._check_state(state, x_t.shape[0])
        v, states = self.W_in(x_t), []
        for layer, (norm, ssm) in enumerate(zip(self.norms, self.ssms)):
            y, h = ssm.step(norm(v), None if state is None else state[layer])
            v = self._mix(layer, v, y)
            states.append(h)
        return self.norm_out(v), torch.stack(states)

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"state_size={self.state_size}, num_layers={self.num_layers}")
