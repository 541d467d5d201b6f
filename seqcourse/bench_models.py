"""``python -m seqcourse.bench_models``: every from-scratch model against its fastest in-library reference.

Usage::

    python -m seqcourse.bench_models [--quick] [--repeats N] [--device DEV] [--threads N] [--json PATH]

``python -m seqcourse bench`` (``make bench``) runs it after the notebook table. It measures, on one
device, in one process:

- **recurrent**: our RNN, LSTM and GRU, readable loop and ``fast=True`` (torch's fused kernel on our
  parameters), against ``torch.nn.RNN``/``LSTM``/``GRU``; forward (no grad) and forward+backward,
  B=32, T=256, D=H=128;
- **attention**: our ``MultiHeadAttention`` (fast path = ``scaled_dot_product_attention``, and the
  readable softmax(QKᵀ/√d_k)V) against ``torch.nn.MultiheadAttention`` and against
  ``scaled_dot_product_attention`` with the same projections written inline; forward+backward at
  L = 256, 1024, 2048, and the bytes autograd saves for the backward;
- **S4D**: an ``S4DLayer`` in convolution mode (FFT) against its own recurrent mode, L = 256, 1024, 4096
  (``bench_scan.s4d_mode_times``);
- **selective scan** (Mamba's): the sequential loop against the log-depth parallel scan, L = 256,
  1024, 4096 (``bench_scan.time_scans_at``);
- **growth**: each scan's forward+backward time, saved bytes and backward work at L and 4L (the
  two longest lengths above): a linear scan grows about 4×, a quadratic one 16×.

How it times: every case is a callable; each round runs every case of a table once, in a fixed order
(interleaved, so a change in the machine's load hits all alike), after one untimed warm-up round, and
the median of the rounds is kept. Results are reported as ratios to the reference. The intra-op thread
count is fixed (``--threads``, default 1: on a shared 2-core machine one thread per process gives the
steadiest ratios) and recorded with ``GLIBC_TUNABLES`` (page faults matter here: DESIGN.md §7).

Each target is marked met / missed; a miss does not change the exit status (times are noisy; the
table is for reading). ``--quick`` runs tiny sizes in a few seconds (for tests); its numbers mean nothing.
The JSON (default ``_build/bench/models.json``, next to the notebook table's) holds every row.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .analysis import saved_tensor_bytes
from .bench_scan import SCANS, s4d_mode_times, scan_inputs, time_scans_at
from .device import get_device, synchronize
from .validation import expect_int

__all__ = ["FULL", "QUICK", "Sizes", "add_arguments", "bench_attention", "bench_recurrent", "bench_s4d",
           "bench_scans", "format_report", "growth_rows", "interleaved_medians", "main", "run", "run_and_report"]

DEFAULT_JSON = Path("_build") / "bench" / "models.json"
MiB = 2 ** 20


@dataclass(frozen=True)
class Sizes:
    """The sizes of one benchmark run."""

    recurrent: tuple[int, int, int]  # B, T, H (D = H)
    attention_batch: int
    attention_d_model: int
    attention_heads: int
    attention_lengths: tuple[int, ...]
    s4d: tuple[int, int]  # channels, state size N (batch 4)
    scan: tuple[int, int, int]  # batch, channels d, state size n
    scan_lengths: tuple[int, ...]  # also S4D's; the last two are L and 4L for the growth table
    repeats: int


FULL = Sizes(recurrent=(32, 256, 128), attention_batch=2, attention_d_model=128, attention_heads=4,
             attention_lengths=(256, 1024, 2048), s4d=(32, 32), scan=(4, 32, 16),
             scan_lengths=(256, 1024, 4096), repeats=5)
QUICK = Sizes(recurrent=(2, 12, 8), attention_batch=1, attention_d_model=16, attention_heads=2,
              attention_lengths=(16, 32), s4d=(4, 4), scan=(1, 4, 2), scan_lengths=(8, 32), repeats=1)


def interleaved_medians(cases: Mapping[str, Callable[[], object]], repeats: int, device=None) -> dict[str, float]:
    """Median seconds of each case: ``repeats`` rounds (after one untimed warm-up round), each running
    every case once; round r starts at case r (mod the number of cases) and goes on in the order given,
    so that no case always follows the same one. The device is synchronised around each timed call."""
    expect_int(repeats, "repeats", minimum=1)
    device = torch.device(device) if device is not None else torch.device("cpu")
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
    from .models.gated import GRU, LSTM, copy_gru_from_torch, copy_lstm_from_torch
    from .models.rnn import RNN, copy_from_torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, length, hidden, generator=g).to(device)
    rows = []
    for name, ours_class, torch_class, copy in (("LSTM", LSTM, nn.LSTM, copy_lstm_from_torch),
                                                 ("GRU", GRU, nn.GRU, copy_gru_from_torch),
                                                 ("RNN", RNN, nn.RNN, copy_from_torch)):
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
    from .models.attention import MultiHeadAttention, copy_mha_from_torch

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
    from .models.s4d import S4DLayer

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


def bench_scans(lengths: Sequence[int], batch: int, channels: int, state_size: int, repeats: int,
                device) -> list[dict]:
    """Mamba's selective scan, sequential against parallel, forward+backward per length: seconds,
    ratio sequential / parallel, MB saved for the backward and the backward's work (elements written)."""
    timings = time_scans_at(lengths, batch=batch, channels=channels, state_size=state_size, repeats=repeats,
                            device=device)
    by = {(t.scan, t.length): t for t in timings}
    rows = []
    for L in lengths:
        inputs = scan_inputs(batch, L, channels, state_size, device=device)
        row = {"L": L}
        for scan in ("sequential", "parallel"):
            t = by[scan, L]
            row[f"{scan}_s"] = t.forward + t.backward
            row[f"{scan}_forward_s"] = t.forward
            row[f"{scan}_saved_mb"] = saved_tensor_bytes(lambda: SCANS[scan](inputs)) / MiB
            row[f"{scan}_backward_elements"] = t.work
        row["sequential_over_parallel"] = row["sequential_s"] / row["parallel_s"]
        rows.append(row)
    return rows


