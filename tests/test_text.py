"""The text corpus, the character vocabulary and random next-character windows."""
import sysconfig
from pathlib import Path

import pytest
import torch

import seqcourse.data.text as text
from seqcourse.data.text import CORPUS_FILES, CharVocab, load_corpus, random_windows


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


def test_corpus_is_the_listed_files_in_order(corpus):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = [(stdlib / name).read_text(encoding="utf-8") for name in CORPUS_FILES]
    assert list(CORPUS_FILES) == sorted(CORPUS_FILES)
    assert corpus == "\n\n".join(sources)
    assert len(corpus) > 50_000
    assert "Return" in corpus and "def " in corpus  # prose and code


def test_corpus_is_deterministic_and_truncates(corpus):
    assert load_corpus() == corpus
    assert load_corpus(max_chars=1000) == corpus[:1000]
    assert len(load_corpus(max_chars=1)) == 1


@pytest.mark.parametrize("bad", [0, -5, 2.0, True, "100"])
def test_corpus_rejects_bad_max_chars(bad):
    with pytest.raises(ValueError, match="max_chars must be a positive int"):
        load_corpus(max_chars=bad)


def test_missing_corpus_file_is_named(monkeypatch):
    monkeypatch.setattr(text, "CORPUS_FILES", ("bisect.py", "no_such_module_xyz.py"))
    with pytest.raises(FileNotFoundError, match="no_such_module_xyz.py"):
        load_corpus()


def test_vocab_is_sorted_and_consistent(corpus):
    vocab = CharVocab(corpus)
    assert vocab.itos == sorted(set(corpus))
    assert len(vocab) == len(set(corpus))
    assert all(vocab.stoi[c] == i for i, c in enumerate(vocab.itos))
    assert CharVocab(corpus).itos == vocab.itos  # same text, same ids


def test_encode_decode_round_trip(corpus):
    vocab = CharVocab(corpus)
    sample = corpus[5000:7000]
    ids = vocab.encode(sample)
    assert ids.dtype == torch.long and ids.shape == (len(sample),)
    assert vocab.decode(ids) == sample
    assert vocab.decode(ids.tolist()) == sample
    assert CharVocab("cab").encode("abc").tolist() == [0, 1, 2]


def test_encode_names_every_unknown_character():
    vocab = CharVocab("hello world")
    with pytest.raises(ValueError, match=r"2 character\(s\) not in the vocabulary: 'x', 'é'") as err:
        vocab.encode("hex é x")
    assert "c in vocab.stoi" in str(err.value)  # says how to drop them


def test_decode_rejects_bad_ids():
    vocab = CharVocab("abc")
    with pytest.raises(ValueError, match=r"id\(s\) \[3, 7\] out of range; ids must lie in \[0, 3\)"):
        vocab.decode([0, 3, 7])
    with pytest.raises(ValueError, match="1-D"):
        vocab.decode(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer ids"):
        vocab.decode(torch.zeros(3))
    with pytest.raises(TypeError, match="integer ids"):
        vocab.decode([0, 1.0])


def test_vocab_rejects_empty_or_non_string_text():
    with pytest.raises(ValueError, match="non-empty"):
        CharVocab("")
    with pytest.raises(TypeError, match="str"):
        CharVocab(["a", "b"])
    with pytest.raises(TypeError, match="str"):
        CharVocab("ab").encode(b"ab")


def test_windows_are_contiguous_slices_with_next_token_targets(device):
    N, B, T = 12, 400, 3
    ids = torch.arange(N, device=device)
    inputs, targets = random_windows(ids, B, T, torch.Generator().manual_seed(0))
    assert inputs.shape == targets.shape == (B, T)
    assert inputs.dtype == torch.long and inputs.device == ids.device
    starts = inputs[:, 0]
    assert torch.equal(inputs, starts[:, None] + torch.arange(T, device=device))
    assert torch.equal(targets, inputs + 1)
    assert starts.min() == 0 and starts.max() == N - T - 1  # every start, never past the end


def test_windows_follow_the_text():
    vocab = CharVocab("the quick brown fox")
    ids = vocab.encode("the quick brown fox")
    inputs, targets = random_windows(ids, 5, 4, torch.Generator().manual_seed(1))
    for x, y in zip(inputs, targets):
        assert vocab.decode(x)[1:] == vocab.decode(y)[:-1]
        assert vocab.decode(x) + vocab.decode(y)[-1] in "the quick brown fox"


def test_windows_are_deterministic_given_a_generator():
    ids = torch.arange(100)
    a = random_windows(ids, 8, 5, torch.Generator().manual_seed(3))
    b = random_windows(ids, 8, 5, torch.Generator().manual_seed(3))
    c = random_windows(ids, 8, 5, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


def test_window_errors():
    ids = torch.arange(10)
    with pytest.raises(ValueError, match="ids has 10 tokens.*need at least 11"):
        random_windows(ids, 2, 10)
    with pytest.raises(TypeError, match=r"1-D long tensor.*torch.float32"):
        random_windows(ids.float(), 2, 3)
    with pytest.raises(TypeError, match=r"1-D long tensor.*shape \(2, 5\)"):
        random_windows(ids.reshape(2, 5), 2, 3)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        random_windows(ids, 0, 3)
    with pytest.raises(ValueError, match="seq_len must be a positive int"):
        random_windows(ids, 2, 0)
    with pytest.raises(TypeError, match="torch.Generator"):
        random_windows(ids, 2, 3, generator=7)
