"""Causal, dilated, residual convolutions: the temporal convolutional network (TCN).

Glossary (the symbols of the Convolutions chapter):

    B  batch size          T  sequence length           k  kernel size (taps per convolution)
    C_in, C_out  channels into / out of one convolution  d  dilation (spacing between taps)
    D  input features of the stack                      H  channels of every block (hidden size)
    L  levels (residual blocks) of the stack; level l = 0 ... L-1 has dilation 2^l
    c  convolutions per block (``convs_per_block``)     R  receptive field

A causal convolution with kernel size k and dilation d computes, for every step t (counted from 0),

    y_t = b + sum_{j=0}^{k-1} W_j x_{t-(k-1-j) d},        x_s = 0 for s < 0,

with ``weight`` (C_out, C_in, k) laid out as in ``torch.nn.Conv1d``: tap W_j = ``weight[:, :, j]``
looks back (k-1-j) d steps, so the last tap W_{k-1} sees x_t itself and the first looks back
(k-1) d steps. Padding (k-1) d zeros on the left only, and none on the right, is what makes y_t
depend on x_0 ... x_t alone.

A stack of convolutions with dilations d_1, ..., d_n has the receptive field

    R = 1 + (k-1) (d_1 + ... + d_n)

(y_t depends on x_{t-R+1} ... x_t). With one convolution per level and dilations 2^0 ... 2^d
(d + 1 levels) this is R(k, d) = (k-1)(2^{d+1} - 1) + 1; with c convolutions per level, as in the
residual block of Bai et al. (2018), which holds two, the (k-1) term is counted c times.
``receptive_field`` and ``tcn_receptive_field`` compute these from the architecture; measuring R
by autograd on a trained or untrained model, of any kind, is ``seqcourse.viz.receptive_field``'s job.

Streaming. ``step`` processes one step at a time. Each convolution carries a *buffer*: its last
(k-1) d inputs, shape (B, (k-1) d, C_in). ``forward(x, state)`` continues from such buffers instead
of zero padding and returns the buffers after x, so running ``forward`` on consecutive chunks, or
``step`` on every x_t, gives the same outputs as ``forward`` on the whole sequence. The buffers of a
stack hold sum_n (k-1) d_n = R - 1 past steps in all (each convolution of its own input): a
TCN's streaming memory grows with its receptive field, where an RNN carries one state vector.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..validation import WEIGHTS_DTYPE, expect_int, expect_nonempty_time, expect_tensor, module_dtype_device

__all__ = ["CausalConv1d", "TCN", "TCNBlock", "receptive_field", "tcn_receptive_field"]


def receptive_field(kernel_size: int, dilations: Sequence[int]) -> int:
    """R = 1 + (k-1) * sum(dilations) for a stack of causal convolutions, one dilation per convolution.

    ``receptive_field(2, [1, 2, 4])`` is 8: y_t depends on x_{t-7} ... x_t. An empty stack has R = 1.
    """
    expect_int(kernel_size, "kernel_size", minimum=1)
    if isinstance(dilations, (str, bytes)) or not isinstance(dilations, Sequence):
        raise TypeError(f"dilations must be a sequence of ints, one per convolution; got {type(dilations).__name__}")
    for i, d in enumerate(dilations):
        expect_int(d, f"dilations[{i}]", minimum=1)
    return 1 + (kernel_size - 1) * sum(dilations)


def tcn_receptive_field(kernel_size: int, num_levels: int, *, convs_per_block: int) -> int:
    """Closed form of R for levels l = 0 ... L-1 with dilation 2^l and c convolutions per level.

        R = c (k-1) (2^L - 1) + 1.

    With c = 1 and L = d + 1 levels this is R(k, d) = (k-1)(2^{d+1} - 1) + 1 (e.g. k = 2, ten
    levels: R = 1024); Bai et al.'s block has c = 2 and R = 2 (k-1)(2^L - 1) + 1. The same number as
    ``receptive_field(k, [2**l for l in range(L) for _ in range(c)])``.
    """
    expect_int(kernel_size, "kernel_size", minimum=1)
    expect_int(num_levels, "num_levels", minimum=1)
    expect_int(convs_per_block, "convs_per_block", minimum=1)
    return convs_per_block * (kernel_size - 1) * (2**num_levels - 1) + 1


class CausalConv1d(nn.Module):
    """A causal 1-D convolution over batch-first sequences, any kernel size k and dilation d.

        y_t = b + sum_{j=0}^{k-1} W_j x_{t-(k-1-j) d}     (x_s = 0 for s < 0, or from the buffer)

    Parameters: ``weight`` (C_out, C_in, k) with W_j = weight[:, :, j] (the layout of
    ``torch.nn.Conv1d``), ``bias`` (C_out,) or ``None``; both start uniform in
    [-1/sqrt(C_in k), 1/sqrt(C_in k)] like ``torch.nn.Conv1d``. ``context`` = (k-1) d is how many
    past inputs the layer reads besides x_t (the length of its buffer).

    It is a core in the sense of ``seqcourse.models.wrappers``: ``forward(x, buffer)`` and
    ``step(x_t, buffer)`` return ``(outputs, buffer)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int, dilation: int = 1, bias: bool = True):
        super().__init__()
        self.in_channels = expect_int(in_channels, "in_channels", minimum=1)
        self.out_channels = expect_int(out_channels, "out_channels", minimum=1)
        self.kernel_size = expect_int(kernel_size, "kernel_size", minimum=1)
        self.dilation = expect_int(dilation, "dilation", minimum=1)
        self.context = (kernel_size - 1) * dilation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    @property
    def input_size(self) -> int:
        """C_in, under the name the wrappers look for."""
        return self.in_channels

    def reset_parameters(self) -> None:
        """Draw every parameter uniform in [-1/sqrt(C_in k), 1/sqrt(C_in k)] (torch's Conv1d bound)."""
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _check_buffer(self, buffer, batch: int, dtype, device) -> None:
        expect_tensor(buffer, "buffer", dims=("B", "(k-1)d", "C_in"),
                      size={"B": batch, "(k-1)d": self.context, "C_in": self.in_channels},
                      dtype=dtype, device=device, dtype_reason=WEIGHTS_DTYPE)

    def forward(self, x: torch.Tensor, buffer: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, C_in), buffer (B, (k-1)d, C_in) or None for zeros -> (y (B, T, C_out), buffer).

        The buffer holds the inputs before x_0 (zeros by default: causal zero padding on the left
        only); the returned buffer holds the last (k-1)d steps of [buffer, x], ready for the next chunk.
        """
        dtype, device = module_dtype_device(self)
        expect_tensor(x, "x", dims=("B", "T", "C_in"), size={"C_in": self.in_channels},
                      dtype=dtype, device=device, dtype_reason=WEIGHTS_DTYPE)
        expect_nonempty_time(x, "x")
        if buffer is None:
            buffer = x.new_zeros(x.shape[0], self.context, self.in_channels)
        else:
            self._check_buffer(buffer, x.shape[0], dtype, device)
        padded = torch.cat([buffer, x], dim=1)  # (B, (k-1)d + T, C_in): left padding only
        y = nn.functional.conv1d(padded.transpose(1, 2), self.weight, self.bias, dilation=self.dilation)  # (B, C_out, T)
        return y.transpose(1, 2), padded[:, padded.shape[1] - self.context:]

    def step(self, x_t: torch.Tensor, buffer: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: x_t (B, C_in), buffer (B, (k-1)d, C_in) or None -> (y_t (B, C_out), buffer).

        The window [buffer, x_t] holds x_{t-(k-1)d} ... x_t; its taps are every d-th entry.
        """
        dtype, device = module_dtype_device(self)
        expect_tensor(x_t, "x_t", dims=("B", "C_in"), size={"C_in": self.in_channels},
                      dtype=dtype, device=device, dtype_reason=WEIGHTS_DTYPE)
        if buffer is None:
            buffer = x_t.new_zeros(x_t.shape[0], self.context, self.in_channels)
        else:
            self._check_buffer(buffer, x_t.shape[0], dtype, device)
        window = torch.cat([buffer, x_t.unsqueeze(1)], dim=1)  # (B, (k-1)d + 1, C_in)
        taps = window[:, :: self.dilation]  # (B, k, C_in): x_{t-(k-1)d}, ..., x_{t-d}, x_t
        y_t = torch.einsum("bjc,ocj->bo", taps, self.weight)  # sum_j W_j x_{t-(k-1-j)d}
        if self.bias is not None:
            y_t = y_t + self.bias
        return y_t, window[:, 1:]

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"kernel_size={self.kernel_size}, dilation={self.dilation}, bias={self.bias is not None}")


