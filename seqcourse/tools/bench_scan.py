"""How the cost of a scan grows with the sequence length: timings, and a count that does not vary.

    python -m seqcourse.tools.bench_scan [--length 512] [--factor 4] [--repeats 5] [--device cpu] [--threads N]

times forward and backward of the selective scan (fast, sequential and parallel) at length L and
factor·L, interleaved (every repeat runs every scan at both lengths, so a change in the machine's
load hits them alike), takes the median of the repeats, and prints a table with the ratios, next
to the ratio of the backward's *work*. A backward that is linear in L shows ratios near
``factor`` (4); a quadratic one near factor².

The work is ``backward_elements``: the number of tensor elements the operations of a backward pass
write. Unlike a time it is the same on every machine and under any load, and it is what the tests
assert on. Times can grow faster than the work when the tensors get large: glibc serves an
allocation above its mmap threshold (at most 32 MB) with fresh pages from the kernel every time,
and the page faults then cost more than the arithmetic. The default sizes keep every tensor
below 32 MB; ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` makes larger ones cheaper.

``linear_scan_preallocated`` is the counterexample, kept here to be measured: a loop that writes
each state into a preallocated tensor. Its autograd graph makes every step's backward copy the
whole (B, T, ...) gradient, so its backward is O(T²); ``seqcourse.ops.scan`` loops over ``unbind``
and stacks instead.

``linear_scan_blelloch`` is the reference ``linear_scan_fast`` is measured against: a work-efficient
(Blelloch) scan in pure PyTorch with a hand-written backward, the approach of the widely used
pure-PyTorch Mamba implementations. ``LINEAR_SCANS`` names the four linear scans and
``linear_scan_inputs`` makes their inputs; ``seqcourse.tools.bench_models`` times them.

``s4d_mode_times`` times the two faces of an S4D layer, the FFT convolution and the stepped
recurrence, as T grows.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..device import get_device, synchronize
from ..models.s4d import S4DLayer
from ..ops.scan import (check_linear_inputs, discretize_selective, linear_scan_fast, linear_scan_parallel,
                        linear_scan_sequential, selective_scan)
from ..validation import expect_int

__all__ = [
    "LINEAR_SCANS",
    "ScanTiming",
    "backward_elements",
    "linear_scan_blelloch",
    "linear_scan_preallocated",
    "main",
    "s4d_mode_times",
    "linear_scan_inputs",
    "scan_inputs",
    "scan_table",
    "tensor_operations",
    "time_scans",
    "time_scans_at",
]


def linear_scan_preallocated(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = a_t ⊙ h_{t-1} + b_t written the slow way: indexed reads and writes into a (B, T, ...)
    tensor. Same values as ``linear_scan_sequential``; its backward is O(T²). Do not use."""
    check_linear_inputs(a, b, None)
    h = torch.zeros_like(b)
    state = torch.zeros_like(b[:, 0])
    for t in range(a.shape[1]):
        state = a[:, t] * state + b[:, t]  # reading a[:, t]: its backward builds a full-size gradient
        h[:, t] = state  # writing h[:, t]: its backward copies the full-size gradient of h
    return h


