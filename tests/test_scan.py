"""The three scans compute the same function (values and gradients), agree with the definition and,
with input-independent parameters, with a convolution; the fast loop equals the readable one up to
rounding with one kernel per step, passes gradcheck and refuses a double backward; selective_scan picks it on the CPU; every backward is
linear in T (counted, not timed); and bad input gives clear errors."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from seqcourse.measure.analysis import saved_tensor_bytes
from seqcourse.tools.bench_scan import LINEAR_SCANS as BENCHMARKED_SCANS
from seqcourse.tools.bench_scan import (
    backward_elements,
    linear_scan_blelloch,
    linear_scan_inputs,
    linear_scan_preallocated,
    main,
    s4d_mode_times,
    scan_inputs,
    scan_table,
    tensor_operations,
    time_scans,
)
from seqcourse.ops.scan import (
    SCANS,
    linear_scan_fast,
    linear_scan_parallel,
    linear_scan_sequential,
    resolve_scan,
    selective_scan,
    selective_scan_fast,
    selective_scan_parallel,
    selective_scan_sequential,
)

LINEAR_SCANS = (linear_scan_sequential, linear_scan_parallel, linear_scan_fast)
SELECTIVE_SCANS = (selective_scan_sequential, selective_scan_parallel, selective_scan_fast)

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def linear_inputs(B, T, shape, device, seed=0, h0=True):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(B, T, *shape, generator=g, dtype=F64).to(device).requires_grad_()
    b = torch.randn(B, T, *shape, generator=g, dtype=F64).to(device).requires_grad_()
    h = torch.randn(B, *shape, generator=g, dtype=F64).to(device).requires_grad_() if h0 else None
    return a, b, h


@pytest.mark.parametrize("T", [1, 2, 3, 5, 8, 13, 16, 100, 257])
def test_linear_scans_agree_with_the_definition_in_values_and_gradients(device, T):
    a, b, h0 = linear_inputs(2, T, (3, 4), device, seed=T)
    expected, h = [], h0
    for t in range(T):  # the definition, one step at a time
        h = a[:, t] * h + b[:, t]
        expected.append(h)
    expected = torch.stack(expected, dim=1)
    weights = torch.randn(expected.shape, dtype=F64, generator=torch.Generator().manual_seed(1)).to(device)
    grads_expected = torch.autograd.grad((expected * weights).sum(), (a, b, h0))
    for scan in LINEAR_SCANS:
        got = scan(a, b, h0)
        assert got.shape == (2, T, 3, 4)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        for g_got, g_want in zip(torch.autograd.grad((got * weights).sum(), (a, b, h0)), grads_expected):
            torch.testing.assert_close(g_got, g_want, rtol=1e-11, atol=1e-11)


def test_linear_scans_start_from_zero_without_h0(device):
    a, b, _ = linear_inputs(3, 9, (2,), device, h0=False)
    zero = torch.zeros(3, 2, dtype=F64, device=device)
    for scan in LINEAR_SCANS:
        torch.testing.assert_close(scan(a, b), scan(a, b, zero))
        assert torch.equal(scan(a, b)[:, 0], b[:, 0])  # h_1 = a_1 * 0 + b_1


def selective_reference(x, delta, A, B, C, D, h0):
    """The definition, written entry by entry for a batch of one channel-state pair at a time."""
    b, l, d = x.shape
    n = A.shape[1]
    h = h0.clone()
    y = torch.zeros(b, l, d, dtype=x.dtype)
    for t in range(l):
        for i in range(d):
            for k in range(n):
                h[:, i, k] = torch.exp(delta[:, t, i] * A[i, k]) * h[:, i, k] + delta[:, t, i] * B[:, t, k] * x[:, t, i]
            y[:, t, i] = (C[:, t] * h[:, i]).sum(-1) + D[i] * x[:, t, i]
    return y, h


def test_selective_scan_matches_the_definition():
    inputs = scan_inputs(2, 6, 3, 4, dtype=F64, seed=3)
    inputs["delta"] = inputs["delta"].detach() * 5  # steps up to 0.5, so that exp(ΔA) is far from 1
    h0 = torch.randn(2, 3, 4, dtype=F64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want_y, want_h = selective_reference(*(inputs[k] for k in ("x", "delta", "A", "B", "C", "D")), h0)
        for scan in SELECTIVE_SCANS:
            y, h = scan(**inputs, h0=h0)
            torch.testing.assert_close(y, want_y, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(h, want_h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("T", [1, 7, 64, 100])
def test_selective_scans_agree_in_values_and_gradients(device, T):
    inputs = {k: v.detach().to(device).requires_grad_() for k, v in scan_inputs(2, T, 5, 3, dtype=F64, seed=T).items()}
    h0 = torch.randn(2, 5, 3, dtype=F64, generator=torch.Generator().manual_seed(0)).to(device).requires_grad_()
    results = []
    for scan in SELECTIVE_SCANS:
        y, h = scan(**inputs, h0=h0)
        loss = y.sin().sum() + h.square().sum()
        results.append((y, h, torch.autograd.grad(loss, [*inputs.values(), h0])))
    y1, h1, g1 = results[0]
    for y2, h2, g2 in results[1:]:
        torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(h1, h2, rtol=1e-12, atol=1e-12)
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_float32_scans_agree_to_float32_precision(device):
    inputs = {k: v.detach().to(device) for k, v in scan_inputs(4, 333, 16, 8, seed=5).items()}
    y1, h1 = selective_scan_sequential(**inputs)
    for scan in SELECTIVE_SCANS[1:]:
        y2, h2 = scan(**inputs)
        torch.testing.assert_close(y1, y2, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(h1, h2, rtol=1e-4, atol=1e-5)


def test_input_independent_parameters_give_the_lti_convolution():
    """With Δ, B, C the same at every step the selective SSM is an LTI system: y = K * x + D x
    with K_l = Σ_n C_n exp(ΔA_n)^l Δ B_n, per channel."""
    g = torch.Generator().manual_seed(6)
    b, l, d, n = 2, 12, 3, 4
    x = torch.randn(b, l, d, generator=g, dtype=F64)
    delta = (0.05 + torch.rand(d, generator=g, dtype=F64)).expand(b, l, d)
    A = -0.2 - torch.rand(d, n, generator=g, dtype=F64)
    B_n, C_n = torch.randn(n, generator=g, dtype=F64), torch.randn(n, generator=g, dtype=F64)
    D = torch.randn(d, generator=g, dtype=F64)
    y, _ = selective_scan(x, delta, A, B_n.expand(b, l, n), C_n.expand(b, l, n), D)
    dA = delta[0, 0].unsqueeze(-1) * A  # (d, n)
    K = torch.stack([(C_n * torch.exp(dA * j) * delta[0, 0].unsqueeze(-1) * B_n).sum(-1) for j in range(l)], -1)
    want = torch.stack([sum(K[:, j] * x[:, t - j] for j in range(t + 1)) for t in range(l)], dim=1) + D * x
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)


# ---- the fast loop: the readable loop's arithmetic, with a hand-written backward ---------------


TOLERANCE = {torch.float32: {"rtol": 1e-5, "atol": 1e-6}, F64: {"rtol": 1e-12, "atol": 1e-12}}


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("T", [1, 2, 7, 64, 101])
@pytest.mark.parametrize("with_h0", [True, False])
def test_fast_scan_matches_the_readable_loop(device, dtype, T, with_h0):
    """The same recurrence forward and backward; each step's multiply-add is one rounding instead of
    two where addcmul fuses it, so equal to the readable loop up to rounding, not bitwise."""
    a, b, h0 = (None if v is None else v.detach().to(dtype).requires_grad_()
                for v in linear_inputs(3, T, (5, 2), device, seed=T, h0=with_h0))
    leaves = [v for v in (a, b, h0) if v is not None]
    weights = torch.randn(3, T, 5, 2, dtype=dtype, generator=torch.Generator().manual_seed(2)).to(device)
    results = []
    for scan in (linear_scan_sequential, linear_scan_fast):
        h = scan(a, b, h0)
        loss = (h * weights).sum() + h[:, -1].square().sum()  # two paths into the last state
        results.append((h, torch.autograd.grad(loss, leaves)))
    (h_seq, g_seq), (h_fast, g_fast) = results
    assert h_fast.shape == (3, T, 5, 2)
    torch.testing.assert_close(h_fast, h_seq, **TOLERANCE[dtype])
    for got, want in zip(g_fast, g_seq):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, **TOLERANCE[dtype])


class _RecordOps(TorchDispatchMode):
    """The names of the tensor operations that reach the kernels."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("with_h0", [True, False])
