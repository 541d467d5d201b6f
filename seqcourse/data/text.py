"""Real text that needs no download, a character vocabulary, and random training windows.

The corpus is Python standard-library source read from the running interpreter's own files: a
mix of English prose (docstrings, comments) and code, a few hundred kilobytes at most, always
present where Python is. The text is deterministic for a given Python version; another version
ships slightly different files, so counts computed from the corpus can differ between versions.
"""
from __future__ import annotations

import sysconfig
from pathlib import Path

import torch

CORPUS_FILES = (
    "bisect.py",
    "colorsys.py",
    "fnmatch.py",
    "glob.py",
    "heapq.py",
    "queue.py",
    "reprlib.py",
    "sched.py",
    "string.py",
    "textwrap.py",
)
"""Standard-library modules whose source forms the corpus, in the order they are concatenated."""


def load_corpus(max_chars: int | None = None) -> str:
    """Return the course's text corpus: the source of ``CORPUS_FILES``, concatenated.

    The files are read (UTF-8) from ``sysconfig.get_paths()["stdlib"]`` of the running
    interpreter, in the fixed order of ``CORPUS_FILES``, and joined with one blank line. The result
    is the same on every call.

    Args:
        max_chars: keep only the first ``max_chars`` characters (a positive int), or ``None`` for
            the whole corpus (about 100,000 characters).

    Raises:
        FileNotFoundError: naming the file, if this Python installation lacks one of them (some
            minimal distributions strip the standard library's source).
    """
    if max_chars is not None and (isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1):
        raise ValueError(f"max_chars must be a positive int or None; got {max_chars!r}")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for name in CORPUS_FILES:
        path = stdlib / name
        if not path.is_file():
            raise FileNotFoundError(
                f"the corpus file {path} is missing: seqcourse.data.text reads Python's standard-library "
                f"source ({', '.join(CORPUS_FILES)}), and this Python installation does not include it"
            )
        parts.append(path.read_text(encoding="utf-8"))
    text = "\n\n".join(parts)
    return text if max_chars is None else text[:max_chars]


class CharVocab:
    """A character-level vocabulary: each distinct character of ``text`` gets an id.

    Ids follow the sorted order of the characters (``itos[i]`` is the character with id ``i``,
    ``stoi[c]`` the id of character ``c``), so the same text always gives the same ids. There is
    no unknown symbol: encoding a character the vocabulary has not seen raises ``ValueError``.
    """

    def __init__(self, text: str):
        if not isinstance(text, str):
            raise TypeError(f"CharVocab needs a str to collect characters from; got {type(text).__name__}")
        if not text:
            raise ValueError("CharVocab needs a non-empty text to collect characters from")
        self.itos: list[str] = sorted(set(text))
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"CharVocab({len(self)} characters)"

    def encode(self, text: str) -> torch.Tensor:
        """Map a string of ``T`` characters to a long tensor of ids, shape ``(T,)``.

        Raises ``ValueError`` naming every character of ``text`` that is not in the vocabulary.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str; got {type(text).__name__}")
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ValueError(
                f"encode: {len(unknown)} character(s) not in the vocabulary: "
                f"{', '.join(repr(c) for c in unknown)}. Build the CharVocab from a text that contains "
                "them, or drop them first: ''.join(c for c in text if c in vocab.stoi)"
            )
        return torch.tensor([self.stoi[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        """Map ids (a 1-D integer tensor of shape ``(T,)`` or a sequence of ints) back to a string."""
        if isinstance(ids, torch.Tensor):
            if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
                raise TypeError(f"decode expects integer ids; got a {ids.dtype} tensor")
            if ids.dim() != 1:
                raise ValueError(
                    f"decode expects a 1-D tensor of ids of shape (T,); got shape {tuple(ids.shape)}. "
                    "Decode a batch one row at a time: [vocab.decode(row) for row in ids]"
                )
            ids = ids.tolist()
        ids = list(ids)
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int):
                raise TypeError(f"decode expects integer ids; got {i!r} ({type(i).__name__})")
        bad = sorted({i for i in ids if not 0 <= i < len(self)})
        if bad:
            raise ValueError(f"decode: id(s) {bad} out of range; ids must lie in [0, {len(self)})")
        return "".join(self.itos[i] for i in ids)


def random_windows(
    ids: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Cut ``batch_size`` random windows of ``seq_len`` tokens out of a long 1-D sequence of ids.

    Window ``b`` starts at a uniformly drawn offset :math:`s_b`; the targets are the next tokens:

    .. math::  \text{inputs}[b, t] = \text{ids}[s_b + t], \qquad
               \text{targets}[b, t] = \text{ids}[s_b + t + 1], \qquad 0 \le t < T.

    Args:
        ids: long tensor of shape ``(N,)`` with ``N >= seq_len + 1`` (e.g. ``vocab.encode(text)``).
        batch_size: number of windows ``B >= 1``.
        seq_len: window length ``T >= 1``.
        generator: a CPU ``torch.Generator`` for reproducible offsets (``None``: torch's global RNG).

    Returns:
        ``(inputs, targets)``, each a long tensor of shape ``(B, T)`` on ``ids.device``.
    """
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.dim() != 1:
        got = (
            f"a {ids.dtype} tensor of shape {tuple(ids.shape)}"
            if isinstance(ids, torch.Tensor)
            else type(ids).__name__
        )
        raise TypeError(f"ids must be a 1-D long tensor of shape (N,), e.g. vocab.encode(text); got {got}")
    for value, name in ((batch_size, "batch_size"), (seq_len, "seq_len")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
    if ids.numel() < seq_len + 1:
        raise ValueError(
            f"ids has {ids.numel()} tokens, too few for windows of seq_len={seq_len} plus one target "
            f"token: need at least {seq_len + 1}"
        )
    starts = torch.randint(0, ids.numel() - seq_len, (batch_size, 1), generator=generator)  # (B, 1)
    index = (starts + torch.arange(seq_len + 1)).to(ids.device)  # (B, T + 1)
    window = ids[index]  # (B, T + 1)
    return window[:, :-1], window[:, 1:]
