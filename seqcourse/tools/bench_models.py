"""``python -m seqcourse.tools.bench_models``: every from-scratch model against its fastest in-library reference.

Usage::

    python -m seqcourse.tools.bench_models [--quick | --tiny] [--repeats N] [--device DEV] [--threads N]
                                           [--only scan,grid,...] [--json PATH]

``python -m seqcourse bench`` (``make bench``) runs it after the notebook table. It measures, on one
device, in one process:

- **recurrent**: our RNN, LSTM and GRU, readable loop and ``fast=True`` (torch's fused kernel on our
  parameters), against ``torch.nn.RNN``/``LSTM``/``GRU``; forward (no grad) and forward+backward,
  B=32, T=256, D=H=128;
- **recurrent grid**: the readable LSTM and GRU against ``torch.nn`` forward+backward over batch
  {8, 32} × T {64, 256} × input {64, 128} × hidden {128, 256} × {1, 2} threads, every cell printed,
  with the time of the loop's recurrent matmuls alone, the rest per step and the tensor operations
  per step, and under the table, per model and thread count, what bounds the cells that miss 2.5×.
  Measured on a 2-core VM shared with other jobs: the GRU is within 1.4× everywhere (torch's own
  GRU on the CPU is a loop of ATen operations too); the LSTM, against oneDNN's fused kernel, is
  within 2.5× at batch 32 with 1 thread (1.5 to 2.4×) and misses at batch 8 (3.1 to 4.3×) and in
  most cells with 2 threads (up to about 6×), where its recurrent matmuls, one step at a time,
  alone cost 1 to 3× torch.nn's whole time and its 43 tensor operations per step, at 2 to 11 µs
  each, are most of the rest. On a busy machine every parallel region of a step can wait for a
  descheduled thread, and the 2-thread times of the readable loops scatter widely;
- **attention**: our ``MultiHeadAttention`` (fast path = ``scaled_dot_product_attention``, and the
  readable softmax(QKᵀ/√d_k)V) against ``torch.nn.MultiheadAttention`` and against
  ``scaled_dot_product_attention`` with the same projections written inline; forward+backward at
  L = 256, 1024, 2048, and the bytes autograd saves for the backward;
- **S4D**: an ``S4DLayer`` in convolution mode (FFT) against its own recurrent mode, L = 256, 1024, 4096
  (``bench_scan.s4d_mode_times``);
- **linear scan** (the recurrence h_t = a_t ⊙ h_{t-1} + b_t inside Mamba's selective scan), forward
  + backward at B=8, d=128, n=16, L = 1024 and 4096, float32, 2 threads: ``linear_scan_fast``, the
  readable sequential loop and the log-depth parallel scan, each as a ratio to a work-efficient
  Blelloch scan with a hand-written backward (``bench_scan.linear_scan_blelloch``), and against the
  memory-traffic floor: the bytes the scan must read and write (a, b forward; the gradient, a and h
  backward; h, g_a, g_b written: 8 tensors of B·L·d·n floats) divided by the bandwidth of a torch
  copy of one such tensor, timed in the same rounds;
- **growth**: each scan's forward+backward time, saved bytes and backward work at L and 4L (the
  two longest lengths above): a linear scan grows about 4×, a quadratic one 16×.

``--only scan,grid`` (any of ``TABLES``, comma-separated) runs only those tables.

What decides the linear scan's numbers, measured on a 2-core VM: ``linear_scan_fast`` runs one
addcmul per step each way (about 9 µs a step at these sizes on an idle machine, 1.6 µs of it Python
and dispatch; a 64 KB step is too small for torch to split over two threads), and must return three
new (L, B, d, n) tensors (h, g_a, g_b; 256 MB each at L = 4096). Memory new to the process is
faulted in page by page, and with 4 KB pages that cost 110 to 200 ms per such tensor there (the
``clone`` column), more than the scan's arithmetic and more than the traffic floor, which times a
copy into memory already touched. So without ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` no scan
that returns new tensors meets the floor target there (the fast scan is within 1.3× of the "fresh
floor", 3 clones + 1 copy, which counts those faults), and its lead over the Blelloch scan, which
allocates five, is about 1.7×. With the setting (2 MB pages, about 9 ms per tensor) it is within
2.6× of the floor and about 2.2× faster than the Blelloch scan on an idle machine (3× and more on a
busy one, where the Blelloch scan's two-thread kernels wait for the second core): a one-thread loop
moving nine tensors' worth of bytes at about 21 GB/s cannot reach 2.5× against a scan whose every
kernel streams at the two-thread copy's 40 GB/s.

How it times: every case is a callable; each round runs every case of a table once, in a fixed order
(interleaved, so a change in the machine's load hits all alike), after one untimed warm-up round, and
the median of the rounds is kept. Results are reported as ratios to the reference. The intra-op thread
count is fixed (``--threads``, default 1: on a shared 2-core machine one thread per process gives the
steadiest ratios), except in the grid and the scan table, which set their own. The JSON records the
threads, torch's CPU capability (the vector instructions its kernels use) and ``GLIBC_TUNABLES``: the
large tensors here pass glibc's 32 MB mmap threshold, above which every allocation is fresh memory
from the kernel, and on small VMs the page faults of touching it, not the arithmetic, decide much of
the time (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` makes them rarer). ``make bench`` therefore runs
this benchmark twice, with and without that setting, and every target should hold in both.

Each target is marked met / missed; a miss does not change the exit status (times are noisy; the
table is for reading). ``--quick`` runs the smaller sizes of earlier versions (the scan at B=4, d=32,
L = 256 to 4096; no grid beyond one cell) in about a minute; ``--tiny`` runs tiny sizes in seconds
(for tests; its numbers mean nothing). The JSON (default ``_build/bench/models.json``, next to the
notebook table's) holds every row.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..measure.analysis import saved_tensor_bytes
from .bench_scan import LINEAR_SCANS, backward_elements, linear_scan_inputs, s4d_mode_times, tensor_operations
from ..device import get_device
from ..models.attention import MultiHeadAttention, copy_mha_from_torch
from ..models.gated import GRU, LSTM, copy_gru_from_torch, copy_lstm_from_torch
from ..models.rnn import RNN, copy_rnn_from_torch
from ..models.s4d import S4DLayer
from ..measure.timing import interleaved_medians
from ..validation import expect_int

__all__ = ["FULL", "QUICK", "SIZES", "TINY", "Sizes", "add_arguments", "bench_attention", "bench_linear_scans",
           "bench_recurrent", "bench_recurrent_grid", "bench_s4d", "format_report", "growth_rows",
           "main", "run", "run_and_report"]

DEFAULT_JSON = Path("_build") / "bench" / "models.json"
MiB = 2 ** 20


@dataclass(frozen=True)
class Sizes:
    """The sizes of one benchmark run."""

    recurrent: tuple[int, int, int]  # B, T, H (D = H)
    grid: tuple[tuple[int, ...], ...]  # batches, lengths T, input sizes D, hidden sizes H, thread counts
    attention_batch: int
    attention_d_model: int
    attention_heads: int
    attention_lengths: tuple[int, ...]
    s4d: tuple[int, int]  # channels, state size N (batch 4)
    scan: tuple[int, int, int]  # batch, channels d, state size n
    scan_lengths: tuple[int, ...]  # also S4D's; the last two are L and 4L for the growth table
    scan_threads: int
    repeats: int


FULL = Sizes(recurrent=(32, 256, 128), grid=((8, 32), (64, 256), (64, 128), (128, 256), (1, 2)),
             attention_batch=2, attention_d_model=128, attention_heads=4, attention_lengths=(256, 1024, 2048),
             s4d=(32, 32), scan=(8, 128, 16), scan_lengths=(1024, 4096), scan_threads=2, repeats=5)
QUICK = Sizes(recurrent=(32, 256, 128), grid=((32,), (256,), (128,), (128,), (1,)),
              attention_batch=2, attention_d_model=128, attention_heads=4, attention_lengths=(256, 1024, 2048),
              s4d=(32, 32), scan=(4, 32, 16), scan_lengths=(256, 1024, 4096), scan_threads=2, repeats=5)
TINY = Sizes(recurrent=(2, 12, 8), grid=((2,), (6, 12), (4,), (8,), (1, 2)), attention_batch=1,
             attention_d_model=16, attention_heads=2, attention_lengths=(16, 32), s4d=(4, 4), scan=(1, 4, 2),
             scan_lengths=(8, 32), scan_threads=1, repeats=1)
SIZES = {"full": FULL, "quick": QUICK, "tiny": TINY}

TABLES = ("recurrent", "grid", "attention", "s4d", "scan")
"""The benchmark's tables, as ``--only`` names them: the recurrent models at one size, the readable
LSTM/GRU grid, attention, S4D's two modes, and the linear scans (the growth table takes the rows of
s4d and scan that ran)."""


def _check_tables(only: Sequence[str]) -> tuple[str, ...]:
    if isinstance(only, str) or not only or any(name not in TABLES for name in only):
        raise ValueError(f"only must name one or more of {TABLES}; got {only!r}")
    return tuple(only)


def _forward_backward(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run():
        model.zero_grad(set_to_none=True)
        out = model(x)[0]
        out.sum().backward()
    return run


def _forward(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run():
        with torch.no_grad():
            model(x)
    return run


def bench_recurrent(batch: int, length: int, hidden: int, repeats: int, device) -> list[dict]:
    """Our RNN, LSTM and GRU (readable and fast) against torch.nn's, forward and forward+backward.

    One row per (model, pass): seconds of each and the ratios readable / torch and fast / torch.
    Our weights are copied from torch's, so all three compute the same function."""

    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, length, hidden, generator=g).to(device)
    rows = []
    for name, ours_class, torch_class, copy in (("LSTM", LSTM, nn.LSTM, copy_lstm_from_torch),
                                                 ("GRU", GRU, nn.GRU, copy_gru_from_torch),
                                                 ("RNN", RNN, nn.RNN, copy_rnn_from_torch)):
        torch.manual_seed(0)
        theirs = torch_class(hidden, hidden, batch_first=True).to(device)
        readable = ours_class(hidden, hidden).to(device)
        fast = ours_class(hidden, hidden, fast=True).to(device)
        copy(readable, theirs)
        copy(fast, theirs)
        for pass_, make in (("forward", _forward), ("forward+backward", _forward_backward)):
            t = interleaved_medians({"readable": make(readable, x), "fast": make(fast, x),
                                     "torch": make(theirs, x)}, repeats, device)
            rows.append({"model": name, "pass": pass_, "readable_s": t["readable"], "fast_s": t["fast"],
                         "torch_s": t["torch"], "readable_ratio": t["readable"] / t["torch"],
                         "fast_ratio": t["fast"] / t["torch"]})
    return rows


