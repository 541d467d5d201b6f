"""The selective scan of Mamba: a readable loop, a parallel (log-depth) scan, and a fast loop.

Glossary (the symbols of the State-space chapter, as in the Mamba paper):

    b  batch size        l  sequence length        d  channels (d_inner in a Mamba block)
    n  state size per channel
    x      (b, l, d)   the input sequence x_t
    delta  (b, l, d)   the step size Δ_t of every channel at every step (input-dependent)
    A      (d, n)      the diagonal state matrices, one row per channel (real, negative)
    B, C   (b, l, n)   the input and output projections B_t, C_t (input-dependent)
    D      (d,)        the skip term
    h      (b, d, n)   the state h_t

One step of the selective SSM, discretized with zero-order hold for A and Euler for B:

    Ā_t = exp(Δ_t A),    B̄_t x_t = Δ_t B_t x_t,
    h_t = Ā_t ⊙ h_{t-1} + B̄_t x_t,          y_t = C_t h_t + D ⊙ x_t.

All three scans first compute Ā_t and B̄_t x_t for every step (one elementwise operation each over
(b, l, d, n)), then solve the linear recurrence h_t = a_t ⊙ h_{t-1} + b_t, and apply C once at the
end. The recurrence is solved by

* ``linear_scan_sequential``: a plain loop over t. It loops over ``b.unbind(1)`` and stacks the
  states at the end; writing into a preallocated (b, l, ...) tensor instead would make autograd
  keep one full-size copy per step and its backward O(l²) (see ``seqcourse.tools.bench_scan``).
* ``linear_scan_parallel``: a work-efficient parallel scan. Consecutive pairs of steps compose
  into one step of the same form,

      h_{2k} = a_{2k} a_{2k-1} h_{2k-2} + (a_{2k} b_{2k-1} + b_{2k}),

  so a sequence of length l becomes one of length l/2; solving that one (recursively) gives the
  even-indexed states h_2, h_4, ..., and one more elementwise step, h_{2k-1} = a_{2k-1} h_{2k-2}
  + b_{2k-1}, gives the odd-indexed ones. The total work is
  O(l) and the depth O(log l): on a GPU every level is one parallel kernel over the batch.
* ``linear_scan_fast``: the loop of ``linear_scan_sequential`` with its backward written by hand,
  as one ``torch.autograd.Function``. Autograd then records one node for the whole scan instead of
  two per step, the forward writes each state into a preallocated time-major (l, b, ...) tensor
  (safe here: no graph is recorded), and the backward is the same loop run backwards over the
  gradient,

      g_b,t = g_t + a_{t+1} ⊙ g_b,t+1   (g_b,l = g_l),      g_a,t = g_b,t ⊙ h_{t-1},      g_h0 = a_1 ⊙ g_b,1,

  where g_t is the gradient reaching h_t from the outputs, g_b,t the total gradient of h_t (and of
  b_t), and g_a,t that of a_t. Each step, forward and backward, is one ``torch.addcmul`` written
  into its slice of the output: one kernel, no allocation (g_a is one multiply over all steps after
  the loop). addcmul rounds a_t ⊙ h_{t-1} + b_t once where the CPU fuses the multiply-add, so the
  values equal ``linear_scan_sequential``'s up to rounding, not bitwise. On a CPU it is the fastest
  of the three, because there the cost of a step is not its arithmetic but the work of recording
  and replaying autograd nodes; ``selective_scan`` uses it there by default and keeps the parallel
  scan on GPUs.

  Measured (``python -m seqcourse.tools.bench_models --only scan``; B = 8, d = 128, n = 16, l = 4096,
  float32, 2 threads, a 2-core VM): each loop takes about 37 ms (9 µs a step, 1.6 µs of it Python
  and dispatch, the rest moving 64 KB slices at about 21 GB/s on one core: a step is too small for
  torch to split over threads), g_a 19 ms, and the three (l, b, d, n) tensors it returns (h, g_a,
  g_b; 256 MB each) must be faulted in as memory new to the process: about 9 ms each with 2 MB pages
  (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``), 110 to 200 ms each with 4 KB pages, more than all the
  arithmetic. Forward and backward come to about 2.5 times the time a two-thread copy needs to move
  the bytes any scan must read and write with huge pages, and about twice as fast as a Blelloch
  scan (which allocates five such tensors and does about twice the work); with 4 KB pages the page
  faults decide. Splitting time into K chunks scanned side by side, so that each kernel covers K
  steps and torch spreads it over both cores (each chunk's end state from zero, the K entering
  states, then every chunk again from its entering state), was measured and dropped: it reads a
  and b twice, and at these sizes two cores' bandwidth does not pay for the second pass (3 to 25%
  slower than the one loop at L = 1024 and 4096, K = 8 to 64, with and without huge pages).
"""
from __future__ import annotations

