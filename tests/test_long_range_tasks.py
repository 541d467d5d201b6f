"""adding_problem and copy_task: their construction, their baselines, and reproducibility."""
import math

import pytest
import torch

from seqcourse.data.tasks import BLANK, adding_baseline_mse, adding_problem, copy_baseline, copy_task


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_adding_problem_construction():
    x, y = adding_problem(500, 11, generator=gen())
    assert x.shape == (500, 11, 2) and y.shape == (500,)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    assert (markers.sum(1) == 2).all()
    # One marker in the first half {0..4}, one in the second {5..10}.
    assert (markers[:, :5].sum(1) == 1).all() and (markers[:, 5:].sum(1) == 1).all()
    # The target is the sum of the two marked values (computed here by a loop over examples).
    for i in range(0, 500, 37):
        marked = [values[i, t].item() for t in range(11) if markers[i, t] == 1]
        assert y[i].item() == pytest.approx(sum(marked), abs=1e-6)
    # Both markers' positions cover their whole halves.
    first = markers[:, :5].argmax(1)
    second = markers[:, 5:].argmax(1) + 5
    assert set(first.tolist()) == set(range(5)) and set(second.tolist()) == set(range(5, 11))


def test_adding_baseline_is_the_variance_of_y():
    assert adding_baseline_mse() == pytest.approx(1 / 6)
    _, y = adding_problem(200_000, 4, generator=gen(1))
    assert ((y - 1.0) ** 2).mean().item() == pytest.approx(adding_baseline_mse(), rel=0.01)
    assert y.mean().item() == pytest.approx(1.0, abs=0.005)


def test_copy_task_construction():
    inputs, targets = copy_task(300, delay=7, n_symbols=5, copy_length=3, generator=gen(2))
    T = 2 * 3 + 7
    assert inputs.shape == targets.shape == (300, T)
    assert inputs.dtype == targets.dtype == torch.long
    symbols = inputs[:, :3]
    assert ((symbols >= 1) & (symbols <= 5)).all()
    assert set(symbols.unique().tolist()) == {1, 2, 3, 4, 5}
    delimiter = 5 + 1
    assert (inputs[:, 3 + 7 - 1] == delimiter).all()
    rest = torch.cat([inputs[:, 3:3 + 7 - 1], inputs[:, 3 + 7:]], dim=1)
    assert (rest == BLANK).all()
    assert (targets[:, :T - 3] == BLANK).all()
    assert torch.equal(targets[:, T - 3:], symbols)
    # The delimiter comes right before the recall: the last S steps answer it.
    assert (inputs[:, T - 3 - 1] == delimiter).all()


def test_copy_baseline_matches_a_memoryless_predictor():
    delay, K, S = 6, 4, 2
    base = copy_baseline(delay, K, S)
    assert base["recall_accuracy"] == pytest.approx(1 / K)
    assert base["cross_entropy"] == pytest.approx(S * math.log(K) / (2 * S + delay))
    # The memoryless predictor: blank with probability 1 before the recall, uniform over the
    # symbols during it. Its mean cross-entropy on a sample equals the formula.
    inputs, targets = copy_task(50, delay, K, S, generator=gen(3))
    T = inputs.shape[1]
    logits = torch.full((50, T, K + 2), -1e9)
    logits[:, :T - S, BLANK] = 0.0
    logits[:, T - S:, 1:K + 1] = 0.0
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, K + 2), targets.reshape(-1))
    assert ce.item() == pytest.approx(base["cross_entropy"], rel=1e-5)


def test_reproducible_and_validated():
    a = adding_problem(4, 6, generator=gen(4))
    b = adding_problem(4, 6, generator=gen(4))
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    c = copy_task(4, 3, generator=gen(5))
    d = copy_task(4, 3, generator=gen(5))
    assert all(torch.equal(p, q) for p, q in zip(c, d))
    assert copy_task(4, 3)[0].shape == (4, 23)  # defaults S = 10, K = 8
    with pytest.raises(ValueError, match="length must be >= 2"):
        adding_problem(3, 1)
    with pytest.raises(ValueError, match="delay must be >= 1"):
        copy_task(3, 0)
    with pytest.raises(TypeError, match="generator"):
        adding_problem(3, 5, generator=0)
    with pytest.raises(TypeError, match="int"):
        copy_baseline(2.5)
