"""Device selection and seeding.

``get_device()`` picks the fastest available backend in the order cuda, mps, cpu. The
environment variable ``SEQCOURSE_DEVICE`` overrides the choice (for example
``SEQCOURSE_DEVICE=cpu`` on a GPU machine, to reproduce the book's CPU numbers).
"""
from __future__ import annotations

import os
import random
from typing import NamedTuple

import numpy as np
import torch

KNOWN_DEVICES = ("cuda", "mps", "cpu")


def _available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        backend = getattr(torch.backends, "mps", None)
        return backend is not None and backend.is_available()
    return kind == "cpu"


def available_devices() -> list[torch.device]:
    """Every backend this machine can run on, fastest first (cpu is always last)."""
    return [torch.device(kind) for kind in KNOWN_DEVICES if _available(kind)]


def get_device(name: str | None = None) -> torch.device:
    """Return the device to run on.

    Order of precedence: the ``name`` argument, then ``$SEQCOURSE_DEVICE``, then the first of
    cuda, mps, cpu that is available. A name may carry an index (``"cuda:1"``).

    Raises ``ValueError`` for a name that is not a device kind seqcourse knows, and
    ``RuntimeError`` for a known kind this machine cannot run.
    """
    source = "argument"
    if name is None:
        name = os.environ.get("SEQCOURSE_DEVICE") or None
        source = "SEQCOURSE_DEVICE"
    if name is None:
        return available_devices()[0]
    text = str(name).strip().lower()
    kind, _, index = text.partition(":")
    if kind not in KNOWN_DEVICES or (index and not index.isdigit()):
        raise ValueError(
            f"{source}={name!r} is not a device seqcourse knows; expected one of "
            f"{', '.join(KNOWN_DEVICES)} (optionally with an index, e.g. 'cuda:0')"
        )
    if not _available(kind):
        have = ", ".join(d.type for d in available_devices())
        raise RuntimeError(f"{source}={name!r} asks for {kind}, which is not available here (available: {have})")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise RuntimeError(
            f"{source}={name!r} asks for GPU {index}, but this machine has {torch.cuda.device_count()} GPU(s)"
        )
    return torch.device(text)


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python's ``random``, NumPy and torch (every device), and return a torch
    ``Generator`` seeded the same way for code that wants its own stream."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds cuda and mps generators
    return torch.Generator().manual_seed(seed)


def synchronize(device: torch.device | str) -> None:
    """Wait until every kernel queued on ``device`` has finished (a no-op on cpu), so that a timer
    read afterwards measures the work and not only its launch. cuda and mps run asynchronously."""
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize(device)
    elif kind == "mps":
        torch.mps.synchronize()


class Setup(NamedTuple):
    """What ``setup()`` chose: the mode (``full``), the device, and the seed of this run."""

    full: bool
    device: torch.device
    seed: int


def setup() -> Setup:
    """The one set-up every course notebook runs first: ``FULL, DEVICE, SEED = seqcourse.setup()``.

    - mode: full when ``SEQCOURSE_FULL=1``, else quick;
    - device: ``$SEQCOURSE_DEVICE`` when set (in either mode); otherwise the fastest available
      (``get_device()``) in full mode and the CPU in quick mode, whose small models run no faster
      on a GPU and whose numbers the book's stored results were made on;
    - seed: ``$SEQCOURSE_SEED`` (default 0), with which Python, NumPy and torch are seeded here
      and which the chapters add to the seeds of their training data. The experiment runner
      (``python -m seqcourse experiments run``) sets it to train the same chapter over seeds;
    - threads: one torch thread on the CPU in quick mode (the models are small: a second thread
      costs more in synchronisation than it saves).

    Prints one line saying what was chosen."""
    full = os.environ.get("SEQCOURSE_FULL") == "1"
    device = get_device() if full or os.environ.get("SEQCOURSE_DEVICE") else get_device("cpu")
    text = os.environ.get("SEQCOURSE_SEED", "0").strip() or "0"
    if not text.isdigit():
        raise ValueError(f"SEQCOURSE_SEED must be a non-negative integer, got {text!r}")
    seed = int(text)
    if device.type == "cpu" and not full:
        torch.set_num_threads(1)
    seed_everything(seed)
    print("mode:", "full" if full else "quick", "| device:", device.type, *(["| seed:", seed] if seed else []))
    return Setup(full, device, seed)
