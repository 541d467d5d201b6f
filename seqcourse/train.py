"""The one training loop every chapter uses.

``train`` runs ``steps`` optimizer updates. Each step takes a batch (a tuple of tensors), moves
its tensors to the device, computes ``loss = loss_fn(model, *batch)``, backpropagates, records
the gradient norm ``||g|| = sqrt(sum over parameters of sum(g**2))`` (before clipping), optionally
rescales the gradient to ``g * min(1, clip_norm / ||g||)``, and updates the parameters.

A non-finite loss (or gradient norm) stops training with ``TrainingDiverged`` *before* the update,
so the model keeps the parameters of the last finite step, and the exception carries the
``History`` so far for plotting.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from tqdm.std import tqdm

from .device import get_device
from .validation import expect_float, expect_int

__all__ = ["History", "TrainingDiverged", "sequence_cross_entropy", "train"]

_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


@dataclass
class History:
    """What a training run recorded: one entry per completed step.

    losses: the loss at each step (before that step's update).
    grad_norms: the global gradient norm at each step, before clipping.
    seconds: wall time of the run.  device: where it ran.
    """

    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: torch.device | None = None


class TrainingDiverged(RuntimeError):
    """The loss or gradient became inf/nan. ``.history`` holds every finite step before it."""

    def __init__(self, message: str, history: History):
        super().__init__(message)
        self.history = history


def _make_optimizer(optimizer, params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in _OPTIMIZERS:
        return _OPTIMIZERS[optimizer.lower()](params, lr=lr)
    raise ValueError(
        f"optimizer must be one of {', '.join(repr(k) for k in _OPTIMIZERS)} or a torch.optim.Optimizer "
        f"instance; got {optimizer!r}"
    )


def _as_batch(batch, device: torch.device, step: int) -> tuple:
    """A batch as a tuple, with every tensor in it moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        batch = (batch,)
    if not isinstance(batch, (tuple, list)):
        raise TypeError(f"a batch must be a tuple of tensors; batch {step} is a {type(batch).__name__}")
    return tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in batch)


def _total_norm(params: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        raise ValueError("no parameter received a gradient: does loss_fn use the model's output?")
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


def train(
    model: torch.nn.Module,
    batches: Callable[[int], tuple] | Iterable[tuple],
    loss_fn: Callable[..., torch.Tensor],
    *,
    steps: int,
    lr: float = 1e-3,
    optimizer: str | torch.optim.Optimizer = "adam",
    clip_norm: float | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "training",
) -> History:
    """Train ``model`` for ``steps`` updates and return its ``History``.

    Args:
        model: any ``torch.nn.Module``; it is moved to ``device`` and left there.
        batches: a callable ``step -> batch`` (step counts from 0), or an iterable of batches
            (at least ``steps`` of them). A batch is a tuple of tensors (a lone tensor is allowed).
        loss_fn: ``loss_fn(model, *batch) -> scalar tensor``.
        steps: number of optimizer updates (>= 1).
        lr: learning rate for a named optimizer (an optimizer instance keeps its own).
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"``, or a ``torch.optim.Optimizer`` over the
            model's parameters.
        clip_norm: if given, rescale the gradient so its global norm is at most ``clip_norm``
            (``torch.nn.utils.clip_grad_norm_``). ``History.grad_norms`` holds the norm before clipping.
        device: where to train; default ``get_device()``.
        progress: show a text progress bar with the current loss.
        desc: the progress bar's label.

    Raises:
        TrainingDiverged: the loss or gradient norm became inf/nan (before the update of that step).
        ValueError / TypeError: bad arguments, a loss that is not a scalar, or too few batches.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    expect_int(steps, "steps", minimum=1)
    lr = expect_float(lr, "lr", positive=True)
    if clip_norm is not None:
        clip_norm = expect_float(clip_norm, "clip_norm", positive=True)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(model, *batch); got {type(loss_fn).__name__}")
    if callable(batches):
        next_batch = batches
    elif isinstance(batches, Iterable):
        if hasattr(batches, "__len__") and len(batches) < steps:
            raise ValueError(
                f"batches holds {len(batches)} batches but steps={steps}; pass steps<={len(batches)}, "
                f"a callable step -> batch, or itertools.cycle(batches)"
            )
        iterator = iter(batches)

        def next_batch(step: int):
            try:
                return next(iterator)
            except StopIteration:
                raise ValueError(
                    f"batches ran out after {step} batches but steps={steps}; pass steps<={step}, "
                    f"a callable step -> batch, or itertools.cycle(batches)"
                ) from None
    else:
        raise TypeError(f"batches must be a callable step -> batch or an iterable of batches; got {type(batches).__name__}")

    device = get_device(device)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    opt = _make_optimizer(optimizer, params, lr)

    history = History(device=device)
    was_training = model.training
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=0.5)
    try:
        for step in bar:
            batch = _as_batch(next_batch(step), device, step)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, *batch)
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
                raise ValueError(f"loss_fn must return a scalar tensor; got {shape} (did you forget .mean()?)")
            value = loss.item()
            if not math.isfinite(value):
                _diverged(history, step, f"the loss became {value}", opt, clip_norm)
            if not loss.requires_grad:
                raise ValueError("the loss does not depend on any trainable parameter (it has no grad_fn)")
            loss.backward()
            norm = _total_norm(params).item()
            if not math.isfinite(norm):
                _diverged(history, step, f"the gradient norm became {norm} (loss {value:.4g})", opt, clip_norm)
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, clip_norm)
            opt.step()
            history.losses.append(value)
            history.grad_norms.append(norm)
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
    finally:
        bar.close()
        history.seconds = time.perf_counter() - start
        model.train(was_training)
    return history


def sequence_cross_entropy(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    r"""The mean cross-entropy over every scored step of a sequence model, usable as ``train``'s ``loss_fn``:

    .. math:: \mathcal{L} = -\frac{1}{|S|} \sum_{(b, t) \in S} \log \operatorname{softmax}(z_{b,t})_{y_{b,t}},

    with logits z (B, T, V) the first output of ``model(inputs)`` (a language model returns
    ``(logits, state)``), targets y (B, T) long, and S the steps whose target is not
    ``tasks.IGNORE_INDEX`` (-100).
    """
    logits = model(inputs)[0]
    if logits.dim() != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(f"the model's logits must have shape (B, T, V) matching targets (B, T) = "
                         f"{tuple(targets.shape)}; got {tuple(logits.shape)}")
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def _diverged(history: History, step: int, what: str, opt: torch.optim.Optimizer, clip_norm: float | None):
    lr = opt.param_groups[0].get("lr")
    last = f"last finite loss {history.losses[-1]:.4g} at step {step - 1}" if history.losses else "no finite step before it"
    advice = "lower lr" if clip_norm is not None else "lower lr or set clip_norm (e.g. clip_norm=1.0)"
    raise TrainingDiverged(
        f"training diverged at step {step}: {what} ({last}); the parameters keep their values from "
        f"before step {step}. Try to {advice} (lr={lr:g}).",
        history,
    )
