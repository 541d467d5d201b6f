"""S4D: the initialisations; the kernel against the impulse response and against a real
(block-diagonal) system discretized by the matrix exponential; convolution mode = recurrent
mode = step() for random parameters and lengths (powers of two or not), with and without an
initial state, in values and gradients; the stacked core with the wrappers; clear errors."""
import math

import pytest
import torch

from seqcourse.ops.discretize import discretize
from seqcourse.models.s4d import S4D, S4DLayer, s4d_imaginary_parts
from seqcourse.models.wrappers import Classifier, LanguageModel

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def random_layer(H=3, N=8, init="inv", seed=0, device="cpu", dtype=F64):
    """A layer with every parameter perturbed, so no test relies on B = 1 or Re(A) = -1/2."""
    torch.manual_seed(seed)
    layer = S4DLayer(H, N, init=init, dt_min=0.01, dt_max=0.5)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return layer.to(device=device, dtype=dtype)


def test_initialisations():
    torch.testing.assert_close(s4d_imaginary_parts(8, "lin"), math.pi * torch.arange(4.0))
    N = 4  # inv: (N/π)(N/(2n+1) - 1) for n = 0, 1
    torch.testing.assert_close(s4d_imaginary_parts(N, "inv"), torch.tensor([N / math.pi * 3, N / math.pi / 3]))
    torch.manual_seed(0)
    layer = S4DLayer(64, 16, init="lin", dt_min=0.002, dt_max=0.2)
    assert torch.all(layer.A.real == -0.5) and torch.all(layer.B == 1)
    assert layer.delta.min() >= 0.002 and layer.delta.max() <= 0.2
    assert layer.delta.max() / layer.delta.min() > 20  # spread log-uniformly over the range
    assert layer.A.shape == layer.C.shape == (64, 8) and layer.D.shape == (64,)


def test_kernel_is_the_impulse_response_of_the_recurrence(device):
    layer = random_layer(device=device)
    T = 50
    impulse = torch.zeros(1, T, 3, dtype=F64, device=device)
    impulse[:, 0] = 1.0
    y, _ = layer.forward_recurrent(impulse)
    torch.testing.assert_close(layer.kernel(T), (y[0] - layer.D * impulse[0]).T, rtol=1e-11, atol=1e-12)


