"""Questions for the Convolutions chapter: causal padding, the receptive field, and a dilated causal
convolution by hand.

Symbols as in the chapter: a batch of B sequences of length T with C_in channels, batch first
(x has shape (B, T, C_in)); a kernel of k taps, ``weight`` (C_out, C_in, k) laid out as in
``torch.nn.Conv1d``, a bias b (C_out,), a dilation d, and

    y_t = b + sum_{j=0}^{k-1} W_j x_{t-(k-1-j) d},   W_j = weight[:, :, j],   x_s = 0 for s < 0.

Integers (the dilation, the kernel size, the list of dilations) reach the student's function as
integer tensors, because every argument of a check is a tensor.

The references take independent routes:

* causal-conv: ``torch.nn.Conv1d`` padded k-1 on both sides, the last k-1 outputs (the ones that
  saw the right padding) cut off;
* dilated-conv: the course's ``CausalConv1d`` layer with the weights copied in;
* receptive-field: autograd through a stack of linear causal convolutions with random weights,
  counting the inputs that get a non-zero gradient from the last output.

They compute in float64. The cases are drawn so that the usual mistakes fail at least one: taps in
the wrong order (W_0 on x_t), padding on the right or on both sides, a dilation applied to the
padding but not the taps (or the other way round), a kernel longer than the sequence; for the
receptive field, counting the largest lag (R - 1) instead of the inputs, k instead of k - 1.
"""
from __future__ import annotations

import torch

from ...models.tcn import CausalConv1d
from ..registry import Case, Question


def _randn(generator: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=generator, dtype=torch.float32)


def _impulse(length: int, at: int) -> torch.Tensor:
    """One sequence of one channel, zero except x_at = 1: shape (1, T, 1)."""
    x = torch.zeros(1, length, 1)
    x[0, at, 0] = 1.0
    return x


def _random_conv(B: int, T: int, C_in: int, C_out: int, k: int):
    def build(g):
        return {"x": _randn(g, B, T, C_in), "weight": _randn(g, C_out, C_in, k, scale=0.7), "bias": _randn(g, C_out)}

    return build


# ---- causal-conv ----------------------------------------------------------------------------


def _causal_reference(x, weight, bias):
    C_out, C_in, k = weight.shape
    conv = torch.nn.Conv1d(C_in, C_out, k, padding=k - 1, device="meta", dtype=torch.float64).to_empty(device="cpu")
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        y = conv(x.double().transpose(1, 2))  # (B, C_out, T + k - 1)
    return y[:, :, : x.shape[1]].transpose(1, 2)  # drop the outputs that saw the right padding


CAUSAL_CONV = Question(
    id="causal-conv",
    title="a causal convolution (dilation 1): y_t = b + sum_j W_j x_{t-(k-1-j)}, zeros before x_0",
    points=2,
    args=("x", "weight", "bias"),
    outputs=("y",),
    reference=_causal_reference,
    cases=(
        Case("an impulse at step 2 through taps 1, 2, 3 (B=1, T=6, k=3)",
             lambda g: {"x": _impulse(6, 2), "weight": torch.tensor([[[1.0, 2.0, 3.0]]]), "bias": torch.zeros(1)}),
        Case("random, with bias (B=2, T=7, C_in=3, C_out=4, k=2)", _random_conv(2, 7, 3, 4, 2), seed=1),
        Case("a kernel longer than the sequence (B=2, T=2, k=4)", _random_conv(2, 2, 2, 3, 4), seed=2),
        Case("k=1: no padding at all (B=3, T=5, C_in=C_out=2)", _random_conv(3, 5, 2, 2, 1), seed=3),
    ),
)


# ---- dilated-conv ---------------------------------------------------------------------------


def _layer(C_in: int, C_out: int, k: int, d: int) -> CausalConv1d:
    """A float64 ``CausalConv1d``, built without moving torch's global random stream (a check must
    not change the random numbers the student's notebook draws next)."""
    with torch.random.fork_rng(devices=[]):
        return CausalConv1d(C_in, C_out, kernel_size=k, dilation=d).double()


