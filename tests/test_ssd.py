"""State-space duality: the attention form M x equals the course's scan (and Mamba's selective scan
with a scalar A) in float64 for several shapes; the mask against explicit products; a_t = 1 is
unnormalised causal linear attention, and the course's (normalised) LinearAttention is the ratio of
two such sums; the multiplication counts against a count of what the operations do; clear errors."""
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from seqcourse.models.long_context import LinearAttention, elu_feature_map
from seqcourse.ops.scan import selective_scan
from seqcourse.ops.ssd import decay_mask, ssd_attention, ssd_matrix, ssd_multiplications, ssd_scan

F64 = torch.float64

pytestmark = pytest.mark.usefixtures("one_thread")


def inputs(b, T, n, d, seed=0, low=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, T, d, generator=g, dtype=F64), low + (1 - low) * torch.rand(b, T, generator=g, dtype=F64),
            torch.randn(b, T, n, generator=g, dtype=F64), torch.randn(b, T, n, generator=g, dtype=F64))


@pytest.mark.parametrize("b, T, n, d", [(1, 1, 1, 1), (2, 7, 3, 5), (3, 50, 8, 4), (1, 129, 16, 16), (2, 33, 4, 4)])
def test_attention_form_equals_the_scan(b, T, n, d):
    x, a, B, C = inputs(b, T, n, d, seed=T)
    y = ssd_attention(x, a, B, C)
    assert y.shape == (b, T, d) and y.dtype == F64
    torch.testing.assert_close(y, ssd_scan(x, a, B, C), rtol=0, atol=1e-12)


def test_mask_is_the_product_of_the_decays_between_the_steps():
    a = torch.rand(2, 9, generator=torch.Generator().manual_seed(3), dtype=F64)
    L = decay_mask(a)
    for i in range(9):
        for j in range(9):
            expected = math.prod(a[:, k] for k in range(j + 1, i + 1)) if i >= j else torch.zeros(2, dtype=F64)
            torch.testing.assert_close(L[:, i, j], torch.as_tensor(expected, dtype=F64).expand(2), rtol=1e-13, atol=0)


def test_mask_keeps_its_precision_over_long_products():
    """Entries far below the diagonal are products of hundreds of decays; each is a sum of its own logs,
    so float32 gives the float64 value to float32 precision (a ratio of cumulative products would not)."""
    a = 0.5 + 0.5 * torch.rand(1, 600, generator=torch.Generator().manual_seed(4), dtype=F64)
    L32, L64 = decay_mask(a.float()), decay_mask(a)
    assert L64[0, -1, 0] < 1e-60  # underflows float32 to 0 ...
    near = L64 > 1e-30  # ... but where float32 can hold it, it agrees to 1e-4 relative
    torch.testing.assert_close(L32.double()[near], L64[near], rtol=1e-4, atol=0)
    assert decay_mask(torch.zeros(1, 3, dtype=F64)).equal(torch.eye(3, dtype=F64).unsqueeze(0))  # a_t = 0: memoryless


def test_equals_mambas_selective_scan_with_a_scalar_A():
    """Mamba with A = -1 in every channel and mode and one Δ_t per step shared by the channels:
    Ā_t = exp(-Δ_t) is a scalar decay, and B̄_t x_t = Δ_t B_t x_t puts Δ_t on the inputs."""
    b, T, n, d = 2, 40, 6, 3
    x, _, B, C = inputs(b, T, n, d, seed=5)
    delta = 0.01 + torch.rand(b, T, generator=torch.Generator().manual_seed(6), dtype=F64)
    for scan in ("sequential", "parallel", "fast"):
        y, _ = selective_scan(x, delta.unsqueeze(-1).expand(b, T, d).contiguous(), -torch.ones(d, n, dtype=F64), B, C,
                              scan=scan)
        torch.testing.assert_close(ssd_attention(delta.unsqueeze(-1) * x, torch.exp(-delta), B, C), y, rtol=0, atol=1e-12)


