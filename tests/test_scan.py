"""The two scans compute the same function (values and gradients), agree with the definition and,
with input-independent parameters, with a convolution; their backward is linear in T (counted, not
timed); and bad input gives clear errors."""
import pytest
import torch

from seqcourse.analysis import saved_tensor_bytes
from seqcourse.bench_scan import (
    backward_elements,
    linear_scan_preallocated,
    main,
    s4d_mode_times,
    scan_inputs,
    scan_table,
    time_scans,
)
from seqcourse.scan import (
    linear_scan_parallel,
    linear_scan_sequential,
    selective_scan,
    selective_scan_parallel,
    selective_scan_sequential,
)

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
    for scan in (linear_scan_sequential, linear_scan_parallel):
        got = scan(a, b, h0)
        assert got.shape == (2, T, 3, 4)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        for g_got, g_want in zip(torch.autograd.grad((got * weights).sum(), (a, b, h0)), grads_expected):
            torch.testing.assert_close(g_got, g_want, rtol=1e-11, atol=1e-11)


def test_linear_scans_start_from_zero_without_h0(device):
    a, b, _ = linear_inputs(3, 9, (2,), device, h0=False)
    zero = torch.zeros(3, 2, dtype=F64, device=device)
    for scan in (linear_scan_sequential, linear_scan_parallel):
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
        for scan in (selective_scan_sequential, selective_scan_parallel):
            y, h = scan(**inputs, h0=h0)
            torch.testing.assert_close(y, want_y, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(h, want_h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("T", [1, 7, 64, 100])
def test_selective_scans_agree_in_values_and_gradients(device, T):
    inputs = {k: v.detach().to(device).requires_grad_() for k, v in scan_inputs(2, T, 5, 3, dtype=F64, seed=T).items()}
    h0 = torch.randn(2, 5, 3, dtype=F64, generator=torch.Generator().manual_seed(0)).to(device).requires_grad_()
    results = []
    for scan in (selective_scan_sequential, selective_scan_parallel):
        y, h = scan(**inputs, h0=h0)
        loss = y.sin().sum() + h.square().sum()
        results.append((y, h, torch.autograd.grad(loss, [*inputs.values(), h0])))
    (y1, h1, g1), (y2, h2, g2) = results
    torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h1, h2, rtol=1e-12, atol=1e-12)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_float32_scans_agree_to_float32_precision(device):
    inputs = {k: v.detach().to(device) for k, v in scan_inputs(4, 333, 16, 8, seed=5).items()}
    y1, h1 = selective_scan_sequential(**inputs)
    y2, h2 = selective_scan_parallel(**inputs)
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


# ---- cost: linear in T, checked by counting, never by timing -----------------------------------


def linear_scan_cost(scan, T, count):
    a, b, _ = linear_inputs(2, T, (4, 3), "cpu", h0=False)
    a, b = a.float().detach().requires_grad_(), b.float().detach().requires_grad_()
    if count == "backward":
        return backward_elements(lambda: scan(a, b).sum())
    return saved_tensor_bytes(lambda: scan(a, b))


@pytest.mark.parametrize("scan", [linear_scan_sequential, linear_scan_parallel], ids=["sequential", "parallel"])
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


@pytest.mark.parametrize("parallel", [False, True])
def test_selective_scan_backward_is_linear(parallel):
    def work(T):
        inputs = scan_inputs(2, T, 4, 3)
        return backward_elements(lambda: selective_scan(**inputs, parallel=parallel)[0].sum())

    assert 3.6 < work(400) / work(100) < 4.4


def test_backward_elements_rejects_a_loss_without_graph():
    with pytest.raises(ValueError, match="scalar tensor that requires grad"):
        backward_elements(lambda: torch.ones(()))
    with pytest.raises(TypeError, match="callable"):
        backward_elements(3)


def test_timing_table_has_one_row_per_scan_and_ratios():
    timings = time_scans(16, 4, batch=1, channels=4, state_size=2, repeats=1,
                         scans=("sequential", "parallel", "preallocated"))
    assert sorted((t.scan, t.length) for t in timings) == sorted(
        (s, L) for s in ("sequential", "parallel", "preallocated") for L in (16, 64))
    assert all(t.forward > 0 and t.backward > 0 and t.work > 0 for t in timings)
    table = scan_table(timings).splitlines()
    assert len(table) == 4 and "bwd ratio" in table[0] and table[3].startswith("preallocated")
    with pytest.raises(ValueError, match="unknown scan"):
        time_scans(16, scans=("fast",))


def test_benchmark_command_and_s4d_mode_times(capsys):
    threads = torch.get_num_threads()
    assert main(["--length", "8", "--repeats", "1", "--batch", "1", "--channels", "2", "--state-size", "2",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "median of 1" in out and out.count(" ms") == 8 and "bwd work ratio" in out  # two scans, four timings each
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
    with pytest.raises(ValueError, match="same shape"):
        linear_scan_parallel(a, a[:, :3])
    with pytest.raises(ValueError, match=r"h0 must have the shape of one step, \(B, \.\.\.\) = \(2, 3\)"):
        linear_scan_sequential(a, a, torch.zeros(2, 4))
    with pytest.raises(TypeError, match="floating-point"):
        linear_scan_sequential(a.long(), a.long())
