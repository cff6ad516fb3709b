"""Character-level language modelling on Python standard-library source, text every machine has.

The text is a fixed, sorted list of stdlib files (``STDLIB_FILES``) read from the running
interpreter's stdlib directory and concatenated in that order. Another Python ships other
text, so the text is identified by its SHA-256; a spec can pin it (``expected_sha256``)
and then refuses different text unless told to accept it (``allow_other_text``).

Splits come from the tail: ``test`` is the last ``test_chars`` characters, ``eval`` the
``eval_chars`` before them, ``train`` the rest. The vocabulary is the sorted distinct
characters of ``train`` plus one final index for a character ``train`` never had. Each
split is cut into non-overlapping windows: window i reads characters [i·T, i·T + T) and
predicts [i·T + 1, i·T + T + 1), so y is x shifted by one.
"""

from __future__ import annotations

import hashlib
import sysconfig
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from optlab.tasks.base import Loss

SPLITS = ("train", "eval", "test")

# Well-known modules present (under these paths) in CPython 3.11 through 3.13: about 1.36 MB.
STDLIB_FILES: tuple[str, ...] = (
    "argparse.py",
    "asyncio/base_events.py",
    "asyncio/events.py",
    "asyncio/futures.py",
    "asyncio/locks.py",
    "asyncio/protocols.py",
    "asyncio/queues.py",
    "asyncio/runners.py",
    "asyncio/streams.py",
    "asyncio/tasks.py",
    "asyncio/transports.py",
    "collections/__init__.py",
    "dataclasses.py",
    "difflib.py",
    "email/__init__.py",
    "email/_header_value_parser.py",
    "email/_parseaddr.py",
    "email/_policybase.py",
    "email/charset.py",
    "email/feedparser.py",
    "email/generator.py",
    "email/header.py",
    "email/headerregistry.py",
    "email/message.py",
    "email/parser.py",
    "email/policy.py",
    "email/utils.py",
    "enum.py",
    "fractions.py",
    "functools.py",
    "http/__init__.py",
    "http/client.py",
    "http/cookiejar.py",
    "http/cookies.py",
    "http/server.py",
    "json/__init__.py",
    "json/decoder.py",
    "json/encoder.py",
    "json/scanner.py",
    "logging/__init__.py",
    "string.py",
    "textwrap.py",
)


class TextMismatch(ValueError):
    """The stdlib text is not the text a spec pinned, or a listed file is missing."""


def stdlib_dir() -> Path:
    """The running interpreter's standard-library directory."""
    return Path(sysconfig.get_paths()["stdlib"])


def read_text(files: Sequence[str], root: Path) -> str:
    """The files under ``root`` read as utf-8 and concatenated in the given order."""
    parts = []
    for name in files:
        path = root / name
        if not path.is_file():
            raise TextMismatch(
                f"task.files: {name!r} is not in the standard library at {root} (another Python?)"
            )
        parts.append(path.read_text(encoding="utf-8"))
    return "".join(parts)


def unigram_entropy_bits(counts: Sequence[int] | np.ndarray) -> float:
    """H = −Σ p log2 p of the frequencies ``counts`` (zeros ignored): the bits per character
    of the best model that ignores context."""
    c = np.asarray(counts, dtype=np.float64)
    p = c[c > 0] / c.sum()
    return float(-(p * np.log2(p)).sum())


def encode(text: str, vocab: str) -> np.ndarray:
    """Each character's index in ``vocab``, or len(vocab) for a character not in it."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    size = max([int(codes.max(initial=0)), *map(ord, vocab)]) + 1
    table = np.full(size, len(vocab), dtype=np.int64)
    table[[ord(ch) for ch in vocab]] = np.arange(len(vocab))
    return table[codes]


@dataclass(frozen=True)
class CharLM:
    """Windows of encoded stdlib text per split, and what identifies the text."""

    files: tuple[str, ...]
    sha256: str  # of the concatenated text's utf-8 bytes
    vocab: str  # the training split's sorted distinct characters; index len(vocab) is "unseen"
    block_size: int  # T, characters per window
    unigram_entropy_bits: float  # of the training split's character frequencies
    ids: dict[str, np.ndarray]  # split -> (chars,) int64 character indices
    name: str = "charlm"
    loss: Loss = "cross_entropy"
    streams: bool = False
    bits_per_char: bool = True  # extra_metrics reports the loss in bits per character

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape: a window of T character indices."""
        return (self.block_size,)

    @property
    def classes(self) -> int:
        """The vocabulary size, the unseen-character index included."""
        return len(self.vocab) + 1

    def windows(self, split: str) -> int:
        """Complete windows in ``split``: each needs T + 1 characters, sharing one with the next."""
        return (len(self.ids[split]) - 1) // self.block_size

    def tensors(self, split: str, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """x and y, both (windows, T) int64 on ``device``; y is the character after each of x."""
        ids, n, t = torch.from_numpy(self.ids[split]), self.windows(split), self.block_size
        x = ids[: n * t].reshape(n, t)
        y = ids[1 : n * t + 1].reshape(n, t)
        return x.to(device), y.to(device)

    def summary(self) -> dict:
        """The files and their hash, the vocabulary, and per split its characters and windows."""
        out: dict = {
            "files": list(self.files),
            "sha256": self.sha256,
            "unigram_entropy_bits": self.unigram_entropy_bits,
            "vocab_size": self.classes,
            "block_size": self.block_size,
        }
        for split in SPLITS:
            out[split] = {"chars": len(self.ids[split]), "windows": self.windows(split)}
        return out

    def arrays(self) -> dict[str, Tensor]:
        """Nothing: no picture of predictions reads task arrays for text."""
        return {}


@lru_cache(maxsize=4)
def make_charlm(
    block_size: int = 128,
    eval_chars: int = 65_536,
    test_chars: int = 65_536,
    files: tuple[str, ...] = STDLIB_FILES,
    expected_sha256: str | None = None,
    allow_other_text: bool = False,
) -> CharLM:
    """Read, check, split and encode the text (cached per process)."""
    root = stdlib_dir()
    text = read_text(files, root)
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if expected_sha256 is not None and sha256 != expected_sha256 and not allow_other_text:
        raise TextMismatch(
            f"task.sha256: the text of these stdlib files hashes to {sha256}, not "
            f"{expected_sha256} (another Python?); set task.allow_other_text = true "
            "to train on it anyway"
        )
    n_train = len(text) - eval_chars - test_chars
    if block_size < 1 or min(eval_chars, test_chars) <= block_size or n_train <= block_size:
        raise ValueError(
            f"task: block_size {block_size}, eval_chars {eval_chars} and test_chars "
            f"{test_chars} leave no complete window in some split of {len(text)} characters"
        )
    cuts = {
        "train": (0, n_train),
        "eval": (n_train, n_train + eval_chars),
        "test": (n_train + eval_chars, len(text)),
    }
    counts = Counter(text[:n_train])
    vocab = "".join(sorted(counts))
    ids = encode(text, vocab)
    return CharLM(
        files=files,
        sha256=sha256,
        vocab=vocab,
        block_size=block_size,
        unigram_entropy_bits=unigram_entropy_bits([counts[ch] for ch in vocab]),
        ids={split: ids[a:b] for split, (a, b) in cuts.items()},
    )