def growth_rows(s4d: Sequence[dict], scans: Sequence[dict]) -> list[dict]:
    """Each scan's forward+backward time and saved memory at the two longest lengths (L and 4L):
    the ratios long / short. Linear in L gives about 4, quadratic 16."""
    rows = []
    for source, names in ((scans, ("sequential", "parallel")), (s4d, ("convolution", "recurrence"))):
        short, long = source[-2], source[-1]
        for name in names:
            label = f"selective scan, {name}" if source is scans else f"S4D, {name}"
            row = {"scan": label, "L": short["L"], "long_L": long["L"],
                   "time_ratio": long[f"{name}_s"] / short[f"{name}_s"],
                   "memory_ratio": long[f"{name}_saved_mb"] / short[f"{name}_saved_mb"]}
            if f"{name}_backward_elements" in short:
                row["work_ratio"] = long[f"{name}_backward_elements"] / short[f"{name}_backward_elements"]
            rows.append(row)
    return rows


def _targets(results: dict, device: torch.device) -> list[dict]:
    """Each target of issue 9 with its measured value, its bound and whether it was met."""
    targets = []

    def add(name, measured, bound, met):
        targets.append({"target": name, "measured": round(measured, 3), "bound": bound, "met": bool(met)})

    for row in results["recurrent"]:
        if row["pass"] == "forward+backward":
            add(f"{row['model']} readable fwd+bwd / torch.nn", row["readable_ratio"], "<= 2.5",
                row["readable_ratio"] <= 2.5)
            add(f"{row['model']} fast fwd+bwd / torch.nn", row["fast_ratio"], "<= 1.1", row["fast_ratio"] <= 1.1)
    for row in results["attention"]:
        add(f"MHA fast fwd+bwd / (sdpa + projections), L={row['L']}", row["ours_fast_ratio"], "<= 1.1",
            row["ours_fast_ratio"] <= 1.1)
    last = results["s4d"][-1]
    add(f"S4D recurrence / convolution fwd+bwd, L={last['L']}", last["speedup"], ">= 4", last["speedup"] >= 4)
    last = results["selective_scan"][-1]
    if device.type == "cpu":
        add(f"selective scan sequential / parallel fwd+bwd, L={last['L']} (CPU)",
            last["sequential_over_parallel"], "<= 1", last["sequential_over_parallel"] <= 1)
    else:
        add(f"selective scan sequential / parallel fwd+bwd, L={last['L']} (GPU)",
            last["sequential_over_parallel"], ">= 10", last["sequential_over_parallel"] >= 10)
    for row in results["growth"]:
        factor = row["long_L"] / row["L"]
        for key, what in (("time_ratio", "time"), ("memory_ratio", "saved memory")):
            # Linear growth is `factor` (4); quadratic factor² (16). Twice linear allows for noise.
            add(f"{row['scan']}: {what} growth L={row['L']} -> {row['long_L']}", row[key],
                f"<= {2 * factor:g} (linear {factor:g}, quadratic {factor ** 2:g})", row[key] <= 2 * factor)
    return targets


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else f"{c:.3g}" if isinstance(c, float)
                                             else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in cells)


