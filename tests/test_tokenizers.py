"""Tokenizers: exact round trips (Chinese, emoji, mixed scripts), unknowns, and JSON save/load."""

from __future__ import annotations

import pytest

from lmcore import LMError
from lmcore.text import tokenizers

MIXED = "Hello, world! 你好，世界。 Emoji: 🙂👍🏽 — naïve café.\nNew line\ttab  spaces"


@pytest.mark.parametrize("kind", tokenizers.KINDS)
def test_round_trip_mixed_scripts(kind):
    tok = tokenizers.train(kind, MIXED * 3)
    ids = tok.encode(MIXED)
    assert ids.dtype.name == "int32"
    assert ids.min() >= 0 and ids.max() < tok.vocab_size
    assert tok.decode(ids) == MIXED


@pytest.mark.parametrize("kind", tokenizers.KINDS)
def test_save_and_load_give_the_same_ids(kind, tmp_path):
    tok = tokenizers.train(kind, MIXED * 3)
    tokenizers.save(tok, tmp_path / "tok.json")
    again = tokenizers.load(tmp_path / "tok.json")
    assert again.kind == kind
    assert again.vocab_size == tok.vocab_size
    assert again.encode(MIXED).tolist() == tok.encode(MIXED).tolist()


def test_char_vocabulary_is_the_sorted_character_set():
    tok = tokenizers.train("char", "banana")
    assert tok.chars == ["a", "b", "n"]
    assert tok.encode("nab").tolist() == [2, 0, 1]


def test_char_unknowns_are_skipped_and_counted():
    tok = tokenizers.train("char", "abc")
    assert tok.encode("aXbY😀c").tolist() == [0, 1, 2]
    assert tok.unknown("aXbX") == {"X": 2}


def test_word_pieces_split_chinese_per_character_and_map_rare_words_to_unk():
    tok = tokenizers.train("word", "the cat 吃饭 the dog", vocab_size=6)
    assert tok.split("吃饭 cat") == ["吃", "饭", " ", "cat"]
    assert tok.vocab[0] == "<unk>"
    assert len(tok.vocab) == 6
    assert tok.decode(tok.encode("zebra")) == "<unk>"


def test_bpe_learns_merges_and_has_no_unknowns():
    text = "lower lowest newer newest " * 200
    tok = tokenizers.train("bpe", text, vocab_size=300)
    assert tok.vocab_size > 256
    assert len(tok.encode("lowest newest")) < len("lowest newest")  # merges compress
    assert tok.decode(tok.encode("完全没见过的字 🦄")) == "完全没见过的字 🦄"
    assert not tok.unknown("完全没见过")


def test_unknown_kind_is_refused():
    with pytest.raises(LMError, match="unknown tokenizer"):
        tokenizers.train("sentencepiece", "abc")
