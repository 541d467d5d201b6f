"""Mamba: a selective state-space model, whose B, C and step size Δ depend on the input.

Glossary (the symbols of the State-space chapter; Mamba paper, Gu & Dao 2023):

    B  batch size (in shapes; the input matrix B_t is always written with its index)
    T  sequence length      H  model width (d_model)     E  inner width, expand · H (d_inner)
    N  state size per inner channel                      R  rank of the Δ projection (dt_rank)
    K  taps of the short causal convolution (conv_size)

One ``MambaBlock`` maps v (B, T, H) to (B, T, H):

    [x, z] = W_in v                              input projection, x and z each (B, T, E)
    x = SiLU(causal depthwise conv_K(x))         each channel sees its last K inputs
    Δ_t = softplus(W_Δ (W_x x_t)[:R] + b_Δ)     (B, T, E)  the step size of every channel
    B_t = (W_x x_t)[R:R+N],  C_t = (W_x x_t)[R+N:]   (B, T, N) shared by the channels
    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t,   y_t = C_t h_t + D ⊙ x_t    (selective scan)
    out = W_out (y ⊙ SiLU(z))                    gating, output projection back to H

with A = -exp(A_log) (E, N), real and negative, initialised to A_{e,n} = -(n + 1) (S4D-Real).
Because Δ_t, B_t and C_t are functions of x_t, the recurrence is no longer time-invariant and has
no convolution form; it is computed as a scan (``seqcourse.ops.scan``), chosen by ``scan``: "fast" (the
loop with a hand-written backward), "sequential" (the readable loop), "parallel" (the log-depth scan),
or "auto" (the default: "fast" on a CPU, "parallel" on other devices). All give the same outputs.

Generation (``step``) carries, per block, the last K-1 convolution inputs (B, E, K-1) and the SSM
state h (B, E, N): constant memory per token, whatever the length of the prefix.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..ops.scan import SCANS, selective_scan
from ..validation import (WEIGHTS_DTYPE, expect_int, expect_model_tensor, expect_nonempty_time, expect_step_range,
                          expect_tensor, module_dtype_device)

__all__ = ["Mamba", "MambaBlock"]


def _check_scan(scan) -> str:
    if scan not in SCANS:
        raise ValueError(f"scan must be one of {SCANS}; got {scan!r}")
    return scan


class MambaBlock(nn.Module):
    """One Mamba block (module docstring): v (B, T, H) -> out (B, T, H), with a carried state
    (conv_state (B, E, K-1), ssm_state (B, E, N)).

    Parameters: ``W_in`` (2E, H), ``conv`` (depthwise, E channels, K taps, with bias),
    ``W_x`` (R + 2N, E), ``W_delta`` (E, R) with bias ``b_delta`` (E,), ``A_log`` (E, N),
    ``D`` (E,), ``W_out`` (H, E). Δ starts log-uniform in [dt_min, dt_max], as in the paper.
    """

    def __init__(self, d_model: int, state_size: int = 16, *, expand: int = 2, conv_size: int = 4,
                 dt_rank: int | None = None, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 scan: str = "auto"):
        super().__init__()
        self.d_model = expect_int(d_model, "d_model", minimum=1)
        self.state_size = expect_int(state_size, "state_size", minimum=1)
        self.expand = expect_int(expand, "expand", minimum=1)
        self.conv_size = expect_int(conv_size, "conv_size", minimum=1)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank is None else expect_int(dt_rank, "dt_rank", minimum=1)
        dt_min, dt_max = expect_step_range(dt_min, dt_max)
        self.scan = _check_scan(scan)
        E, N, R = expand * d_model, state_size, self.dt_rank
        self.inner_size = E
        self.W_in = nn.Linear(d_model, 2 * E, bias=False)
        self.conv = nn.Conv1d(E, E, conv_size, groups=E)
        self.W_x = nn.Linear(E, R + 2 * N, bias=False)
        self.W_delta = nn.Linear(R, E)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1))
        self.D = nn.Parameter(torch.ones(E))
        self.W_out = nn.Linear(E, d_model, bias=False)
        with torch.no_grad():  # Δ = softplus(b_delta) log-uniform in [dt_min, dt_max] at the start
            nn.init.uniform_(self.W_delta.weight, -R**-0.5, R**-0.5)
            dt = torch.exp(torch.rand(E) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            self.W_delta.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # the inverse of softplus

    @property
    def A(self) -> torch.Tensor:
        return -self.A_log.exp()  # (E, N)

    def _selection(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Δ (..., E), B (..., N), C (..., N) from x (..., E): the input-dependent parameters."""
        R, N = self.dt_rank, self.state_size
        delta_low, B, C = self.W_x(x).split([R, N, N], dim=-1)
        return nn.functional.softplus(self.W_delta(delta_low)), B, C

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zeros: (conv_state (B, E, K-1), ssm_state (B, E, N))."""
        dtype, device = module_dtype_device(self)
        return (torch.zeros(batch, self.inner_size, self.conv_size - 1, dtype=dtype, device=device),
                torch.zeros(batch, self.inner_size, self.state_size, dtype=dtype, device=device))

    def check_state(self, state, batch: int) -> None:
        """Raise TypeError/ValueError unless state is (conv_state (B, E, K-1), ssm_state (B, E, N))."""
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError("state must be a pair (conv_state (B, E, K-1), ssm_state (B, E, N)); "
                            f"got {type(state).__name__}")
        dtype, device = module_dtype_device(self)
        expect_tensor(state[0], "conv_state", dims=("B", "E", "K-1"),
                      size={"B": batch, "E": self.inner_size, "K-1": self.conv_size - 1},
                      dtype=dtype, device=device, dtype_reason=WEIGHTS_DTYPE)
        expect_tensor(state[1], "ssm_state", dims=("B", "E", "N"),
                      size={"B": batch, "E": self.inner_size, "N": self.state_size},
                      dtype=dtype, device=device, dtype_reason=WEIGHTS_DTYPE)

    def _check_input(self, v: torch.Tensor, state, dims) -> None:
        expect_model_tensor(self, v, "v" if len(dims) == 3 else "v_t", dims=dims, size={"H": self.d_model})
        if len(dims) == 3:
            expect_nonempty_time(v, "v")
        if state is not None:
            self.check_state(state, v.shape[0])

    def _branches(self, v: torch.Tensor, conv_state: torch.Tensor):
        """x = SiLU(conv(x)) and z from W_in v, and the convolution's new cache (its last K-1 inputs)."""
        x, z = self.W_in(v).chunk(2, dim=-1)  # (B, T, E) each
        # Causal convolution: the K-1 carried inputs play the role of the left zero padding.
        padded = torch.cat([conv_state, x.transpose(1, 2)], dim=-1)  # (B, E, K-1+T)
        x = nn.functional.silu(self.conv(padded)).transpose(1, 2)  # (B, T, E)
        return x, z, padded[..., v.shape[1]:]

    def forward(self, v: torch.Tensor, state=None):
        """v (B, T, H), state or None for zeros -> (out (B, T, H), state after the last step)."""
        self._check_input(v, state, ("B", "T", "H"))
        conv_state, h0 = self.initial_state(v.shape[0]) if state is None else state
        x, z, conv_state = self._branches(v, conv_state)
        delta, B, C = self._selection(x)
        y, h = selective_scan(x, delta, self.A, B, C, self.D, h0, scan=self.scan)
        return self.W_out(y * nn.functional.silu(z)), (conv_state, h)

    def selection(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the SSM sees and chooses for the block input v (B, T, H), from a zero state:
        (x (B, T, E), Δ (B, T, E), B (B, T, N), C (B, T, N)), the inputs of the selective scan."""
        self._check_input(v, None, ("B", "T", "H"))
        x, _, _ = self._branches(v, self.initial_state(v.shape[0])[0])
        return (x, *self._selection(x))

    def step(self, v_t: torch.Tensor, state=None):
        """One step: v_t (B, H), state or None -> (out_t (B, H), state)."""
        self._check_input(v_t, state, ("B", "H"))
        conv_state, h = self.initial_state(v_t.shape[0]) if state is None else state
        x, z = self.W_in(v_t).chunk(2, dim=-1)  # (B, E) each
        window = torch.cat([conv_state, x.unsqueeze(-1)], dim=-1)  # (B, E, K): the last K inputs
        x = nn.functional.silu((window * self.conv.weight.squeeze(1)).sum(-1) + self.conv.bias)  # (B, E)
        delta, B, C = self._selection(x)  # (B, E), (B, N), (B, N)
        h = torch.exp(delta.unsqueeze(-1) * self.A) * h + (delta * x).unsqueeze(-1) * B.unsqueeze(1)  # (B, E, N)
        y = (h * C.unsqueeze(1)).sum(-1) + self.D * x  # y_t = C_t h_t + D x_t
        return self.W_out(y * nn.functional.silu(z)), (window[..., 1:], h)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, state_size={self.state_size}, expand={self.expand}, "
                f"conv_size={self.conv_size}, dt_rank={self.dt_rank}, scan={self.scan!r}")


class Mamba(nn.Module):
    """A stack of Mamba blocks: the core that ``Classifier`` and ``LanguageModel`` wrap.

    x (B, T, D) -> v = W_in x + b_in (B, T, H); each of the L blocks adds
    v = v + MambaBlock(RMSNorm(v)); the outputs are RMSNorm(v) (B, T, H). The carried state is the
    pair (conv_state (L, B, E, K-1), ssm_state (L, B, E, N)), the blocks' states stacked.
    """

    def __init__(self, input_size: int, hidden_size: int, *, state_size: int = 16, num_layers: int = 1,
                 expand: int = 2, conv_size: int = 4, dt_rank: int | None = None, dt_min: float = 1e-3,
                 dt_max: float = 1e-1, scan: str = "auto"):
        super().__init__()
        self.input_size = expect_int(input_size, "input_size", minimum=1)
        self.hidden_size = expect_int(hidden_size, "hidden_size", minimum=1)
        self.num_layers = expect_int(num_layers, "num_layers", minimum=1)
        self.W_in = nn.Linear(input_size, hidden_size)
        self.norms = nn.ModuleList(nn.RMSNorm(hidden_size) for _ in range(num_layers))
        self.blocks = nn.ModuleList(
            MambaBlock(hidden_size, state_size, expand=expand, conv_size=conv_size, dt_rank=dt_rank, dt_min=dt_min,
                       dt_max=dt_max, scan=scan)
            for _ in range(num_layers)
        )
        self.norm_out = nn.RMSNorm(hidden_size)

    @property
    def scan(self) -> str:
        """The scan every block uses, one of ``seqcourse.ops.scan.SCANS`` (settable)."""
        return self.blocks[0].scan

    @scan.setter
    def scan(self, value: str) -> None:
        _check_scan(value)
        for block in self.blocks:
            block.scan = value

    def _layer_states(self, state, batch: int):
        """The carried state split per block (None for zeros), after checking its shapes."""
        if state is None:
            return [None] * self.num_layers
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError("state must be the pair (conv_state (L, B, E, K-1), ssm_state (L, B, E, N)) "
                            f"that forward or step returned; got {type(state).__name__}")
        for name, part in zip(("conv_state", "ssm_state"), state):
            expect_tensor(part, name, ndim=4)
            if part.shape[0] != self.num_layers:
                raise ValueError(f"{name} must hold one entry per layer (L={self.num_layers}) along dim 0; "
                                 f"got shape {tuple(part.shape)}")
        per_layer = list(zip(state[0].unbind(0), state[1].unbind(0)))
        for block, layer_state in zip(self.blocks, per_layer):
            block.check_state(layer_state, batch)
        return per_layer

    def _run(self, x, state, dims, one_step: bool):
        dtype, device = module_dtype_device(self)
        name = "x_t" if one_step else "x"
        expect_tensor(x, name, dims=dims, size={"D": self.input_size}, dtype=dtype, device=device,
                      dtype_reason=WEIGHTS_DTYPE)
        if not one_step:
            expect_nonempty_time(x, "x")
        states = self._layer_states(state, x.shape[0])
        v, new_states = self.W_in(x), []
        for norm, block, layer_state in zip(self.norms, self.blocks, states):
            out, layer_state = (block.step if one_step else block)(norm(v), layer_state)
            v = v + out
            new_states.append(layer_state)
        conv_states, ssm_states = zip(*new_states)
        return self.norm_out(v), (torch.stack(conv_states), torch.stack(ssm_states))

    def forward(self, x: torch.Tensor, state=None):
        """x (B, T, D), state or None -> (outputs (B, T, H), (conv_state (L, B, E, K-1), ssm_state (L, B, E, N)))."""
        return self._run(x, state, ("B", "T", "D"), one_step=False)

    def step(self, x_t: torch.Tensor, state=None):
        """One step: x_t (B, D), state or None -> (y_t (B, H), state)."""
        return self._run(x_t, state, ("B", "D"), one_step=True)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}, num_layers={self.num_layers}"
