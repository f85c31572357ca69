"""Data: the kinds of data a run trains on (`lit_regularize.data.kinds`: a registry, one module per kind) and their
DataModules.

The registry is all the rest of the package uses: `data_kind(cfg.data)` gives the kind of a --data value, which
builds the DataModule, names the classes, reads new inputs for predict and describes the input for export. Importing
this package loads no torch (the DataModule names below load on first use).
"""
from __future__ import annotations

from typing import Any

from lit_regularize.data.kinds import (DataKind, ImageKind, MultiHotKind, OwnKind, PredictOptions, TextKind,
                                       data_kind, data_kinds, register_data_kind)

_LAZY = {"SplitDataModule": "base", "IMDBDataModule": "imdb", "MNISTDataModule": "mnist",
         "ImageDataModule": "mnist", "MultiHot": "multihot"}


def __getattr__(name: str) -> Any:  # PEP 562: the DataModules need torch and Lightning, loaded on first use only
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"lit_regularize.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'lit_regularize.data' has no attribute {name!r}")


__all__ = ["DataKind", "MultiHotKind", "TextKind", "ImageKind", "OwnKind", "PredictOptions", "register_data_kind",
           "data_kind", "data_kinds", *_LAZY]
