"""--data imdb: keras' IMDB reviews (imdb.npz in the data folder) as num_words-wide multi-hot rows, two classes.

Predict takes review texts, tokenized like keras with the data folder's imdb_word_index.json (lit_regularize.text);
export writes the encoding rules and the kept words' input columns, so raw text can be classified without this
package. The DataModule (lit_regularize.data.imdb) is imported inside the methods: it needs torch and Lightning,
and this module is imported whenever the settings schema is read (--help).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from lit_regularize.data.kinds.base import PredictOptions, Shape, TextKind, register_data_kind

if TYPE_CHECKING:
    from lit_regularize.config import Config
    from lit_regularize.data.base import SplitDataModule
    from lit_regularize.rundir import RunDir

WORD_INDEX_FILE = "imdb_word_index.json"
CLASS_NAMES = ["negative", "positive"]


@register_data_kind("imdb")
class IMDB(TextKind):
    """keras' IMDB movie reviews: 25,000 training and 25,000 test reviews, negative / positive."""

    def datamodule(self, cfg: "Config", split: dict[str, Any]) -> "SplitDataModule":
        from lit_regularize.data.imdb import IMDBDataModule

        return IMDBDataModule(cfg.resolved_data_dir(), num_words=cfg.num_words, dense=self.dense(cfg.input_format),
                              **split)

    def class_names(self, settings: Mapping[str, Any], rundir: "RunDir") -> list[str]:
        return list(CLASS_NAMES)

    def shape(self, settings: Mapping[str, Any], rundir: "RunDir") -> Shape:
        return int(settings["num_words"]), 2, f"imdb with num_words {settings['num_words']}"

    def inputs(self, settings: Mapping[str, Any], rundir: "RunDir", options: PredictOptions) -> Any:
        from lit_regularize.data.multihot import TextInputs
        from lit_regularize.text import load_word_index

        word_index = load_word_index(word_index_path(settings, options))  # missing or bad: fails here, at load
        return TextInputs(self, word_index, int(settings["num_words"]), self.dense(settings["input_format"]))

    def metadata(self, settings: Mapping[str, Any], rundir: "RunDir", options: PredictOptions) -> dict[str, Any]:
        from lit_regularize.text import load_word_index, text_encoding

        num_words = int(settings["num_words"])
        path = word_index_path(settings, options)
        meta: dict[str, Any] = {
            "input": "multi-hot rows: 1.0 at every keras word id of the review (1 start, 2 OOV, word rank r -> id "
                     "r + 3, ids >= num_words -> 2)", "normalization": None, "num_words": num_words}
        if path.is_file():
            meta["text"] = text_encoding(load_word_index(path), num_words)
        else:
            meta["text"] = None
            meta["notes"] = [f"no {path}: the vocabulary is left out (export again with --word-index PATH)"]
        return meta


def word_index_path(settings: Mapping[str, Any], options: PredictOptions) -> Path:
    """--word-index, else <data folder>/imdb_word_index.json: --data-dir, else the run's, $LIT_REGULARIZE_DATA_DIR
    or the cache folder."""
    if options.word_index:
        return Path(options.word_index).expanduser()
    d = options.data_dir or settings.get("data_dir") or os.environ.get("LIT_REGULARIZE_DATA_DIR") \
        or Path.home() / ".cache" / "lit_regularize"
    return Path(d).expanduser() / WORD_INDEX_FILE


__all__ = ["IMDB", "word_index_path", "WORD_INDEX_FILE", "CLASS_NAMES"]
