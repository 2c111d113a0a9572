"""The locally built word-level tokenizer: round trips, determinism, save/load; the checkpoint tokenizer path."""

from __future__ import annotations

import pytest

from vlmem.errors import CheckpointError
from vlmem.model.tokenizer import (
    IMAGE_TOKEN,
    build_local_tokenizer,
    load_pretrained_tokenizer,
    load_saved_tokenizer,
)

TEXTS = [
    "How many chairs are in the room?\nAnswer with a single number.",
    "What is the length of the longest dimension (length, width, or height) of the sofa, in meters?",
    "Measuring from the closest point of each object, which of these objects (table, lamp) is the closest to the TV?",
    "12", "3.5", "0.75", "table", "B", "-2", "1,024",
]
ANSWERS = ["12", "3.5", "0.75", "table", "B", "-2", "1,024", "104", "9.99", "Table", "the sofa", "  spaced  out  "]


def roundtrip(tok, s: str) -> str:
    return tok.decode(tok(s, add_special_tokens=False)["input_ids"])


def test_special_tokens_and_ids():
    tok = build_local_tokenizer(TEXTS)
    assert (tok.pad_token, tok.unk_token, tok.bos_token, tok.eos_token) == ("<pad>", "<unk>", "<bos>", "<eos>")
    assert (tok.pad_token_id, tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2, 3)
    assert tok.convert_tokens_to_ids(IMAGE_TOKEN) == 4
    assert IMAGE_TOKEN in tok.all_special_tokens
    ids = tok(f"{IMAGE_TOKEN}{IMAGE_TOKEN} How many chairs", add_special_tokens=False)["input_ids"]
    assert ids[:2] == [4, 4] and tok.unk_token_id not in ids


@pytest.mark.parametrize("answer", ANSWERS)
def test_answers_round_trip(answer):
    # as in vlmem.model.build.dataset_texts: the vocabulary is built from the prompts and the answers
    assert roundtrip(build_local_tokenizer(TEXTS + ANSWERS), answer) == answer


def test_prompts_round_trip_and_numbers_split_into_digits():
    tok = build_local_tokenizer(TEXTS)
    for text in TEXTS:
        assert roundtrip(tok, text) == text
    pieces = tok.convert_ids_to_tokens(tok("3.5", add_special_tokens=False)["input_ids"])
    assert pieces == ["3", ".", "5"]
    assert tok.convert_ids_to_tokens(tok("in 12", add_special_tokens=False)["input_ids"])[-2:] == [" 1", "2"]
    # any number is encodable even if never seen
    assert roundtrip(tok, "Answer: 987654.321") == "Answer: 987654.321"


def test_decode_skips_specials():
    tok = build_local_tokenizer(TEXTS)
    ids = [tok.bos_token_id, *tok("3.5", add_special_tokens=False)["input_ids"], tok.eos_token_id, tok.pad_token_id]
    assert tok.decode(ids, skip_special_tokens=True) == "3.5"


def test_unknown_words_map_to_unk_and_case_is_kept():
    tok = build_local_tokenizer(["table"])
    ids = tok("table Table zebra", add_special_tokens=False)["input_ids"]
    assert ids[0] != tok.unk_token_id
    assert ids[1] == tok.unk_token_id and ids[2] == tok.unk_token_id  # "Table" != "table": case kept


def test_deterministic_and_min_freq():
    a, b = build_local_tokenizer(TEXTS), build_local_tokenizer(list(TEXTS))
    assert a.get_vocab() == b.get_vocab()
    assert build_local_tokenizer(reversed(TEXTS)).get_vocab() == a.get_vocab()  # order of texts does not matter
    rare = build_local_tokenizer(["apple apple pear"], min_freq=2)
    vocab = rare.get_vocab()
    assert "apple" in vocab and " apple" in vocab and "pear" not in vocab and " pear" not in vocab
    with pytest.raises(ValueError):
        build_local_tokenizer(TEXTS, min_freq=0)


def test_save_and_load(tmp_path):
    tok = build_local_tokenizer(TEXTS + ANSWERS)
    tok.save_pretrained(tmp_path / "tokenizer")
    again = load_saved_tokenizer(tmp_path / "tokenizer")
    assert again.get_vocab() == tok.get_vocab()
    assert len(again) == len(tok)
    assert (again.pad_token_id, again.bos_token_id, again.eos_token_id) == (0, 2, 3)
    assert again.convert_tokens_to_ids(IMAGE_TOKEN) == 4
    for answer in ANSWERS:
        assert roundtrip(again, answer) == answer
    with pytest.raises(CheckpointError):
        load_saved_tokenizer(tmp_path / "missing")


def test_load_pretrained_tokenizer_from_local_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    build_local_tokenizer(TEXTS).save_pretrained(tmp_path / "ckpt")
    tok = load_pretrained_tokenizer(str(tmp_path / "ckpt"))
    assert roundtrip(tok, "3.5") == "3.5"
    with pytest.raises(CheckpointError, match="model.lm.pretrained"):
        load_pretrained_tokenizer(str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match="model.vision.pretrained"):
        load_pretrained_tokenizer("vlmem-test/not-cached", key="model.vision.pretrained")
