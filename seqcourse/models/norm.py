"""Normalization layers from their equations: LayerNorm and RMSNorm.

Both act on the last dimension of a tensor of shape ``(..., d)``, one vector at a time (in a
sequence model, one position of one sequence: ``(B, T, d)``), so they behave the same in training
and generation and need no statistics over the batch.

LayerNorm {Ba et al. 2016}: with the mean and the biased variance over the d features,

    mu = (1/d) sum_i x_i,    sigma^2 = (1/d) sum_i (x_i - mu)^2,
    LN(x) = (x - mu) / sqrt(sigma^2 + eps) * weight + bias.

RMSNorm {Zhang & Sennrich 2019} drops the centring and the bias:

    RMS(x) = x / sqrt((1/d) sum_i x_i^2 + eps) * weight.

``LayerNorm`` has ``torch.nn.LayerNorm``'s constructor, parameter names and initial values
(weight = 1, bias = 0), so ``load_state_dict`` moves weights between the two.
"""
from __future__ import annotations

import torch
from torch import nn

from ..validation import WEIGHTS_DTYPE, expect_float, expect_int, expect_tensor

__all__ = ["LayerNorm", "RMSNorm"]


def _check_features(module: nn.Module, x, d: int) -> None:
    """x must be a float tensor of shape (..., d) on the module's device, in its weights' dtype."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a float tensor of shape (..., d={d}); got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError(f"x must be a float tensor of shape (..., d={d}); got a 0-dimensional tensor")
    if x.shape[-1] != d:
        raise ValueError(f"x must be a float tensor of shape (..., d={d}); got shape {tuple(x.shape)}, "
                         f"whose last dimension is {x.shape[-1]}")
    params = list(module.parameters())
    if params:
        expect_tensor(x, "x", dtype=params[0].dtype, device=params[0].device, dtype_reason=WEIGHTS_DTYPE)
    else:
        expect_tensor(x, "x", dtype="float")


class LayerNorm(nn.Module):
    """LN(x) = (x - mu) / sqrt(sigma^2 + eps) * weight + bias over the last dimension.

    Args:
        normalized_shape: d, the size of the last dimension.
        eps: added to the variance before the square root (torch's default 1e-5).
        elementwise_affine: learn ``weight`` (d,) and ``bias`` (d,); without them the output
            is the standardized x-hat.

    Shapes: x (..., d) -> (..., d).
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-5, *, elementwise_affine: bool = True):
        super().__init__()
        self.normalized_shape = expect_int(normalized_shape, "normalized_shape", minimum=1)
        self.eps = expect_float(eps, "eps", positive=True)
        self.elementwise_affine = bool(elementwise_affine)
        if self.elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.normalized_shape))
            self.bias = nn.Parameter(torch.zeros(self.normalized_shape))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_features(self, x, self.normalized_shape)
        mu = x.mean(dim=-1, keepdim=True)
        var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)  # biased: divide by d, as torch does
        x_hat = (x - mu) / torch.sqrt(var + self.eps)
        return x_hat * self.weight + self.bias if self.elementwise_affine else x_hat

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class RMSNorm(nn.Module):
    """RMS(x) = x / sqrt(mean(x^2) + eps) * weight over the last dimension (no centring, no bias).

    Args:
        normalized_shape: d, the size of the last dimension.
        eps: added to the mean square before the square root.

    Shapes: x (..., d) -> (..., d).
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-6):
        super().__init__()
        self.normalized_shape = expect_int(normalized_shape, "normalized_shape", minimum=1)
        self.eps = expect_float(eps, "eps", positive=True)
        self.weight = nn.Parameter(torch.ones(self.normalized_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_features(self, x, self.normalized_shape)
        return x / torch.sqrt((x**2).mean(dim=-1, keepdim=True) + self.eps) * self.weight

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"
