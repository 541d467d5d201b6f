"""State-space duality (SSD, Mamba-2): a selective SSM with a scalar decay is masked attention.

Glossary (the symbols of the State-space chapter; Dao and Gu 2024, "Transformers are SSMs")::

    b  batch size     T  sequence length     d  channels (a head's width)     n  state size
    x  (b, T, d)   the inputs x_t
    a  (b, T)      the decay of step t, a_t >= 0: the state matrix is A_t = a_t I, one number per step
                   shared by every channel and state entry (Mamba has a_t = exp(Δ_t A) with a scalar A)
    B, C (b, T, n) the input and output vectors B_t, C_t
    h  (b, n, d)   the state: one n-vector per channel

**The scan (linear form).** Every channel runs the selective SSM of Mamba with A_t = a_t I:

    h_t = a_t h_{t-1} + B_t x_tᵀ,        y_t = h_tᵀ C_t,        h_0 = 0.

**The attention form (quadratic).** Unrolled, y_t = Σ_{j<=t} (a_{j+1} ⋯ a_t) (C_t · B_j) x_j, that is,
y = M x with one (T, T) matrix per sequence,

    M = L ∘ (C Bᵀ),      L_ij = Π_{k=j+1}^{i} a_k  (i >= j; an empty product, 1, on the diagonal),
                         L_ij = 0  (i < j).

This is causal attention with queries C, keys B and values x, where the softmax is replaced by the
mask L (a "1-semiseparable" matrix: every block of it below the diagonal has rank 1). With no decay,
a_t = 1, L is the causal mask of ones and M x is unnormalised causal linear attention,
y_t = Σ_{j<=t} (q_t · k_j) v_j with q = C, k = B, v = x.

``decay_mask`` builds L from segment sums of log a_k (each entry sums only its own terms, so long
products do not lose precision the way a ratio of cumulative products would); ``ssd_attention``
computes y = M x; ``ssd_scan`` computes the same y with the course's scan
(``seqcourse.ops.scan.linear_scan_sequential``), the independent formulation the tests compare with.

**Cost.** ``ssd_multiplications`` counts the multiplications of each form per sequence: the attention
form does T² n (C Bᵀ) + T² (the mask) + T² d (M x); the scan 3 T n d (B_t x_tᵀ, a_t h_{t-1}, and
h_tᵀ C_t). The attention form is quadratic in T but made of large matrix products; the scan is
linear in T but a chain of T dependent steps.
"""
from __future__ import annotations

import torch

from .scan import linear_scan_sequential
from ..validation import expect_int, expect_nonempty_time, expect_tensor

__all__ = ["decay_mask", "ssd_attention", "ssd_matrix", "ssd_multiplications", "ssd_scan"]


def _check_decays(a: torch.Tensor) -> None:
    expect_tensor(a, "a", dims=("b", "T"), dtype="float")
    expect_nonempty_time(a, "a")
    if not bool(((a >= 0) & (a < float("inf"))).all()):  # False for NaN too
        raise ValueError(f"a must hold finite decays a_t >= 0 (such as exp(Δ_t A) with A < 0); got values from "
                         f"{float(a.min())} to {float(a.max())}")


def _check_ssd(x, a, B, C) -> None:
    _check_decays(a)
    batch, T = a.shape
    same = {"dtype": a.dtype, "device": a.device, "dtype_reason": "(the dtype of a)"}
    expect_tensor(B, "B", dims=("b", "T", "n"), size={"b": batch, "T": T}, **same)
    expect_tensor(C, "C", dims=("b", "T", "n"), size={"b": batch, "T": T, "n": B.shape[-1]}, **same)
    if x is not None:
        expect_tensor(x, "x", dims=("b", "T", "d"), size={"b": batch, "T": T}, **same)


def decay_mask(a: torch.Tensor) -> torch.Tensor:
    """L (b, T, T) with L_ij = a_{j+1} ⋯ a_i for i >= j (1 on the diagonal) and 0 above it; a (b, T), a_t >= 0.

    L_ij = exp(Σ_{k=j+1}^{i} log a_k): the (T, T) matrix of logs with row i holding log a_i below the
    diagonal is summed down its columns, so entry (i, j) adds exactly the terms k = j+1 ... i.
    """
    _check_decays(a)
    return _decay_mask(a)


def _decay_mask(a: torch.Tensor) -> torch.Tensor:
    T = a.shape[1]
    below = torch.ones(T, T, dtype=torch.bool, device=a.device).tril(-1)  # k > j: the terms entry (k, j) holds
    logs = torch.log(a).unsqueeze(-1).expand(-1, T, T)  # logs[:, k, j] = log a_k
    sums = logs.masked_fill(~below, 0.0).cumsum(dim=1)  # sums[:, i, j] = Σ_{j < k <= i} log a_k
    causal = torch.ones(T, T, dtype=torch.bool, device=a.device).tril()  # i >= j
    return torch.exp(sums.masked_fill(~causal, float("-inf")))  # the diagonal: an empty sum, exp(0) = 1


def ssd_matrix(a: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """M = L ∘ (C Bᵀ) (b, T, T), M_ij = (a_{j+1} ⋯ a_i) C_i · B_j for i >= j: a (b, T), B, C (b, T, n)."""
    _check_ssd(None, a, B, C)
    return _ssd_matrix(a, B, C)


def _ssd_matrix(a: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    return _decay_mask(a) * (C @ B.transpose(1, 2))


def ssd_attention(x: torch.Tensor, a: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """The attention form, y = M x: x (b, T, d), a (b, T), B, C (b, T, n) -> y (b, T, d). Time and memory O(T²)."""
    _check_ssd(x, a, B, C)
    return _ssd_matrix(a, B, C) @ x


def ssd_scan(x: torch.Tensor, a: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """The linear form, by the course's scan: the same y (b, T, d) as ``ssd_attention``, in time O(T n d).

    h_t = a_t h_{t-1} + B_t x_tᵀ for all (n, d) entries at once (``linear_scan_sequential`` with a_t
    broadcast), then y_t = h_tᵀ C_t.
    """
    _check_ssd(x, a, B, C)
    inputs = B.unsqueeze(-1) * x.unsqueeze(-2)  # (b, T, n, d): B_t x_tᵀ
    h = linear_scan_sequential(a[:, :, None, None].expand_as(inputs), inputs)  # (b, T, n, d)
    return (h * C.unsqueeze(-1)).sum(dim=-2)


def ssd_multiplications(T: int, n: int, d: int) -> dict[str, int]:
    """Multiplications per sequence of each form: {"attention": T²(n + d + 1), "scan": 3 T n d}.

    Attention form: T² n for the scores C Bᵀ, T² for the mask product L ∘ (C Bᵀ), T² d for M x
    (building L takes sums and exponentials, no multiplications). Scan: T n d each for B_t x_tᵀ,
    a_t h_{t-1} and h_tᵀ C_t. The floating-point operations are about twice these (an addition goes
    with most multiplications).
    """
    T, n, d = (expect_int(v, name, minimum=1) for v, name in ((T, "T"), (n, "n"), (d, "d")))
    return {"attention": T * T * (n + d + 1), "scan": 3 * T * n * d}
