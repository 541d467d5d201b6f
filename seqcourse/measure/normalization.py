"""Where LayerNorm sits in a residual block, measured: Jacobians, gradient norms by layer, warm-up.

Symbols as in the Normalization chapter. A block maps x (T, d) to y (T, d); F is its residual
branch (attention, then the feed-forward layer), LN a LayerNorm over the last dimension,

    LN(x) = (x - mu) / sigma * weight + bias,  sigma = sqrt(var(x) + eps),  x-hat = (x - mu) / sigma,

and the two placements are

    pre-norm:   y = x + F(LN(x))        dy/dx = I + J_F J_LN             (an identity path)
    post-norm:  y = LN(x + F(x))        dy/dx = J_LN (I + J_F)           (a LayerNorm Jacobian on every layer)

with the LayerNorm Jacobian of one vector x (d,), derived by hand,

    J_LN = diag(weight) / sigma (I - 1 1^T / d - x-hat x-hat^T / d).

The bracket removes the directions 1 and x-hat (an output of LayerNorm cannot change its mean or
its scale), so J_LN has one zero singular value, one of size eps / (var + eps) / sigma, and d - 2
equal to 1 / sigma (with weight = 1).

What is here:

    layer_norm_jacobian(x, weight, eps)      J_LN by the formula above, (d, d)
    jacobian(fn, x)                          any fn's Jacobian by autograd, flattened to (N, N)
    block_jacobian(block, x)                 one block's Jacobian for one sequence x (T, d): (T d, T d)
    singular_values(J)                       descending
    layer_gradient_norms(blocks, x, ...)     ||dloss/dtheta_l|| and ||dloss/dx_l|| for each block l of a stack
    stack_gradient_norms(norm, depth, ...)   the same for a freshly initialised stack of Transformer blocks
    depth_sweep(depths, norms, ...)          stack_gradient_norms for every (norm, depth)
    direction_share(x)                       how much of x's energy lies along one direction (1 = all vectors parallel)
    last_block_probe(norm, depth, ...)       why the last block's gradient changes with depth: its input, measured
    warmup_factor(step, warmup_steps)        the linear warm-up min(1, (step + 1) / W)
    with_warmup(optimizer, warmup_steps)     attach that schedule to an optimizer (works with seqcourse.train)
    train_char_lm(model, ids, ...)           next-character training with or without warm-up -> History
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import torch
from torch import nn

from ..device import get_device, seed_everything
from ..models.norm import LayerNorm
from ..models.transformer import Block
from ..data.text import random_windows
from ..train import History, train
from ..validation import expect_float, expect_int, expect_tensor

__all__ = [
    "LayerGradients",
    "LastBlockProbe",
    "block_jacobian",
    "depth_sweep",
    "direction_share",
    "jacobian",
    "layer_gradient_norms",
    "layer_norm_jacobian",
    "last_block_probe",
    "singular_values",
    "stack_gradient_norms",
    "train_char_lm",
    "warmup_factor",
    "with_warmup",
]

NORMS = ("pre", "post")
"""The two placements of LayerNorm in a residual block."""


def _expect_norm(norm) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be 'pre' (x + F(LN(x))) or 'post' (LN(x + F(x))); got {norm!r}")
    return norm


# ---- Jacobians ---------------------------------------------------------------------------------


def layer_norm_jacobian(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """The Jacobian of LayerNorm at one vector, by the hand-derived formula.

    J[i, j] = d LN(x)_i / d x_j = weight_i / sigma * (delta_ij - 1/d - x-hat_i x-hat_j / d),
    with mu, sigma = sqrt(var + eps) (biased variance) and x-hat = (x - mu) / sigma of x.

    Args:
        x: one vector, shape (d,), float.
        weight: LayerNorm's gain, shape (d,); ``None`` means 1 (the bias does not enter J).
        eps: LayerNorm's eps.

    Returns:
        J, shape (d, d), in x's dtype.
    """
    expect_tensor(x, "x", dims=("d",), dtype="float")
    d = x.shape[0]
    eps = expect_float(eps, "eps", positive=True)
    if weight is None:
        weight = torch.ones_like(x)
    expect_tensor(weight, "weight", dims=("d",), size={"d": d}, dtype=x.dtype, device=x.device)
    sigma = torch.sqrt(x.var(unbiased=False) + eps)
    x_hat = (x - x.mean()) / sigma  # (d,)
    bracket = torch.eye(d, dtype=x.dtype, device=x.device) - 1.0 / d - torch.outer(x_hat, x_hat) / d
    return weight.unsqueeze(1) / sigma * bracket  # row i scaled by weight_i / sigma


def jacobian(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The Jacobian of ``fn`` at ``x`` by autograd, flattened: J[a, b] = d fn(x).flatten()[a] / d x.flatten()[b].

    ``fn`` maps a tensor of x's shape to any tensor; J has shape (fn(x).numel(), x.numel()).
    Uses ``torch.autograd.functional.jacobian`` (one backward pass per output entry: keep x small).
    """
    expect_tensor(x, "x", dtype="float")
    if not callable(fn):
        raise TypeError(f"fn must be callable as fn(x) -> tensor; got {type(fn).__name__}")
    J = torch.autograd.functional.jacobian(fn, x.detach())  # (*out_shape, *x.shape)
    return J.reshape(-1, x.numel())