def _recurrent_matmuls(batch: int, length: int, hidden: int, gates: int, device) -> Callable[[], None]:
    """The recurrent matrix multiplies of a readable loop alone, for ``length`` steps: W_h h_{t-1}
    forward, (B, H) x (H, gates·H), and its two gradients backward (of h_{t-1} and of W_h)."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(gates * hidden, hidden, generator=g).to(device)
    h = torch.randn(batch, hidden, generator=g).to(device)
    grad = torch.randn(batch, gates * hidden, generator=g).to(device)

    def run():
        for _ in range(length):
            h @ W.T
            grad @ W
            grad.T @ h
    return run


def bench_recurrent_grid(grid: Sequence[Sequence[int]], repeats: int, device) -> list[dict]:
    """The readable LSTM and GRU against torch.nn's, forward+backward, in every cell of ``grid`` =
    (batches, lengths T, input sizes D, hidden sizes H, thread counts).

    One row per (model, cell): the seconds of each, the ratio readable / torch, and what bounds the
    readable loop: the time of its recurrent matrix multiplies alone (``_recurrent_matmuls``, timed
    in the same rounds), the rest per step, and the tensor operations per step (forward and
    backward), each of which pays torch's fixed per-operation cost. The thread count is set per
    cell and restored after."""

    batches, lengths, inputs, hiddens, threads = grid
    before = torch.get_num_threads()
    rows = []
    try:
        for n_threads in threads:
            torch.set_num_threads(expect_int(n_threads, "each thread count", minimum=1))
            for name, ours_class, torch_class, copy, gates in (("LSTM", LSTM, nn.LSTM, copy_lstm_from_torch, 4),
                                                                ("GRU", GRU, nn.GRU, copy_gru_from_torch, 3)):
                for D in inputs:
                    for H in hiddens:
                        torch.manual_seed(0)
                        theirs = torch_class(D, H, batch_first=True).to(device)
                        readable = ours_class(D, H).to(device)
                        copy(readable, theirs)
                        for B in batches:
                            for T in lengths:
                                x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(T)).to(device)
                                cases = {"readable": _forward_backward(readable, x),
                                         "torch": _forward_backward(theirs, x),
                                         "matmuls": _recurrent_matmuls(B, T, H, gates, device)}
                                t = interleaved_medians(cases, repeats, device)
                                rows.append({"model": name, "batch": B, "T": T, "input": D, "hidden": H,
                                             "threads": n_threads, "readable_s": t["readable"],
                                             "torch_s": t["torch"], "ratio": t["readable"] / t["torch"],
                                             "matmuls_s": t["matmuls"], "matmuls_ratio": t["matmuls"] / t["torch"],
                                             "rest_per_step_us": (t["readable"] - t["matmuls"]) / T * 1e6,
                                             "ops_per_step": tensor_operations(cases["readable"]) / T})
    finally:
        torch.set_num_threads(before)
    return rows


def _sdpa_with_projections(mha, x: torch.Tensor) -> torch.Tensor:
    """The reference for our fast path: the same parameters, projections inline, then
    ``scaled_dot_product_attention`` (x (B, T, D) -> (B, T, D))."""
    B, T, D = x.shape
    q, k, v = nn.functional.linear(x, mha.W_qkv, mha.b_qkv).chunk(3, dim=-1)
    q, k, v = (t.view(B, T, mha.n_heads, D // mha.n_heads).transpose(1, 2) for t in (q, k, v))
    y = nn.functional.scaled_dot_product_attention(q, k, v)
    return nn.functional.linear(y.transpose(1, 2).reshape(B, T, D), mha.W_o, mha.b_o)


def bench_attention(batch: int, d_model: int, n_heads: int, lengths: Sequence[int], repeats: int,
                    device) -> list[dict]:
    """Self-attention forward+backward at each length: ours (fast, readable), torch.nn.MultiheadAttention
    and sdpa + projections, as seconds, ratios to sdpa + projections, and MB saved for the backward."""

    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(d_model, n_heads, batch_first=True).to(device)
    ours = MultiHeadAttention(d_model, n_heads).to(device)
    copy_mha_from_torch(ours, theirs)
    rows = []
    for L in lengths:
        g = torch.Generator().manual_seed(L)
        x = torch.randn(batch, L, d_model, generator=g).to(device).requires_grad_()
        forwards = {
            "ours_fast": lambda: ours(x, fast=True)[0],
            "ours_readable": lambda: ours(x, fast=False)[0],
            "torch_mha": lambda: theirs(x, x, x, need_weights=False)[0],
            "sdpa_projections": lambda: _sdpa_with_projections(ours, x),
        }

        def case(forward):
            def run():
                x.grad = None
                ours.zero_grad(set_to_none=True)
                theirs.zero_grad(set_to_none=True)
                forward().sum().backward()
            return run

        t = interleaved_medians({name: case(f) for name, f in forwards.items()}, repeats, device)
        row = {"L": L}
        for name, forward in forwards.items():
            row[f"{name}_s"] = t[name]
            row[f"{name}_ratio"] = t[name] / t["sdpa_projections"]
            row[f"{name}_saved_mb"] = saved_tensor_bytes(forward) / MiB
        rows.append(row)
    return rows


def bench_s4d(lengths: Sequence[int], channels: int, state_size: int, repeats: int, device) -> list[dict]:
    """An S4D layer's convolution mode against its recurrent mode, forward+backward, per length:
    seconds, the speed-up recurrence / convolution, and MB saved for the backward."""

    times = s4d_mode_times(lengths, batch=4, channels=channels, state_size=state_size, repeats=repeats,
                           device=device)
    layer = S4DLayer(channels, state_size).to(device)
    rows = []
    for L in lengths:
        x = torch.randn(4, L, channels, generator=torch.Generator().manual_seed(L)).to(device)
        rows.append({"L": L, "convolution_s": times["convolution"][L], "recurrence_s": times["recurrence"][L],
                     "speedup": times["recurrence"][L] / times["convolution"][L],
                     "convolution_saved_mb": saved_tensor_bytes(lambda: layer(x)) / MiB,
                     "recurrence_saved_mb": saved_tensor_bytes(lambda: layer.forward_recurrent(x)) / MiB})
    return rows


TRAFFIC_TENSORS = 8
"""How many (B, L, d, n) tensors a linear scan's forward and backward must at least read or write:
a, b read and h written forward; the gradient of h, a and h read and g_a, g_b written backward."""


def bench_linear_scans(lengths: Sequence[int], batch: int, channels: int, state_size: int, repeats: int,
                       device, threads: int) -> list[dict]:
    """The linear scans of ``bench_scan.LINEAR_SCANS``, forward+backward at each length, on float32
    inputs stored time-major (``bench_scan.linear_scan_inputs``), with ``threads`` intra-op threads;
    timed in the same interleaved rounds as two copies of one (B, L, d, n) tensor: ``copy`` into an
    allocated tensor and ``clone`` into a new one (which pays the page faults of fresh memory).

    One row per length: each scan's seconds, its ratio to the Blelloch scan, MB saved for the
    backward and the backward's work (elements written); the copy bandwidths (bytes read + written
    per second); the traffic floor ``TRAFFIC_TENSORS`` · nbytes / copy bandwidth and the fast scan's
    ratio to it; and a floor for fresh memory, 3 clones (the three tensors the scan must return,
    each written from one read) + 1 copy (its two other reads), with the fast scan's ratio to it and
    the Blelloch scan's: no scan that returns new tensors beats the fresh floor, so Blelloch / fresh
    floor is the largest speed-up over Blelloch any such scan can show in this run."""
    before = torch.get_num_threads()
    torch.set_num_threads(expect_int(threads, "threads", minimum=1))
    rows = []
    try:
        for L in lengths:
            a, b, grad = linear_scan_inputs(batch, L, channels, state_size, device=device, seed=L)
            source = grad.transpose(0, 1).contiguous()
            target = torch.empty_like(source)

            def case(scan):
                def run():
                    a.grad = b.grad = None
                    scan(a, b).backward(grad)
                return run

            cases = {name: case(scan) for name, scan in LINEAR_SCANS.items()}
            cases["copy"] = lambda: target.copy_(source)
            cases["clone"] = source.clone
            t = interleaved_medians(cases, repeats, device)
            nbytes = source.numel() * source.element_size()
            row = {"L": L, "tensor_mb": nbytes / MiB}
            for name, scan in LINEAR_SCANS.items():
                row[f"{name}_s"] = t[name]
                row[f"{name}_over_blelloch"] = t[name] / t["blelloch"]
                row[f"{name}_saved_mb"] = saved_tensor_bytes(lambda: scan(a, b)) / MiB
                row[f"{name}_backward_elements"] = backward_elements(lambda: (scan(a, b) * grad).sum())
            a.grad = b.grad = None
            row.update({"copy_s": t["copy"], "clone_s": t["clone"], "traffic_mb": TRAFFIC_TENSORS * nbytes / MiB,
                        "copy_gb_per_s": 2 * nbytes / t["copy"] / 1e9, "clone_gb_per_s": 2 * nbytes / t["clone"] / 1e9})
            row["floor_s"] = TRAFFIC_TENSORS * nbytes / (2 * nbytes / t["copy"])
            row["fast_over_floor"] = t["fast"] / row["floor_s"]
            row["fresh_floor_s"] = 3 * t["clone"] + t["copy"]
            row["fast_over_fresh_floor"] = t["fast"] / row["fresh_floor_s"]
            row["blelloch_over_fresh_floor"] = t["blelloch"] / row["fresh_floor_s"]
            rows.append(row)
    finally:
        torch.set_num_threads(before)
    return rows


def growth_rows(s4d: Sequence[dict], scans: Sequence[dict]) -> list[dict]:
    """Each scan's forward+backward time and saved memory at the two longest lengths (L and 4L):
    the ratios long / short. Linear in L gives about 4, quadratic 16."""
    rows = []
    for source, names in ((scans, tuple(LINEAR_SCANS)), (s4d, ("convolution", "recurrence"))):
        if len(source) < 2:  # a table not run (``run(only=...)``)
            continue
        short, long = source[-2], source[-1]
        for name in names:
            label = f"linear scan, {name}" if source is scans else f"S4D, {name}"
            row = {"scan": label, "L": short["L"], "long_L": long["L"],
                   "time_ratio": long[f"{name}_s"] / short[f"{name}_s"],
                   "memory_ratio": long[f"{name}_saved_mb"] / short[f"{name}_saved_mb"]}
            if f"{name}_backward_elements" in short:
                row["work_ratio"] = long[f"{name}_backward_elements"] / short[f"{name}_backward_elements"]
            rows.append(row)
    return rows


def _targets(results: dict, device: torch.device) -> list[dict]:
    """Each target with its measured value, its bound and whether it was met."""
    targets = []

    def add(name, measured, bound, met):
        targets.append({"target": name, "measured": round(measured, 3), "bound": bound, "met": bool(met)})

    for row in results.get("recurrent", ()):
        if row["pass"] == "forward+backward":
            add(f"{row['model']} readable fwd+bwd / torch.nn", row["readable_ratio"], "<= 2.5",
                row["readable_ratio"] <= 2.5)
            add(f"{row['model']} fast fwd+bwd / torch.nn", row["fast_ratio"], "<= 1.1", row["fast_ratio"] <= 1.1)
    for row in results.get("attention", ()):
        add(f"MHA fast fwd+bwd / (sdpa + projections), L={row['L']}", row["ours_fast_ratio"], "<= 1.1",
            row["ours_fast_ratio"] <= 1.1)
    if "s4d" in results:
        last = results["s4d"][-1]
        add(f"S4D recurrence / convolution fwd+bwd, L={last['L']}", last["speedup"], ">= 4", last["speedup"] >= 4)
    for name in ("LSTM", "GRU") if "recurrent_grid" in results else ():
        ratios = [r["ratio"] for r in results["recurrent_grid"] if r["model"] == name]
        met = sum(r <= 2.5 for r in ratios)
        add(f"{name} readable fwd+bwd / torch.nn, worst of the grid ({met} of {len(ratios)} cells <= 2.5)",
            max(ratios), "<= 2.5", met == len(ratios))
    if "linear_scan" in results:
        _scan_targets(results["linear_scan"], device, add)
    for row in results["growth"]:
        factor = row["long_L"] / row["L"]
        for key, what in (("time_ratio", "time"), ("memory_ratio", "saved memory")):
            # Linear growth is `factor` (4); quadratic factor² (16). Twice linear allows for noise.
            add(f"{row['scan']}: {what} growth L={row['L']} -> {row['long_L']}", row[key],
                f"<= {2 * factor:g} (linear {factor:g}, quadratic {factor ** 2:g})", row[key] <= 2 * factor)
    return targets


def _scan_targets(rows: Sequence[dict], device: torch.device, add) -> None:
    """The linear scan's targets, from its two longest lengths, through ``add(name, measured, bound, met)``."""
    short, last = rows[-2], rows[-1]
    speedup = 1 / last["fast_over_blelloch"]
    add(f"linear scan: Blelloch / fast fwd+bwd, L={last['L']} (at most {last['blelloch_over_fresh_floor']:.2f} "
        "here: Blelloch / fresh floor)", speedup, ">= 2.5", speedup >= 2.5)
    add(f"linear scan: fast / traffic floor (copy bandwidth), L={last['L']}", last["fast_over_floor"], "<= 3",
        last["fast_over_floor"] <= 3)
    growth = last["fast_s"] / short["fast_s"]
    add(f"linear scan: fast at L={last['L']} / L={short['L']}", growth,
        f"<= {1.15 * last['L'] / short['L']:g}", growth <= 1.15 * last["L"] / short["L"])
    if device.type != "cpu":
        over = last["sequential_s"] / last["parallel_s"]
        add(f"linear scan: sequential / parallel fwd+bwd, L={last['L']} (GPU)", over, ">= 10", over >= 10)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else f"{c:.3g}" if isinstance(c, float)
                                             else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in cells)