def _dilated_reference(x, weight, bias, dilation):
    C_out, C_in, k = weight.shape
    layer = _layer(C_in, C_out, k, int(dilation))
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
        y, _ = layer(x.double())
    return y


def _dilated(B: int, T: int, C_in: int, C_out: int, k: int, d: int):
    def build(g):
        return {**_random_conv(B, T, C_in, C_out, k)(g), "dilation": torch.tensor(d)}

    return build


DILATED_CONV = Question(
    id="dilated-conv",
    title="a dilated causal convolution by hand: y_t = b + sum_j W_j x_{t-(k-1-j)d}",
    points=3,
    args=("x", "weight", "bias", "dilation"),
    outputs=("y",),
    reference=_dilated_reference,
    cases=(
        Case("an impulse at step 1 through taps 1, 2, 3 with d=2 (B=1, T=10)",
             lambda g: {"x": _impulse(10, 1), "weight": torch.tensor([[[1.0, 2.0, 3.0]]]), "bias": torch.zeros(1),
                        "dilation": torch.tensor(2)}),
        Case("random, with bias (B=2, T=12, C_in=2, C_out=3, k=2, d=4)", _dilated(2, 12, 2, 3, 2, 4), seed=4),
        Case("a reach (k-1)d = 6 longer than the sequence (B=2, T=4, k=3, d=3)", _dilated(2, 4, 3, 2, 3, 3), seed=5),
        Case("d=1: an ordinary causal convolution (B=1, T=8, k=3)", _dilated(1, 8, 2, 2, 3, 1), seed=6),
        Case("k=1: the dilation changes nothing (B=2, T=5, d=5)", _dilated(2, 5, 3, 3, 1, 5), seed=7),
    ),
)


# ---- receptive-field ------------------------------------------------------------------------


def _receptive_reference(kernel_size, dilations):
    """Feed a long random sequence through linear causal convolutions with random weights and count
    the inputs whose gradient from the last output is non-zero."""
    k, ds = int(kernel_size), [int(d) for d in dilations]
    g = torch.Generator().manual_seed(0)
    length = k * sum(ds) + 2  # longer than any stack of these convolutions can reach
    x = torch.randn(1, length, 2, generator=g, dtype=torch.float64, requires_grad=True)
    h = x
    for d in ds:
        layer = _layer(2, 2, k, d)
        with torch.no_grad():
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=torch.float64))
            layer.bias.zero_()
        h, _ = layer(h)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(h[0, -1].sum(), x)
    reached = (grad[0] != 0).any(dim=1).nonzero()
    return torch.tensor(float(length - int(reached[0])), dtype=torch.float64)


def _field(k: int, dilations: list[int]):
    return lambda g: {"kernel_size": torch.tensor(k), "dilations": torch.tensor(dilations)}


RECEPTIVE_FIELD = Question(
    id="receptive-field",
    title="the receptive field R of a stack of causal convolutions (how many inputs reach y_t)",
    points=2,
    args=("kernel_size", "dilations"),
    outputs=("R",),
    reference=_receptive_reference,
    cases=(
        Case("k=2, dilations 1, 2, 4, ..., 512 (ten convolutions)", _field(2, [2**i for i in range(10)])),
        Case("k=3, dilations 1, 2, 4, 8", _field(3, [1, 2, 4, 8])),
        Case("two convolutions per level (Bai et al.): k=2, dilations 1, 1, 2, 2, 4, 4", _field(2, [1, 1, 2, 2, 4, 4])),
        Case("k=1: one tap per convolution (dilations 1, 2, 4)", _field(1, [1, 2, 4])),
        Case("dilations that are not powers of two: k=4, dilations 3, 5", _field(4, [3, 5])),
    ),
)

QUESTIONS = (CAUSAL_CONV, RECEPTIVE_FIELD, DILATED_CONV)
