"""Tokenizers: the checkpoint's own (`AutoTokenizer`), or a small word-level one built from the dataset text.

The local tokenizer (built with the `tokenizers` library, wrapped as a `PreTrainedTokenizerFast`):
  * pieces are words (letters kept with their case), single digits, single punctuation marks and
    whitespace runs; a piece carries the one space before it (GPT-2 style: " chairs", " 1", "2"),
    so decoding is plain concatenation and `decode(encode(s)) == s` whenever every piece is known;
  * numbers are split into single digits ("3.5" -> "3" "." "5", " 12" -> " 1" "2"): every number
    is encodable even if it never occurred in the data, and the LM learns numbers digit by digit;
  * the ten digits, ASCII punctuation (with and without a leading space), " " and "\n" are always
    in the vocabulary, and every word kept gets both forms ("How" and " How");
  * special tokens `<pad>` (0), `<unk>` (1), `<bos>` (2), `<eos>` (3), and the reserved `<image>` (4);
  * deterministic: the same texts give the same ids (specials, the fixed base set, then the
    dataset words by decreasing frequency, ties in code-point order; `min_freq` counts a word with or
    without its leading space).
It is saved with `save_pretrained` next to the run / checkpoint / export and loaded back with
`load_saved_tokenizer`.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PAD, UNK, BOS, EOS, IMAGE_TOKEN = "<pad>", "<unk>", "<bos>", "<eos>", "<image>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, IMAGE_TOKEN)

# words | one digit | one other symbol, each with an optional leading space | whitespace runs
# (a run before a word leaves its last space to the word, as in GPT-2).
PIECE_PATTERN = r" ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]|\s+(?!\S)|\s+"


def _base_pieces() -> list[str]:
    singles = list(string.digits) + list(string.punctuation)
    return singles + [" " + c for c in singles] + [" ", "\n"]


def _bare(piece: str) -> str:
    return piece[1:] if len(piece) > 1 and piece[0] == " " and not piece[1:].isspace() else piece


def _pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Split(Regex(PIECE_PATTERN), behavior="isolated")


def build_local_tokenizer(texts: Iterable[str], min_freq: int = 1):
    """A word-level `PreTrainedTokenizerFast` whose vocabulary is the pieces of `texts` seen at least `min_freq` times."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    if min_freq < 1:
        raise ValueError(f"min_freq must be >= 1, got {min_freq}")
    pre = _pre_tokenizer()
    counts: Counter[str] = Counter()  # keyed by the piece without its leading space
    for text in texts:
        if text is None:
            continue
        counts.update(_bare(piece) for piece, _ in pre.pre_tokenize_str(str(text)))

    vocab: dict[str, int] = {}
    for piece in (*SPECIAL_TOKENS, *_base_pieces()):
        vocab.setdefault(piece, len(vocab))
    for bare, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if n < min_freq:
            continue
        # a word gets both forms, so "How" at the start of a text and " How" after an <image>
        # token (or mid-sentence at eval time) are both known
        for piece in ((bare,) if bare.isspace() else (bare, " " + bare)):
            vocab.setdefault(piece, len(vocab))

    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIAL_TOKENS])
    return _wrap(tok)


def _wrap(tok: Any):
    import transformers
    from transformers import PreTrainedTokenizerFast

    extra_key = "extra_special_tokens" if int(transformers.__version__.split(".")[0]) >= 5 else "additional_special_tokens"
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS,
                                   clean_up_tokenization_spaces=False, padding_side="right",
                                   **{extra_key: [IMAGE_TOKEN]})


def load_saved_tokenizer(path: str | Path):
    """A tokenizer saved with `save_pretrained` (ours or a checkpoint's), from a local folder only."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from vlmem.errors import CheckpointError

    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"no tokenizer folder at {folder}")
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        if (folder / "tokenizer.json").is_file():  # a tokenizer.json without a usable config
            return PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"),
                                           clean_up_tokenization_spaces=False)
        raise CheckpointError(f"cannot load the tokenizer saved in {folder}: {exc}") from exc


def load_pretrained_tokenizer(source: str, revision: str = "main", trust_remote_code: bool = False,
                              key: str = "model.lm.pretrained"):
    """The checkpoint's own tokenizer (`AutoTokenizer.from_pretrained`), with CheckpointError on failure."""
    from transformers import AutoTokenizer

    from vlmem.model.backbones import _load_error, resolve_pretrained

    src, local_only = resolve_pretrained(source, key)
    try:
        return AutoTokenizer.from_pretrained(src, revision=revision, trust_remote_code=bool(trust_remote_code),
                                             local_files_only=local_only)
    except (OSError, ValueError, KeyError) as exc:
        raise _load_error(key, source, revision, exc) from exc
