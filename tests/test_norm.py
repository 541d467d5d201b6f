"""LayerNorm and RMSNorm from their equations against torch.nn.LayerNorm / torch.nn.RMSNorm with
copied weights (outputs and gradients), the statistics they promise, and their input checks."""
import pytest
import torch

from seqcourse.models.norm import LayerNorm, RMSNorm

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


def _random_affine(ours, theirs, d, device):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            p.copy_(torch.randn(d, generator=g, dtype=F64).to(device))
    ours.load_state_dict(theirs.state_dict())


@pytest.mark.parametrize("eps", [1e-5, 0.5])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(7,), (3, 7), (2, 4, 7)])
def test_layernorm_matches_torch_outputs_and_gradients(eps, affine, shape, device):
    d = shape[-1]
    theirs = torch.nn.LayerNorm(d, eps=eps, elementwise_affine=affine).to(device, F64)
    ours = LayerNorm(d, eps=eps, elementwise_affine=affine).to(device, F64)
    if affine:
        _random_affine(ours, theirs, d, device)
    x = (3 * torch.randn(shape, dtype=F64) + 2).to(device)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), theirs(x2)
    torch.testing.assert_close(y1, y2)
    weights = torch.randn(shape, dtype=F64).to(device)
    (y1 * weights).sum().backward()
    (y2 * weights).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    if affine:
        torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)
        torch.testing.assert_close(ours.bias.grad, theirs.bias.grad)


def test_layernorm_output_has_zero_mean_and_unit_variance_without_affine():
    x = 5 * torch.randn(4, 6, 16, dtype=F64) - 3
    y = LayerNorm(16, eps=1e-12, elementwise_affine=False)(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(4, 6, dtype=F64))
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(4, 6, dtype=F64))


def test_layernorm_state_dict_is_interchangeable_with_torch():
    ours, theirs = LayerNorm(5), torch.nn.LayerNorm(5)
    assert set(ours.state_dict()) == set(theirs.state_dict()) == {"weight", "bias"}
    assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)


@pytest.mark.parametrize("eps", [1e-6, 0.3])
def test_rmsnorm_matches_torch_outputs_and_gradients(eps, device):
    d = 9
    theirs = torch.nn.RMSNorm(d, eps=eps).to(device, F64)
    ours = RMSNorm(d, eps=eps).to(device, F64)
    _random_affine(ours, theirs, d, device)
    x = (2 * torch.randn(3, 5, d, dtype=F64) + 1).to(device)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), theirs(x2)
    torch.testing.assert_close(y1, y2)
    y1.pow(3).sum().backward()
    y2.pow(3).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)


def test_rmsnorm_does_not_centre():
    """A constant vector keeps its sign under RMSNorm; LayerNorm sends it to zero."""
    x = torch.full((1, 8), 3.0, dtype=F64)
    torch.testing.assert_close(RMSNorm(8, eps=0.0 + 1e-12).double()(x), torch.ones(1, 8, dtype=F64))
    torch.testing.assert_close(LayerNorm(8).double()(x), torch.zeros(1, 8, dtype=F64))


@pytest.mark.parametrize("cls", [LayerNorm, RMSNorm])
def test_errors_name_the_expected_shape_and_dtype(cls):
    norm = cls(4)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., d=4\); got shape \(2, 3\), whose last dimension is 3"):
        norm(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="x must be a float tensor of shape \\(\\.\\.\\., d=4\\); got list"):
        norm([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="0-dimensional"):
        norm(torch.tensor(1.0))
    with pytest.raises(TypeError, match="dtype torch.float32"):
        norm(torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating-point"):
        LayerNorm(4, elementwise_affine=False)(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="normalized_shape must be >= 1"):
        cls(0)
    with pytest.raises(ValueError, match="eps must be > 0"):
        cls(4, eps=0.0)
