"""Synthetic sequence tasks.

``order_task`` is the task of the Recurrence chapter: a task where the ORDER of the tokens, and
nothing else, decides the label. Models that look at a sequence as a bag of tokens, through a
fixed window, or through short n-grams each fail on it for a reason the chapter can name; a small
recurrent network solves it.

``adding_problem`` and ``copy_task`` are the long-range tasks of the Gradients chapter (and of the
chapters after it): the answer depends on inputs a known, adjustable distance before the step where
it is asked for, so a model's reach can be measured against the sequence length. Each comes with
the loss of the best model that does not remember across that distance (``adding_baseline_mse``,
``copy_baseline``), the line a model must get below to show it has learned anything long-range.

``delayed_parity`` is the task of the Convolutions chapter: the target at every step is the XOR
of the current bit and the bit a fixed lag back, so a causal model whose receptive field does not
reach that far is at chance by construction.

``reverse_task`` and ``lookahead_parity`` are the tasks of the Gating chapter: reversal is a
transduction task for encoder–decoder models (token conventions ``PAD``, ``BOS``, ``EOS``), and
lookahead parity a tagging task whose label depends on a LATER input, so a left-to-right model is at
chance by construction while a bidirectional one can be exact.

``associative_recall`` is the recall probe of the Comparison chapter: N key–value pairs, then a
query for each key, so the number of associations a model must hold grows with N while the
distances stay short.
"""
from __future__ import annotations

import math

import torch

from ..validation import expect_int

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


# ---- long-range tasks (the Gradients chapter) ------------------------------------------------


