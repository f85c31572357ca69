"""--data textdir:PATH: text files in class folders, PATH/train/<class>/*.txt (and optionally PATH/test/<class>/).

Texts become num_words-wide multi-hot rows with a vocabulary of the training examples' most frequent words
(word_index.json in the run folder). Predict takes review texts (arguments, --file lines or .jsonl, stdin) as an
IMDB run does, and .txt files or folders of them. The DataModule (lit_regularize.data.textdir) is imported inside the
methods: it needs torch and Lightning, and this module is imported whenever the settings schema is read (--help).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Optional

from lit_regularize.data.kinds.base import OwnKind, PredictOptions, TextKind, count_class_files, register_data_kind

if TYPE_CHECKING:
    from lit_regularize.config import Config
    from lit_regularize.data.base import SplitDataModule
    from lit_regularize.rundir import RunDir

TEXT_SUFFIXES = (".txt",)
WORD_INDEX = "word_index.json"


@register_data_kind("textdir")
class TextDir(TextKind, OwnKind):
    """Text files sorted into one folder per class."""

    documents: ClassVar[tuple[str, ...]] = TEXT_SUFFIXES

    def datamodule(self, cfg: "Config", split: dict[str, Any]) -> "SplitDataModule":
        from lit_regularize.data.textdir import TextDirDataModule

        return TextDirDataModule(self.path, num_words=cfg.num_words, dense=self.dense(cfg.input_format),
                                 test_size=cfg.test_size, **split)

    def count(self) -> Optional[tuple[int, bool, int]]:
        assert self.path is not None
        return count_class_files(self.path, TEXT_SUFFIXES)

    def width(self, settings: Mapping[str, Any], rundir: "RunDir") -> tuple[Optional[int], str]:
        return int(settings["num_words"]), f"num_words {settings['num_words']}"

    def inputs(self, settings: Mapping[str, Any], rundir: "RunDir", options: PredictOptions) -> Any:
        from lit_regularize.data.multihot import TextInputs
        from lit_regularize.data.textdir import read_documents

        return TextInputs(self, word_index(rundir), int(settings["num_words"]),
                          self.dense(settings["input_format"]), read_files=read_documents)

    def metadata(self, settings: Mapping[str, Any], rundir: "RunDir", options: PredictOptions) -> dict[str, Any]:
        from lit_regularize.text import text_encoding

        num_words = int(settings["num_words"])
        return {"input": "multi-hot rows: 1.0 at every keras word id of the text (1 start, 2 OOV, rank r -> id r + 3, "
                         "ids >= num_words -> 2), ranks from the run folder's word_index.json",
                "normalization": None, "num_words": num_words, "text": text_encoding(word_index(rundir), num_words)}


def word_index(rundir: "RunDir") -> dict[str, int]:
    """The run folder's word_index.json (word -> rank of the kept training words)."""
    from lit_regularize.text import load_word_index

    rundir.read_artifact(WORD_INDEX)  # missing: the run-folder error, before the word-index reader's own
    return load_word_index(rundir.path / WORD_INDEX)


__all__ = ["TextDir", "word_index", "TEXT_SUFFIXES", "WORD_INDEX"]
