"""Associative recall: the task's construction, the outer-product memory's crosstalk against a
direct computation, the state counts per family, and that one attention layer learns the task."""
import pytest
import torch

from seqcourse.measure import comparison as cmp
from seqcourse.measure.recall import N_KEYS, N_VALUES, outer_product_recall, recall_scores, state_floats
from seqcourse.data.tasks import IGNORE_INDEX, associative_recall

K, V = 10, 6


def draw(n=50, pairs=5, seed=0):
    return associative_recall(n, pairs, K, V, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_the_one_hot_layout():
    x, targets = draw()
    assert x.shape == (50, 10, K + V + 1) and x.dtype == torch.float32
    assert targets.shape == (50, 10) and targets.dtype == torch.long
    pairs, queries = x[:, :5], x[:, 5:]
    assert (pairs[..., :K].sum(-1) == 1).all() and (pairs[..., K:K + V].sum(-1) == 1).all()
    assert (pairs[..., -1] == 0).all()
    assert (queries[..., :K].sum(-1) == 1).all() and (queries[..., K:K + V] == 0).all()
    assert (queries[..., -1] == 1).all()
    assert (targets[:, :5] == IGNORE_INDEX).all()


def test_every_key_is_asked_once_and_the_target_is_its_value():
    x, targets = draw(n=200)
    for row, target in zip(x, targets):
        keys = row[:5, :K].argmax(-1).tolist()
        values = row[:5, K:K + V].argmax(-1).tolist()
        asked = row[5:, :K].argmax(-1).tolist()
        assert len(set(keys)) == 5 and sorted(asked) == sorted(keys)
        paired = dict(zip(keys, values))
        assert target[5:].tolist() == [paired[k] for k in asked]


def test_draws_are_reproducible_and_vary_with_the_seed():
    assert all(torch.equal(a, b) for a, b in zip(draw(seed=1), draw(seed=1)))
    assert not torch.equal(draw(seed=1)[0], draw(seed=2)[0])


def test_bad_arguments_name_what_was_expected():
    with pytest.raises(ValueError, match="n_pairs must be at most n_keys=10"):
        associative_recall(2, 11, K, V)
    with pytest.raises(ValueError, match="n_pairs"):
        associative_recall(2, 0, K, V)
    with pytest.raises(TypeError, match="torch.Generator"):
        associative_recall(2, 3, K, V, generator=0)


def test_outer_product_recall_matches_a_direct_loop():
    """The vectorised count equals one read at a time with the same draws."""
    d, n, trials = 5, 7, 30
    g = torch.Generator().manual_seed(4)
    keys = torch.nn.functional.normalize(torch.randn(trials, n, d, generator=g, dtype=torch.float64), dim=-1)
    values = torch.randint(0, V, (trials, n), generator=g)
    right = 0
    for t in range(trials):
        memory = sum(torch.outer(keys[t, i], torch.nn.functional.one_hot(values[t, i], V).double()) for i in range(n))
        for j in range(n):
            read = keys[t, j] @ memory
            right += int(read.argmax().item() == values[t, j].item() and (read == read.max()).sum() == 1)
    assert outer_product_recall(d, n, n_values=V, trials=trials, seed=4) == pytest.approx(right / (trials * n))


def test_outer_product_recall_is_exact_for_one_pair_and_falls_with_n_against_d():
    assert outer_product_recall(3, 1) == 1.0
    small = [outer_product_recall(8, n) for n in (4, 16, 32)]
    assert small[0] > small[1] > small[2]
    assert outer_product_recall(64, 32) > small[2] + 0.1
    with pytest.raises(ValueError, match="n_values"):
        outer_product_recall(8, 4, n_values=1)


def test_state_floats_fixed_for_recurrences_and_growing_for_the_kv_cache():
    torch.manual_seed(0)
    for name in cmp.FAMILIES:
        core = cmp.make_core(name, 7, 8, 1)
        sizes = [state_floats(core, n) for n in (2, 5)]
        if name == "Transformer":  # one key and one value of H = 8 per step: 2 * 8 * 3 more floats
            assert sizes[1] - sizes[0] == 2 * 8 * 3
        else:
            assert sizes[0] == sizes[1] > 0
    assert state_floats(cmp.make_core("RNN", 7, 8, 2), 3) == 2 * 8  # h of each layer
    assert state_floats(cmp.make_core("LSTM", 7, 8, 1), 3) == 2 * 8  # h and c
    with pytest.raises(TypeError, match="step"):
        state_floats(torch.nn.Linear(3, 3), 2)


def test_one_attention_layer_learns_recall_and_rows_say_what_was_run():
    rows = recall_scores(["Transformer"], [4], target_params=6_000, steps=250, batch=32, lr=1e-2, eval_size=128)
    (row,) = rows
    assert set(row) == {"model", "pairs", "accuracy", "chance", "parameters", "state_floats"}
    assert row["chance"] == 1 / N_VALUES and abs(row["parameters"] - 6_000) < 1_500
    assert row["accuracy"] >= 0.9
    with pytest.raises(ValueError, match=f"each pair count must be <= {N_KEYS}"):
        recall_scores(["LSTM"], [N_KEYS + 1], target_params=1_000, steps=1)