def adding_problem(
    n: int, length: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The adding problem: add the two marked numbers of a long sequence (Hochreiter & Schmidhuber, 1997).

    Each of the ``n`` sequences has ``T = length`` steps with two features,
    :math:`x_t = (v_t, m_t)`: a value :math:`v_t \sim U(0, 1)`, drawn independently, and a marker
    :math:`m_t \in \{0, 1\}` that is 1 at exactly two steps, one drawn uniformly from the first half
    :math:`\{0, ..., \lfloor T/2 \rfloor - 1\}` and one from the second half (0-based steps). The target is

    .. math::  y = \sum_t m_t v_t,

    the sum of the two marked values. The first marked value lies at least :math:`\lceil T/2 \rceil`
    steps before the end, so a model must carry it across half the sequence.

    Args:
        n: number of sequences, ``n >= 1``.
        length: T, at least 2 (each half needs one step).
        generator: a ``torch.Generator`` for reproducible draws (``None``: torch's global RNG).

    Returns:
        ``(x, y)``: x of shape (n, T, 2) float32 (values, markers), y of shape (n,) float32, on the CPU.
    """
    expect_int(n, "n", minimum=1)
    T = expect_int(length, "length", minimum=2)
    _check_generator(generator)
    values = torch.rand(n, T, generator=generator)  # (n, T)
    half = T // 2
    first = torch.randint(0, half, (n, 1), generator=generator)  # (n, 1)
    second = torch.randint(half, T, (n, 1), generator=generator)  # (n, 1)
    markers = torch.zeros(n, T).scatter(1, first, 1.0).scatter(1, second, 1.0)  # (n, T)
    y = (values * markers).sum(dim=1)  # (n,)
    return torch.stack([values, markers], dim=-1), y


def adding_baseline_mse() -> float:
    r"""MSE of the best constant prediction for the adding problem: Var(y) = 2 · 1/12 = 1/6.

    The target is a sum of two independent U(0, 1) values, so always predicting its mean 1 costs
    its variance; a model that remembers nothing does no better. (Knowing only the later value
    exactly leaves the variance of the other, 1/12.)
    """
    return 2 * (1 / 12)


BLANK = 0
"""Id of the blank token in ``copy_task`` (inputs between and after the symbols; targets before the recall)."""


def copy_task(
    n: int,
    delay: int,
    n_symbols: int = 8,
    copy_length: int = 10,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The copy task: read S symbols, wait, and write them back after a delimiter (Arjovsky et al., 2016).

    Token ids: ``BLANK = 0``, the symbols ``1 ... K`` (K = ``n_symbols``), and the delimiter
    ``K + 1``, so a model needs a vocabulary of ``K + 2``. With S = ``copy_length`` and
    ``delay`` = D, each sequence has ``T = 2S + D`` steps:

    * inputs: the S symbols :math:`a_1 ... a_S` (uniform, independent), then blanks, with the
      delimiter at step ``S + D - 1`` (0-based), then S blanks;
    * targets: blank at every step except the last S, which hold :math:`a_1 ... a_S`.

    The first symbol must be recalled ``S + D`` steps after it was read.

    Args:
        n: number of sequences, ``n >= 1``.
        delay: D >= 1, the steps from the end of the symbols to the end of the delimiter.
        n_symbols: K >= 1.   copy_length: S >= 1.
        generator: a ``torch.Generator`` for reproducible draws.

    Returns:
        ``(inputs, targets)``, both long tensors of shape (n, T), T = 2S + D, on the CPU.
    """
    expect_int(n, "n", minimum=1)
    D = expect_int(delay, "delay", minimum=1)
    K = expect_int(n_symbols, "n_symbols", minimum=1)
    S = expect_int(copy_length, "copy_length", minimum=1)
    _check_generator(generator)
    T = 2 * S + D
    symbols = torch.randint(1, K + 1, (n, S), generator=generator)  # (n, S)
    inputs = torch.full((n, T), BLANK, dtype=torch.long)
    inputs[:, :S] = symbols
    inputs[:, S + D - 1] = K + 1  # the delimiter: "write them back now"
    targets = torch.full((n, T), BLANK, dtype=torch.long)
    targets[:, T - S:] = symbols
    return inputs, targets


def copy_baseline(delay: int, n_symbols: int = 8, copy_length: int = 10) -> dict[str, float]:
    r"""What a model with no memory of the symbols scores on ``copy_task``.

    It predicts blank with certainty until the recall, and a uniform guess over the K symbols at
    each of the S recall steps, so its mean cross-entropy per step is
    :math:`S \log K / (2S + D)` and its accuracy on the recall steps is :math:`1/K`.

    Returns:
        ``{"cross_entropy": S log K / (2S + D), "recall_accuracy": 1 / K}``.
    """
    D = expect_int(delay, "delay", minimum=1)
    K = expect_int(n_symbols, "n_symbols", minimum=1)
    S = expect_int(copy_length, "copy_length", minimum=1)
    return {"cross_entropy": S * math.log(K) / (2 * S + D), "recall_accuracy": 1 / K}


IGNORE_INDEX = -100
"""Target of the steps ``delayed_parity`` does not score (``torch.nn.functional.cross_entropy``'s default ``ignore_index``)."""


def delayed_parity(
    n: int, length: int, lag: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Random bits; at every step the target is the parity (XOR) of the current bit and the bit ``lag`` steps back.

    Construction. Bits :math:`b_0, \dots, b_{T-1}` are independent fair coins, and for
    :math:`t \ge \ell` (:math:`\ell` = ``lag``)

    .. math::  y_t = b_t \oplus b_{t-\ell} .

    The first :math:`\ell` steps have no bit :math:`\ell` steps back; their target is
    ``IGNORE_INDEX`` (-100), which ``cross_entropy`` skips by default.

    Why a fixed receptive field decides it. :math:`b_{t-\ell}` is a fair coin independent of every
    other bit, so :math:`y_t` is independent of any set of bits that leaves :math:`b_{t-\ell}` out.
    A causal model whose output at :math:`t` sees fewer than :math:`\ell + 1` inputs (receptive
    field :math:`R \le \ell`) is therefore at chance, 1/2, in expectation, however it is trained;
    one with :math:`R \ge \ell + 1` sees both bits and can be exact. A recurrent model must carry
    the last :math:`\ell` bits in its state.

    Args:
        n: number of sequences, ``n >= 1``.
        length: sequence length :math:`T > \ell`.
        lag: the distance :math:`\ell \ge 1` between the two bits of each parity.
        generator: a ``torch.Generator`` for reproducible draws (``None`` uses torch's global RNG).

    Returns:
        ``(bits, targets)``, both ``torch.long`` of shape ``(n, T)`` on the CPU: ``bits`` in {0, 1}
        (use them as token ids with a vocabulary of 2), ``targets`` in {0, 1} for
        :math:`t \ge \ell` and ``IGNORE_INDEX`` before.
    """
    expect_int(n, "n", minimum=1)
    lag = expect_int(lag, "lag", minimum=1)
    length = expect_int(length, "length", minimum=lag + 1)
    _check_generator(generator)
    bits = torch.randint(0, 2, (n, length), generator=generator)  # (n, T)
    targets = torch.full_like(bits, IGNORE_INDEX)
    targets[:, lag:] = bits[:, lag:] ^ bits[:, :-lag]  # y_t = b_t XOR b_(t - lag)
    return bits, targets


def selective_copy_task(
    n: int,
    length: int = 24,
    n_tokens: int = 3,
    n_symbols: int = 4,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Selective copying (Gu & Dao, 2023): find the M symbols scattered among blanks, write them in order.

    Token ids as in ``copy_task``: ``BLANK = 0``, the symbols ``1 ... K`` (K = ``n_symbols``) and
    the marker ``K + 1``; a model needs a vocabulary of ``K + 2``. Each sequence has
    ``T = length + M`` steps (M = ``n_tokens``):

    * inputs: M symbols (uniform, independent) at M distinct positions drawn uniformly among the
      first ``length`` steps, blanks elsewhere, then M markers;
    * targets: ``IGNORE_INDEX`` at every step except the last M, which hold the M symbols in the
      order they appeared.

    Unlike ``copy_task``, the positions of the symbols change from sequence to sequence: a model
    has to decide, from what it reads, which inputs to keep and which to skip.

    Returns:
        ``(inputs, targets)``, both long tensors of shape (n, T), T = length + M, on the CPU.
    """
    expect_int(n, "n", minimum=1)
    M = expect_int(n_tokens, "n_tokens", minimum=1)
    length = expect_int(length, "length", minimum=M)
    K = expect_int(n_symbols, "n_symbols", minimum=1)
    _check_generator(generator)
    symbols = torch.randint(1, K + 1, (n, M), generator=generator)  # (n, M)
    positions = torch.rand(n, length, generator=generator).argsort(dim=1)[:, :M].sort(dim=1).values  # (n, M)
    inputs = torch.full((n, length + M), BLANK, dtype=torch.long)
    inputs.scatter_(1, positions, symbols)
    inputs[:, length:] = K + 1  # the markers: "write them now"
    targets = torch.full_like(inputs, IGNORE_INDEX)
    targets[:, length:] = symbols
    return inputs, targets


# ---- transduction and tagging (the Gating chapter) -------------------------------------------

PAD = 0
"""Id of the padding token in ``reverse_task``: fills the source after its last symbol and the
targets after EOS. Losses skip it (``cross_entropy(..., ignore_index=PAD)``)."""
BOS = 1
"""Id of the begin-of-sequence token: the first decoder input of ``reverse_task``."""
EOS = 2
"""Id of the end-of-sequence token: the last real target of ``reverse_task``."""
FIRST_SYMBOL = 3
"""The smallest id of a content symbol in ``reverse_task`` (ids below it are PAD, BOS, EOS)."""


def reverse_task(
    n: int,
    length: int,
    vocab_size: int = 12,
    min_length: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Sequence reversal, a transduction task: read :math:`a_1 \dots a_\ell`, write :math:`a_\ell \dots a_1`.

    Token ids: ``PAD = 0``, ``BOS = 1``, ``EOS = 2`` and the content symbols
    ``FIRST_SYMBOL = 3, ..., V - 1`` (V = ``vocab_size``), shared by source and target. Each example's
    length :math:`\ell` is drawn uniformly from ``[min_length, length]`` (``min_length`` defaults to
    ``length``: every example then has the full length), its symbols uniformly and independently.
    With S = ``length``:

    * ``src`` (n, S): :math:`a_1 \dots a_\ell`, then PAD (padding only on the right);
    * ``tgt_in`` (n, S + 1): ``BOS`` :math:`a_\ell \dots a_1`, then PAD: what the decoder reads under
      teacher forcing, the target shifted right by one;
    * ``tgt_out`` (n, S + 1): :math:`a_\ell \dots a_1` ``EOS``, then PAD: what it must predict.

    The first output symbol is the last one read, but the last output symbol :math:`a_1` was read
    :math:`\ell` steps before the decoder starts: an encoder that passes only its final state on must
    hold all :math:`\ell` symbols in it. Guessing scores :math:`(V - 3)^{-\ell}` exact matches.

    Returns:
        ``(src, tgt_in, tgt_out)``, long tensors on the CPU.
    """
    expect_int(n, "n", minimum=1)
    S = expect_int(length, "length", minimum=1)
    lo = S if min_length is None else expect_int(min_length, "min_length", minimum=1, maximum=S)
    V = expect_int(vocab_size, "vocab_size", minimum=FIRST_SYMBOL + 1)
    _check_generator(generator)
    lengths = torch.randint(lo, S + 1, (n, 1), generator=generator)  # (n, 1)
    symbols = torch.randint(FIRST_SYMBOL, V, (n, S), generator=generator)  # (n, S)
    steps = torch.arange(S + 1)  # (S + 1,)
    src = torch.where(steps[:S] < lengths, symbols, PAD)  # (n, S)
    # Position k of the reversed sequence holds symbol l - 1 - k (for k < l).
    # l <= S, so the index is at most S - 1; past the end (k >= l) it is clamped to 0 and masked below.
    source_index = (lengths - 1 - steps).clamp(min=0)  # (n, S + 1)
    reversed_symbols = symbols.gather(1, source_index)
    tgt_out = torch.where(steps < lengths, reversed_symbols, PAD)
    tgt_out = torch.where(steps == lengths, EOS, tgt_out)
    tgt_in = torch.cat([torch.full((n, 1), BOS), tgt_out[:, :-1]], dim=1)
    tgt_in = torch.where(tgt_in == EOS, PAD, tgt_in)
    return src, tgt_in, tgt_out


def lookahead_parity(
    n: int, length: int, lag: int = 1, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""A tagging task whose label depends on the future: the XOR of the current bit and the bit ``lag`` steps AHEAD.

    The mirror image of ``delayed_parity``. Bits :math:`b_0, \dots, b_{T-1}` are independent fair
    coins, and for :math:`t < T - \ell` (:math:`\ell` = ``lag``)

    .. math::  y_t = b_t \oplus b_{t+\ell} ;

    the last :math:`\ell` steps have no bit that far ahead and are ``IGNORE_INDEX``.

    Why a left-to-right model is at chance. :math:`b_{t+\ell}` is a fair coin independent of
    :math:`b_0, \dots, b_t`, so :math:`y_t` is independent of everything a causal model has read
    when it must tag step :math:`t`: its expected accuracy is 1/2 however it is trained. A
    bidirectional model's backward direction has read :math:`b_{T-1}, \dots, b_t` by then and only
    has to carry the last :math:`\ell` of them.

    Returns:
        ``(bits, targets)``, both ``torch.long`` of shape ``(n, T)`` on the CPU: ``bits`` in {0, 1}
        (token ids with a vocabulary of 2), ``targets`` in {0, 1} for :math:`t < T - \ell` and
        ``IGNORE_INDEX`` after.
    """
    bits, delayed = delayed_parity(n, length, lag, generator=generator)  # delayed_t = b_t XOR b_(t - lag)
    targets = torch.full_like(bits, IGNORE_INDEX)
    targets[:, :-lag] = delayed[:, lag:]  # y_t = b_(t + lag) XOR b_t
    return bits, targets


# ---- associative recall (the Comparison chapter) -----------------------------------------------


def associative_recall(
    n: int,
    n_pairs: int,
    n_keys: int = 16,
    n_values: int = 16,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Multi-query associative recall (MQAR; Arora et al., 2024, "Zoology"): read N key–value pairs, then
    answer N queries, one per key, with the value that key was paired with.

    Each sequence has ``T = 2N`` steps of ``D = K + V + 1`` features (K = ``n_keys``,
    V = ``n_values``, N = ``n_pairs``):

    * steps ``0 ... N-1`` (the pairs): :math:`[e_{k_i};\ e_{v_i};\ 0]`, the one-hot key next to the
      one-hot value, with N *distinct* keys drawn uniformly from K and values uniform over V;
    * steps ``N ... 2N-1`` (the queries): :math:`[e_{k};\ 0;\ 1]`, each of the N keys once, in a fresh
      random order, the last feature marking "answer now";
    * targets: ``IGNORE_INDEX`` during the pairs; at a query, the index in ``0 ... V-1`` of the value
      paired with its key.

    Each pair is one step, as in the "one token per pair" form of the task, so one attention layer
    can solve it (the query's key part matches the pair's key part) and what is measured is how many
    associations a model can hold, not whether it can first join a key to the value after it. The
    later a key was read, the sooner it may be asked for: a query comes between 1 and 2N - 1 steps
    after its pair. Chance accuracy is 1/V.

    Returns:
        ``(x, targets)``: x float32 (n, 2N, K + V + 1), targets long (n, 2N), on the CPU.
    """
    expect_int(n, "n", minimum=1)
    K = expect_int(n_keys, "n_keys", minimum=1)
    N = expect_int(n_pairs, "n_pairs", minimum=1)
    if N > K:
        raise ValueError(f"n_pairs must be at most n_keys={K} (the keys of a sequence are distinct); got {N}")
    V = expect_int(n_values, "n_values", minimum=1)
    _check_generator(generator)
    keys = torch.rand(n, K, generator=generator).argsort(dim=1)[:, :N]  # (n, N), distinct per row
    values = torch.randint(0, V, (n, N), generator=generator)  # (n, N)
    order = torch.rand(n, N, generator=generator).argsort(dim=1)  # the queries' order
    query_keys, answers = keys.gather(1, order), values.gather(1, order)
    x = torch.zeros(n, 2 * N, K + V + 1)
    x[:, :N].scatter_(2, keys.unsqueeze(2), 1.0)
    x[:, :N].scatter_(2, K + values.unsqueeze(2), 1.0)
    x[:, N:].scatter_(2, query_keys.unsqueeze(2), 1.0)
    x[:, N:, K + V] = 1.0
    targets = torch.full((n, 2 * N), IGNORE_INDEX, dtype=torch.long)
    targets[:, N:] = answers
    return x, targets
