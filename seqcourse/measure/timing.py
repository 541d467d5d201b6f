"""Wall-clock timing that is fair between cases and correct on every device.

``interleaved_medians(cases, repeats, device)`` times several callables against each other: one
untimed warm-up round, then ``repeats`` rounds in which every case runs once, round r starting at
case r (mod the number of cases), so that no case always runs right after the same other one (caches,
allocator state and clock boosts then favour no case). The device is synchronised before and after
every timed call, so on CUDA the time is the kernels' and not only their launch. Each case's result
is the median of its rounds, which a single slow round (another process, a page fault) does not move.

``median_seconds(fn, repeats, device)`` is the same for one callable. Every timing in the package and
the chapters goes through these two.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping


from ..device import get_device, synchronize
from ..validation import expect_int

__all__ = ["interleaved_medians", "median_seconds"]


def interleaved_medians(cases: Mapping[str, Callable[[], object]], repeats: int, device=None) -> dict[str, float]:
    """Median seconds of each case (module docstring): ``{name: seconds}`` for ``cases`` ``{name: fn()}``.
    ``device`` (default: ``get_device()``) is the one the cases run on, synchronised around each timed call."""
    expect_int(repeats, "repeats", minimum=1)
    if not cases or not all(callable(case) for case in cases.values()):
        raise TypeError("cases must be a non-empty mapping from names to callables taking no arguments")
    device = get_device(device)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for round_ in range(repeats + 1):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            case = cases[name]
            synchronize(device)
            start = time.perf_counter()
            case()
            synchronize(device)
            if round_:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def median_seconds(fn: Callable[[], object], repeats: int = 5, device=None) -> float:
    """Median seconds of ``fn()`` over ``repeats`` timed calls after one warm-up call, the device
    synchronised around each (``interleaved_medians`` with one case)."""
    return interleaved_medians({"fn": fn}, repeats, device)["fn"]
