"""--data textdir:PATH: text files in class folders, PATH/train/<class>/*.txt (and optionally PATH/test/<class>/*.txt).

Texts are tokenized with keras' default `text_to_word_sequence` (lit_regularize.text). The vocabulary is fitted
on the training examples only: words ranked by how often they occur there (1 = most frequent, ties in order of
first appearance), kept while id = rank + 3 < num_words, exactly as keras' IMDB encoding (start 1, OOV 2). Rows
are multi-hot CSR, num_words wide, and train through the sparse first layer. The word index (word -> rank of the
kept words) is an artifact of the run: `lit_regularize.text.encode_texts(texts, word_index, num_words)` encodes new
texts into the very rows training used; `read_documents` reads new .txt files for predict by the same rule.
The kind (settings, predict, export) is lit_regularize.data.kinds.textdir.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_regularize.data.base import SplitDataModule
from lit_regularize.data.kinds.textdir import TEXT_SUFFIXES, WORD_INDEX
from lit_regularize.data.multihot import CSRArrays, MultiHotDataset, encode
from lit_regularize.data.own import OwnData, check_classes, class_folders, file_names, files_of, stamp
from lit_regularize.errors import DataError
from lit_regularize.text import text_to_word_sequence


class Corpus(NamedTuple):
    """Every text as its unique corpus-word ids with their counts (CSR), and the labels; per split."""

    crow: np.ndarray  # int64, len n + 1
    words: np.ndarray  # int64 corpus-word ids (shared across splits)
    counts: np.ndarray  # int32 occurrences of each word in its text
    labels: np.ndarray  # int64 class codes


class TextDir(NamedTuple):
    splits: dict[str, Corpus]
    vocabulary: list[str]  # corpus-word id -> word, in order of first appearance
    class_names: list[str]


def read_text(path: Path) -> str:
    """A text file by the one rule of text inputs (lit_regularize.textio: UTF-8, undecodable bytes replaced and
    counted in one warning line naming the file); used at training and by predict alike."""
    from lit_regularize.oserrors import os_reason
    from lit_regularize.textio import decode_text

    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({os_reason(e)})") from None
    return decode_text(raw, str(path))


def read_documents(item: str) -> tuple[list[str], list[str]]:
    """(a name per file, its text) of a .txt file or a folder of them (searched recursively), for predict."""
    files = files_of(item, TEXT_SUFFIXES, "text")
    return file_names(item, files), [read_text(f) for f in files]


@functools.lru_cache(maxsize=4)
def load_textdir(path: str, key: str) -> TextDir:
    """Tokenized class folders of path; cached per process (key: every file's name, mtime and size)."""
    folders = class_folders(Path(path), TEXT_SUFFIXES, "text")
    class_names = list(folders["train"])
    check_classes(class_names, f"{path}/train")
    code = {c: i for i, c in enumerate(class_names)}
    vocab: dict[str, int] = {}
    splits = {}
    for split, classes in folders.items():
        crow, words, counts, labels = [0], [], [], []
        for c, files in classes.items():
            for f in files:
                ids = [vocab.setdefault(w, len(vocab)) for w in text_to_word_sequence(read_text(f))]
                u, n = np.unique(np.asarray(ids, np.int64), return_counts=True)
                words.append(u)
                counts.append(n.astype(np.int32))
                crow.append(crow[-1] + len(u))
                labels.append(code[c])
        splits[split] = Corpus(np.asarray(crow, np.int64), np.concatenate(words), np.concatenate(counts),
                               np.asarray(labels, np.int64))
    return TextDir(splits, list(vocab), class_names)


def fit_word_index(corpus: Corpus, idx: np.ndarray, vocabulary: list[str], num_words: int) -> dict[str, int]:
    """word -> rank (1 = most frequent in the texts idx) of the words whose keras id rank + 3 is < num_words."""
    starts, ends = corpus.crow[idx], corpus.crow[idx + 1]
    lens = ends - starts
    pos = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(lens.sum())
    totals = np.bincount(corpus.words[pos], weights=corpus.counts[pos], minlength=len(vocabulary))
    seen = np.flatnonzero(totals > 0)
    ranked = seen[np.argsort(-totals[seen], kind="stable")][:max(num_words - 4, 0)]  # ties: first appearance
    return {vocabulary[w]: r + 1 for r, w in enumerate(ranked.tolist())}


def encode_corpus(corpus: Corpus, ranks: np.ndarray, num_words: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (crow, cols) keras ids of every text: multihot.encode of the texts' rank sequences (order is irrelevant
    to a multi-hot row, so the unique words stand for the sequence)."""
    seqs = np.split(ranks[corpus.words], corpus.crow[1:-1]) if len(corpus.labels) else []
    return encode(seqs, num_words)  # type: ignore[arg-type]


class TextDirDataModule(OwnData, SplitDataModule):
    """Text files in class folders as num_words-wide multi-hot rows (vocabulary of the training examples)."""

    def __init__(self, path: str | os.PathLike, *, num_words: int = 10000, dense: bool = False,
                 test_size: float = 0.2, **split: Any) -> None:
        """path: holds train/<class>/*.txt (+ test/<class>/*.txt); num_words: keras' num_words; dense: float
        rows instead of CSR batches; test_size: held-out share without test/; split: SplitDataModule's arguments."""
        super().__init__(path, test_size=test_size, **split)
        self.num_words, self.dense = num_words, dense
        self.n_features = num_words
        self.data: Optional[TextDir] = None
        self.word_index: dict[str, int] = {}
        self.encoded: dict[str, CSRArrays] = {}

    def load_source(self) -> tuple[np.ndarray, bool]:
        p = self.path.resolve()
        self.data = load_textdir(str(p), stamp(p))
        self.class_names = list(self.data.class_names)
        self.n_classes = len(self.class_names)
        return self.data.splits["train"].labels, "test" in self.data.splits

    def fit(self, train_idx: np.ndarray) -> None:
        assert self.data is not None
        self.word_index = fit_word_index(self.data.splits["train"], np.asarray(train_idx, np.int64),
                                         self.data.vocabulary, self.num_words)
        # rank of every corpus word; words the index lacks get rank num_words, which keras' encoding makes OOV
        ranks = np.full(len(self.data.vocabulary), self.num_words, np.int64)
        position = {w: i for i, w in enumerate(self.data.vocabulary)}
        for w, r in self.word_index.items():
            ranks[position[w]] = r
        self.encoded = {}
        for split, corpus in self.data.splits.items():
            crow, cols = encode_corpus(corpus, ranks, self.num_words)
            self.encoded[split] = CSRArrays(torch.from_numpy(crow), torch.from_numpy(cols),
                                            torch.from_numpy(corpus.labels))

    def source_dataset(self, source: str, idx: Optional[np.ndarray]) -> Dataset:
        return MultiHotDataset(self.encoded[source], idx, self.n_features, self.dense,
                               copy=self.copy_rows)

    def artifacts(self) -> dict[str, Any]:
        return {**super().artifacts(), WORD_INDEX: dict(self.word_index)}


__all__ = ["TextDirDataModule", "load_textdir", "fit_word_index", "encode_corpus", "read_text", "read_documents",
           "TEXT_SUFFIXES", "WORD_INDEX"]