def test_fast_scan_runs_one_kernel_per_step_each_way(with_h0):
    """Forward and backward each run one addcmul per step and a fixed number of other operations:
    no per-step allocation, copy or second kernel."""
    T = 101
    a, b, h0 = linear_inputs(2, T, (3,), "cpu", seed=3, h0=with_h0)
    forward, backward = _RecordOps(), _RecordOps()
    with forward:
        h = linear_scan_fast(a, b, h0)
    grad = torch.ones_like(h)
    with backward:
        h.backward(grad)
    assert forward.names.count("addcmul.out") == T - (h0 is None)
    assert backward.names.count("addcmul.out") == T - 1
    for recorded in (forward, backward):
        assert len(recorded.names) - recorded.names.count("addcmul.out") < 40, recorded.names  # T = 101


@pytest.mark.parametrize("with_h0", [True, False])
def test_fast_scan_passes_gradcheck(with_h0):
    a, b, h0 = linear_inputs(2, 5, (3,), "cpu", seed=7, h0=with_h0)
    assert torch.autograd.gradcheck(linear_scan_fast, (a, b, h0))


def test_fast_scan_computes_only_the_gradients_asked_for():
    a, b, h0 = linear_inputs(2, 6, (3,), "cpu", seed=8)
    for wanted in ((a,), (b,), (h0,), (a, h0)):
        want = torch.autograd.grad(linear_scan_sequential(a, b, h0).sum(), wanted)
        got = torch.autograd.grad(linear_scan_fast(a, b, h0).sum(), wanted)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, **TOLERANCE[F64])
    frozen = a.detach()  # a without grad: only b's and h0's gradients are computed
    torch.testing.assert_close(torch.autograd.grad(linear_scan_fast(frozen, b, h0).sum(), (b, h0)),
                               torch.autograd.grad(linear_scan_sequential(frozen, b, h0).sum(), (b, h0)))


