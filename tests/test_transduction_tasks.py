"""reverse_task (the seq2seq transduction task) and lookahead_parity (the tagging task whose label
depends on the future): their construction, token conventions, and the claim that a left-to-right
tagger is at chance on lookahead_parity while a bidirectional one solves it."""
import pytest
import torch
import torch.nn.functional as F

from seqcourse.models.bidirectional import Bidirectional, Tagger
from seqcourse.models.gated import GRU
from seqcourse.data.tasks import BOS, EOS, FIRST_SYMBOL, IGNORE_INDEX, PAD, lookahead_parity, reverse_task
from seqcourse.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_reverse_task_targets_are_the_reversed_source_then_eos():
    src, tgt_in, tgt_out = reverse_task(300, 7, vocab_size=9, min_length=2, generator=gen())
    assert src.shape == (300, 7) and tgt_in.shape == tgt_out.shape == (300, 8)
    assert src.dtype == tgt_in.dtype == tgt_out.dtype == torch.long
    lengths = (src != PAD).sum(1)
    assert lengths.min() == 2 and lengths.max() == 7  # both ends of [min_length, length] occur
    for row_src, row_in, row_out, n in zip(src, tgt_in, tgt_out, lengths.tolist()):
        symbols = row_src[:n].tolist()
        assert all(FIRST_SYMBOL <= s < 9 for s in symbols)
        assert (row_src[n:] == PAD).all()  # right padding only
        assert row_out.tolist() == symbols[::-1] + [EOS] + [PAD] * (7 - n)
        assert row_in.tolist() == [BOS] + symbols[::-1] + [PAD] * (7 - n)  # tgt_out shifted right


def test_reverse_task_defaults_to_full_length_and_is_reproducible():
    src, tgt_in, tgt_out = reverse_task(50, 4, generator=gen(3))
    assert (src != PAD).all() and (tgt_out[:, -1] == EOS).all() and (tgt_in[:, 0] == BOS).all()
    assert set(src.unique().tolist()) == set(range(FIRST_SYMBOL, 12))  # default vocab_size=12
    again = reverse_task(50, 4, generator=gen(3))
    assert all(torch.equal(a, b) for a, b in zip((src, tgt_in, tgt_out), again))


def test_reverse_task_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size must be >= 4"):
        reverse_task(2, 3, vocab_size=3)
    with pytest.raises(ValueError, match="min_length must be <= 3"):
        reverse_task(2, 3, min_length=4)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        reverse_task(2, 3, generator=0)


def test_lookahead_parity_is_the_xor_with_the_bit_ahead():
    bits, targets = lookahead_parity(200, 9, lag=3, generator=gen())
    assert bits.shape == targets.shape == (200, 9) and bits.dtype == targets.dtype == torch.long
    assert (targets[:, -3:] == IGNORE_INDEX).all()
    assert torch.equal(targets[:, :-3], bits[:, :-3] ^ bits[:, 3:])
    with pytest.raises(ValueError, match="length must be >= 4"):
        lookahead_parity(2, 3, lag=3)


def test_lookahead_parity_label_is_independent_of_the_past():
    """y_t agrees with any function of b_0..b_t half of the time; here: with b_t itself and with b_{t-1}."""
    bits, targets = lookahead_parity(20000, 6, lag=1, generator=gen(1))
    y = targets[:, 1:-1]
    for past in (bits[:, 1:-1], bits[:, :-2]):
        assert abs((y == past).float().mean().item() - 0.5) < 0.01


def _tag_loss(model, ids, y):
    return F.cross_entropy(model(ids).flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)


def _tag_accuracy(model, lag):
    ids, y = lookahead_parity(500, 10, lag, generator=gen(9))
    with torch.no_grad():
        pred = model(ids).argmax(-1)
    keep = y != IGNORE_INDEX
    return (pred[keep] == y[keep]).float().mean().item()


def test_bidirectional_tagger_solves_it_and_a_left_to_right_one_cannot():
    results = {}
    for name, core in (("left-to-right", GRU(2, 16)), ("bidirectional", Bidirectional(GRU(2, 8), GRU(2, 8)))):
        torch.manual_seed(0)
        model = Tagger(core, 2, num_tags=2)
        g = gen(2)
        train(model, lambda step: lookahead_parity(32, 10, 1, g), _tag_loss, steps=120, lr=1e-2,
              progress=False, device="cpu")
        results[name] = _tag_accuracy(model, 1)
    assert results["bidirectional"] > 0.95
    assert abs(results["left-to-right"] - 0.5) < 0.06
