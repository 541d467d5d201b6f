"""Bag of words, fixed-window MLP and n-gram naive Bayes: what each one can and cannot see."""
import math

import pytest
import torch
import torch.nn.functional as F

from seqcourse.models.baselines import BagOfWords, NGramClassifier, WindowMLP
from seqcourse.data.tasks import TOKEN_A, TOKEN_B, order_task


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def random_ids(B, T, V, seed=0, device="cpu"):
    return torch.randint(0, V, (B, T), generator=gen(seed)).to(device)


# --- BagOfWords ---------------------------------------------------------------------------------


def test_bag_of_words_is_linear_in_the_counts(device):
    torch.manual_seed(0)
    model = BagOfWords(vocab_size=4, num_classes=3).to(device)
    ids = torch.tensor([[0, 2, 2, 3, 2]], device=device)
    counts = torch.tensor([[1.0, 0.0, 3.0, 1.0]], device=device)
    logits = model(ids)
    assert logits.shape == (1, 3)
    torch.testing.assert_close(logits, counts @ model.out.weight.T + model.out.bias)


def test_bag_of_words_ignores_order(device):
    torch.manual_seed(0)
    model = BagOfWords(vocab_size=6, num_classes=2).to(device)
    ids = random_ids(32, 10, 6, device=device)
    shuffled = torch.stack([row[torch.randperm(10, generator=gen(i)).to(device)] for i, row in enumerate(ids)])
    assert not torch.equal(shuffled, ids)
    torch.testing.assert_close(model(shuffled), model(ids))
    changed = ids.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 6  # a different bag does change the logits
    assert not torch.allclose(model(changed), model(ids))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_bag_of_words_scores_exactly_chance_on_the_order_task(seed):
    torch.manual_seed(seed)
    model = BagOfWords(vocab_size=8, num_classes=2)
    ids, labels = order_task(1000, generator=gen(seed))
    with torch.no_grad():
        accuracy = (model(ids).argmax(1) == labels).double().mean().item()
    assert accuracy == 0.5


# --- WindowMLP ----------------------------------------------------------------------------------


def test_window_mlp_implements_the_equation(device):
    torch.manual_seed(0)
    V, w = 5, 3
    model = WindowMLP(vocab_size=V, window=w, hidden_size=7, num_classes=2).to(device)
    ids = random_ids(4, 9, V, device=device)
    z = torch.cat([F.one_hot(ids[:, t], V).float() for t in range(9 - w, 9)], dim=1)  # [e_{x_{T-w+1}}; ...]
    expected = model.out(torch.relu(z @ model.hidden.weight.T + model.hidden.bias))
    torch.testing.assert_close(model(ids), expected)


def test_window_mlp_ignores_tokens_before_the_window(device):
    torch.manual_seed(0)
    V, w, T = 6, 4, 12
    model = WindowMLP(V, w, hidden_size=16, num_classes=2).to(device)
    ids = random_ids(32, T, V, device=device)
    before = ids.clone()
    before[:, : T - w] = random_ids(32, T - w, V, seed=1, device=device)
    assert not torch.equal(before, ids)
    torch.testing.assert_close(model(before), model(ids))
    inside = ids.clone()
    inside[:, T - w] = (inside[:, T - w] + 1) % V  # the oldest token in the window does matter
    assert not torch.allclose(model(inside), model(ids))
    assert model(ids[:, -w:]).shape == (32, 2)  # exactly w tokens is enough


def test_window_mlp_needs_window_tokens():
    model = WindowMLP(8, 5, hidden_size=4, num_classes=2)
    with pytest.raises(ValueError, match=r"window=5\) needs sequences of at least 5 tokens.*T=3"):
        model(torch.zeros(2, 3, dtype=torch.long))


# --- input checks shared by the two modules -----------------------------------------------------


@pytest.mark.parametrize("make", [lambda: BagOfWords(8, 2), lambda: WindowMLP(8, 2, hidden_size=4, num_classes=2)])
def test_modules_reject_bad_ids(make):
    model = make()
    with pytest.raises(TypeError, match="long"):
        model(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"shape \(B, T\).*unsqueeze\(0\)"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"vocab_size=8.*to 9"):
        model(torch.tensor([[0, 9, 3]]))
    with pytest.raises(ValueError, match=r"from -1"):
        model(torch.tensor([[0, -1, 3]]))


def test_modules_reject_bad_sizes():
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        BagOfWords(8, 1)
    with pytest.raises(ValueError, match="window must be >= 1"):
        WindowMLP(8, 0, hidden_size=4, num_classes=2)
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        WindowMLP(8.0, 2, hidden_size=4, num_classes=2)


# --- NGramClassifier ----------------------------------------------------------------------------


