"""DataModules by dataset name."""
from __future__ import annotations

from typing import Callable

from lit_regularize.config import Config
from lit_regularize.data.base import SplitDataModule
from lit_regularize.data.imdb import IMDBDataModule, MultiHot
from lit_regularize.data.mnist import MNISTDataModule

DATAMODULES: dict[str, Callable[[Config], SplitDataModule]] = {
    "imdb": IMDBDataModule,
    "mnist": MNISTDataModule,
    "fashion_mnist": MNISTDataModule,
}


def build_datamodule(cfg: Config) -> SplitDataModule:
    """The DataModule for cfg.data."""
    return DATAMODULES[cfg.data](cfg)


__all__ = ["DATAMODULES", "build_datamodule", "IMDBDataModule", "MNISTDataModule", "MultiHot", "SplitDataModule"]