def linear_scan_blelloch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All states of h_t = a_t ⊙ h_{t-1} + b_t from h_0 = 0, by a work-efficient (Blelloch) scan with a
    hand-written backward: the reference ``linear_scan_fast`` is benchmarked against.

    a, b (B, T, ...) -> h (B, T, ...), stored time-major. The sequence is padded to P = 2^⌈log2 T⌉
    steps with identity steps (a = 1, b = 0) and scanned in place, time-major, in 2 log2 P levels
    of O(P) work in all (``_blelloch_sweeps``). The backward is the same scan run from the end,
    g_b,t = g_t + a_{t+1} ⊙ g_b,t+1, and g_a,t = g_b,t ⊙ h_{t-1}, as in ``seqcourse.ops.scan``.
    """
    check_linear_inputs(a, b, None)
    return _LinearScanBlelloch.apply(a, b).transpose(0, 1)


def _blelloch_sweeps(A: torch.Tensor, X: torch.Tensor, *, reverse: bool = False) -> None:
    """In place, X[t] becomes the state after step t of x ↦ A[t] x + X[t] from 0, for A, X (P, ...)
    with P a power of two (time on dim 0); A is overwritten. ``reverse`` scans from t = P-1 down to 0.

    Up-sweep, for s = 1, 2, 4, ..., P/2: each step at the end of a block of 2s steps absorbs the
    block's first half, X[j] += A[j] X[j-s], A[j] *= A[j-s]. Down-sweep, for s = P/4, ..., 1: each
    step in the middle of a block, j = 3s-1, 5s-1, ..., takes the finished prefix before it,
    X[j] += A[j] X[j-s]. Reversed, every index j becomes P-1-j."""
    P = X.shape[0]
    s = 1
    while s < P:  # up-sweep
        if reverse:
            dst, src = slice(0, P, 2 * s), slice(s, P, 2 * s)
        else:
            dst, src = slice(2 * s - 1, P, 2 * s), slice(s - 1, P, 2 * s)
        X[dst].addcmul_(A[dst], X[src])
        A[dst].mul_(A[src])
        s *= 2
    s = P // 4
    while s >= 1:  # down-sweep
        if reverse:
            dst, src = slice(s, P - 2 * s, 2 * s), slice(2 * s, P - s, 2 * s)
        else:
            dst, src = slice(3 * s - 1, P, 2 * s), slice(2 * s - 1, P - 2 * s, 2 * s)
        X[dst].addcmul_(A[dst], X[src])
        s //= 2


class _LinearScanBlelloch(torch.autograd.Function):
    """a, b (B, T, ...) -> h (T, B, ...); see ``linear_scan_blelloch``."""

    @staticmethod
    def forward(ctx, a, b):
        T = a.shape[1]
        P = 1 << (T - 1).bit_length()
        a_tm = a.transpose(0, 1)
        A = a_tm.new_ones((P, *a_tm.shape[1:]))  # identity steps pad T up to P
        X = torch.zeros_like(A)
        A[:T].copy_(a_tm)
        X[:T].copy_(b.transpose(0, 1))
        _blelloch_sweeps(A, X)
        h = X[:T]
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h):
        a, h = ctx.saved_tensors
        T, P = h.shape[0], 1 << (h.shape[0] - 1).bit_length()
        A = h.new_zeros((P, *h.shape[1:]))  # A[t] = a_{t+1}; zero past the end, where g is zero too
        A[:T - 1].copy_(a.transpose(0, 1)[1:])
        G = torch.zeros_like(A)
        G[:T].copy_(grad_h)
        _blelloch_sweeps(A, G, reverse=True)  # G[t] = g_b,t
        g_b = G[:T]
        g_a = torch.empty_like(g_b)
        g_a[0].zero_()  # h_0 = 0
        torch.mul(g_b[1:], h[:-1], out=g_a[1:])
        return g_a.transpose(0, 1), g_b.transpose(0, 1)


LINEAR_SCANS: dict[str, Callable] = {
    "fast": linear_scan_fast,
    "blelloch": linear_scan_blelloch,
    "sequential": linear_scan_sequential,
    "parallel": linear_scan_parallel,
}
"""The linear scans h_t = a_t ⊙ h_{t-1} + b_t (from h_0 = 0) that ``bench_models`` times: a, b -> h."""


def linear_scan_inputs(batch: int, length: int, channels: int, state_size: int, *, device=None,
                       seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """a, b (batch, length, channels, state_size), requiring grad, and a gradient g for h of that
    shape, all float32 and stored time-major (length first), as ``selective_scan`` makes them.
    a lies in [0.5, 1), like exp(Δ_t A) of a slowly decaying channel; b and g are standard normal."""
    g = torch.Generator().manual_seed(seed)
    shape = (length, batch, channels, state_size)
    a = 0.5 + 0.5 * torch.rand(shape, generator=g)
    b, grad = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    a, b = (v.to(device).transpose(0, 1).requires_grad_() for v in (a, b))
    return a, b, grad.to(device).transpose(0, 1)


class _CountWrites(TorchDispatchMode):
    """Adds up the number of elements of every tensor that an operation returns."""

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(value, torch.Tensor):
                self.elements += value.numel()
        return out


def backward_elements(loss_fn: Callable[[], torch.Tensor]) -> int:
    """Build the graph with ``loss = loss_fn()`` (a scalar), then return how many tensor elements
    the operations of ``loss.backward()`` write. A measure of the backward's work that does not
    depend on the machine or its load: linear in T for a good scan, quadratic for a bad one."""
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable returning a scalar tensor; got {type(loss_fn).__name__}")
    loss = loss_fn()
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
        raise ValueError("loss_fn must return a scalar tensor that requires grad")
    counter = _CountWrites()
    with counter:
        loss.backward()
    return counter.elements


class _CountOperations(TorchDispatchMode):
    """Counts the tensor operations that reach the kernels."""

    def __init__(self):
        super().__init__()
        self.operations = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.operations += 1
        return func(*args, **(kwargs or {}))


def tensor_operations(run: Callable[[], object]) -> int:
    """How many tensor operations one call of ``run`` performs (forward and backward, whatever it
    runs), as dispatched to torch's kernels. Each pays torch's fixed per-operation cost, which in a
    loop over time steps can outweigh the arithmetic; unlike a time, the count is the same on
    every machine."""
    if not callable(run):
        raise TypeError(f"run must be a callable taking no arguments; got {type(run).__name__}")
    counter = _CountOperations()
    with counter:
        run()
    return counter.operations


def scan_inputs(batch: int, length: int, channels: int, state_size: int, *, device=None,
                dtype=torch.float32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs of the selective scan, all requiring grad: x, delta (b, l, d), A (d, n),
    B, C (b, l, n), D (d,). Δ lies in [0.001, 0.1] and A in [-2, -0.5], as after initialisation."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"x": (batch, length, channels), "delta": (batch, length, channels), "A": (channels, state_size),
              "B": (batch, length, state_size), "C": (batch, length, state_size), "D": (channels,)}
    values = {name: torch.randn(*shape, generator=g, dtype=dtype) for name, shape in shapes.items()}
    values["delta"] = 0.001 + 0.099 * torch.rand(*shapes["delta"], generator=g, dtype=dtype)
    values["A"] = -0.5 - 1.5 * torch.rand(*shapes["A"], generator=g, dtype=dtype)
    return {name: v.to(device).requires_grad_() for name, v in values.items()}


def _selective_preallocated(x, delta, A, B, C, D):
    """The selective scan's outputs y with ``linear_scan_preallocated`` as its loop."""
    A_bar, Bx_bar = discretize_selective(x, delta, A, B)
    h = linear_scan_preallocated(A_bar, Bx_bar)
    return (h * C.unsqueeze(2)).sum(-1) + D * x


