"""Measurements of models: what training costs in memory.

``saved_tensor_bytes(fn)`` counts the bytes autograd keeps alive for the backward pass while
``fn()`` runs. It is the same number on every device (it counts tensor storages, not allocator
pools), so the book can show on a laptop how training memory grows with sequence length: an RNN
stores every h_t, so its saved bytes grow linearly in T.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["saved_tensor_bytes"]


def saved_tensor_bytes(fn: Callable[[], object]) -> int:
    """Run ``fn()`` and return the bytes of the tensors autograd saved for backward during it.

    Each storage is counted once, however many saved tensors (views) share it, and in full:
    a saved view keeps its whole storage alive. Tensors saved by reference (for example weights
    that a matrix multiply needs for its backward) count too, since they must stay in memory.
    Nothing is saved, and 0 is returned, when ``fn`` runs under ``torch.no_grad()`` or touches no
    tensor that requires grad.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a callable taking no arguments; got {type(fn).__name__}")
    # Keyed by address; holding the storage until fn returns keeps the address from being reused
    # by another storage (which would then go uncounted).
    storages: dict[tuple[str, int], torch.UntypedStorage] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[(str(t.device), storage.data_ptr())] = storage
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(s.nbytes() for s in storages.values())