def test_kernel_matches_a_real_system_discretized_by_the_matrix_exponential():
    """Each complex mode a = -α + iω becomes the real block [[-α, -ω], [ω, -α]] on (Re h, Im h);
    y = 2 Re(C h) = 2 (Re C · Re h - Im C · Im h). Its ZOH by matrix_exp gives K_l = c Ā^l B̄."""
    layer = random_layer(H=1, N=6, init="lin", seed=1)
    with torch.no_grad():
        A, B, C, delta = (p.detach() for p in (layer.A[0], layer.B[0], layer.C[0], layer.delta[0]))
        delta = delta.item()
    M = len(A)
    A_real = torch.zeros(2 * M, 2 * M, dtype=F64)
    B_real = torch.zeros(2 * M, 1, dtype=F64)
    c = torch.zeros(2 * M, dtype=F64)
    for n in range(M):
        i = 2 * n
        A_real[i:i + 2, i:i + 2] = torch.tensor([[A[n].real, -A[n].imag], [A[n].imag, A[n].real]])
        B_real[i:i + 2, 0] = torch.tensor([B[n].real, B[n].imag])
        c[i:i + 2] = torch.tensor([2 * C[n].real, -2 * C[n].imag])
    A_bar, B_bar = discretize(A_real, B_real, delta)
    want = torch.stack([c @ torch.linalg.matrix_power(A_bar, l) @ B_bar[:, 0] for l in range(20)])
    torch.testing.assert_close(layer.kernel(20)[0].detach(), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("T", [1, 2, 7, 64, 100, 333])
@pytest.mark.parametrize("with_state", [False, True])
def test_convolution_equals_recurrence_equals_steps(device, T, with_state):
    layer = random_layer(H=4, N=8, init="inv" if T % 2 else "lin", seed=T, device=device)
    g = torch.Generator().manual_seed(T)
    x = torch.randn(2, T, 4, generator=g, dtype=F64).to(device)
    h0 = torch.randn(2, 4, 4, generator=g, dtype=torch.complex128).to(device) if with_state else None
    y_conv, h_conv = layer(x, h0)
    y_rec, h_rec = layer.forward_recurrent(x, h0)
    assert y_conv.shape == (2, T, 4) and h_conv.shape == (2, 4, 4) and not y_conv.is_complex()
    torch.testing.assert_close(y_conv, y_rec, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(h_conv, h_rec, rtol=1e-9, atol=1e-10)
    h, ys = h0, []
    for x_t in x.unbind(1):
        y_t, h = layer.step(x_t, h)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y_conv, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(h, h_conv, rtol=1e-9, atol=1e-10)


def test_the_two_modes_have_the_same_gradients(device):
    layer = random_layer(H=3, N=6, seed=2, device=device)
    x = torch.randn(2, 37, 3, dtype=F64, device=device, requires_grad=True)
    h0 = torch.randn(2, 3, 3, dtype=torch.complex128, device=device)
    grads = []
    for run in (layer.forward, layer.forward_recurrent):
        y, h = run(x, h0)
        loss = y.sin().sum() + h.abs().square().sum()
        grads.append(torch.autograd.grad(loss, [x, *layer.parameters()]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)


def test_float32_modes_agree(device):
    torch.manual_seed(3)
    layer = S4DLayer(16, 64).to(device)  # the default initialisation, in float32
    x = torch.randn(4, 1000, 16, device=device)
    y_conv, h_conv = layer(x)
    y_rec, h_rec = layer.forward_recurrent(x)
    torch.testing.assert_close(y_conv, y_rec, rtol=1e-3, atol=2e-4)
    torch.testing.assert_close(h_conv, h_rec, rtol=1e-3, atol=2e-4)


def test_core_chunks_and_steps_match_the_whole_sequence(device):
    torch.manual_seed(4)
    core = S4D(5, 8, state_size=8, num_layers=2).double().to(device)
    x = torch.randn(3, 23, 5, dtype=F64, device=device)
    out, state = core(x)
    assert out.shape == (3, 23, 8) and state.shape == (2, 3, 8, 4) and state.is_complex()
    first, s1 = core(x[:, :10])
    second, s2 = core(x[:, 10:], s1)
    torch.testing.assert_close(torch.cat([first, second], 1), out)
    torch.testing.assert_close(s2, state)
    s, ys = None, []
    for x_t in x.unbind(1):
        y_t, s = core.step(x_t, s)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), out)
    torch.testing.assert_close(s, state)


def test_wrappers_work_with_the_s4d_core(device):
    torch.manual_seed(5)
    lm = LanguageModel(S4D(7, 16, state_size=8), vocab_size=7, hidden_size=16).to(device)
    ids = torch.randint(0, 7, (2, 12), device=device)
    logits, state = lm(ids)
    assert logits.shape == (2, 12, 7)
    step_logits, s = [], None
    for t in range(12):
        out, s = lm.step(ids[:, t], s)
        step_logits.append(out)
    torch.testing.assert_close(torch.stack(step_logits, 1), logits, rtol=1e-4, atol=1e-5)
    sample = lm.sample(torch.tensor([1, 2, 3]), 6, generator=torch.Generator().manual_seed(0))
    assert sample.shape == (9,) and torch.equal(sample[:3], torch.tensor([1, 2, 3]))
    classifier = Classifier(S4D(7, 16, state_size=8), hidden_size=16, num_classes=3, vocab_size=7).to(device)
    assert classifier(ids).shape == (2, 3)


def test_clear_errors():
    with pytest.raises(ValueError, match="state_size N must be even"):
        S4DLayer(4, 7)
    with pytest.raises(ValueError, match="init must be one of"):
        S4DLayer(4, 8, init="hippo")
    with pytest.raises(ValueError, match="dt_min must be <= dt_max"):
        S4DLayer(4, 8, dt_min=0.5, dt_max=0.1)
    layer = S4DLayer(4, 8)
    with pytest.raises(ValueError, match=r"x must be a float32 tensor of shape \(B, T, H=4\).*unsqueeze\(0\)"):
        layer(torch.randn(10, 4))
    with pytest.raises(TypeError, match="x must have dtype torch.float32"):
        layer(torch.randn(1, 10, 4, dtype=F64))
    with pytest.raises(ValueError, match="at least one time step"):
        layer(torch.randn(1, 0, 4))
    with pytest.raises(ValueError, match=r"state must be a complex64 tensor of shape \(B=2, H=4, N/2=4\)"):
        layer(torch.randn(2, 5, 4), torch.zeros(2, 4, 8, dtype=torch.complex64))
    with pytest.raises(TypeError, match="state must have dtype torch.complex64"):
        layer.step(torch.randn(2, 4), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="T must be >= 1"):
        layer.kernel(0)
    core = S4D(3, 4, state_size=8, num_layers=2)
    with pytest.raises(ValueError, match=r"x must be a float32 tensor of shape \(B, T, D=3\)"):
        core(torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match=r"state must be .*\(L=2, B=2, H=4, N/2=4\)"):
        core(torch.randn(2, 5, 3), torch.zeros(1, 2, 4, 4, dtype=torch.complex64))
