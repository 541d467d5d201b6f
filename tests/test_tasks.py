"""order_task: its construction, the exact reasons the baselines fail on it, and that an RNN learns it."""
from collections import Counter
from math import comb

import pytest
import torch
import torch.nn.functional as F

from seqcourse.models.rnn import RNN
from seqcourse.models.wrappers import Classifier
from seqcourse.data.tasks import TOKEN_A, TOKEN_B, order_task


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def marker_positions(ids):
    return (ids == TOKEN_A).int().argmax(1), (ids == TOKEN_B).int().argmax(1)


def test_shapes_dtypes_and_value_range():
    ids, labels = order_task(10, length=12, vocab_size=5, generator=gen())
    assert ids.shape == (10, 12) and labels.shape == (10,)
    assert ids.dtype == torch.long and labels.dtype == torch.long
    assert 0 <= ids.min() and ids.max() < 5
    assert set(labels.tolist()) <= {0, 1}


def test_exactly_one_a_and_one_b_and_the_label_is_their_order():
    ids, labels = order_task(500, generator=gen())
    assert ((ids == TOKEN_A).sum(1) == 1).all()
    assert ((ids == TOKEN_B).sum(1) == 1).all()
    pos_a, pos_b = marker_positions(ids)
    assert torch.equal(labels, (pos_a < pos_b).long())
    noise = ids[(ids != TOKEN_A) & (ids != TOKEN_B)]
    assert set(noise.tolist()) == set(range(2, 8))  # every noise id is used, and only those


def test_smallest_task_has_only_the_two_orders():
    ids, labels = order_task(20, length=2, vocab_size=3, generator=gen())
    for row, label in zip(ids.tolist(), labels.tolist()):
        assert row == ([TOKEN_A, TOKEN_B] if label == 1 else [TOKEN_B, TOKEN_A])


def test_every_example_has_its_mirror_with_the_opposite_label():
    ids, labels = order_task(600, length=8, vocab_size=4, generator=gen())
    swapped = ids.clone()
    swapped[ids == TOKEN_A], swapped[ids == TOKEN_B] = TOKEN_B, TOKEN_A
    originals = Counter(zip(map(tuple, ids.tolist()), labels.tolist()))
    mirrors = Counter(zip(map(tuple, swapped.tolist()), (1 - labels).tolist()))
    assert originals == mirrors


def test_both_classes_have_identical_token_counts():
    """Bag of words is at chance by construction: the multiset of bags is the same in each class."""
    ids, labels = order_task(1000, length=10, vocab_size=4, generator=gen())
    bags = [tuple(torch.bincount(row, minlength=4).tolist()) for row in ids]
    per_class = [Counter(b for b, y in zip(bags, labels.tolist()) if y == c) for c in (0, 1)]
    assert per_class[0] == per_class[1]
    assert labels.sum().item() == 500  # exactly balanced


def test_a_window_without_markers_carries_no_information():
    """When A and B both precede the last w tokens, each window occurs equally often with either
    label; such examples make up C(T-w, 2) / C(T, 2) of the task, which caps any window model."""
    T, w = 16, 4
    ids, labels = order_task(4000, length=T, generator=gen())
    window = ids[:, -w:]
    blind = ~((window == TOKEN_A) | (window == TOKEN_B)).any(1)
    counts = Counter((tuple(row), y) for row, y in zip(window[blind].tolist(), labels[blind].tolist()))
    assert all(counts[(row, 0)] == counts[(row, 1)] for row, _ in counts)
    assert abs(blind.double().mean().item() - comb(T - w, 2) / comb(T, 2)) < 0.03
    # With a marker in the window the window decides the label (B alone there: A came first).
    seen = {}
    for row, y in zip(window[~blind].tolist(), labels[~blind].tolist()):
        assert seen.setdefault(tuple(row), y) == y


def test_marker_positions_are_uniform():
    T = 12
    ids, labels = order_task(6000, length=T, generator=gen())
    for pos in marker_positions(ids):
        freq = torch.bincount(pos, minlength=T).double() / len(pos)
        assert (freq - 1 / T).abs().max() < 0.02


def test_same_generator_state_same_sample_and_seeds_differ():
    a = order_task(50, generator=gen(3))
    b = order_task(50, generator=gen(3))
    c = order_task(50, generator=gen(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    torch.manual_seed(5)
    d = order_task(50)
    torch.manual_seed(5)
    assert torch.equal(d[0], order_task(50)[0])  # generator=None follows torch's global seed


@pytest.mark.parametrize("n", [1, 7])
def test_odd_n(n):
    ids, labels = order_task(n, generator=gen())
    assert ids.shape == (n, 16)
    assert abs(2 * labels.sum().item() - n) == 1  # one example lacks its mirror


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n=0), ValueError, "n must be >= 1"),
        (dict(n=2.5), TypeError, "n must be an int"),
        (dict(n=4, length=1), ValueError, "length must be >= 2"),
        (dict(n=4, vocab_size=2), ValueError, "vocab_size must be >= 3"),
        (dict(n=4, generator=0), TypeError, "torch.Generator"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        order_task(**kwargs)


def test_small_rnn_learns_the_task(device, one_thread):
    V, H = 8, 16
    torch.manual_seed(0)
    model = Classifier(RNN(V, H), H, num_classes=2, vocab_size=V).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = gen(1)
    for _ in range(100):
        ids, labels = order_task(64, vocab_size=V, generator=g)
        loss = F.cross_entropy(model(ids.to(device)), labels.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    ids, labels = order_task(1000, vocab_size=V, generator=gen(2))
    with torch.no_grad():
        accuracy = (model(ids.to(device)).argmax(1).cpu() == labels).double().mean().item()
    assert accuracy > 0.9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA generator")
def test_gpu_generator_is_refused_with_advice():
    with pytest.raises(ValueError, match="CPU torch.Generator"):
        order_task(4, generator=torch.Generator(device="cuda"))