def format_report(results: dict) -> str:
    """The benchmark's tables as text (what ``main`` prints)."""
    env = results["environment"]
    ms = 1e3
    parts = [f"Model benchmark on {env['device']} ({env['threads']} torch thread(s), GLIBC_TUNABLES="
             f"{env['GLIBC_TUNABLES'] or '(unset)'}, median of {env['repeats']} interleaved rounds"
             f"{', QUICK sizes: numbers mean nothing' if env['quick'] else ''})"]
    B, T, H = env["sizes"]["recurrent"]
    parts.append(f"\nRecurrent models vs torch.nn, B={B}, T={T}, D=H={H} (ms; ratio = ours / torch.nn)")
    parts.append(_table(["model", "pass", "torch.nn", "readable", "fast", "readable x", "fast x"],
                        [[r["model"], r["pass"], r["torch_s"] * ms, r["readable_s"] * ms, r["fast_s"] * ms,
                          r["readable_ratio"], r["fast_ratio"]] for r in results["recurrent"]]))
    s = env["sizes"]
    parts.append(f"\nMulti-head self-attention fwd+bwd, B={s['attention_batch']}, D={s['attention_d_model']}, "
                 f"heads={s['attention_heads']} (ms; x = ratio to sdpa + projections; MB saved for backward)")
    parts.append(_table(["L", "sdpa+proj", "ours fast", "x", "torch MHA", "x", "ours readable", "x",
                         "MB fast", "MB readable"],
                        [[r["L"], r["sdpa_projections_s"] * ms, r["ours_fast_s"] * ms, r["ours_fast_ratio"],
                          r["torch_mha_s"] * ms, r["torch_mha_ratio"], r["ours_readable_s"] * ms,
                          r["ours_readable_ratio"], r["ours_fast_saved_mb"], r["ours_readable_saved_mb"]]
                         for r in results["attention"]]))
    parts.append(f"\nS4D layer fwd+bwd, batch 4, H={s['s4d'][0]}, N={s['s4d'][1]} (ms; speed-up = recurrence / "
                 "convolution)")
    parts.append(_table(["L", "convolution", "recurrence", "speed-up", "MB conv", "MB rec"],
                        [[r["L"], r["convolution_s"] * ms, r["recurrence_s"] * ms, r["speedup"],
                          r["convolution_saved_mb"], r["recurrence_saved_mb"]] for r in results["s4d"]]))
    b, d, n = s["scan"]
    parts.append(f"\nSelective scan (Mamba) fwd+bwd, b={b}, d={d}, n={n} (ms)")
    parts.append(_table(["L", "sequential", "parallel", "seq / par", "MB seq", "MB par"],
                        [[r["L"], r["sequential_s"] * ms, r["parallel_s"] * ms, r["sequential_over_parallel"],
                          r["sequential_saved_mb"], r["parallel_saved_mb"]] for r in results["selective_scan"]]))
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


def run(*, quick: bool = False, repeats: int | None = None, device=None, threads: int | None = 1) -> dict:
    """Run every benchmark and return the results (the JSON's content). ``threads=None`` keeps
    torch's thread count; otherwise it is set for the run and restored after."""
    sizes = QUICK if quick else FULL
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
                            "cpu_count": os.cpu_count(), "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES"),
                            "quick": quick, "repeats": repeats, "sizes": asdict(sizes)},
        }
        start = time.perf_counter()
        results["recurrent"] = bench_recurrent(*sizes.recurrent, repeats, device)
        results["attention"] = bench_attention(sizes.attention_batch, sizes.attention_d_model,
                                               sizes.attention_heads, sizes.attention_lengths, repeats, device)
        results["s4d"] = bench_s4d(sizes.scan_lengths, *sizes.s4d, repeats, device)
        results["selective_scan"] = bench_scans(sizes.scan_lengths, *sizes.scan, repeats, device)
        results["growth"] = growth_rows(results["s4d"], results["selective_scan"])
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


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The model benchmark's options, on ``parser`` or an argument group of it (shared with
    ``python -m seqcourse bench``, so both commands accept the same values)."""
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (for tests; numbers mean nothing)")
    parser.add_argument("--repeats", type=_positive_int, default=None, metavar="N",
                        help=f"timed rounds per table; the median is kept (default {FULL.repeats}, quick {QUICK.repeats})")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: seqcourse.device.get_device())")
    parser.add_argument("--threads", type=_threads, default=1, metavar="N",
                        help="torch intra-op threads during the run (default 1; 0 keeps torch's own)")


def run_and_report(args: argparse.Namespace, json_path: Path) -> dict:
    """Run with parsed options, print the tables, write the JSON; return the results."""
    print("Running the model benchmark" + (" (quick sizes)" if args.quick else "") + " ...", flush=True)
    results = run(quick=args.quick, repeats=args.repeats, device=args.device, threads=args.threads or None)
    print(format_report(results))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"Model benchmark took {results['seconds']:.0f} s; results written to {json_path}")
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 0 (a missed target is reported, not an error)."""
    parser = argparse.ArgumentParser(prog="python -m seqcourse.bench_models", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                        help=f"where to write the results as JSON (default: {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    run_and_report(args, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