class TCNBlock(nn.Module):
    """A residual block: c causal convolutions with the same dilation d, each followed by a ReLU,
    plus a shortcut (Bai et al., 2018, without their weight normalisation and dropout).

        h^0 = x,   h^i = relu(conv_i(h^{i-1})) for i = 1 ... c,   y = relu(h^c + s(x)),

    where s(x) = x when C_in = C_out, and s(x) = W_s x + b_s (a 1x1 convolution, ``W_s`` (C_out,
    C_in), ``b_s`` (C_out,)) otherwise. The shortcut looks at x_t only, so the block's receptive
    field is 1 + c (k-1) d. State: a tuple of c buffers, one per convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int, dilation: int,
                 convs_per_block: int = 2):
        super().__init__()
        expect_int(convs_per_block, "convs_per_block", minimum=1)
        self.convs = nn.ModuleList(
            CausalConv1d(in_channels if i == 0 else out_channels, out_channels, kernel_size=kernel_size,
                         dilation=dilation)
            for i in range(convs_per_block)
        )
        # in_channels and out_channels reach the first convolution under their own names; it checks them.
        self.in_channels, self.out_channels = self.convs[0].in_channels, self.convs[0].out_channels
        if in_channels != out_channels:
            bound = 1.0 / math.sqrt(in_channels)
            self.W_s = nn.Parameter(torch.empty(out_channels, in_channels).uniform_(-bound, bound))
            self.b_s = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound))
        else:
            self.W_s = self.b_s = None

    @property
    def input_size(self) -> int:
        return self.in_channels

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.W_s is None else nn.functional.linear(x, self.W_s, self.b_s)

    def _check_state(self, state) -> None:
        if not isinstance(state, (tuple, list)) or len(state) != len(self.convs):
            got = f"a {type(state).__name__} of {len(state)}" if isinstance(state, (tuple, list)) else type(state).__name__
            raise TypeError(f"a block's state must be a tuple of {len(self.convs)} buffers, one per convolution; got {got}")

    def forward(self, x: torch.Tensor, state=None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """x (B, T, C_in), state (tuple of c buffers) or None -> (y (B, T, C_out), state)."""
        if state is not None:
            self._check_state(state)
        h, buffers = x, []
        for i, conv in enumerate(self.convs):
            h, buffer = conv(h, None if state is None else state[i])
            h = torch.relu(h)
            buffers.append(buffer)
        return torch.relu(h + self._shortcut(x)), tuple(buffers)

    def step(self, x_t: torch.Tensor, state=None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One step: x_t (B, C_in), state or None -> (y_t (B, C_out), state)."""
        if state is not None:
            self._check_state(state)
        h, buffers = x_t, []
        for i, conv in enumerate(self.convs):
            h, buffer = conv.step(h, None if state is None else state[i])
            h = torch.relu(h)
            buffers.append(buffer)
        return torch.relu(h + self._shortcut(x_t)), tuple(buffers)


