"""Byte-pair encoding: one merge step by hand, a small training run computed by hand, the fast
trainer against the naive one built from merge_step, exact round trips on unseen text, and the
checks on bad merges and ids."""
import pytest

from seqcourse.data.bpe import BPETokenizer, merge_step, pair_counts, pretokenize, train_bpe
from seqcourse.data.text import load_corpus

a, b, c, d = (ord(ch) for ch in "abcd")  # 97, 98, 99, 100


def test_merge_step_and_pair_counts_by_hand():
    assert merge_step([1, 1, 1, 2], (1, 1), 9) == [9, 1, 2]  # left to right, no overlap
    assert merge_step([1, 1, 1, 1], (1, 1), 9) == [9, 9]
    assert merge_step([1, 2, 3, 1, 2], (1, 2), 7) == [7, 3, 7]
    assert merge_step([2, 1], (1, 2), 7) == [2, 1]
    assert merge_step([], (1, 2), 7) == []
    assert pair_counts([1, 2, 1, 2, 1]) == {(1, 2): 2, (2, 1): 2}


def test_training_on_a_hand_computed_example():
    # "aaabdaaabac": pairs aa 4, ab 2, bd 1, da 1, ba 1, ac 1 -> merge aa = 256
    # -> [256 a b d 256 a b a c]: (256, a) 2 and (a, b) 2 tie; the smaller pair (a, b) = 257 wins
    # -> [256 257 d 256 257 a c]: (256, 257) 2 -> 258 = "aaab"  -> [258 d 258 a c]
    tok, counts = train_bpe("aaabdaaabac", vocab_size=259)
    assert tok.merges == [(a, a), (a, b), (256, 257)]
    assert counts == [4, 2, 2]
    assert tok.vocab[258] == b"aaab"
    assert tok.encode("aaabdaaabac") == [258, d, 258, a, c]
    assert tok.tokens("aaabdaaabac") == ["aaab", "d", "aaab", "a", "c"]
    # asking for more merges stops when no pair occurs twice
    tok_more, counts_more = train_bpe("aaabdaaabac", vocab_size=300)
    assert tok_more.merges == tok.merges and tok_more.vocab_size == 259
    assert counts_more == counts


def test_words_keep_their_leading_space_and_merges_stay_inside_words():
    text = "def  f(x):\n    return x_1 + 2"
    words = pretokenize(text)
    assert "".join(words) == text
    assert words[:4] == ["def", " ", " f", "("]
    assert " return" in words and " x_1" in words
    tok, _ = train_bpe("ab ab ab ab", vocab_size=300)
    assert all(b" " not in tok.vocab[i][1:] for i in range(256, tok.vocab_size))


def _train_naive(text, vocab_size):
    """The definition: count all pairs in all words, merge the most frequent (ties: smallest), repeat."""
    words = [list(w.encode("utf-8")) for w in pretokenize(text)]
    merges = []
    while 256 + len(merges) < vocab_size:
        total = pair_counts([])
        for w in words:
            total.update(pair_counts(w))
        if not total or max(total.values()) < 2:
            break
        best = min(total, key=lambda p: (-total[p], p))
        merges.append(best)
        words = [merge_step(w, best, 255 + len(merges)) for w in words]
    return merges, sum(len(w) for w in words)


def test_fast_trainer_equals_the_naive_definition():
    text = load_corpus(max_chars=2000)
    naive, n_tokens = _train_naive(text, 310)
    tok, _ = train_bpe(text, 310)
    assert tok.merges == naive
    assert len(tok.encode(text)) == n_tokens  # encoding the training text gives the trainer's tokens


@pytest.mark.parametrize("text", [
    "",
    "plain ascii, seen in training: def return",
    "naïve café — déjà vu",
    "日本語のテキスト and emoji 🙂👍🏽 mixed\twith\ttabs\r\n",
    "\x00\x01 control \u200b zero-width \U0010FFFF",
])
def test_round_trip_on_text_never_seen_in_training(text):
    tok, _ = train_bpe(load_corpus(max_chars=5000), 320)
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_loads_from_merges_and_checks_input():
    tok, _ = train_bpe("low lower lowest low low", 270)
    again = BPETokenizer(tok.merges)
    assert again.encode("lowest lows") == tok.encode("lowest lows")
    with pytest.raises(ValueError, match=r"<= 255; got 257"):
        BPETokenizer([(97, 257)])  # id 257 does not exist yet when merge 0 is made
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        BPETokenizer().decode([300])
    for bad in ([-1], [97, -3], [tok.vocab_size]):  # a negative id must not index from the end
        with pytest.raises(ValueError, match=rf"ids must be ints in \[0, {tok.vocab_size - 1}\]; got -?\d+"):
            tok.decode(bad)
    for bad in ([True], [97.0], ["a"]):
        with pytest.raises(TypeError, match=r"ids must be ints in \[0, \d+\]; got (bool|float|str)"):
            tok.decode(bad)
    assert tok.decode([tok.vocab_size - 1]) == tok.vocab[-1].decode("utf-8", errors="replace")
    with pytest.raises(ValueError, match=r"each merge must be a pair \(a, b\) of token ids; got \(1, 2, 3\)"):
        BPETokenizer([(1, 2, 3)])
    with pytest.raises(ValueError, match="each merge must be a pair"):
        BPETokenizer([97])
    with pytest.raises(ValueError, match="vocab_size must be >= 256"):
        train_bpe("abc", 100)
    with pytest.raises(TypeError, match="text must be a str"):
        tok.encode(b"bytes")


def test_training_on_the_whole_corpus_shortens_it():
    text = load_corpus()  # about 100k characters (a second or so; no time is asserted)
    tok, counts = train_bpe(text, 512)
    assert tok.vocab_size == 512
    # a merge never makes a pair more frequent than the one just merged
    assert counts == sorted(counts, reverse=True)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(ids) < 0.5 * len(text.encode("utf-8"))
