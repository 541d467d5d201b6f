"""Questions for the Gradients chapter: the Jacobian chain, norm clipping, and orthogonal matrices.

Symbols as in the chapter: W_h (H, H) the recurrent matrix, z_s the pre-activation at step s,
h_s = tanh(z_s), and the one-step Jacobian J_s = ∂h_s/∂h_{s-1} = diag(1 − tanh²(z_s)) W_h.

The references take independent routes:

* jacobian-chain: a ``torch.nn.RNN`` (inputs chosen so that its pre-activations are exactly the
  given z_s) differentiated by autograd from h_{K-k} to h_K, the norm taken by ``svdvals``;
* clip-grad-norm: ``torch.nn.utils.clip_grad_norm_`` on parameters holding the gradients;
* orthogonal-from-skew: exp(S) from the eigendecomposition of the Hermitian matrix iS, not
  ``torch.linalg.matrix_exp``;
* orthogonality-error: the singular values, Σ_j (σ_j² − 1)² = ‖WᵀW − I‖_F².

They compute in float64. The cases are drawn so that the usual mistakes fail at least one:
multiplying the Jacobians in the wrong order, diag on the wrong side of W_h, tanh instead of
tanh', the Frobenius norm or the spectral radius instead of the spectral norm; clipping that
divides by a zero norm, always rescales to θ, clips each tensor separately or clips entries;
entry-wise exp, a missing skew-symmetrisation; W Wᵀ instead of Wᵀ W for a tall W, a forgotten
identity, a largest entry instead of the Frobenius norm.
"""
from __future__ import annotations

import torch

from ..registry import Case, Question


def _randn(generator: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=generator, dtype=torch.float32)


# ---- jacobian-chain -------------------------------------------------------------------------


def _chain_reference(W_h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """‖∂h_K/∂h_{K-k}‖₂ for k = 1..K through torch.nn.RNN and autograd.

    The RNN has W_ih = I and b = 0, and is fed u_s = z_s − W_h h_{s-1} along the trajectory
    h_s = tanh(z_s) (h_0 = 0), so its pre-activation at step s is exactly z_s."""
    W, z = W_h.double(), z.double()
    K, H = z.shape
    rnn = torch.nn.RNN(H, H, nonlinearity="tanh", batch_first=True, device="meta", dtype=torch.float64)
    rnn = rnn.to_empty(device="cpu")
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.eye(H, dtype=torch.float64))
        rnn.weight_hh_l0.copy_(W)
        rnn.bias_ih_l0.zero_()
        rnn.bias_hh_l0.zero_()
    h = torch.cat([torch.zeros(1, H, dtype=torch.float64), torch.tanh(z)])  # h_0 ... h_K
    u = z - h[:-1] @ W.T  # (K, H)
    norms = []
    for k in range(1, K + 1):
        def h_K(h_start, k=k):
            out, _ = rnn(u[K - k:].unsqueeze(0), h_start.reshape(1, 1, H))
            return out[0, -1]

        with torch.enable_grad():
            J = torch.autograd.functional.jacobian(h_K, h[K - k])
        norms.append(torch.linalg.svdvals(J)[0])
    return torch.stack(norms)


def _chain_case(K: int, H: int, w_scale: float, z_scale: float, nonnormal: bool = False):
    def build(g):
        W = _randn(g, H, H, scale=w_scale / H**0.5)
        if nonnormal:
            W = W + torch.triu(_randn(g, H, H, scale=1.5), diagonal=1)
        return {"W_h": W, "z": _randn(g, K, H, scale=z_scale)}

    return build


def _chain_linear(g):
    return {"W_h": torch.tensor([[0.9, 0.5], [0.0, 1.1]]), "z": torch.zeros(5, 2)}


JACOBIAN_CHAIN = Question(
    id="jacobian-chain",
    title="spectral norms ‖∂h_K/∂h_{K-k}‖₂ = ‖J_K ··· J_{K-k+1}‖₂ for k = 1 ... K",
    points=4,
    args=("W_h", "z"),
    outputs=("norms",),
    reference=_chain_reference,
    cases=(
        Case("linear regime z = 0 (every tanh' = 1): the powers of W_h (K=5, H=2)", _chain_linear),
        Case("one step (K=1, H=3)", _chain_case(1, 3, 1.2, 1.0), seed=1),
        Case("saturation that changes over time (K=6, H=4)", _chain_case(6, 4, 1.5, 1.5), seed=2),
        Case("non-normal W_h: singular values ≠ |eigenvalues| (K=4, H=3)",
             _chain_case(4, 3, 1.0, 0.7, nonnormal=True), seed=3),
    ),
    tol=1e-4,
)


# ---- clip-grad-norm -------------------------------------------------------------------------


