"""Raw review text -> the multi-hot encoding IMDB models were trained on (keras' tokenizer and word index).

keras' IMDB word index maps a word to its frequency rank (1 = most frequent); `imdb.load_data` stores rank r
as id r + 3 (0 pad, 1 start, 2 out-of-vocabulary) and turns ids >= num_words into 2. `encode_texts` tokenizes
text the way the rank sequences were built (keras' default `text_to_word_sequence`) and then reuses the very
encoder the training data went through (`lit_regularize.data.multihot.encode`), so a review typed in gets the
same row as the same review read from imdb.npz. `text_encoding` is the same recipe as plain data (export writes it
beside a text model, so raw text can be encoded without this package). Nothing here imports torch or keras at module
level.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from lit_regularize.errors import DataError

WORD_INDEX_FILE = "imdb_word_index.json"
# keras' default filter: punctuation, tab, newline (no apostrophe, so "don't" stays one word).
FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
_TABLE = str.maketrans({c: " " for c in FILTERS})


def text_to_word_sequence(text: str) -> list[str]:
    """keras' default `text_to_word_sequence`: lower-case, filter characters -> spaces, split on spaces."""
    return [w for w in text.lower().translate(_TABLE).split(" ") if w]


def load_word_index(path: str | os.PathLike) -> dict[str, int]:
    """keras' imdb_word_index.json (word -> rank >= 1); one-line DataError when missing or malformed."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"word index {p} not found; pass --word-index PATH (keras' {WORD_INDEX_FILE})")
    try:
        index = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        why = " ".join(str(e).split())[:100]
        raise DataError(f"word index {p}: not readable JSON ({type(e).__name__}: {why})") from None
    if not isinstance(index, dict) or not index:
        raise DataError(f"word index {p}: expected a non-empty JSON object of word -> rank")
    bad = next(((k, v) for k, v in index.items()
                if isinstance(v, bool) or not isinstance(v, int) or v < 1), None)
    if bad is not None:
        raise DataError(f"word index {p}: ranks must be integers >= 1, found {bad[0]!r}: {bad[1]!r}")
    return index


def texts_to_ranks(texts: Iterable[str], word_index: dict[str, int], oov_rank: int) -> list[np.ndarray]:
    """Each text as its int64 array of word ranks; words missing from the index get oov_rank."""
    return [np.fromiter((word_index.get(w, oov_rank) for w in text_to_word_sequence(t)), dtype=np.int64)
            for t in texts]


def encode_texts(texts: Sequence[str], word_index: dict[str, int],
                 num_words: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (crow, cols) int64 arrays of the unique keras ids of every text, as imdb.load_data encodes them.

    Rank r -> id r + 3, ids >= num_words -> OOV 2, start id 1 first, sorted unique ids per row; a word
    missing from the index is OOV too (it is given rank num_words, whose id is >= num_words).
    """
    from lit_regularize.data.multihot import encode  # torch comes with it: imported only when encoding

    if isinstance(texts, str):
        raise TypeError("encode_texts takes a sequence of texts, not one string")
    return encode(texts_to_ranks(texts, word_index, oov_rank=num_words), num_words)


def text_encoding(word_index: dict[str, int], num_words: int) -> dict[str, object]:
    """encode_texts as data: lower-case, every `filters` character -> a space, split on spaces (empty strings
    dropped); the row holds 1.0 at `start_id` and at each word's `word_ids` column, `oov_id` for any other word.
    Only words whose id rank + 3 is below num_words are listed (the others are OOV anyway)."""
    from lit_regularize.data.multihot import INDEX_FROM, OOV_CHAR, START_CHAR

    ids = {w: r + INDEX_FROM for w, r in sorted(word_index.items(), key=lambda kv: kv[1]) if r + INDEX_FROM < num_words}
    return {"lower": True, "filters": FILTERS, "split": " ", "start_id": START_CHAR, "oov_id": OOV_CHAR,
            "num_words": num_words, "word_ids": ids}


def inverse_word_index(word_index: dict[str, int]) -> dict[int, str]:
    """rank -> word."""
    return {r: w for w, r in word_index.items()}


def decode_ranks(ranks: Iterable[int], inverse: dict[int, str]) -> str:
    """The words of a rank sequence joined by spaces (ranks not in the inverse index are dropped)."""
    return " ".join(inverse[int(r)] for r in ranks if int(r) in inverse)


__all__ = ["FILTERS", "WORD_INDEX_FILE", "text_to_word_sequence", "load_word_index", "texts_to_ranks",
           "encode_texts", "text_encoding", "inverse_word_index", "decode_ranks"]