def test_fast_scan_works_time_major_and_reads_that_layout_without_a_copy():
    """Its output lies time-major ((T, B, ...) in memory); inputs laid out so are read as they are,
    and give the same states as contiguous (B, T, ...) inputs."""
    a, b, h0 = linear_inputs(2, 9, (3, 4), "cpu", h0=True)
    a_tm, b_tm = (v.detach().transpose(0, 1).contiguous() for v in (a, b))
    h = linear_scan_fast(a_tm.transpose(0, 1), b_tm.transpose(0, 1), h0)
    assert h.shape == (2, 9, 3, 4) and h.transpose(0, 1).is_contiguous()
    assert torch.equal(h, linear_scan_fast(a, b, h0))
    a_tm.requires_grad_()
    assert saved_tensor_bytes(lambda: linear_scan_fast(a_tm.transpose(0, 1), b)) \
        == 2 * a.numel() * 8  # a, as given, and h: no time-major copy of a was made


def test_fast_scan_refuses_a_double_backward_and_names_the_alternatives():
    a, b, h0 = linear_inputs(2, 4, (3,), "cpu")
    grads = torch.autograd.grad(linear_scan_fast(a, b, h0).sin().sum(), (a, b, h0), create_graph=True)
    first = torch.autograd.grad(linear_scan_sequential(a, b, h0).sin().sum(), (a, b, h0))
    for g, want in zip(grads, first):  # first derivatives are still right with create_graph=True
        assert g.requires_grad
        torch.testing.assert_close(g, want, **TOLERANCE[F64])
    for g in grads:
        with pytest.raises(RuntimeError, match="no double backward.*linear_scan_sequential or linear_scan_parallel"):
            g.sum().backward(retain_graph=True)