def _grid_misses(rows: Sequence[dict], bound: float = 2.5) -> list[str]:
    """One line per model: how many grid cells miss ``bound``, and what bounds those cells: the
    recurrent matmuls alone as a ratio to torch.nn, and the rest of the loop's time, per step and
    per tensor operation, with its share of the time."""
    def span(values, fmt):
        low, high = f"{min(values):{fmt}}", f"{max(values):{fmt}}"
        return low if low == high else f"{low} to {high}"

    lines = []
    for model, threads in dict.fromkeys((r["model"], r["threads"]) for r in rows):
        cells = [r for r in rows if (r["model"], r["threads"]) == (model, threads)]
        missed = [r for r in cells if r["ratio"] > bound]
        model = f"{model}, {threads} thread(s)"
        if not missed:
            lines.append(f"{model}: every cell within {bound:g}x of torch.nn.")
            continue

        rest_share = [1 - r["matmuls_s"] / r["readable_s"] for r in missed]
        per_op = [r["rest_per_step_us"] / r["ops_per_step"] for r in missed]
        over = sum(r["matmuls_ratio"] > bound for r in missed)
        lines.append(f"{model}: {len(missed)} of {len(cells)} cells miss {bound:g}x. In them the recurrent matmuls "
                     f"alone, one step at a time, are {span([r['matmuls_ratio'] for r in missed], '.2f')}x torch.nn"
                     f"{f' (over {bound:g}x in {over}: there they alone bound it)' if over else ''}, and the rest of "
                     f"the loop, {span([r['ops_per_step'] for r in missed], '.0f')} tensor operations per step at "
                     f"{span(per_op, '.1f')} us each, is {span(rest_share, '.0%')} of its time: a fixed cost per "
                     "operation and step, not arithmetic.")
    return lines


