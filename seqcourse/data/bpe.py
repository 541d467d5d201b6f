"""Byte-pair encoding (Sennrich et al. 2016), byte-level as in GPT-2: a trainer and a tokenizer.

The base vocabulary is the 256 byte values, so any text (any Unicode character, seen in training
or not) encodes as its UTF-8 bytes and decodes back exactly. Training repeats one *merge*:

    count every adjacent pair of tokens (a, b) in the training text
    take the most frequent pair (ties: the smallest (a, b)), give it the next id 256 + i
    replace each occurrence of a followed by b, left to right, by the new id

``merge_step`` and ``pair_counts`` are that step on one list of ids, for reading and for exercises.
``train_bpe`` does the same on a whole text fast: the text is first split into words (a word keeps
its leading space, as in GPT-2, so merges never cross a word boundary), each distinct word is
counted once with its frequency, and after a merge only the pair counts of the words that
contained the merged pair are updated (a heap finds the next most frequent pair).
Encoding a word applies the learned merges in the order they were learned (lowest rank first).
"""
from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from ..validation import expect_int

__all__ = ["BPETokenizer", "merge_step", "pair_counts", "pretokenize", "train_bpe"]

# A word: an optional space and a run of letters/digits/underscore, or of other non-space
# characters; runs of whitespace stay together except that the last space before a word joins it.
WORD = re.compile(r" ?\w+| ?[^\w\s]+|\s+(?!\S)|\s+")


def pretokenize(text: str) -> list[str]:
    """Split text into the words BPE merges within; ``"".join(pretokenize(text)) == text``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str; got {type(text).__name__}")
    return WORD.findall(text)


def pair_counts(ids: Sequence[int]) -> Counter:
    """How often each adjacent pair (ids[i], ids[i + 1]) occurs: a Counter {(a, b): count}."""
    return Counter(zip(ids, ids[1:]))


def merge_step(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, scanning left to right without overlaps,
    by ``new_id``. Example: merge_step([1, 1, 1, 2], (1, 1), 9) == [9, 1, 2]."""
    a, b = pair
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer:
    """A byte-level BPE tokenizer: ids 0..255 are bytes, id 256 + i is merge i.

    ``merges`` is the ordered list of merged pairs; ``vocab[id]`` is the bytes a token stands for.
    ``encode(text) -> list[int]``, ``decode(ids) -> str``; ``decode(encode(s)) == s`` for every str s.
    """

    def __init__(self, merges: Iterable[tuple[int, int]] = ()):
        self.merges: list[tuple[int, int]] = []
        self.vocab: list[bytes] = [bytes([i]) for i in range(256)]
        self.ranks: dict[tuple[int, int], int] = {}
        for merge in merges:
            if not isinstance(merge, (tuple, list)) or len(merge) != 2:
                raise ValueError(f"each merge must be a pair (a, b) of token ids; got {merge!r}")
            a, b = merge
            for x in (a, b):
                expect_int(x, "a merge's token id", minimum=0, maximum=len(self.vocab) - 1)
            self.ranks[(a, b)] = len(self.merges)
            self.merges.append((a, b))
            self.vocab.append(self.vocab[a] + self.vocab[b])
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        """256 bytes plus one token per merge."""
        return len(self.vocab)

    def _encode_word(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is None:
            ids = list(word.encode("utf-8"))
            while len(ids) > 1:
                # the pair that was learned first among those present
                pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, len(self.ranks)))
                if pair not in self.ranks:
                    break
                ids = merge_step(ids, pair, 256 + self.ranks[pair])
            self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """text -> token ids (each in [0, vocab_size))."""
        return [i for word in pretokenize(text) for i in self._encode_word(word)]

    def decode(self, ids: Iterable[int]) -> str:
        """token ids -> text (bytes that are not valid UTF-8 show as U+FFFD; never for encode's output).

        Raises TypeError for an id that is not an int (bools included) and ValueError for one
        outside [0, vocab_size - 1] (a negative id would otherwise index from the end)."""
        pieces = []
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int):
                raise TypeError(f"ids must be ints in [0, {self.vocab_size - 1}]; got {type(i).__name__} {i!r}")
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"ids must be ints in [0, {self.vocab_size - 1}]; got {i}")
            pieces.append(self.vocab[i])
        return b"".join(pieces).decode("utf-8", errors="replace")

    def tokens(self, text: str) -> list[str]:
        """The pieces of text each token stands for (for display): ``"".join(tokens(s)) == s``
        when no token splits a multi-byte character."""
        return [self.vocab[i].decode("utf-8", errors="replace") for i in self.encode(text)]

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)})"


def train_bpe(text: str, vocab_size: int) -> tuple[BPETokenizer, list[int]]:
    """Learn vocab_size - 256 merges on ``text``; return (tokenizer, counts), where counts[i] is how
    often merge i's pair occurred when it was chosen. Stops early when no pair occurs twice.

    Equal to repeating ``pair_counts`` / ``merge_step`` on the ids of every word (module docstring),
    but each merge only touches the words that contain the pair.
    """
    vocab_size = expect_int(vocab_size, "vocab_size", minimum=256)
    freq = Counter(pretokenize(text))
    words = [list(w.encode("utf-8")) for w in freq]  # each distinct word once ...
    weight = list(freq.values())  # ... with its count
    counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> the words containing it
    for w, ids in enumerate(words):
        for pair in zip(ids, ids[1:]):
            counts[pair] += weight[w]
            where[pair].add(w)
    heap = [(-c, pair) for pair, c in counts.items()]
    heapq.heapify(heap)
    merges, merge_counts = [], []
    while len(merges) < vocab_size - 256 and heap:
        neg, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -neg:  # a stale entry: the count changed after it was pushed
            continue
        if -neg < 2:
            break
        new_id = 256 + len(merges)
        merges.append(pair)
        merge_counts.append(-neg)
        changed = set()
        for w in where.pop(pair):
            ids = words[w]
            for p in zip(ids, ids[1:]):  # take this word's pairs out ...
                counts[p] -= weight[w]
                changed.add(p)
            ids = words[w] = merge_step(ids, pair, new_id)
            for p in zip(ids, ids[1:]):  # ... and put the merged word's pairs back
                counts[p] += weight[w]
                where[p].add(w)
                changed.add(p)
        counts.pop(pair, None)
        for p in changed:
            c = counts.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                counts.pop(p, None)
    return BPETokenizer(merges), merge_counts
