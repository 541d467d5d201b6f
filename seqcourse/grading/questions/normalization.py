"""Questions for the Normalization chapter: LayerNorm's forward pass, its Jacobian, and a pre-norm
residual block.

Symbols as in the chapter. For one vector x of d features (one position of one sequence),

    mu = (1/d) sum_i x_i,   sigma^2 = (1/d) sum_i (x_i - mu)^2   (the biased variance),
    LN(x) = (x - mu) / sqrt(sigma^2 + eps) * weight + bias,

its Jacobian J[i, j] = d LN(x)_i / d x_j = weight_i / s (delta_ij - 1/d - x-hat_i x-hat_j / d) with
s = sqrt(sigma^2 + eps) and x-hat = (x - mu) / s, and a pre-norm block with a feed-forward branch

    y = x + F(LN(x)),   F(u) = relu(u W_1^T + b_1) W_2^T + b_2,   W_1 (d_ff, d), W_2 (d, d_ff).

The references take other routes: ``torch.nn.LayerNorm`` and ``torch.nn.Linear`` modules with the
weights copied in (built on the meta device, so building them draws no random numbers), and the
Jacobian by autograd through ``torch.nn.functional.layer_norm``. All compute in float64.

The cases are drawn so that the usual mistakes fail at least one case: the unbiased variance (d
small), eps outside the square root or left out (a case with eps = 1 and one with a tiny
variance; the pre-norm block's LayerNorm uses eps = 1e-5, like ``torch.nn.LayerNorm``, and its
tiny-input case catches a block that leaves eps out), normalising over the wrong axis (a case with T = d), forgetting weight or bias (random
affine parameters), a Jacobian without the x-hat term or without the 1/d centring term, a
post-norm block LN(x + F(x)) instead of pre-norm, a missing residual, and F applied to x instead
of LN(x).

The tiny-variance layer-norm case (x = 1 + 1e-3 noise) comes in float64: in float32 the one-pass
variance mean(x^2) - mu^2 loses most of its digits to cancellation there, and this question tests
the formula, not float32 rounding; a correct one-pass answer passes every case.
"""
from __future__ import annotations

import torch

from ..registry import Case, Question

F64 = torch.float64