def tiny():
    ids = torch.tensor([[0, 1, 0, 1], [1, 1, 0, 0]])
    labels = torch.tensor([0, 1])
    return NGramClassifier(2, vocab_size=2).fit(ids, labels)


def test_ngram_counts_match_a_hand_count():
    model = tiny()
    assert model.ngram_counts(0) == {(0, 1): 2, (1, 0): 1}
    assert model.ngram_counts(1) == {(1, 1): 1, (1, 0): 1, (0, 0): 1}
    trigrams = NGramClassifier(3, vocab_size=3).fit(torch.tensor([[2, 0, 1, 2, 0]]), torch.tensor([0]))
    assert trigrams.ngram_counts(0) == {(2, 0, 1): 1, (0, 1, 2): 1, (1, 2, 0): 1}


def test_ngram_scores_are_smoothed_naive_bayes():
    model = tiny()
    # x = (0, 1, 1): bigrams (0, 1), (1, 1); each class has 3 bigrams, V^n = 4, prior 1/2.
    expected = [
        math.log(1 / 2) + math.log((2 + 1) / (3 + 4)) + math.log((0 + 1) / (3 + 4)),
        math.log(1 / 2) + math.log((0 + 1) / (3 + 4)) + math.log((1 + 1) / (3 + 4)),
    ]
    scores = model.scores(torch.tensor([[0, 1, 1]]))
    assert scores.shape == (1, 2)
    torch.testing.assert_close(scores[0], torch.tensor(expected, dtype=torch.float64))
    assert model.predict(torch.tensor([[0, 1, 1]])).tolist() == [0]


def test_ngram_prior_and_missing_class():
    ids = torch.tensor([[0, 1], [0, 1], [1, 0]])
    model = NGramClassifier(1, vocab_size=2).fit(ids, torch.tensor([0, 0, 2]))  # no class 1
    assert model.num_classes == 3
    scores = model.scores(torch.tensor([[0, 0]]))
    assert scores[0, 1] == -math.inf  # a class never seen is never predicted
    torch.testing.assert_close(scores[0, 0], torch.tensor(math.log(2 / 3) + 2 * math.log(3 / 6), dtype=torch.float64))


def adjacency_task(n, T=12, V=8, seed=0):
    """Label 1: the sequence contains A directly followed by B; label 0: B directly followed by A."""
    g = gen(seed)
    ids = torch.randint(2, V, (n, T), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    start = torch.randint(0, T - 1, (n,), generator=g)
    rows = torch.arange(n)
    ids[rows, start] = torch.where(labels == 1, TOKEN_A, TOKEN_B)
    ids[rows, start + 1] = torch.where(labels == 1, TOKEN_B, TOKEN_A)
    return ids, labels


def test_bigrams_separate_a_task_decided_by_adjacency():
    train, test = adjacency_task(2000, seed=0), adjacency_task(1000, seed=1)
    assert NGramClassifier(2, 8).fit(*train).accuracy(*test) > 0.95
    assert NGramClassifier(1, 8).fit(*train).accuracy(*test) < 0.6  # same bags in both classes


def test_ngrams_fall_well_short_on_the_order_task():
    train, test = order_task(4000, generator=gen(0)), order_task(2000, generator=gen(1))
    assert NGramClassifier(1, 8).fit(*train).accuracy(*test) == 0.5  # unigrams = bag of words
    T = 16
    for n in (2, 3):
        accuracy = NGramClassifier(n, 8).fit(*train).accuracy(*test)
        # about 1/2 + 1/2 P(|p - q| < n): only pairs within one n-gram are told apart (order_task docs)
        within = sum(T - d for d in range(1, n)) / math.comb(T, 2)
        assert abs(accuracy - (0.5 + 0.5 * within)) < 0.04


def test_ngram_accepts_ids_on_any_device(device):
    model = tiny()
    ids = torch.tensor([[0, 1, 1]], device=device)
    assert model.accuracy(ids, torch.tensor([0], device=device)) == 1.0


def test_ngram_errors():
    model = NGramClassifier(3, vocab_size=4)
    with pytest.raises(RuntimeError, match="call fit"):
        model.predict(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="T=2 contain no 3-grams"):
        model.fit(torch.zeros(4, 2, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"vocab_size=4.*to 4"):
        model.fit(torch.tensor([[0, 1, 4]]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"labels must be a long tensor of shape \(B=2\)"):
        model.fit(torch.zeros(2, 5, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=">= 0"):
        model.fit(torch.zeros(2, 5, dtype=torch.long), torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="label must be <= 1"):
        tiny().ngram_counts(2)
    with pytest.raises(ValueError, match="too many possible n-grams"):
        NGramClassifier(40, vocab_size=100)