import torch

from ..validation import expect_nonempty_time, expect_tensor

__all__ = [
    "SCANS",
    "check_linear_inputs",
    "discretize_selective",
    "linear_scan_fast",
    "linear_scan_parallel",
    "linear_scan_sequential",
    "resolve_scan",
    "selective_scan",
    "selective_scan_fast",
    "selective_scan_parallel",
    "selective_scan_sequential",
]


def check_linear_inputs(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> None:
    """The inputs of a linear scan h_t = a_t * h_{t-1} + b_t: float a and b of the same shape
    (B, T, ...) with T >= 1, and h0 None or (B, ...) of their dtype and device; a clear error otherwise."""
    expect_tensor(a, "a", dtype="float")
    expect_tensor(b, "b", dtype=a.dtype, device=a.device, dtype_reason="(the dtype of a)")
    if a.ndim < 2 or a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape (B, T, ...) with T the time dimension; got a {tuple(a.shape)} "
            f"and b {tuple(b.shape)}"
        )
    expect_nonempty_time(a, "a")
    if h0 is not None:
        expect_tensor(h0, "h0", dtype=a.dtype, device=a.device, dtype_reason="(the dtype of a)")
        if h0.shape != a.shape[:1] + a.shape[2:]:
            raise ValueError(
                f"h0 must have the shape of one step, (B, ...) = {tuple(a.shape[:1] + a.shape[2:])}; "
                f"got {tuple(h0.shape)}"
            )


def linear_scan_sequential(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """All states of h_t = a_t ⊙ h_{t-1} + b_t, t = 1 ... T, by a loop over t.

    a, b (B, T, ...) with time on dim 1; h0 (B, ...) or None for zeros -> h (B, T, ...), h[:, t-1] = h_t.
    """
    check_linear_inputs(a, b, h0)
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    states = []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):  # views, one per step: no full-size copies
        h = a_t * h + b_t
        states.append(h)
    return torch.stack(states, dim=1)