class TCN(nn.Module):
    """A temporal convolutional network: L residual blocks, block l with dilation 2^l (batch-first).

    Block 0 maps D input features to H channels, the others H to H. Each block holds c =
    ``convs_per_block`` causal convolutions of kernel size k (c = 2 in Bai et al. 2018), so

        R = 1 + c (k-1) (1 + 2 + ... + 2^{L-1}) = c (k-1)(2^L - 1) + 1      (``receptive_field``).

    Same protocol as the recurrent models: ``forward(x (B, T, D), state=None) -> (outputs (B, T, H),
    state)`` and ``step(x_t (B, D), state=None) -> (y_t (B, H), state)``, where the state is a tuple
    with one entry per block, each a tuple of c buffers (B, (k-1) 2^l, C_in of that convolution).
    """

    def __init__(self, input_size: int, hidden_size: int, *, num_levels: int, kernel_size: int = 2,
                 convs_per_block: int = 2):
        super().__init__()
        self.input_size = expect_int(input_size, "input_size", minimum=1)
        self.hidden_size = expect_int(hidden_size, "hidden_size", minimum=1)
        self.num_levels = expect_int(num_levels, "num_levels", minimum=1)
        self.dilations = tuple(2**level for level in range(num_levels))
        self.blocks = nn.ModuleList(
            TCNBlock(input_size if level == 0 else hidden_size, hidden_size, kernel_size=kernel_size, dilation=d,
                     convs_per_block=convs_per_block)
            for level, d in enumerate(self.dilations)
        )
        # kernel_size and convs_per_block reach the blocks under their own names, which check them.
        self.kernel_size, self.convs_per_block = self.blocks[0].convs[0].kernel_size, len(self.blocks[0].convs)

    @property
    def receptive_field(self) -> int:
        """R = 1 + (k-1) * (sum of the dilations of every convolution in the stack)."""
        return receptive_field(self.kernel_size, [d for d in self.dilations for _ in range(self.convs_per_block)])

    def _check_state(self, state) -> None:
        if not isinstance(state, (tuple, list)) or len(state) != self.num_levels:
            got = f"a {type(state).__name__} of {len(state)}" if isinstance(state, (tuple, list)) else type(state).__name__
            raise TypeError(f"state must be a tuple of {self.num_levels} block states (one per level), as returned "
                            f"by forward or step; got {got}")

    def forward(self, x: torch.Tensor, state=None) -> tuple[torch.Tensor, tuple]:
        """x (B, T, D), state or None (zero padding) -> (outputs (B, T, H), state after x).

        ``outputs[:, t]`` depends on x_{t-R+1} ... x_t only (earlier inputs come from ``state``).
        """
        dtype, device = module_dtype_device(self)
        expect_tensor(x, "x", dims=("B", "T", "D"), size={"D": self.input_size},
                      dtype=dtype, device=device, dtype_reason=WEIGHTS_DTYPE)
        if state is not None:
            self._check_state(state)
        h, states = x, []
        for level, block in enumerate(self.blocks):
            h, block_state = block(h, None if state is None else state[level])  # (B, T, H)
            states.append(block_state)
        return h, tuple(states)

    def step(self, x_t: torch.Tensor, state=None) -> tuple[torch.Tensor, tuple]:
        """One step: x_t (B, D), state or None -> (y_t (B, H), state).

        Calling ``step`` on x[:, 0], x[:, 1], ... while carrying the state gives ``forward(x)``'s
        outputs. The state's buffers hold R - 1 past steps in all (each convolution the last
        (k-1) d steps of its own input), however long the stream runs.
        """
        dtype, device = module_dtype_device(self)
        expect_tensor(x_t, "x_t", dims=("B", "D"), size={"D": self.input_size},
                      dtype=dtype, device=device, dtype_reason=WEIGHTS_DTYPE)
        if state is not None:
            self._check_state(state)
        h, states = x_t, []
        for level, block in enumerate(self.blocks):
            h, block_state = block.step(h, None if state is None else state[level])  # (B, H)
            states.append(block_state)
        return h, tuple(states)

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, num_levels={self.num_levels}, "
                f"kernel_size={self.kernel_size}, convs_per_block={self.convs_per_block}, "
                f"receptive_field={self.receptive_field}")