def test_no_decay_is_unnormalised_causal_linear_attention():
    b, T, n, d = 2, 12, 4, 3
    v, _, k, q = inputs(b, T, n, d, seed=7)
    expected = torch.stack([sum((q[:, t] * k[:, j]).sum(-1, keepdim=True) * v[:, j] for j in range(t + 1))
                            for t in range(T)], dim=1)
    ones = torch.ones(b, T, dtype=F64)
    torch.testing.assert_close(ssd_attention(v, ones, k, q), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(ssd_matrix(ones, k, q), (q @ k.transpose(1, 2)).tril(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n_heads", [1, 2])
def test_the_course_linear_attention_is_a_ratio_of_two_decay_free_ssds(n_heads):
    """LinearAttention computes φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + eps): the numerator is SSD with a = 1,
    C = φ(q), B = φ(k), x = v; the normaliser is the same SSD applied to a column of ones."""
    torch.manual_seed(0)
    H, T = 6, 10
    attention = LinearAttention(H, n_heads).double()
    with torch.no_grad():  # read the heads straight out: W_o = I, b_o = 0
        attention.W_o.copy_(torch.eye(H, dtype=F64))
        attention.b_o.zero_()
        attention.b_qkv.normal_()
    x = torch.randn(2, T, H, dtype=F64)
    out, _ = attention(x)
    q, k, v = torch.nn.functional.linear(x, attention.W_qkv, attention.b_qkv).split(H, dim=-1)
    hs, ones = H // n_heads, torch.ones(2, T, dtype=F64)
    for h in range(n_heads):
        cols = slice(h * hs, (h + 1) * hs)
        fq, fk = elu_feature_map(q[..., cols]), elu_feature_map(k[..., cols])
        numerator = ssd_attention(v[..., cols], ones, fk, fq)
        normaliser = ssd_attention(torch.ones(2, T, 1, dtype=F64), ones, fk, fq)
        torch.testing.assert_close(out[..., cols], numerator / (normaliser + attention.eps), rtol=0, atol=1e-12)


class CountMultiplications(TorchDispatchMode):
    """Multiplications done by the operations below autograd: the elements an elementwise multiply
    writes, and m·k·p for each (m, k) @ (k, p) matrix product in a batched or plain matmul."""

    def __init__(self):
        super().__init__()
        self.count, self.unknown = 0, set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in ("mul", "mul_"):
            self.count += out.numel()
        elif name in ("mm", "bmm"):
            self.count += out.numel() * args[0].shape[-1]
        elif name in ("addmm", "baddbmm", "addcmul", "einsum", "dot", "matmul"):
            self.unknown.add(name)
        return out


@pytest.mark.parametrize("b, T, n, d", [(1, 16, 4, 3), (2, 33, 8, 5)])
def test_multiplication_counts_are_what_the_two_forms_do(b, T, n, d):
    x, a, B, C = inputs(b, T, n, d, seed=8)
    expected = ssd_multiplications(T, n, d)
    for form, fn in (("attention", ssd_attention), ("scan", ssd_scan)):
        with CountMultiplications() as counter:
            fn(x, a, B, C)
        assert not counter.unknown
        assert counter.count == b * expected[form], form
    assert ssd_multiplications(1024, 16, 16) == {"attention": 1024**2 * 33, "scan": 3 * 1024 * 256}


def test_errors_name_what_was_expected():
    x, a, B, C = inputs(1, 5, 2, 3)
    with pytest.raises(ValueError, match=r"a must be a float tensor of shape \(b, T\)"):
        ssd_attention(x, a[0], B, C)
    with pytest.raises(ValueError, match="decays a_t >= 0"):
        ssd_scan(x, -a, B, C)
    with pytest.raises(ValueError, match="decays a_t >= 0"):
        decay_mask(torch.full((1, 3), float("nan")))
    with pytest.raises(ValueError, match=r"C must be a float64 tensor of shape \(b=1, T=5, n=2\)"):
        ssd_matrix(a, B, C[..., :1])
    with pytest.raises(TypeError, match="x must have dtype torch.float64"):
        ssd_attention(x.float(), a, B, C)
    with pytest.raises(ValueError, match="at least one time step"):
        decay_mask(torch.ones(1, 0))
    with pytest.raises(ValueError, match="T must be >= 1"):
        ssd_multiplications(0, 1, 1)