def _clip_reference(g_W: torch.Tensor, g_b: torch.Tensor, max_norm: torch.Tensor):
    params = []
    for g in (g_W, g_b):
        p = torch.nn.Parameter(torch.zeros_like(g, dtype=torch.float64))
        p.grad = g.double().clone()
        params.append(p)
    torch.nn.utils.clip_grad_norm_(params, float(max_norm))
    return params[0].grad, params[1].grad


def _clip_fixed(g_W, g_b, max_norm):
    def build(g):
        return {"g_W": torch.tensor(g_W), "g_b": torch.tensor(g_b), "max_norm": torch.tensor(max_norm)}

    return build


def _clip_random(g):
    return {"g_W": _randn(g, 4, 3, scale=3.0), "g_b": _randn(g, 4, scale=3.0), "max_norm": torch.tensor(2.0)}


CLIP_GRAD_NORM = Question(
    id="clip-grad-norm",
    title="norm clipping g ← g · min(1, θ/‖g‖), ‖g‖ over both tensors together",
    points=3,
    args=("g_W", "g_b", "max_norm"),
    outputs=("clipped_W", "clipped_b"),
    reference=_clip_reference,
    cases=(
        Case("‖g‖ = 13 > θ = 5: rescaled", _clip_fixed([[3.0, 4.0]], [12.0], 5.0)),
        Case("‖g‖ < θ: unchanged", _clip_fixed([[0.1, -0.2]], [0.05], 1.0)),
        Case("zero gradient: stays zero", _clip_fixed([[0.0, 0.0], [0.0, 0.0]], [0.0, 0.0], 1.0)),
        Case("each tensor under θ, together over it", _clip_fixed([[0.48, 0.64]], [0.8], 1.0)),
        Case("random (W 4x3, b 4)", _clip_random, seed=4),
    ),
    tol=1e-5,
)


# ---- orthogonal-from-skew -------------------------------------------------------------------


def _expm_skew_reference(A: torch.Tensor) -> torch.Tensor:
    """exp(A − Aᵀ) by eigh: i(A − Aᵀ) is Hermitian, = V diag(μ) Vᴴ, so exp(A − Aᵀ) = V diag(e^{−iμ}) Vᴴ
    (independent of torch.linalg.matrix_exp)."""
    S = (A - A.T).to(torch.complex128)
    mu, V = torch.linalg.eigh(1j * S)
    return (V @ torch.diag(torch.exp(-1j * mu)) @ V.conj().T).real


ORTHOGONAL_FROM_SKEW = Question(
    id="orthogonal-from-skew",
    title="W = exp(A − Aᵀ), the matrix exponential of a skew-symmetric matrix",
    points=2,
    args=("A",),
    outputs=("W",),
    reference=_expm_skew_reference,
    cases=(
        Case("A = 0: W = I (H=3)", lambda g: {"A": torch.zeros(3, 3)}),
        Case("a general A (H=4)", lambda g: {"A": _randn(g, 4, 4, scale=0.8)}, seed=5),
        Case("a single unit (H=1): W = [[1]]", lambda g: {"A": torch.tensor([[0.7]])}),
        Case("a plane rotation: A = [[0, θ], [0, 0]]", lambda g: {"A": torch.tensor([[0.0, 0.6], [0.0, 0.0]])}),
    ),
    tol=1e-5,
)


# ---- orthogonality-error --------------------------------------------------------------------


def _orthogonality_reference(W: torch.Tensor) -> torch.Tensor:
    """‖WᵀW − I‖_F from the singular values σ_j of W: WᵀW = V diag(σ²) Vᵀ, so the error is
    sqrt(Σ_j (σ_j² − 1)²)."""
    sigma = torch.linalg.svdvals(W.double())
    return ((sigma**2 - 1) ** 2).sum().sqrt()


def _orthonormal(g: torch.Generator, H: int, D: int) -> torch.Tensor:
    Q, _ = torch.linalg.qr(torch.randn(H, D, generator=g, dtype=torch.float64))
    return Q.float()


ORTHOGONALITY_ERROR = Question(
    id="orthogonality-error",
    title="‖WᵀW − I‖_F: how far the columns of W (H, D) are from orthonormal",
    points=2,
    args=("W",),
    outputs=("error",),
    reference=_orthogonality_reference,
    cases=(
        Case("an orthogonal matrix (H=D=4): 0", lambda g: {"W": _orthonormal(g, 4, 4)}, seed=6),
        Case("1.1 × an orthogonal matrix (H=D=3)", lambda g: {"W": 1.1 * _orthonormal(g, 3, 3)}, seed=7),
        Case("tall, orthonormal columns (H=5, D=3): 0 for WᵀW, not for W Wᵀ",
             lambda g: {"W": _orthonormal(g, 5, 3)}, seed=8),
        Case("a random matrix (H=D=4)", lambda g: {"W": _randn(g, 4, 4, scale=0.5)}, seed=9),
    ),
    tol=1e-4,
)

QUESTIONS = (JACOBIAN_CHAIN, CLIP_GRAD_NORM, ORTHOGONAL_FROM_SKEW, ORTHOGONALITY_ERROR)
