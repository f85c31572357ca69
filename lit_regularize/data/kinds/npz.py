"""--data npz:PATH: the user's own arrays: x_train, y_train [, x_test, y_test], dense or CSR, integer labels.

CSR inputs whose stored values are all 1 are multi-hot and train through the sparse first layer (the multihot
family, --input-format); features are used as given. Predict takes .npz files with x (or x_indptr, x_indices,
x_data, x_shape). The DataModule and the reader (lit_regularize.data.arrays) are imported inside the methods: they
need torch and Lightning, and this module is imported whenever the settings schema is read (--help).
"""
from __future__ import annotations

import zipfile
from typing import TYPE_CHECKING, Any, Mapping, Optional

from lit_regularize.data.kinds.base import MultiHotKind, OwnKind, PredictOptions, register_data_kind

if TYPE_CHECKING:
    from lit_regularize.config import Config
    from lit_regularize.data.base import SplitDataModule
    from lit_regularize.rundir import RunDir


@register_data_kind("npz")
class Npz(MultiHotKind, OwnKind):
    """Arrays in an .npz file."""

    def datamodule(self, cfg: "Config", split: dict[str, Any]) -> "SplitDataModule":
        from lit_regularize.data.arrays import NpzDataModule

        return NpzDataModule(self.path, test_size=cfg.test_size, dense=self.dense(cfg.input_format), **split)

    def count(self) -> Optional[tuple[int, bool, int]]:
        """y_train's length from its .npy header (nothing else is read)."""
        import numpy as np

        assert self.path is not None
        with zipfile.ZipFile(self.path) as z:
            names = set(z.namelist())
            if "y_train.npy" not in names:
                return None
            with z.open("y_train.npy") as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape = read(f)[0]
        return (int(shape[0]) if shape else 0), "y_test.npy" in names, 0

    def inputs(self, settings: Mapping[str, Any], rundir: "RunDir", options: PredictOptions) -> Any:
        from lit_regularize.data.arrays import NpzInputs

        return NpzInputs(options.n_features, self.dense(settings["input_format"]))

    def metadata(self, settings: Mapping[str, Any], rundir: "RunDir", options: PredictOptions) -> dict[str, Any]:
        return {"input": "the npz's feature rows as given (no scaling)", "normalization": None, "num_words": None}


__all__ = ["Npz"]
