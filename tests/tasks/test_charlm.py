"""The charlm task: its text and hash, the splits and windows, the vocabulary and entropy."""

import hashlib
from collections import Counter

import pytest
import torch

from optlab.tasks.charlm import (
    SPLITS,
    STDLIB_FILES,
    TextMismatch,
    encode,
    make_charlm,
    stdlib_dir,
    unigram_entropy_bits,
)

TASK = make_charlm(block_size=64, eval_chars=5_000, test_chars=3_000)
TEXT = "".join((stdlib_dir() / f).read_text(encoding="utf-8") for f in STDLIB_FILES)


def test_hash_is_sha256_of_the_files_read_by_hand():
    assert TASK.sha256 == hashlib.sha256(TEXT.encode("utf-8")).hexdigest()
    assert 1_000_000 <= len(TEXT) <= 1_500_000  # the size the file list was chosen for


def test_a_wrong_hash_is_one_line_naming_the_field_unless_other_text_is_allowed():
    wrong = "0" * 64
    with pytest.raises(TextMismatch) as err:
        make_charlm(expected_sha256=wrong)
    message = str(err.value)
    assert "\n" not in message and message.startswith("task.sha256:")
    assert TASK.sha256 in message and wrong in message and "allow_other_text" in message
    assert make_charlm(expected_sha256=wrong, allow_other_text=True).sha256 == TASK.sha256
    assert make_charlm(expected_sha256=TASK.sha256).sha256 == TASK.sha256


def test_a_missing_file_is_one_line_naming_it_and_the_stdlib():
    with pytest.raises(TextMismatch) as err:
        make_charlm(files=("json/__init__.py", "no_such_module.py"))
    message = str(err.value)
    assert "\n" not in message and "no_such_module.py" in message
    assert str(stdlib_dir()) in message


def test_split_sizes_add_up_and_windows_drop_the_incomplete_last():
    s = TASK.summary()
    assert s["train"]["chars"] + s["eval"]["chars"] + s["test"]["chars"] == len(TEXT)
    assert (s["eval"]["chars"], s["test"]["chars"]) == (5_000, 3_000)
    assert s["eval"]["windows"] == 78  # (5000 − 1) // 64: each window needs T + 1 characters
    for split in SPLITS:
        x, y = TASK.tensors(split)
        assert x.shape == y.shape == (s[split]["windows"], 64)
        assert x.dtype == y.dtype == torch.int64


def test_y_is_x_shifted_by_one_and_decodes_to_the_text():
    """Window i of a split reads the split's characters [64i, 64i + 64), y those one later."""
    alphabet = TASK.vocab + "\0"  # the unseen-character index decodes to "\0"
    start = {"train": 0, "eval": len(TEXT) - 8_000, "test": len(TEXT) - 3_000}
    for split in SPLITS:
        x, y = TASK.tensors(split)
        assert torch.equal(x[:, 1:], y[:, :-1])
        assert torch.equal(x[1:, 0], y[:-1, -1])  # windows do not overlap and leave no gap
        for i in (0, len(x) - 1):
            a = start[split] + 64 * i
            assert "".join(alphabet[j] for j in x[i]) == TEXT[a : a + 64]
            assert "".join(alphabet[j] for j in y[i]) == TEXT[a + 1 : a + 65]


def test_vocabulary_is_the_training_characters_plus_one_unseen_index():
    train = TEXT[: len(TEXT) - 8_000]
    assert TASK.vocab == "".join(sorted(set(train)))
    assert TASK.classes == len(TASK.vocab) + 1
    assert encode("a\u03be", "ab").tolist() == [0, 2]  # ξ is not in the vocabulary: index 2


def test_unigram_entropy_by_hand():
    assert unigram_entropy_bits([1, 1]) == pytest.approx(1.0)  # a fair coin
    assert unigram_entropy_bits([1, 1, 1, 1]) == pytest.approx(2.0)
    assert unigram_entropy_bits([2, 1, 1]) == pytest.approx(1.5)  # ½·1 + ¼·2 + ¼·2
    assert unigram_entropy_bits([3, 0]) == 0.0  # a certain outcome; zeros are ignored
    train = TEXT[: len(TEXT) - 8_000]
    expected = unigram_entropy_bits(list(Counter(train).values()))
    assert TASK.unigram_entropy_bits == pytest.approx(expected, rel=1e-12)
    assert 4.0 < TASK.unigram_entropy_bits < 5.0  # Python source: about 4.45 bits


def test_task_protocol_fields():
    assert (TASK.name, TASK.loss, TASK.streams, TASK.bits_per_char) == (
        "charlm",
        "cross_entropy",
        False,
        True,
    )
    assert TASK.input_shape == (64,) and TASK.arrays() == {}
    assert TASK.summary()["vocab_size"] == TASK.classes
