"""--data csv:PATH: one CSV file, or a folder holding train.csv (and optionally test.csv); --target names the label
column (default: the last), --dropna drops rows with a missing value instead of failing.

Numeric columns are standardized and categorical ones one-hot encoded with training statistics, saved in the run
folder (preprocessing.json) so predict encodes new rows the same way. The DataModule and the reader
(lit_regularize.data.tabular) are imported inside the methods: they need torch and Lightning, and this module is
imported whenever the settings schema is read (--help).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

from lit_regularize.data.kinds.base import OwnKind, PredictOptions, count_lines, register_data_kind
from lit_regularize.errors import DataError
from lit_regularize.settings import setting

if TYPE_CHECKING:
    from lit_regularize.config import Config
    from lit_regularize.data.base import SplitDataModule
    from lit_regularize.rundir import RunDir

PREPROCESSING = "preprocessing.json"


@register_data_kind("csv")
class CSV(OwnKind):
    """A table: a header line, then one example per line."""

    settings = (setting("target", str, None, "csv: the label column (default: the last column)", "data",
                        optional=True, metavar="COLUMN"),
                setting("dropna", bool, False, "csv: drop rows with missing values instead of failing", "data"))

    def datamodule(self, cfg: "Config", split: dict[str, Any]) -> "SplitDataModule":
        from lit_regularize.data.tabular import CSVDataModule

        return CSVDataModule(self.path, target=cfg.target, dropna=cfg.dropna, test_size=cfg.test_size, **split)

    def count(self) -> Optional[tuple[int, bool, int]]:
        """Data lines of the file (or of train.csv), less the header."""
        assert self.path is not None
        train = self.path / "train.csv" if self.path.is_dir() else self.path
        if not train.is_file():
            return None
        return max(count_lines(train) - 1, 0), self.path.is_dir() and (self.path / "test.csv").is_file(), 0

    def width(self, settings: Mapping[str, Any], rundir: "RunDir") -> tuple[Optional[int], str]:
        spec = preprocessing(rundir)
        return int(spec["n_features"]), f"{spec['n_features']} columns in {PREPROCESSING}"

    def inputs(self, settings: Mapping[str, Any], rundir: "RunDir", options: PredictOptions) -> Any:
        from lit_regularize.data.tabular import CSVInputs

        return CSVInputs(rundir.path / PREPROCESSING, preprocessing(rundir))

    def metadata(self, settings: Mapping[str, Any], rundir: "RunDir", options: PredictOptions) -> dict[str, Any]:
        return {"input": "CSV rows: the numeric columns standardized, (x - mean) / std, then one 0/1 column per "
                         "training category (a category training lacked: all zeros); see preprocessing",
                "normalization": None, "num_words": None, "preprocessing": rundir.read_artifact(PREPROCESSING)}


def preprocessing(rundir: "RunDir") -> dict[str, Any]:
    """The run folder's preprocessing.json, checked to be what a CSV run saves."""
    spec = rundir.read_artifact(PREPROCESSING)
    try:
        int(spec["n_features"]), dict(spec["numeric"]), dict(spec["categorical"]), spec["target"]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise DataError(f"{rundir.path / PREPROCESSING}: not the preprocessing a CSV run saves") from None
    return spec


__all__ = ["CSV", "preprocessing", "PREPROCESSING"]