SCANS: dict[str, Callable] = {
    "fast": lambda inputs: selective_scan(**inputs, scan="fast")[0],
    "sequential": lambda inputs: selective_scan(**inputs, scan="sequential")[0],
    "parallel": lambda inputs: selective_scan(**inputs, scan="parallel")[0],
    "preallocated": lambda inputs: _selective_preallocated(**inputs),
}
"""The scans ``time_scans`` can time, each mapping the inputs of ``scan_inputs`` to y (b, l, d).
"preallocated" is the O(T²) counterexample: time it only at small sizes."""


@dataclass
class ScanTiming:
    """Median seconds of one scan's forward and backward at one length, and the backward's work
    (``backward_elements``)."""

    scan: str
    length: int
    forward: float
    backward: float
    work: int


def time_scans(length: int = 512, factor: int = 4, *, batch: int = 4, channels: int = 32, state_size: int = 16,
               repeats: int = 5, scans: Sequence[str] = ("fast", "sequential", "parallel"),
               device=None) -> list[ScanTiming]:
    """Median forward and backward seconds of each scan at ``length`` and ``factor * length``
    (``time_scans_at`` with those two lengths)."""
    expect_int(length, "length", minimum=1)
    expect_int(factor, "factor", minimum=2)
    return time_scans_at((length, factor * length), batch=batch, channels=channels, state_size=state_size,
                         repeats=repeats, scans=scans, device=device)


def time_scans_at(lengths: Sequence[int], *, batch: int = 4, channels: int = 32, state_size: int = 16,
                  repeats: int = 5, scans: Sequence[str] = ("fast", "sequential", "parallel"),
                  device=None) -> list[ScanTiming]:
    """Median forward and backward seconds of each scan at each of ``lengths``.

    Every repeat runs every (scan, length) pair once, in the same order, after one untimed warm-up
    round; the medians over ``repeats`` are returned, one ``ScanTiming`` per pair, with the work of
    one backward pass counted once, outside the timed rounds."""
    lengths = tuple(expect_int(L, "each length", minimum=1) for L in lengths)
    if not lengths:
        raise ValueError("lengths must name at least one sequence length")
    expect_int(repeats, "repeats", minimum=1)
    for name in scans:
        if name not in SCANS:
            raise ValueError(f"unknown scan {name!r}; choose from {sorted(SCANS)}")
    device = get_device(device)
    inputs = {L: scan_inputs(batch, L, channels, state_size, device=device) for L in lengths}
    samples = {(name, L): ([], []) for name in scans for L in lengths}
    for round_ in range(repeats + 1):
        for name in scans:
            for L in lengths:
                for value in inputs[L].values():
                    value.grad = None
                synchronize(device)
                start = time.perf_counter()
                y = SCANS[name](inputs[L])
                synchronize(device)
                middle = time.perf_counter()
                y.sum().backward()
                synchronize(device)
                end = time.perf_counter()
                if round_:  # round 0 warms up
                    samples[name, L][0].append(middle - start)
                    samples[name, L][1].append(end - middle)
    work = {(name, L): backward_elements(lambda: SCANS[name](inputs[L]).sum()) for name, L in samples}
    return [ScanTiming(name, L, statistics.median(f), statistics.median(b), work[name, L])
            for (name, L), (f, b) in samples.items()]


