"""--data KIND:PATH -> the DataModule of the user's own data, with its own typed arguments.

    npz:PATH       lit_regularize.data.arrays.NpzDataModule      (dense or CSR arrays, integer labels)
    csv:PATH       lit_regularize.data.tabular.CSVDataModule     (a CSV file, or a folder with train.csv/test.csv)
    textdir:PATH   lit_regularize.data.textdir.TextDirDataModule (PATH/train/<class>/*.txt)
    imagedir:PATH  lit_regularize.data.imagedir.ImageDirDataModule (PATH/train/<class>/*.png|jpg…)

Without a test split a seeded, stratified test_size share is held out (split.npz records it as test_idx).
Every one of them has class_names, and artifacts() -> {file name: JSON-able content} for the run folder.
"""
from __future__ import annotations

from typing import Any

from lit_regularize.config import Config
from lit_regularize.data.base import SplitDataModule
from lit_regularize.errors import ConfigError


def custom_datamodule(cfg: Config, split: dict[str, Any]) -> SplitDataModule:
    """The DataModule of cfg.data = KIND:PATH; split: SplitDataModule's keyword arguments (from run.py)."""
    kind, path = cfg.data_kind, cfg.data_path
    if path is None:
        raise ConfigError(f"--data {cfg.data!r} is not KIND:PATH")
    dense = cfg.input_format == "dense"
    if kind == "npz":
        from lit_regularize.data.arrays import NpzDataModule

        return NpzDataModule(path, test_size=cfg.test_size, dense=dense, **split)
    if kind == "csv":
        from lit_regularize.data.tabular import CSVDataModule

        return CSVDataModule(path, target=cfg.target, dropna=cfg.dropna, test_size=cfg.test_size, **split)
    if kind == "textdir":
        from lit_regularize.data.textdir import TextDirDataModule

        return TextDirDataModule(path, num_words=cfg.num_words, dense=dense, test_size=cfg.test_size, **split)
    if kind == "imagedir":
        from lit_regularize.data.imagedir import ImageDirDataModule

        return ImageDirDataModule(path, image_size=cfg.image_size, n_per_class=cfg.n_per_class,
                                  augment=cfg.augment, hflip=cfg.hflip, test_size=cfg.test_size, **split)
    raise ConfigError(f"--data {cfg.data!r}: unknown kind {kind!r}")


__all__ = ["custom_datamodule"]
