r"""Gradient clipping, written from its equations.

Norm clipping rescales the whole gradient g (every parameter's gradient, seen as one long vector)
when its norm exceeds a threshold θ, and leaves it alone otherwise:

    g ← g · min(1, θ / ‖g‖),        ‖g‖ = sqrt(Σ over parameters of Σ g²).

The direction of g is kept; only the step length is capped at θ (times the learning rate). A zero
gradient stays zero (there is nothing to rescale; θ/0 is never formed).

Value clipping caps each entry separately, g_i ← max(−c, min(c, g_i)): it bounds every entry but
changes the direction of g whenever some entries are clipped and others are not.

``clip_grad_norm_`` and ``clip_grad_value_`` act in place on the ``.grad`` of parameters and
match ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` (the tests compare them);
``clip_by_norm`` and ``clip_by_value`` return clipped copies of plain tensors.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from ..validation import expect_float

__all__ = ["clip_by_norm", "clip_by_value", "clip_grad_norm_", "clip_grad_value_", "global_norm"]


def _tensors(values, name: str) -> list[torch.Tensor]:
    """A tensor or an iterable of tensors, as a list (an empty list is allowed)."""
    if isinstance(values, torch.Tensor):
        return [values]
    try:
        items = list(values)
    except TypeError:
        raise TypeError(f"{name} must be a tensor or an iterable of tensors; got {type(values).__name__}") from None
    for i, item in enumerate(items):
        if not isinstance(item, torch.Tensor):
            raise TypeError(f"{name} must hold tensors; item {i} is a {type(item).__name__}")
        if not item.is_floating_point():
            raise TypeError(f"{name} must hold floating-point tensors; item {i} has dtype {item.dtype}")
    return items


def global_norm(tensors: torch.Tensor | Iterable[torch.Tensor]) -> torch.Tensor:
    """‖g‖ = sqrt(Σ_i Σ g_i²) over all the tensors together, as a 0-dim float64 tensor (0 if none)."""
    items = _tensors(tensors, "tensors")
    if not items:
        return torch.zeros((), dtype=torch.float64)
    return torch.stack([g.detach().double().pow(2).sum().cpu() for g in items]).sum().sqrt()


def _scale(norm: float, max_norm: float) -> float:
    """min(1, θ/‖g‖), without forming θ/0 for a zero gradient."""
    return max_norm / norm if norm > max_norm else 1.0


def clip_by_norm(grads: torch.Tensor | Iterable[torch.Tensor], max_norm: float):
    """Return g · min(1, θ/‖g‖) with ‖g‖ the norm of all ``grads`` together (θ = ``max_norm`` > 0).

    One tensor in, one tensor out; a list of tensors in, a list out (same shapes). Inputs are not changed.
    """
    max_norm = expect_float(max_norm, "max_norm", positive=True)
    items = _tensors(grads, "grads")
    scale = _scale(float(global_norm(items)), max_norm)
    clipped = [g * scale for g in items]
    return clipped[0] if isinstance(grads, torch.Tensor) else clipped


def clip_by_value(grads: torch.Tensor | Iterable[torch.Tensor], clip_value: float):
    """Return every entry clamped to [−c, c] (c = ``clip_value`` > 0); same structure as ``grads``."""
    clip_value = expect_float(clip_value, "clip_value", positive=True)
    items = _tensors(grads, "grads")
    clipped = [g.clamp(-clip_value, clip_value) for g in items]
    return clipped[0] if isinstance(grads, torch.Tensor) else clipped


def _grads(parameters) -> list[torch.Tensor]:
    params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"parameters must be tensors (e.g. model.parameters()); item {i} is a {type(p).__name__}")
    return [p.grad for p in params if p.grad is not None]


def clip_grad_norm_(parameters, max_norm: float) -> torch.Tensor:
    """In place: every ``p.grad`` ← p.grad · min(1, θ/‖g‖), ‖g‖ over all the gradients together.

    Args:
        parameters: a tensor or an iterable of tensors (``model.parameters()``); those whose
            ``.grad`` is None are skipped.
        max_norm: θ > 0.

    Returns:
        ‖g‖ before clipping, a 0-dim float64 tensor (as ``torch.nn.utils.clip_grad_norm_``
        returns the total norm). A non-finite norm leaves the gradients unchanged (rescaling
        inf or nan cannot recover a direction); the caller sees it in the returned norm.
    """
    max_norm = expect_float(max_norm, "max_norm", positive=True)
    grads = _grads(parameters)
    norm = global_norm(grads)
    value = float(norm)
    if math.isfinite(value):
        scale = _scale(value, max_norm)
        if scale < 1.0:
            with torch.no_grad():
                for g in grads:
                    g.mul_(scale)
    return norm


def clip_grad_value_(parameters, clip_value: float) -> None:
    """In place: every entry of every ``p.grad`` clamped to [−c, c] (c = ``clip_value`` > 0)."""
    clip_value = expect_float(clip_value, "clip_value", positive=True)
    with torch.no_grad():
        for g in _grads(parameters):
            g.clamp_(-clip_value, clip_value)