def linear_scan_parallel(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """The same states as ``linear_scan_sequential``, by a work-efficient parallel scan.

    a, b (B, T, ...); h0 (B, ...) or None -> h (B, T, ...). Work O(T), depth O(log T).
    """
    check_linear_inputs(a, b, h0)
    if h0 is not None:  # fold h0 into the first step: h_1 = a_1 h0 + b_1
        b = torch.cat([(a[:, :1] * h0.unsqueeze(1) + b[:, :1]), b[:, 1:]], dim=1)
    return _scan_pairs(a, b)


def linear_scan_fast(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """The same states as ``linear_scan_sequential`` (up to rounding), by a loop with a hand-written backward.

    a, b (B, T, ...); h0 (B, ...) or None for zeros -> h (B, T, ...), h[:, t-1] = h_t, returned as a
    view of a time-major (T, B, ...) tensor. a and b are read time-major: passing
    ``a_tm.transpose(0, 1)`` for a contiguous (T, B, ...) tensor ``a_tm`` costs no copy; any other
    layout is copied once. Work O(T) forward and backward, one autograd node in all. Its backward
    is not differentiable: for second derivatives use ``linear_scan_sequential`` or
    ``linear_scan_parallel``, made of differentiable torch operations.
    """
    check_linear_inputs(a, b, h0)
    return _LinearScanFast.apply(a, b, h0).transpose(0, 1)


PAGE_BYTES = 4096
"""The memory page size of Linux on x86 and most ARM machines, used by ``_new_like``."""

def _new_like(x: torch.Tensor) -> torch.Tensor:
    """An uninitialised contiguous tensor of x's shape, dtype and device, its pages touched by all
    of torch's threads.

    A large allocation (past glibc's mmap threshold, at most 32 MB) is fresh memory, and each of its
    pages costs a page fault on first write, taken by the thread that writes it. The loops of
    ``linear_scan_fast`` write one step at a time, a slice too small for torch to split across
    threads, so all the faults would fall on one thread; one write per page first, which torch
    does split, spreads them over all threads (it measured 17% off the scan's time on a 2-core
    VM, and nothing where the pages are huge)."""
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if out.device.type == "cpu":
        out.view(-1)[:: max(1, PAGE_BYTES // out.element_size())].zero_()
    return out


def _time_major(x: torch.Tensor) -> torch.Tensor:
    """x (B, T, ...) as a contiguous (T, B, ...) tensor: a view when x already lies time-major."""
    return x.transpose(0, 1).contiguous()


_NO_DOUBLE_BACKWARD = (
    "linear_scan_fast has no double backward (its backward is a hand-written loop that autograd does not "
    "record); for second derivatives use linear_scan_sequential or linear_scan_parallel, or "
    "selective_scan(..., scan='sequential' or 'parallel')"
)


class _LinearScanFast(torch.autograd.Function):
    """a, b (B, T, ...), h0 (B, ...) or None -> h (T, B, ...) contiguous; see ``linear_scan_fast``."""

    @staticmethod
    def forward(ctx, a, b, h0):
        a, b = _time_major(a), _time_major(b)
        h = _new_like(b)  # (T, B, ...); each step's slice h[t] is contiguous
        a_steps, b_steps, h_steps = a.unbind(0), b.unbind(0), h.unbind(0)  # views made once, not per step
        if h0 is None:
            h_steps[0].copy_(b_steps[0])  # h_1 = a_1 * 0 + b_1
        else:
            torch.addcmul(b_steps[0], a_steps[0], h0, out=h_steps[0])
        for t in range(1, len(h_steps)):  # h_t = b_t + a_t * h_{t-1}: one kernel per step, no allocation
            torch.addcmul(b_steps[t], a_steps[t], h_steps[t - 1], out=h_steps[t])
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    def backward(ctx, grad_h):
        a, h, h0 = ctx.saved_tensors  # a, h (T, B, ...), h0 (B, ...) or None
        want_a = ctx.needs_input_grad[0]
        with torch.no_grad():
            g = grad_h.contiguous()  # (T, B, ...), the gradient reaching each h_t from the outputs
            g_b = _new_like(g)
            g_a = _new_like(g) if want_a else None
            g_steps, a_steps, g_b_steps = g.unbind(0), a.unbind(0), g_b.unbind(0)
            g_b_steps[-1].copy_(g_steps[-1])
            for t in range(len(g_steps) - 2, -1, -1):  # g_b,t = g_t + a_{t+1} * g_b,t+1: one kernel per step
                torch.addcmul(g_steps[t], a_steps[t + 1], g_b_steps[t + 1], out=g_b_steps[t])
            if want_a:  # g_a,t = g_b,t * h_{t-1}, all steps in one kernel (split over torch's threads)
                torch.mul(g_b[1:], h[:-1], out=g_a[1:])
                if h0 is None:
                    g_a[0].zero_()
                else:
                    torch.mul(g_b[0], h0, out=g_a[0])
            g_h0 = a[0] * g_b[0] if ctx.needs_input_grad[2] else None
        if not ctx.needs_input_grad[1]:
            g_b = None
        if torch.is_grad_enabled():  # backward(create_graph=True): the gradients must refuse a second backward
            sources = tuple(x for x in (grad_h, a, h, h0) if x is not None)
            g_a, g_b, g_h0 = (None if x is None else _RefuseBackward.apply(x, *sources) for x in (g_a, g_b, g_h0))
        return (None if g_a is None else g_a.transpose(0, 1),  # back to the (B, T, ...) of a and b
                None if g_b is None else g_b.transpose(0, 1), g_h0)


class _RefuseBackward(torch.autograd.Function):
    """x, *sources -> x, whose backward raises: marks a gradient of ``linear_scan_fast`` as final.
    The sources (the tensors it was computed from) make it part of the graph whenever they are."""

    @staticmethod
    def forward(ctx, x, *sources):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(_NO_DOUBLE_BACKWARD)


def _scan_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = a_t h_{t-1} + b_t with h_0 = 0, by halving the sequence (see the module docstring)."""
    T = a.shape[1]
    if T == 1:
        return b
    if T % 2:  # pad one identity step (a = 1, b = 0) so the steps pair up; dropped at the end
        a = torch.cat([a, torch.ones_like(a[:, :1])], dim=1)
        b = torch.cat([b, torch.zeros_like(b[:, :1])], dim=1)
    # Pair k holds steps 2k-1 and 2k (counting from 1): the first and second step of the pair.
    a_first, a_second = a[:, 0::2], a[:, 1::2]
    b_first, b_second = b[:, 0::2], b[:, 1::2]
    # Two steps in one: h_{2k} = (a_{2k} a_{2k-1}) h_{2k-2} + (a_{2k} b_{2k-1} + b_{2k}).
    h_second = _scan_pairs(a_second * a_first, a_second * b_first + b_second)  # h_2, h_4, ...
    h_before = torch.cat([torch.zeros_like(h_second[:, :1]), h_second[:, :-1]], dim=1)  # h_0, h_2, ...
    h_first = a_first * h_before + b_first  # h_1, h_3, ...
    h = torch.stack([h_first, h_second], dim=2).flatten(1, 2)  # interleave: h_1, h_2, h_3, ...
    return h[:, :T]


def _check_selective(x, delta, A, B, C, D, h0) -> None:
    expect_tensor(x, "x", dims=("b", "l", "d"), dtype="float")
    batch, length, d = x.shape
    expect_nonempty_time(x, "x")
    same = {"dtype": x.dtype, "device": x.device, "dtype_reason": "(the dtype of x)"}
    expect_tensor(delta, "delta", dims=("b", "l", "d"), size={"b": batch, "l": length, "d": d}, **same)
    expect_tensor(A, "A", dims=("d", "n"), size={"d": d}, **same)
    n = A.shape[1]
    expect_tensor(B, "B", dims=("b", "l", "n"), size={"b": batch, "l": length, "n": n}, **same)
    expect_tensor(C, "C", dims=("b", "l", "n"), size={"b": batch, "l": length, "n": n}, **same)
    if D is not None:
        expect_tensor(D, "D", dims=("d",), size={"d": d}, **same)
    if h0 is not None:
        expect_tensor(h0, "h0", dims=("b", "d", "n"), size={"b": batch, "d": d, "n": n}, **same)


def discretize_selective(x, delta, A, B):
    """Ā_t = exp(Δ_t A) and B̄_t x_t = Δ_t B_t x_t for every step, each (b, l, d, n).

    x, delta (b, l, d), A (d, n), B (b, l, n). Zero-order hold for A, Euler for B, as in Mamba.
    """
    A_bar = (delta.unsqueeze(-1) * A).exp_()  # (b, l, d, n); in place: one (b, l, d, n) tensor, not two
    Bx_bar = (delta * x).unsqueeze(-1) * B.unsqueeze(2)  # (b, l, d, n)
    return A_bar, Bx_bar


SCANS = ("auto", "fast", "sequential", "parallel")
"""The values of ``selective_scan``'s ``scan`` (and of Mamba's): "auto" is "fast" on a CPU and
"parallel" on any other device."""


def resolve_scan(scan: str, device: torch.device) -> str:
    """The scan that ``scan`` (one of ``SCANS``) names for tensors on ``device``: "auto" picks
    "fast" on a CPU, where a step costs its autograd nodes more than its arithmetic, and
    "parallel" elsewhere, where each level of the log-depth scan is one kernel over all channels."""
    if scan not in SCANS:
        raise ValueError(f"scan must be one of {SCANS}; got {scan!r}")
    if scan == "auto":
        return "fast" if torch.device(device).type == "cpu" else "parallel"
    return scan


def selective_scan(x, delta, A, B, C, D=None, h0=None, *, scan: str = "auto", parallel: bool | None = None):
    """The selective SSM over a whole sequence (see the module docstring for the equations).

    x, delta (b, l, d); A (d, n); B, C (b, l, n); D (d,) or None; h0 (b, d, n) or None for zeros
    -> (y (b, l, d), h_l (b, d, n)), the outputs and the last state.
    ``scan`` solves h_t = Ā_t ⊙ h_{t-1} + B̄_t x_t with ``linear_scan_fast`` ("fast"),
    ``linear_scan_sequential`` ("sequential") or ``linear_scan_parallel`` ("parallel"); "auto"
    (the default) is "fast" on a CPU and "parallel" on other devices (``resolve_scan``).
    ``parallel=True`` / ``False`` is the older spelling of ``scan="parallel"`` / ``"sequential"``.
    """
    _check_selective(x, delta, A, B, C, D, h0)
    if parallel is not None:
        if scan != "auto":
            raise ValueError(f"give scan or parallel, not both (got scan={scan!r}, parallel={parallel!r}); "
                             "parallel=True is scan='parallel', parallel=False is scan='sequential'")
        scan = "parallel" if parallel else "sequential"
    scan = resolve_scan(scan, x.device)
    if scan == "fast":
        # Time-major (l, b, ...) inputs make Ā and B̄x time-major too, the layout linear_scan_fast reads
        # without a copy: each step's slice is contiguous.
        x_tm, delta_tm, B_tm, C_tm = (t.transpose(0, 1).contiguous() for t in (x, delta, B, C))
        A_bar, Bx_bar = (t.transpose(0, 1) for t in discretize_selective(x_tm, delta_tm, A, B_tm))
        h = linear_scan_fast(A_bar, Bx_bar, h0)  # (b, l, d, n), stored time-major
        # y_t = C_t h_t as one batched (d, n) x (n, 1) product over the time-major states: unlike the
        # product-and-sum below it makes no (l, b, d, n) temporary, forward or backward.
        y = torch.matmul(h.transpose(0, 1), C_tm.unsqueeze(-1)).squeeze(-1).transpose(0, 1)  # (b, l, d)
    else:
        A_bar, Bx_bar = discretize_selective(x, delta, A, B)
        h = (linear_scan_parallel if scan == "parallel" else linear_scan_sequential)(A_bar, Bx_bar, h0)
        y = (h * C.unsqueeze(2)).sum(-1)  # (b, l, d): y_t = C_t h_t, for all t at once
    if D is not None:
        y = y + D * x
    return y, h[:, -1]


def selective_scan_fast(x, delta, A, B, C, D=None, h0=None):
    """``selective_scan`` with ``linear_scan_fast``; same arguments and results."""
    return selective_scan(x, delta, A, B, C, D, h0, scan="fast")


def selective_scan_sequential(x, delta, A, B, C, D=None, h0=None):
    """``selective_scan`` with the sequential loop; same arguments and results."""
    return selective_scan(x, delta, A, B, C, D, h0, scan="sequential")


def selective_scan_parallel(x, delta, A, B, C, D=None, h0=None):
    """``selective_scan`` with the parallel scan; same arguments and results."""
    return selective_scan(x, delta, A, B, C, D, h0, scan="parallel")
