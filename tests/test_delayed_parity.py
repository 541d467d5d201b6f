"""delayed_parity: the targets follow y_t = b_t XOR b_(t-lag), the first lag steps are ignored, the
bits are balanced, draws are reproducible, and a model that cannot see b_(t-lag) is at chance."""
import pytest
import torch
import torch.nn.functional as F

from seqcourse.data.tasks import IGNORE_INDEX, delayed_parity


def test_targets_are_the_xor_of_bits_lag_apart():
    bits, targets = delayed_parity(64, 20, 7, generator=torch.Generator().manual_seed(0))
    assert bits.shape == targets.shape == (64, 20) and bits.dtype == targets.dtype == torch.long
    assert set(bits.unique().tolist()) == {0, 1}
    assert (targets[:, :7] == IGNORE_INDEX).all()
    for t in range(7, 20):
        assert torch.equal(targets[:, t], (bits[:, t] + bits[:, t - 7]) % 2)


def test_bits_are_fair_and_independent_of_the_current_bit():
    bits, targets = delayed_parity(4000, 30, 5, generator=torch.Generator().manual_seed(1))
    scored = targets[:, 5:]
    assert abs(bits.float().mean().item() - 0.5) < 0.01
    # The best guess from the current bit alone (or from any bits but b_(t-lag)) is a coin flip.
    agree = (scored == bits[:, 5:]).float().mean().item()
    assert abs(agree - 0.5) < 0.01


def test_ignored_steps_drop_out_of_the_loss():
    bits, targets = delayed_parity(3, 6, 4, generator=torch.Generator().manual_seed(2))
    logits = torch.randn(3, 6, 2)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    expected = F.cross_entropy(logits[:, 4:].flatten(0, 1), targets[:, 4:].flatten())
    torch.testing.assert_close(loss, expected)


def test_same_generator_state_same_draw():
    a = delayed_parity(5, 12, 3, generator=torch.Generator().manual_seed(3))
    b = delayed_parity(5, 12, 3, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_bad_arguments():
    with pytest.raises(ValueError, match="length must be >= 6"):
        delayed_parity(2, 5, 5)
    with pytest.raises(ValueError, match="lag must be >= 1"):
        delayed_parity(2, 5, 0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        delayed_parity(2, 5, 1, generator=0)