def test_selective_scan_picks_the_fast_loop_on_the_cpu_and_the_parallel_scan_elsewhere():
    assert SCANS == ("auto", "fast", "sequential", "parallel")
    assert resolve_scan("auto", torch.device("cpu")) == "fast"
    assert resolve_scan("auto", torch.device("cuda")) == "parallel"
    assert resolve_scan("auto", torch.device("mps")) == "parallel"
    assert all(resolve_scan(s, torch.device("cuda")) == s for s in SCANS[1:])
    inputs = scan_inputs(2, 11, 3, 4, seed=9)
    y, h = selective_scan(**inputs)
    graph = []  # the default's graph holds the fast scan's single node, and no per-step nodes

    def walk(fn):
        if fn is not None and fn not in graph:
            graph.append(fn)
            for next_fn, _ in fn.next_functions:
                walk(next_fn)

    walk(y.grad_fn)
    names = [type(fn).__name__ for fn in graph]
    assert names.count("_LinearScanFastBackward") == 1 and "StackBackward0" not in names
    assert len(graph) < 40
    fast_y, fast_h = selective_scan_fast(**inputs)
    assert torch.equal(y, fast_y) and torch.equal(h, fast_h)
    # parallel=True/False, the older spelling, still picks the parallel scan and the readable loop
    assert torch.equal(selective_scan(**inputs, parallel=False)[0], selective_scan_sequential(**inputs)[0])
    assert torch.equal(selective_scan(**inputs, parallel=True)[0], selective_scan_parallel(**inputs)[0])
    with pytest.raises(ValueError, match="give scan or parallel, not both"):
        selective_scan(**inputs, scan="fast", parallel=True)
    with pytest.raises(ValueError, match=r"one of \('auto', 'fast', 'sequential', 'parallel'\); got 'blelloch'"):
        selective_scan(**inputs, scan="blelloch")