def block_jacobian(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The Jacobian of one block at one sequence x (T, d): shape (T d, T d).

    Entry [(t, i), (s, j)] (row t * d + i, column s * d + j) is d y_{t,i} / d x_{s,j}, where
    y = block(x.unsqueeze(0))[0] and the block maps (B, T, d) -> (B, T, d). Attention mixes
    positions, so blocks off the diagonal (t != s) are not zero.
    """
    if not isinstance(block, nn.Module):
        raise TypeError(f"block must be a torch.nn.Module mapping (B, T, d) -> (B, T, d); got {type(block).__name__}")
    expect_tensor(x, "x", dims=("T", "d"), dtype="float")
    return jacobian(lambda z: block(z.unsqueeze(0))[0], x)


def singular_values(J: torch.Tensor) -> torch.Tensor:
    """Singular values of a matrix J (m, n), in descending order, shape (min(m, n),)."""
    expect_tensor(J, "J", dims=("m", "n"), dtype="float")
    return torch.linalg.svdvals(J.detach())


# ---- gradient norms per layer ------------------------------------------------------------------


class LayerGradients(NamedTuple):
    """Gradient norms of a stack of L blocks, one entry per block l = 0 ... L-1 (0 = the input end).

    parameters: ||dloss/dtheta_l||, over all parameters of block l (their squares summed), shape (L,).
    inputs: ||dloss/dx_l||, the gradient reaching the input x_l of block l (Frobenius, whole batch), shape (L,).
    """

    parameters: torch.Tensor
    inputs: torch.Tensor


def layer_gradient_norms(
    blocks: Sequence[nn.Module],
    x: torch.Tensor,
    *,
    final_norm: nn.Module | None = None,
    num_classes: int = 16,
    seed: int = 0,
) -> LayerGradients:
    """Per-block gradient norms of one loss through a stack of blocks, from one backward pass.

    The stack computes x_{l+1} = block_l(x_l) from x_0 = x (B, T, d), then z = final_norm(x_L)
    (identity if ``None``), logits = z W_r^T with a fixed random readout W_r (C, d) of entries
    N(0, 1/d), and the mean cross-entropy against random labels (B, T) in [0, C). W_r and the labels
    are drawn from ``seed``, so the loss is the same for every stack and only the blocks differ.

    Args:
        blocks: the blocks, input end first; each maps (B, T, d) -> (B, T, d).
        x: the input x_0, shape (B, T, d).
        final_norm: applied to x_L before the readout (a pre-norm stack ends with one LayerNorm).
        num_classes: C.
        seed: seeds W_r and the labels.

    Returns:
        ``LayerGradients`` (parameters (L,), inputs (L,)), float32 on the CPU. A block without
        parameters gets 0 in ``parameters``.
    """
    blocks = list(blocks)
    if not blocks or not all(isinstance(b, nn.Module) for b in blocks):
        raise TypeError("blocks must be a non-empty sequence of torch.nn.Module, each mapping (B, T, d) -> (B, T, d)")
    expect_tensor(x, "x", dims=("B", "T", "d"), dtype="float")
    if final_norm is not None and not isinstance(final_norm, nn.Module):
        raise TypeError(f"final_norm must be None or a torch.nn.Module mapping (B, T, d) -> (B, T, d); "
                        f"got {type(final_norm).__name__}")
    expect_int(num_classes, "num_classes", minimum=2)
    expect_int(seed, "seed", minimum=0)
    B, T, d = x.shape
    g = torch.Generator().manual_seed(seed)
    W_r = (torch.randn(num_classes, d, generator=g) / math.sqrt(d)).to(dtype=x.dtype, device=x.device)
    labels = torch.randint(0, num_classes, (B, T), generator=g).to(x.device)

    modules = blocks + ([final_norm] if final_norm is not None else [])
    for module in modules:
        module.zero_grad(set_to_none=True)
    inputs = []
    h = x.detach()
    for block in blocks:
        h = h.requires_grad_() if not h.requires_grad else h
        h.retain_grad()
        inputs.append(h)
        h = block(h)
        if h.shape != x.shape:
            raise ValueError(f"every block must map (B, T, d) -> (B, T, d) = {tuple(x.shape)}; one returned {tuple(h.shape)}")
    z = final_norm(h) if final_norm is not None else h
    loss = nn.functional.cross_entropy((z @ W_r.T).reshape(B * T, num_classes), labels.reshape(-1))
    loss.backward()

    def norm_of(block: nn.Module) -> float:
        squares = [p.grad.detach().cpu().double().pow(2).sum() for p in block.parameters() if p.grad is not None]
        return math.sqrt(sum(s.item() for s in squares)) if squares else 0.0

    parameters = torch.tensor([norm_of(b) for b in blocks])
    input_norms = torch.tensor([torch.linalg.vector_norm(h_l.grad.detach().cpu().double()).item() for h_l in inputs])
    for module in modules:  # leave no gradients behind on the caller's modules
        module.zero_grad(set_to_none=True)
    return LayerGradients(parameters.float(), input_norms.float())


def stack_gradient_norms(
    norm: str,
    depth: int,
    *,
    d_model: int = 32,
    n_heads: int = 4,
    seq_len: int = 16,
    batch_size: int = 8,
    seed: int = 0,
    repeats: int = 1,
    make_block: Callable[[str], nn.Module] | None = None,
    device: torch.device | str | None = None,
) -> LayerGradients:
    """Gradient norms per block at initialisation, for a stack of ``depth`` freshly built blocks.

    For each of ``repeats`` initialisations (seeds ``seed``, ``seed + 1``, ...): seeds everything,
    builds ``make_block(norm)`` ``depth`` times (default:
    ``seqcourse.models.transformer.Block(d_model, n_heads, norm=norm)``), draws x_0 with N(0, 1)
    entries (B, T, d), and calls ``layer_gradient_norms``. A pre-norm stack ends with one more
    LayerNorm (without it the scale of x_L grows with depth, as every block adds to it); a post-norm
    stack already ends in one. With ``repeats > 1`` each entry is the root mean square over the
    initialisations, sqrt(mean_r ||g_l^(r)||^2).

    Returns:
        ``LayerGradients`` with ``depth`` entries each.
    """
    runs = [layer_gradient_norms(blocks, x, final_norm=final, seed=s)
             for s, blocks, final, x in _fresh_stacks(norm, depth, d_model, n_heads, seq_len, batch_size, seed,
                                                      repeats, make_block, device)]
    if len(runs) == 1:
        return runs[0]
    return LayerGradients(*(torch.stack(parts).pow(2).mean(0).sqrt() for parts in zip(*runs)))


def _fresh_stacks(norm, depth, d_model, n_heads, seq_len, batch_size, seed, repeats, make_block, device):
    """Check the arguments of ``stack_gradient_norms`` and yield, for r = 0 ... repeats-1, the stack it
    measures: (seed + r, blocks, final LayerNorm or None, x_0 (B, T, d) with N(0, 1) entries), with
    everything seeded from seed + r."""
    _expect_norm(norm)
    expect_int(depth, "depth", minimum=1)
    expect_int(d_model, "d_model", minimum=1)
    expect_int(n_heads, "n_heads", minimum=1)
    expect_int(seq_len, "seq_len", minimum=1)
    expect_int(batch_size, "batch_size", minimum=1)
    expect_int(seed, "seed", minimum=0)
    expect_int(repeats, "repeats", minimum=1)
    build = make_block if make_block is not None else (lambda n: Block(d_model, n_heads, norm=n))
    if not callable(build):
        raise TypeError(f"make_block must be callable as make_block(norm) -> block; got {type(make_block).__name__}")
    device = get_device(device)
    for r in range(repeats):
        seed_everything(seed + r)
        blocks = [build(norm).to(device) for _ in range(depth)]
        final = LayerNorm(d_model).to(device) if norm == "pre" else None
        yield seed + r, blocks, final, torch.randn(batch_size, seq_len, d_model, device=device)


def direction_share(x: torch.Tensor) -> float:
    r"""The share of the energy of the vectors in x (..., d) that lies along a single direction:
    :math:`\sigma_1^2 / \sum_i \sigma_i^2` of the matrix whose rows are the vectors (not centred).

    1 when every vector is a multiple of one vector (the representations have collapsed to one
    direction); about :math:`1/d` for many independent random vectors in d dimensions."""
    expect_tensor(x, "x", dtype="float")
    if x.dim() < 2 or x.shape[-1] < 1 or x.numel() == 0:
        raise ValueError(f"x must have shape (..., d) with at least one vector; got {tuple(x.shape)}")
    s = torch.linalg.svdvals(x.detach().reshape(-1, x.shape[-1]).double())
    return (s[0] ** 2 / s.pow(2).sum()).item()


class LastBlockProbe(NamedTuple):
    """What decides the gradient of a stack's last block, per ``last_block_probe`` (floats).

    share: ``direction_share`` of the last block's input x_{L-1} (the whole batch).
    stream_variance: the variance of x_L, the last block's output, over all entries (what a final
    LayerNorm divides by).
    gradient: ||dloss/dtheta_{L-1}||, the last block's gradient in the stack (its own input).
    gradient_fresh: the same block and loss, fed instead an input of independent N(0, 1) vectors
    standardized to the same per-position mean and standard deviation as x_{L-1}.
    """

    share: float
    stream_variance: float
    gradient: float
    gradient_fresh: float


def last_block_probe(norm: str, depth: int, *, d_model: int = 32, n_heads: int = 4, seq_len: int = 16,
                     batch_size: int = 8, seed: int = 0, repeats: int = 1,
                     make_block: Callable[[str], nn.Module] | None = None,
                     device: torch.device | str | None = None) -> LastBlockProbe:
    """Why the last block's gradient changes with depth, measured on the stacks of ``stack_gradient_norms``
    (same arguments, same stacks, same loss).

    The last block's parameter gradient depends only on the block, its input x_{L-1}, and the loss
    head after it (the fixed readout, and a pre-norm stack's final LayerNorm): nothing deeper in the
    stack acts on it except through x_{L-1}. So whatever changes it with depth is a property of
    x_{L-1}, a forward statistic. The probe records two (``direction_share`` of x_{L-1}, the variance
    of the block's output) and runs the intervention: the same block and loss fed a fresh input with
    x_{L-1}'s per-position mean and scale but independent directions.

    Returns a ``LastBlockProbe``: the shares and variances averaged over ``repeats`` initialisations,
    the two gradients as root mean squares (as ``stack_gradient_norms`` reports them).
    """
    rows = []
    for s, blocks, final, x in _fresh_stacks(norm, depth, d_model, n_heads, seq_len, batch_size, seed, repeats,
                                            make_block, device):
        with torch.no_grad():
            for block in blocks[:-1]:
                x = block(x)
            out = blocks[-1](x)
        g = torch.Generator().manual_seed(10_000 + s)
        z = torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
        z = (z - z.mean(-1, keepdim=True)) / z.std(-1, unbiased=False, keepdim=True)
        fresh = x.mean(-1, keepdim=True) + z * x.std(-1, unbiased=False, keepdim=True)
        own = layer_gradient_norms(blocks[-1:], x, final_norm=final, seed=s).parameters[0]
        other = layer_gradient_norms(blocks[-1:], fresh, final_norm=final, seed=s).parameters[0]
        rows.append((direction_share(x), out.var(unbiased=False).item(), own.item(), other.item()))
    share, variance = (sum(r[i] for r in rows) / len(rows) for i in (0, 1))
    gradient, fresh_gradient = (math.sqrt(sum(r[i] ** 2 for r in rows) / len(rows)) for i in (2, 3))
    return LastBlockProbe(share, variance, gradient, fresh_gradient)


def depth_sweep(
    depths: Iterable[int] = (6, 12, 24, 48), norms: Iterable[str] = NORMS, **kwargs
) -> dict[tuple[str, int], LayerGradients]:
    """``stack_gradient_norms(norm, depth, **kwargs)`` for every norm and depth: {(norm, depth): LayerGradients}.

    ``depths`` and ``norms`` may be any iterables (read once, up front); every norm and depth is
    checked before the first stack is built."""
    depths, norms = tuple(depths), tuple(norms)
    if not depths or not norms:
        raise ValueError(f"depths and norms must not be empty; got depths={depths}, norms={norms}")
    for depth in depths:
        expect_int(depth, "each depth", minimum=1)
    for norm in norms:
        _expect_norm(norm)
    return {(norm, depth): stack_gradient_norms(norm, depth, **kwargs) for norm in norms for depth in depths}


# ---- learning-rate warm-up ---------------------------------------------------------------------


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The linear warm-up: the learning rate at update ``step`` (from 0) is lr * min(1, (step + 1) / W).

    W = ``warmup_steps``; W = 0 means no warm-up (factor 1 from the first update).
    """
    expect_int(step, "step", minimum=0)
    expect_int(warmup_steps, "warmup_steps", minimum=0)
    return 1.0 if warmup_steps == 0 else min(1.0, (step + 1) / warmup_steps)


def with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.Optimizer:
    """Give ``optimizer`` the linear warm-up ``warmup_factor``, and return it.

    A ``torch.optim.lr_scheduler.LambdaLR`` sets each group's lr to base_lr * warmup_factor(0) now
    and advances after every ``optimizer.step()`` (an optimizer step hook), so code that only calls
    ``step()``, like ``seqcourse.train.train(..., optimizer=with_warmup(opt, W))``, follows the
    schedule. The scheduler is kept as ``optimizer.warmup_scheduler``.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer; got {type(optimizer).__name__}")
    expect_int(warmup_steps, "warmup_steps", minimum=0)
    if hasattr(optimizer, "warmup_scheduler"):
        raise ValueError("this optimizer already has a warm-up schedule (optimizer.warmup_scheduler)")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_factor(step, warmup_steps))
    optimizer.register_step_post_hook(lambda opt, args, kwargs: scheduler.step())
    optimizer.warmup_scheduler = scheduler
    return optimizer


# ---- a short training run ----------------------------------------------------------------------


def train_char_lm(
    model: nn.Module,
    ids: torch.Tensor,
    *,
    steps: int,
    lr: float,
    warmup_steps: int = 0,
    seq_len: int = 16,
    batch_size: int = 16,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
    desc: str = "training",
) -> History:
    """Train a next-character model with Adam, with or without warm-up; return its ``History``.

    Each step draws ``batch_size`` random windows of ``seq_len`` characters from ``ids`` (N,)
    (``seqcourse.data.text.random_windows``, with a generator seeded by ``seed``, so every run sees the
    same batches) and minimises the mean cross-entropy of the next character,
    loss = -(1 / (B T)) sum_{b,t} log softmax(logits[b, t])[targets[b, t]].

    Args:
        model: ids (B, T) -> logits (B, T, V), or (logits, state) like
            ``seqcourse.models.wrappers.LanguageModel``.
        ids: the corpus as ids, shape (N,), long.
        steps, lr: updates and peak learning rate of Adam.
        warmup_steps: W of ``warmup_factor`` (0: the full lr from the first update).
        device, progress, desc: as in ``seqcourse.train.train``.

    Raises:
        seqcourse.train.TrainingDiverged if the loss becomes inf/nan.
    """
    expect_tensor(ids, "ids", dims=("N",), dtype="long")
    expect_int(steps, "steps", minimum=1)
    expect_int(seed, "seed", minimum=0)
    generator = torch.Generator().manual_seed(seed)
    optimizer = with_warmup(torch.optim.Adam(model.parameters(), lr=expect_float(lr, "lr", positive=True)), warmup_steps)

    def batch(step: int):
        return random_windows(ids, batch_size, seq_len, generator)

    def loss_fn(m: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        out = m(inputs)
        logits = out[0] if isinstance(out, tuple) else out  # (B, T, V)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    return train(model, batch, loss_fn, steps=steps, optimizer=optimizer, device=device, progress=progress, desc=desc)
