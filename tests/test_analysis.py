"""saved_tensor_bytes counts exactly what autograd keeps for backward; peak_tensor_bytes the most
bytes that tensors created by a computation hold at one time."""
import pytest
import torch

from seqcourse.measure.analysis import peak_tensor_bytes, saved_tensor_bytes
from seqcourse.models.rnn import RNN


def test_product_saves_both_factors_exactly(device):
    a = torch.randn(100, device=device, requires_grad=True)  # 400 bytes
    b = torch.randn(100, dtype=torch.float64, device=device, requires_grad=True)  # 800 bytes
    # a*b saves a and b for its backward; sum saves no tensor (only a shape).
    assert saved_tensor_bytes(lambda: (a * b).sum()) == 400 + 800


def test_shared_storage_counted_once():
    a = torch.randn(50, requires_grad=True)
    assert saved_tensor_bytes(lambda: (a * a).sum()) == 200
    # w * row needs only the row for w's gradient (the rows need none). Two rows of one buffer
    # keep the whole buffer (10 x 10 float32) alive: counted once, in full.
    base = torch.randn(10, 10)
    w = torch.randn(10, requires_grad=True)
    assert saved_tensor_bytes(lambda: (w * base[0]).sum() + (w * base[1]).sum()) == 400


def test_nothing_saved_without_grad():
    a = torch.randn(100, requires_grad=True)
    with torch.no_grad():
        assert saved_tensor_bytes(lambda: (a * a).sum()) == 0
    assert saved_tensor_bytes(lambda: torch.randn(10) * torch.randn(10)) == 0
    # Addition needs no saved tensor for its backward.
    assert saved_tensor_bytes(lambda: (a + 1).sum()) == 0


def test_rnn_training_memory_grows_linearly_in_t(device):
    torch.manual_seed(0)
    model = RNN(4, 32).to(device)

    def measure(t):
        x = torch.randn(8, t, 4, device=device)
        return saved_tensor_bytes(lambda: model(x)[0].sum())

    m1, m2, m4 = measure(64), measure(128), measure(256)
    assert m2 / m1 == pytest.approx(2, rel=0.05)
    assert m4 / m2 == pytest.approx(2, rel=0.05)
    # The increment per step is the same: a constant plus a per-step cost.
    assert (m4 - m2) == 2 * (m2 - m1)


def test_rejects_non_callable():
    for measure in (saved_tensor_bytes, peak_tensor_bytes):
        with pytest.raises(TypeError, match=r"fn must be a callable taking no arguments; got Tensor"):
            measure(torch.zeros(3))


def test_peak_counts_new_storages_while_they_live():
    assert peak_tensor_bytes(lambda: torch.zeros(1000)) == 4000
    assert peak_tensor_bytes(lambda: torch.zeros(10, dtype=torch.float64)) == 80
    # ones, then ones * 2 while the ones live (8000); the ones die, the sum joins the product (8000)
    assert peak_tensor_bytes(lambda: torch.ones(1000) * 2 + 1) == 8000

    def three_alive():
        a, b = torch.ones(1000), torch.ones(1000)
        return a, b, a + b

    assert peak_tensor_bytes(three_alive) == 12000

    def one_at_a_time():
        for _ in range(5):
            torch.ones(1000)

    assert peak_tensor_bytes(one_at_a_time) == 4000


def test_peak_ignores_earlier_tensors_views_and_in_place_results():
    x = torch.randn(1000)
    assert peak_tensor_bytes(lambda: x + 1) == 4000  # x existed before: only the result counts
    assert peak_tensor_bytes(lambda: (x.view(10, 100), x[::2], x.t())) == 0  # views share x's storage

    def in_place():
        y = x.clone()  # 4000
        y.mul_(2).add_(1)  # the same storage
        return y.view(-1)[:10]

    assert peak_tensor_bytes(in_place) == 4000


def test_peak_of_a_matrix_chain_is_its_largest_pair_and_is_reproducible():
    a = torch.randn(64, 8)
    # (64, 64) scores = 16384 bytes, then their softmax beside them, then (64, 8) out beside the softmax

    def fn():
        return torch.softmax(a @ a.T, dim=-1) @ a

    assert peak_tensor_bytes(fn) == 2 * 64 * 64 * 4
    assert peak_tensor_bytes(fn) == peak_tensor_bytes(fn)