def format_report(results: dict) -> str:
    """The benchmark's tables as text (what ``main`` prints)."""
    env = results["environment"]
    ms = 1e3
    parts = [f"Model benchmark on {env['device']} ({env['threads']} torch thread(s), CPU capability "
             f"{env['cpu_capability']}, GLIBC_TUNABLES={env['GLIBC_TUNABLES'] or '(unset)'}, median of "
             f"{env['repeats']} interleaved rounds, {env['size_set'].upper()} sizes"
             f"{': numbers mean nothing' if env['size_set'] == 'tiny' else ''})"]
    s = env["sizes"]
    B, T, H = s["recurrent"]
    if "recurrent" in results:
        parts.append(f"\nRecurrent models vs torch.nn, B={B}, T={T}, D=H={H} (ms; ratio = ours / torch.nn)")
        parts.append(_table(["model", "pass", "torch.nn", "readable", "fast", "readable x", "fast x"],
                            [[r["model"], r["pass"], r["torch_s"] * ms, r["readable_s"] * ms, r["fast_s"] * ms,
                              r["readable_ratio"], r["fast_ratio"]] for r in results["recurrent"]]))
    if "attention" in results:
        parts.append(f"\nMulti-head self-attention fwd+bwd, B={s['attention_batch']}, D={s['attention_d_model']}, "
                     f"heads={s['attention_heads']} (ms; x = ratio to sdpa + projections; MB saved for backward)")
        parts.append(_table(["L", "sdpa+proj", "ours fast", "x", "torch MHA", "x", "ours readable", "x",
                             "MB fast", "MB readable"],
                            [[r["L"], r["sdpa_projections_s"] * ms, r["ours_fast_s"] * ms, r["ours_fast_ratio"],
                              r["torch_mha_s"] * ms, r["torch_mha_ratio"], r["ours_readable_s"] * ms,
                              r["ours_readable_ratio"], r["ours_fast_saved_mb"], r["ours_readable_saved_mb"]]
                             for r in results["attention"]]))
    if "s4d" in results:
        parts.append(f"\nS4D layer fwd+bwd, batch 4, H={s['s4d'][0]}, N={s['s4d'][1]} (ms; speed-up = recurrence / "
                     "convolution)")
        parts.append(_table(["L", "convolution", "recurrence", "speed-up", "MB conv", "MB rec"],
                            [[r["L"], r["convolution_s"] * ms, r["recurrence_s"] * ms, r["speedup"],
                              r["convolution_saved_mb"], r["recurrence_saved_mb"]] for r in results["s4d"]]))
    if "linear_scan" in results:
        b, d, n = s["scan"]
        parts.append(f"\nLinear scan h_t = a_t * h_(t-1) + b_t (Mamba's recurrence) fwd+bwd, B={b}, d={d}, n={n}, "
                     f"float32, {s['scan_threads']} thread(s) (ms; x = ratio to the Blelloch scan)")
        names = list(LINEAR_SCANS)
        parts.append(_table(["L"] + [h for name in names for h in (name, "x")],
                            [[r["L"]] + [v for name in names for v in (r[f"{name}_s"] * ms, r[f"{name}_over_blelloch"])]
                             for r in results["linear_scan"]]))
        parts.append(f"Memory-traffic floor: the scan must read and write {TRAFFIC_TENSORS} tensors of B*L*d*n floats; "
                     "copy = torch copy into an allocated tensor,\nclone = into a new one (page faults included); "
                     "fresh floor = 3 clones + 1 copy, the least time any scan that returns its\nthree (B, L, d, n) "
                     "tensors as new memory can take; Blelloch / fresh floor = the largest speed-up over Blelloch "
                     "such a scan\ncan reach here")
        parts.append(_table(["L", "traffic MB", "copy GB/s", "clone GB/s", "floor ms", "fast / floor",
                             "fresh floor ms", "fast / fresh floor", "Blelloch / fresh floor"],
                            [[r["L"], r["traffic_mb"], r["copy_gb_per_s"], r["clone_gb_per_s"], r["floor_s"] * ms,
                              r["fast_over_floor"], r["fresh_floor_s"] * ms, r["fast_over_fresh_floor"],
                              r["blelloch_over_fresh_floor"]] for r in results["linear_scan"]]))
    if "recurrent_grid" in results:
        parts.append("\nReadable LSTM and GRU vs torch.nn, forward+backward, every cell of the grid (ms; x = ours / "
                     "torch.nn;\nmatmuls = the readable loop's recurrent matrix multiplies alone, one step at a time, "
                     "fwd+bwd;\nmatmuls x = matmuls / torch.nn, the ratio the loop could reach if nothing but its "
                     "matmuls cost;\nrest = the remainder of its time per step; ops = tensor operations per step, "
                     "fwd+bwd)")
        parts.append(_table(["model", "threads", "B", "T", "D", "H", "torch.nn", "readable", "x", "matmuls",
                             "matmuls x", "rest us/step", "ops/step"],
                            [[r["model"], r["threads"], r["batch"], r["T"], r["input"], r["hidden"], r["torch_s"] * ms,
                              r["readable_s"] * ms, r["ratio"], r["matmuls_s"] * ms, r["matmuls_ratio"],
                              r["rest_per_step_us"], r["ops_per_step"]] for r in results["recurrent_grid"]]))
        parts.extend(_grid_misses(results["recurrent_grid"]))
    if results["growth"]:
        parts.append("\nGrowth from L to 4L of forward+backward (ratios long / short; linear = 4, quadratic = 16)")
        parts.append(_table(["scan", "L", "4L", "time", "saved memory", "backward work"],
                            [[r["scan"], r["L"], r["long_L"], r["time_ratio"], r["memory_ratio"],
                              r.get("work_ratio", "-")] for r in results["growth"]]))
    parts.append("\nTargets")
    parts.append(_table(["target", "measured", "bound", ""],
                        [[t["target"], t["measured"], t["bound"], "met" if t["met"] else "MISSED"]
                         for t in results["targets"]]))
    met = sum(t["met"] for t in results["targets"])
    parts.append(f"{met} of {len(results['targets'])} targets met.")
    return "\n".join(parts)