def _tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _torch_layer_norm(weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.nn.LayerNorm:
    module = torch.nn.LayerNorm(weight.shape[0], eps=eps, device="meta", dtype=F64).to_empty(device="cpu")
    with torch.no_grad():
        module.weight.copy_(weight)
        module.bias.copy_(bias)
    return module


def _torch_linear(W: torch.Tensor, b: torch.Tensor) -> torch.nn.Linear:
    out_features, in_features = W.shape
    module = torch.nn.Linear(in_features, out_features, device="meta", dtype=F64).to_empty(device="cpu")
    with torch.no_grad():
        module.weight.copy_(W)
        module.bias.copy_(b)
    return module


# ---- layer-norm ------------------------------------------------------------------------------


def _layer_norm_reference(x, weight, bias, eps):
    with torch.no_grad():
        return _torch_layer_norm(weight.double(), bias.double(), float(eps))(x.double())


def _layer_norm_by_hand(g):
    return {"x": _tensor([[[1.0, 2.0, 3.0, 4.0]]]), "weight": torch.ones(4), "bias": torch.zeros(4),
            "eps": _tensor(1e-5)}


def _layer_norm_random(B, T, d, eps, offset=0.0, scale=1.0, dtype=torch.float32):
    def build(g):
        inputs = {"x": offset + scale * torch.randn(B, T, d, generator=g),
                  "weight": 1 + 0.5 * torch.randn(d, generator=g), "bias": torch.randn(d, generator=g),
                  "eps": _tensor(eps)}
        return {name: value.to(dtype) for name, value in inputs.items()}

    return build


LAYER_NORM = Question(
    id="layer-norm",
    title="LayerNorm over the last dimension: (x - mu) / sqrt(sigma^2 + eps) * weight + bias",
    points=2,
    args=("x", "weight", "bias", "eps"),
    outputs=("y",),
    reference=_layer_norm_reference,
    cases=(
        Case("by hand: x = (1, 2, 3, 4), weight 1, bias 0", _layer_norm_by_hand),
        Case("affine parameters, d = 3, far from zero mean (B=2, T=5)", _layer_norm_random(2, 5, 3, 1e-5, offset=4.0), seed=1),
        Case("T = d, so the wrong axis still runs (B=3, T=6, d=6)", _layer_norm_random(3, 6, 6, 1e-5), seed=2),
        Case("eps = 1 (B=2, T=3, d=8)", _layer_norm_random(2, 3, 8, 1.0), seed=3),
        Case("a nearly constant input, where eps dominates (B=1, T=4, d=5, std 1e-3)",
             _layer_norm_random(1, 4, 5, 1e-5, offset=1.0, scale=1e-3, dtype=F64), seed=4),
    ),
    tol=1e-4,
)


# ---- layer-norm-jacobian ---------------------------------------------------------------------


def _jacobian_reference(x, weight, eps):
    x, weight = x.double(), weight.double()
    return torch.autograd.functional.jacobian(
        lambda v: torch.nn.functional.layer_norm(v, v.shape, weight, None, float(eps)), x)


def _jacobian_by_hand(g):
    return {"x": _tensor([1.0, 2.0, 3.0, 4.0]), "weight": torch.ones(4), "eps": _tensor(1e-5)}


def _jacobian_random(d, eps, scale=1.0):
    def build(g):
        return {"x": scale * torch.randn(d, generator=g) + 1.0, "weight": 1 + 0.5 * torch.randn(d, generator=g),
                "eps": _tensor(eps)}

    return build


LAYER_NORM_JACOBIAN = Question(
    id="layer-norm-jacobian",
    title="the Jacobian of LayerNorm: J = weight / s (I - 1 1^T / d - x_hat x_hat^T / d)",
    points=2,
    args=("x", "weight", "eps"),
    outputs=("J",),
    reference=_jacobian_reference,
    cases=(
        Case("by hand: x = (1, 2, 3, 4), weight 1", _jacobian_by_hand),
        Case("a learned gain (d = 6)", _jacobian_random(6, 1e-5), seed=5),
        Case("eps = 0.5, where s differs from the standard deviation (d = 5)", _jacobian_random(5, 0.5), seed=6),
        Case("a large input scale (d = 3)", _jacobian_random(3, 1e-5, scale=5.0), seed=7),
    ),
    tol=1e-4,
)


# ---- pre-norm-block --------------------------------------------------------------------------


def _block_reference(x, ln_weight, ln_bias, W_1, b_1, W_2, b_2):
    with torch.no_grad():
        branch = torch.nn.Sequential(
            _torch_layer_norm(ln_weight.double(), ln_bias.double(), 1e-5),
            _torch_linear(W_1.double(), b_1.double()),
            torch.nn.ReLU(),
            _torch_linear(W_2.double(), b_2.double()),
        )
        x = x.double()
        return x + branch(x)


def _block_random(B, T, d, d_ff, identity_norm=False, scale=1.0):
    def build(g):
        return {
            "x": scale * torch.randn(B, T, d, generator=g),
            "ln_weight": torch.ones(d) if identity_norm else 1 + 0.3 * torch.randn(d, generator=g),
            "ln_bias": torch.zeros(d) if identity_norm else 0.3 * torch.randn(d, generator=g),
            "W_1": torch.randn(d_ff, d, generator=g) / d**0.5,
            "b_1": 0.1 * torch.randn(d_ff, generator=g),
            "W_2": torch.randn(d, d_ff, generator=g) / d_ff**0.5,
            "b_2": 0.1 * torch.randn(d, generator=g),
        }

    return build


def _block_by_hand(g):
    return {"x": _tensor([[[1.0, -1.0]]]), "ln_weight": torch.ones(2), "ln_bias": torch.zeros(2),
            "W_1": _tensor([[1.0, 0.0], [0.0, 1.0]]), "b_1": torch.zeros(2),
            "W_2": _tensor([[0.5, 0.0], [0.0, 0.5]]), "b_2": torch.zeros(2)}


PRE_NORM_BLOCK = Question(
    id="pre-norm-block",
    title="a pre-norm residual block: y = x + relu(LN(x) W_1^T + b_1) W_2^T + b_2",
    points=3,
    args=("x", "ln_weight", "ln_bias", "W_1", "b_1", "W_2", "b_2"),
    outputs=("y",),
    reference=_block_reference,
    cases=(
        Case("by hand: x = (1, -1), W_1 = I, W_2 = I / 2", _block_by_hand),
        Case("plain LayerNorm, d_ff = 4d (B=2, T=3, d=4)", _block_random(2, 3, 4, 16, identity_norm=True), seed=8),
        Case("learned LayerNorm gain and bias (B=2, T=4, d=6, d_ff=12)", _block_random(2, 4, 6, 12), seed=9),
        Case("d_ff = d, so a transposed weight still runs (B=1, T=5, d=5, d_ff=5)", _block_random(1, 5, 5, 5), seed=10),
        Case("a tiny input (std 1e-3), where LayerNorm's eps = 1e-5 matters (B=2, T=3, d=4, d_ff=8)",
             _block_random(2, 3, 4, 8, scale=1e-3), seed=11),
    ),
    tol=1e-4,
)

QUESTIONS = (LAYER_NORM, LAYER_NORM_JACOBIAN, PRE_NORM_BLOCK)
