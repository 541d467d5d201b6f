"""saved_tensor_bytes counts exactly what autograd keeps for backward."""
import pytest
import torch

from seqcourse.analysis import saved_tensor_bytes
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
    with pytest.raises(TypeError, match=r"fn must be a callable taking no arguments; got Tensor"):
        saved_tensor_bytes(torch.zeros(3))