# ---- the benchmark's reference: a Blelloch scan with a hand-written backward ----------------------


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 8, 9, 31, 64, 100])
def test_blelloch_reference_equals_the_sequential_scan(T):
    """Powers of two and the lengths it pads; values and the gradients of a and b."""
    a, b, _ = linear_inputs(2, T, (3, 2), "cpu", seed=T, h0=False)
    weights = torch.randn(2, T, 3, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    want = linear_scan_sequential(a, b)
    got = linear_scan_blelloch(a, b)
    assert got.shape == (2, T, 3, 2)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for g, w in zip(torch.autograd.grad((got * weights).sum(), (a, b)),
                    torch.autograd.grad((want * weights).sum(), (a, b))):
        torch.testing.assert_close(g, w, rtol=1e-11, atol=1e-11)
    assert torch.autograd.gradcheck(linear_scan_blelloch, (a[:, :5], b[:, :5]))


def test_benchmark_inputs_lie_time_major_and_every_benchmarked_scan_agrees():
    a, b, grad = linear_scan_inputs(2, 37, 3, 4, seed=1)
    assert a.shape == b.shape == grad.shape == (2, 37, 3, 4)
    assert all(v.transpose(0, 1).is_contiguous() for v in (a, b, grad))
    assert 0.5 <= a.min() and a.max() < 1
    want = linear_scan_sequential(a, b)
    for name, scan in BENCHMARKED_SCANS.items():
        torch.testing.assert_close(scan(a, b), want, rtol=1e-5, atol=1e-5, msg=lambda m: f"{name}: {m}")


# ---- cost: linear in T, checked by counting, never by timing -----------------------------------


def linear_scan_cost(scan, T, count):
    a, b, _ = linear_inputs(2, T, (4, 3), "cpu", h0=False)
    a, b = a.float().detach().requires_grad_(), b.float().detach().requires_grad_()
    if count == "backward":
        return backward_elements(lambda: scan(a, b).sum())
    return saved_tensor_bytes(lambda: scan(a, b))


@pytest.mark.parametrize("scan", LINEAR_SCANS, ids=["sequential", "parallel", "fast"])
def test_backward_work_and_saved_memory_grow_linearly(scan):
    for count in ("backward", "saved"):
        ratio = linear_scan_cost(scan, 512, count) / linear_scan_cost(scan, 128, count)
        assert 3.6 < ratio < 4.4, (count, ratio)


def test_the_preallocated_loop_has_a_quadratic_backward():
    """The counter can tell: writing states into a preallocated tensor costs ~16x at 4x the length."""
    a, b, _ = linear_inputs(2, 17, (3,), "cpu", h0=False)
    torch.testing.assert_close(linear_scan_preallocated(a, b), linear_scan_sequential(a, b))
    ratio = linear_scan_cost(linear_scan_preallocated, 512, "backward") / linear_scan_cost(
        linear_scan_preallocated, 128, "backward")
    assert ratio > 12


@pytest.mark.parametrize("scan", SCANS[1:])
def test_selective_scan_backward_is_linear(scan):
    def work(T):
        inputs = scan_inputs(2, T, 4, 3)
        return backward_elements(lambda: selective_scan(**inputs, scan=scan)[0].sum())

    assert 3.6 < work(400) / work(100) < 4.4


def test_backward_elements_rejects_a_loss_without_graph():
    with pytest.raises(ValueError, match="scalar tensor that requires grad"):
        backward_elements(lambda: torch.ones(()))
    with pytest.raises(TypeError, match="callable"):
        backward_elements(3)


def test_tensor_operations_counts_what_reaches_the_kernels():
    """The readable loop dispatches a fixed number of operations per step; the fast loop about two
    (one addcmul each way) plus a constant: the count the state-space chapter prints."""
    def per_step(scan, T):
        a, b, _ = linear_inputs(2, T, (3,), "cpu", seed=T, h0=False)
        return tensor_operations(lambda: scan(a, b).sum().backward())

    x = torch.ones(3)
    assert tensor_operations(lambda: (x + 1) * 2) == 2
    assert per_step(linear_scan_sequential, 200) - per_step(linear_scan_sequential, 100) == 600  # 6 per step
    assert per_step(linear_scan_fast, 200) - per_step(linear_scan_fast, 100) == 200  # 2 per step
    with pytest.raises(TypeError, match="callable"):
        tensor_operations(3)


def test_timing_table_has_one_row_per_scan_and_ratios():
    timings = time_scans(16, 4, batch=1, channels=4, state_size=2, repeats=1,
                         scans=("sequential", "parallel", "preallocated"))
    assert sorted((t.scan, t.length) for t in timings) == sorted(
        (s, L) for s in ("sequential", "parallel", "preallocated") for L in (16, 64))
    assert all(t.forward > 0 and t.backward > 0 and t.work > 0 for t in timings)
    table = scan_table(timings).splitlines()
    assert len(table) == 4 and "bwd ratio" in table[0] and table[3].startswith("preallocated")
    with pytest.raises(ValueError, match="unknown scan"):
        time_scans(16, scans=("blelloch",))


def test_benchmark_command_and_s4d_mode_times(capsys):
    threads = torch.get_num_threads()
    assert main(["--length", "8", "--repeats", "1", "--batch", "1", "--channels", "2", "--state-size", "2",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "median of 1" in out and out.count(" ms") == 12 and "bwd work ratio" in out  # three scans, four timings each
    torch.set_num_threads(threads)
    times = s4d_mode_times((8, 32), batch=1, channels=2, state_size=4, repeats=1)
    assert set(times) == {"convolution", "recurrence"} and all(set(t) == {8, 32} for t in times.values())
    assert all(v > 0 for t in times.values() for v in t.values())


# ---- errors --------------------------------------------------------------------------------------


def test_clear_errors_on_bad_input():
    inputs = {k: v.detach() for k, v in scan_inputs(2, 5, 3, 4).items()}
    with pytest.raises(ValueError, match=r"x must be a float tensor of shape \(b, l, d\)"):
        selective_scan(**{**inputs, "x": inputs["x"][0]})
    with pytest.raises(ValueError, match=r"A must be .*shape \(d=3, n\)"):
        selective_scan(**{**inputs, "A": inputs["A"].T})
    with pytest.raises(ValueError, match=r"B must be .*\(b=2, l=5, n=4\)"):
        selective_scan(**{**inputs, "B": inputs["B"][:, :4]})
    with pytest.raises(TypeError, match="delta must have dtype torch.float32"):
        selective_scan(**{**inputs, "delta": inputs["delta"].double()})
    with pytest.raises(ValueError, match=r"h0 must be .*\(b=2, d=3, n=4\)"):
        selective_scan(**inputs, h0=torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="at least one time step"):
        selective_scan(**{k: (v[:, :0] if v.ndim == 3 else v) for k, v in inputs.items()})
    a = torch.rand(2, 4, 3)
    for scan in LINEAR_SCANS:
        with pytest.raises(ValueError, match="same shape"):
            scan(a, a[:, :3])
        with pytest.raises(ValueError, match=r"h0 must have the shape of one step, \(B, \.\.\.\) = \(2, 3\)"):
            scan(a, a, torch.zeros(2, 4))
        with pytest.raises(TypeError, match="floating-point"):
            scan(a.long(), a.long())
        with pytest.raises(ValueError, match="at least one time step"):
            scan(a[:, :0], a[:, :0])