def scan_table(timings: Sequence[ScanTiming]) -> str:
    """A table: per scan, forward and backward at both lengths, and the ratios long / short of the
    backward time, the total time and the backward's work."""
    by_scan: dict[str, list[ScanTiming]] = {}
    for t in timings:
        by_scan.setdefault(t.scan, []).append(t)
    lines = []
    for name, (short, long) in ((n, sorted(ts, key=lambda t: t.length)) for n, ts in by_scan.items()):
        if not lines:
            lines.append(f"{'scan':<12}{'fwd L=' + str(short.length):>14}{'bwd L=' + str(short.length):>14}"
                         f"{'fwd L=' + str(long.length):>14}{'bwd L=' + str(long.length):>14}"
                         f"{'bwd ratio':>11}{'total ratio':>13}{'bwd work ratio':>16}")
        ratio_b = long.backward / short.backward
        ratio_t = (long.forward + long.backward) / (short.forward + short.backward)
        lines.append(f"{name:<12}{short.forward * 1e3:>11.1f} ms{short.backward * 1e3:>11.1f} ms"
                     f"{long.forward * 1e3:>11.1f} ms{long.backward * 1e3:>11.1f} ms{ratio_b:>11.2f}{ratio_t:>13.2f}"
                     f"{long.work / short.work:>16.2f}")
    return "\n".join(lines)


def s4d_mode_times(lengths: Sequence[int] = (256, 1024, 4096), *, batch: int = 4, channels: int = 32,
                   state_size: int = 32, repeats: int = 3, device=None) -> dict[str, dict[int, float]]:
    """Median seconds of forward + backward of an S4D layer in convolution mode and in recurrent mode,
    for each length: ``{"convolution": {T: s}, "recurrence": {T: s}}``. Interleaved like ``time_scans``."""

    expect_int(repeats, "repeats", minimum=1)
    device = get_device(device)
    layer = S4DLayer(channels, state_size).to(device)
    modes = {"convolution": layer.forward, "recurrence": layer.forward_recurrent}
    g = torch.Generator().manual_seed(0)
    inputs = {T: torch.randn(batch, T, channels, generator=g).to(device) for T in lengths}
    samples = {(mode, T): [] for mode in modes for T in lengths}
    for round_ in range(repeats + 1):
        for mode, run in modes.items():
            for T in lengths:
                layer.zero_grad(set_to_none=True)
                synchronize(device)
                start = time.perf_counter()
                y, _ = run(inputs[T])
                y.square().mean().backward()
                synchronize(device)
                if round_:
                    samples[mode, T].append(time.perf_counter() - start)
    return {mode: {T: statistics.median(samples[mode, T]) for T in lengths} for mode in modes}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: print the scan timing table."""
    parser = argparse.ArgumentParser(prog="python -m seqcourse.tools.bench_scan", description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=512, help="the shorter length L (default 512)")
    parser.add_argument("--factor", type=int, default=4, help="the longer length is factor * L (default 4)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is shown (default 5)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--state-size", type=int, default=16)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(expect_int(args.threads, "--threads", minimum=1))
    timings = time_scans(args.length, args.factor, batch=args.batch, channels=args.channels,
                         state_size=args.state_size, repeats=args.repeats, device=args.device)
    print(f"selective scan, B={args.batch}, d={args.channels}, n={args.state_size}, device "
          f"{args.device or 'cpu'}, torch threads {torch.get_num_threads()}, GLIBC_TUNABLES="
          f"{os.environ.get('GLIBC_TUNABLES', '(unset)')}; median of {args.repeats}")
    print(scan_table(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
