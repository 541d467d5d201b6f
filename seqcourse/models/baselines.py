r"""Order-blind and order-limited baselines for sequence classification.

Each baseline sees the sequence :math:`x_1, \dots, x_T` (token ids in :math:`[0, V)`) through a
restricted view, and fails on ``seqcourse.data.tasks.order_task`` for that reason:

* ``BagOfWords``: only the token counts, so it cannot see order at all;
* ``WindowMLP``: only the last ``w`` tokens, so it cannot see what came earlier;
* ``NGramClassifier``: only counts of n consecutive tokens, so it sees order only between
  neighbours.

``BagOfWords`` and ``WindowMLP`` are ``torch.nn.Module`` s mapping ids ``(B, T)`` to logits
``(B, C)`` and are trained like every other model (``seqcourse.train.train``);
``NGramClassifier`` is a count model fitted in one pass.

Symbols: ``B`` batch, ``T`` sequence length, ``V`` vocabulary size, ``C`` number of classes,
:math:`e_v \in \{0, 1\}^V` the one-hot vector of token ``v``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import expect_ids, expect_int, expect_tensor, module_dtype_device


class BagOfWords(nn.Module):
    r"""Linear classifier on token counts: it sees which tokens occur and how often, not where.

    .. math::  c = \sum_{t=1}^{T} e_{x_t} \in \mathbb{R}^V, \qquad y = W_o c + b_o \in \mathbb{R}^C

    Because :math:`c` is a sum over positions, the logits are the same for every permutation of
    the sequence.

    Args:
        vocab_size: ``V``, token ids lie in ``[0, V)``.
        num_classes: ``C``.

    Shapes: ``forward(ids (B, T) long) -> logits (B, C)``.
    """

    def __init__(self, vocab_size: int, num_classes: int):
        super().__init__()
        self.vocab_size = expect_int(vocab_size, "vocab_size", minimum=1)
        self.num_classes = expect_int(num_classes, "num_classes", minimum=2)
        self.out = nn.Linear(vocab_size, num_classes)  # W_o (C, V), b_o (C,)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        dtype, device = module_dtype_device(self)
        expect_ids(ids, "ids", self.vocab_size, device=device)
        counts = F.one_hot(ids, self.vocab_size).sum(dim=1).to(dtype)  # (B, V)
        return self.out(counts)  # (B, C)


class WindowMLP(nn.Module):
    r"""A feed-forward network on the last ``window`` tokens only.

    The one-hot vectors of the last :math:`w` tokens are concatenated and passed through one
    hidden layer:

    .. math::  z = [e_{x_{T-w+1}}; \dots; e_{x_T}] \in \mathbb{R}^{wV}, \qquad
               y = W_o \operatorname{relu}(W_1 z + b_1) + b_o \in \mathbb{R}^C

    Tokens before the window do not change the logits at all.

    Args:
        vocab_size: ``V``.
        window: ``w``, the number of trailing tokens the model sees; sequences need ``T >= w``.
        hidden_size: width of the hidden layer.
        num_classes: ``C``.

    Shapes: ``forward(ids (B, T) long) -> logits (B, C)``.
    """

    def __init__(self, vocab_size: int, window: int, *, hidden_size: int, num_classes: int):
        super().__init__()
        self.vocab_size = expect_int(vocab_size, "vocab_size", minimum=1)
        self.window = expect_int(window, "window", minimum=1)
        expect_int(hidden_size, "hidden_size", minimum=1)
        self.num_classes = expect_int(num_classes, "num_classes", minimum=2)
        self.hidden = nn.Linear(window * vocab_size, hidden_size)  # W_1, b_1
        self.out = nn.Linear(hidden_size, num_classes)  # W_o, b_o

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        dtype, device = module_dtype_device(self)
        expect_ids(ids, "ids", self.vocab_size, device=device)
        if ids.shape[1] < self.window:
            raise ValueError(
                f"WindowMLP(window={self.window}) needs sequences of at least {self.window} tokens; "
                f"got ids of shape {tuple(ids.shape)} (T={ids.shape[1]})"
            )
        last = ids[:, -self.window :]  # (B, w)
        z = F.one_hot(last, self.vocab_size).to(dtype).flatten(1)  # (B, w * V)
        return self.out(torch.relu(self.hidden(z)))  # (B, C)


class NGramClassifier:
    r"""Naive-Bayes classifier over counts of n-grams (``n`` consecutive tokens), add-one smoothed.

    ``fit`` counts, for each class :math:`c`, how often each n-gram :math:`g` occurs in the
    training sequences of that class, :math:`N_c(g)`, with total :math:`N_c = \sum_g N_c(g)`. A
    sequence's n-grams :math:`g_t = (x_t, \dots, x_{t+n-1})`, :math:`t = 1, \dots, T-n+1`, are then
    scored as independent draws:

    .. math::  s_c(x) = \log \pi_c + \sum_{t=1}^{T-n+1} \log \frac{N_c(g_t) + 1}{N_c + V^n},
               \qquad \hat y = \arg\max_c s_c(x)

    where :math:`\pi_c` is the fraction of training sequences in class :math:`c` and the
    :math:`+1` / :math:`+V^n` is add-one (Laplace) smoothing over all :math:`V^n` possible
    n-grams. Sequences are not padded, so an n-gram never spans the sequence boundary. With
    ``n = 1`` this is a bag-of-words model; larger ``n`` sees order, but only within ``n``
    neighbouring tokens.

    Args:
        n: n-gram order, ``n >= 1``.
        vocab_size: ``V``, token ids lie in ``[0, V)``.
    """

    def __init__(self, n: int, vocab_size: int):
        self.n = expect_int(n, "n", minimum=1)
        self.vocab_size = expect_int(vocab_size, "vocab_size", minimum=1)
        if vocab_size**n >= 2**62:
            raise ValueError(
                f"vocab_size**n = {vocab_size}**{n} is too many possible n-grams to index with int64; "
                "use a smaller n"
            )
        self.num_classes: int | None = None
        self._codes: list[torch.Tensor] = []  # per class: sorted n-gram codes seen in training
        self._counts: list[torch.Tensor] = []  # per class: N_c(g) for those codes
        self._log_prior: torch.Tensor | None = None  # (C,) log pi_c

    def __repr__(self) -> str:
        return f"NGramClassifier(n={self.n}, vocab_size={self.vocab_size})"

    def _check(self, ids) -> torch.Tensor:
        expect_ids(ids, "ids", self.vocab_size)
        if ids.shape[1] < self.n:
            raise ValueError(
                f"sequences of length T={ids.shape[1]} contain no {self.n}-grams; "
                f"NGramClassifier(n={self.n}) needs T >= {self.n}"
            )
        return ids.cpu()

    def _ngram_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Each n-gram as one integer, sum_k x_{t+k} V^{n-1-k}: (B, T) -> (B, T - n + 1)."""
        grams = ids.unfold(1, self.n, 1)  # (B, T - n + 1, n)
        powers = self.vocab_size ** torch.arange(self.n - 1, -1, -1)  # (n,)
        return (grams * powers).sum(-1)

    def fit(self, ids: torch.Tensor, labels: torch.Tensor) -> NGramClassifier:
        """Count n-grams per class. ``ids (B, T)`` long, ``labels (B,)`` long in ``[0, C)``; ``C`` is
        taken as ``labels.max() + 1``. Returns ``self``."""
        ids = self._check(ids)
        expect_tensor(labels, "labels", dims=("B",), size={"B": ids.shape[0]}, dtype="long")
        labels = labels.cpu()
        if labels.min() < 0:
            raise ValueError(f"labels must be class indices >= 0; got {int(labels.min())}")
        self.num_classes = int(labels.max()) + 1
        codes = self._ngram_codes(ids)
        self._codes, self._counts = [], []
        for c in range(self.num_classes):
            seen, counts = torch.unique(codes[labels == c], return_counts=True)  # sorted
            self._codes.append(seen)
            self._counts.append(counts)
        class_sizes = torch.bincount(labels, minlength=self.num_classes).double()
        self._log_prior = (class_sizes / class_sizes.sum()).log()
        return self

    def _fitted(self) -> None:
        if self.num_classes is None:
            raise RuntimeError("this NGramClassifier has not been fitted yet; call fit(ids, labels) first")

    def ngram_counts(self, label: int) -> dict[tuple[int, ...], int]:
        """The training counts :math:`N_c(g)` of class ``label``, as ``{(x_1, ..., x_n): count}``."""
        self._fitted()
        expect_int(label, "label", minimum=0, maximum=self.num_classes - 1)
        out = {}
        for code, count in zip(self._codes[label].tolist(), self._counts[label].tolist()):
            gram = []
            for _ in range(self.n):
                code, token = divmod(code, self.vocab_size)
                gram.append(token)
            out[tuple(reversed(gram))] = count
        return out

    def _lookup(self, c: int, codes: torch.Tensor) -> torch.Tensor:
        """Training counts N_c(g) of class c for each code in ``codes`` (0 for unseen n-grams), float64."""
        seen, counts = self._codes[c], self._counts[c]
        if seen.numel() == 0:  # a class index with no training sequences
            return torch.zeros(codes.shape, dtype=torch.float64)
        pos = torch.searchsorted(seen, codes).clamp(max=seen.numel() - 1)
        return torch.where(seen[pos] == codes, counts[pos], 0).double()

    def scores(self, ids: torch.Tensor) -> torch.Tensor:
        """The log scores :math:`s_c(x)`: ids ``(B, T)`` -> ``(B, C)`` (float64, on the CPU)."""
        self._fitted()
        codes = self._ngram_codes(self._check(ids))  # (B, T - n + 1)
        possible = float(self.vocab_size) ** self.n  # V^n
        out = []
        for c in range(self.num_classes):
            count = self._lookup(c, codes)  # N_c(g_t), (B, T - n + 1)
            log_p = (count + 1).log() - math.log(int(self._counts[c].sum()) + possible)
            out.append(self._log_prior[c] + log_p.sum(dim=1))
        return torch.stack(out, dim=1)

    def predict(self, ids: torch.Tensor) -> torch.Tensor:
        """The predicted class :math:`\\hat y = \\arg\\max_c s_c(x)` of each sequence: ``(B, T) -> (B,)`` long."""
        return self.scores(ids).argmax(dim=1)

    def accuracy(self, ids: torch.Tensor, labels: torch.Tensor) -> float:
        """Fraction of sequences whose predicted class equals ``labels`` (``(B,)`` long)."""
        predicted = self.predict(ids)
        expect_tensor(labels, "labels", dims=("B",), size={"B": predicted.shape[0]}, dtype="long")
        return (predicted == labels.cpu()).double().mean().item()