def run(*, size_set: str = "full", repeats: int | None = None, device=None, threads: int | None = 1,
        only: Sequence[str] = TABLES) -> dict:
    """Run the benchmarks named in ``only`` (default all of ``TABLES``) at the sizes ``SIZES[size_set]``
    and return the results (the JSON's content; a table not run is absent). ``threads=None`` keeps
    torch's thread count; otherwise it is set for the run (except the grid and the scan table, which
    set their own) and restored after."""
    if size_set not in SIZES:
        raise ValueError(f"size_set must be one of {sorted(SIZES)}; got {size_set!r}")
    only = _check_tables(only)
    sizes = SIZES[size_set]
    repeats = sizes.repeats if repeats is None else expect_int(repeats, "repeats", minimum=1)
    device = get_device(device)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(expect_int(threads, "threads", minimum=1))
    try:
        results = {
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "environment": {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
                            "python": platform.python_version(), "platform": platform.platform(),
                            "cpu_count": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                            "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES"),
                            "size_set": size_set, "repeats": repeats, "sizes": asdict(sizes)},
        }
        start = time.perf_counter()
        if "recurrent" in only:
            results["recurrent"] = bench_recurrent(*sizes.recurrent, repeats, device)
        if "grid" in only:
            results["recurrent_grid"] = bench_recurrent_grid(sizes.grid, repeats, device)
        if "attention" in only:
            results["attention"] = bench_attention(sizes.attention_batch, sizes.attention_d_model,
                                                   sizes.attention_heads, sizes.attention_lengths, repeats, device)
        if "s4d" in only:
            results["s4d"] = bench_s4d(sizes.scan_lengths, *sizes.s4d, repeats, device)
        if "scan" in only:
            results["linear_scan"] = bench_linear_scans(sizes.scan_lengths, *sizes.scan, repeats, device,
                                                        sizes.scan_threads)
        results["growth"] = growth_rows(results.get("s4d", ()), results.get("linear_scan", ()))
        results["targets"] = _targets(results, device)
        results["seconds"] = round(time.perf_counter() - start, 1)
    finally:
        torch.set_num_threads(before)
    return results


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (torch's default) or a positive integer, got {text!r}")
    return value


def _tables(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not all(name in TABLES for name in names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names of {', '.join(TABLES)}; got {text!r}")
    return names


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The model benchmark's options, on ``parser`` or an argument group of it (shared with
    ``python -m seqcourse bench``, so both commands accept the same values)."""
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", dest="size_set", action="store_const", const="quick", default="full",
                       help="the smaller sizes of earlier versions (scan at B=4, d=32; one grid cell)")
    sizes.add_argument("--tiny", dest="size_set", action="store_const", const="tiny",
                       help="tiny sizes, one round (for tests; numbers mean nothing)")
    parser.add_argument("--repeats", type=_positive_int, default=None, metavar="N",
                        help=f"timed rounds per table; the median is kept (default {FULL.repeats}, "
                             f"tiny {TINY.repeats})")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: seqcourse.device.get_device())")
    parser.add_argument("--threads", type=_threads, default=1, metavar="N",
                        help="torch intra-op threads during the run (default 1; 0 keeps torch's own)")
    parser.add_argument("--only", type=_tables, default=TABLES, metavar="T[,T...]",
                        help=f"run only these tables, comma-separated, of {','.join(TABLES)} (default: all)")


def run_and_report(args: argparse.Namespace, json_path: Path) -> dict:
    """Run with parsed options, print the tables, write the JSON; return the results."""
    print(f"Running the model benchmark ({args.size_set} sizes) ...", flush=True)
    results = run(size_set=args.size_set, repeats=args.repeats, device=args.device, threads=args.threads or None,
                  only=args.only)
    print(format_report(results))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"Model benchmark took {results['seconds']:.0f} s; results written to {json_path}")
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 0 (a missed target is reported, not an error)."""
    parser = argparse.ArgumentParser(prog="python -m seqcourse.tools.bench_models", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                        help=f"where to write the results as JSON (default: {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    run_and_report(args, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
