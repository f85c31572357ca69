"""Data kinds as plug-ins: one module each, registered by name (see `base.py` for what a module owns).

Registration order is the order --help lists them in. Importing this package registers the built-in kinds; it imports
no torch, numpy or Lightning.
"""
from lit_regularize.data.kinds.base import (DataKind, ImageKind, MultiHotKind, OwnKind, PredictOptions, TextKind,
                                            data_help, data_kind, data_kinds, kind_module, kinds_accepting,
                                            named_datasets, own_kinds, register_data_kind,
                                            unregister_data_kind)
from lit_regularize.data.kinds import imdb, mnist, npz, csv, textdir, imagedir  # noqa: F401,E402

__all__ = ["DataKind", "MultiHotKind", "TextKind", "ImageKind", "OwnKind", "PredictOptions", "register_data_kind",
           "unregister_data_kind", "data_kind", "data_kinds", "data_help", "kind_module", "kinds_accepting",
           "named_datasets", "own_kinds"]
