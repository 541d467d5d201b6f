"""Synthetic sequence tasks.

``order_task`` is the task of the Recurrence chapter: a task where the ORDER of the tokens, and
nothing else, decides the label. Models that look at a sequence as a bag of tokens, through a
fixed window, or through short n-grams each fail on it for a reason the chapter can name; a small
recurrent network solves it.
"""
from __future__ import annotations

import torch

from .validation import expect_int

TOKEN_A = 0
"""Id of the marker token A in ``order_task``."""
TOKEN_B = 1
"""Id of the marker token B in ``order_task``."""


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None; got {type(generator).__name__}. "
            "Make one with torch.Generator().manual_seed(0) or seqcourse.seed_everything(0)."
        )
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(
            f"generator must be a CPU torch.Generator (the task is drawn on the CPU); got one on "
            f"{generator.device}. Use torch.Generator().manual_seed(seed) and move the tensors afterwards."
        )


def order_task(
    n: int, length: int = 16, vocab_size: int = 8, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Sequences with one ``A`` and one ``B`` among noise tokens; the label says which comes first.

    Construction. Token ``A`` has id ``TOKEN_A = 0``, token ``B`` has id ``TOKEN_B = 1``, and the
    ids ``2, ..., vocab_size - 1`` are noise. For each example, every position holds a noise token
    drawn uniformly and independently; then two distinct positions :math:`p \ne q` are drawn
    uniformly, ``A`` is written at :math:`p` and ``B`` at :math:`q`, and

    .. math::  y = 1 \text{ if } p < q \text{ (A before B)}, \qquad y = 0 \text{ otherwise.}

    Examples come in mirror pairs: each sequence is followed (before a final shuffle) by the same
    sequence with ``A`` and ``B`` swapped, which has the opposite label. Both classes therefore
    contain exactly the same multisets of tokens (for even ``n``; an odd ``n`` keeps one example
    without its partner), and the labels are exactly balanced.

    Why each baseline fails.

    * Bag of words (token counts, ``BagOfWords``): every example has the same counts as its mirror
      partner, which has the other label. Any function of the counts scores exactly 50% on an
      even-sized sample: chance, by construction.
    * Fixed window over the last ``w`` tokens (``WindowMLP``): if ``A`` or ``B`` lies in the window
      the label can be read off (seeing only ``B`` there means ``A`` came earlier), otherwise the
      window holds only noise and the best guess is a coin flip. The best accuracy any window model
      can reach is therefore

      .. math::  1 - \tfrac12 \binom{T-w}{2} \Big/ \binom{T}{2},

      e.g. :math:`1 - \tfrac12 \cdot 66/120 = 0.725` for :math:`T = 16, w = 4`.
    * n-gram counts (``NGramClassifier``): an n-gram that contains both markers decides the label,
      but that happens only when :math:`|p - q| < n`; otherwise the n-grams around ``A`` and
      around ``B`` look the same in both classes (up to weak effects at the sequence ends).
      Adjacency is all n-grams see, and most pairs are not adjacent, so the accuracy is about

      .. math::  \tfrac12 + \tfrac12 P(|p - q| < n)
                 = \tfrac12 + \tfrac12 \sum_{d=1}^{n-1} (T - d) \Big/ \binom{T}{2},

      e.g. :math:`0.5625` for bigrams and :math:`0.62` for trigrams at :math:`T = 16`.
    * A recurrent network reads the tokens in order and only has to remember one bit (which
      marker came first) in its state :math:`h_t`; a small RNN learns it to near 100%.

    Args:
        n: number of examples, ``n >= 1``.
        length: sequence length :math:`T \ge 2`.
        vocab_size: number of token ids :math:`V \ge 3` (``A``, ``B`` and ``V - 2`` noise tokens).
        generator: a ``torch.Generator`` for reproducible draws (``None`` uses torch's global RNG).
            The same generator state always gives the same sample.

    Returns:
        ``(ids, labels)``: ``ids`` of shape ``(n, T)`` and ``labels`` of shape ``(n,)``, both
        ``torch.long`` on the CPU.
    """
    expect_int(n, "n", minimum=1)
    expect_int(length, "length", minimum=2)
    expect_int(vocab_size, "vocab_size", minimum=3)
    _check_generator(generator)

    pairs = (n + 1) // 2
    noise = torch.randint(2, vocab_size, (pairs, length), generator=generator)  # (P, T)
    # The first two entries of a uniform random permutation: a uniform ordered pair p != q.
    positions = torch.rand(pairs, length, generator=generator).argsort(dim=1)[:, :2]  # (P, 2)
    p, q = positions[:, :1], positions[:, 1:]  # (P, 1) each

    first = noise.scatter(1, p, TOKEN_A).scatter(1, q, TOKEN_B)  # A at p, B at q
    mirror = noise.scatter(1, p, TOKEN_B).scatter(1, q, TOKEN_A)  # A at q, B at p
    first_labels = (p < q).squeeze(1).long()  # (P,)

    ids = torch.stack([first, mirror], dim=1).reshape(2 * pairs, length)[:n]
    labels = torch.stack([first_labels, 1 - first_labels], dim=1).reshape(2 * pairs)[:n]
    order = torch.randperm(n, generator=generator)
    return ids[order], labels[order]
