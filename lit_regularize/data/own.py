"""What the user's-own-data DataModules share: the held-out test split, label encoding, fitted preprocessing,
cache keys and the artifacts a run saves next to its checkpoints; and how predict finds the files of new inputs.

Every index (train_idx, val_idx, test_idx) counts examples of the training source in file order (rows of the
CSV / npz arrays, files sorted by class folder then name), so split.npz names the very examples that were used.
Preprocessing fitted to the data (standardization, one-hot categories, the text vocabulary, image normalization)
is fitted on the training examples only: never on validation or test examples.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
from torch.utils.data import Dataset

from lit_regularize.data.kinds.base import CLASSES_FILE
from lit_regularize.data.base import stratified_holdout
from lit_regularize.errors import DataError

#: share of the held-out training pool that validates when --val-size is not given
DEFAULT_VAL_SHARE = 0.2


def stamp(path: Path) -> str:
    """A cache key for a file (mtime + size) or a folder (every file's relative path, mtime and size)."""
    try:
        if path.is_file():
            st = path.stat()
            return f"{st.st_mtime_ns}:{st.st_size}"
        h = hashlib.sha1()
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                p = Path(root) / name
                st = p.stat()
                h.update(f"{p.relative_to(path)}\0{st.st_mtime_ns}\0{st.st_size}\n".encode("utf-8", "replace"))
        return h.hexdigest()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None


def sort_label_values(values: Iterable[str]) -> list[str]:
    """Label values in order: numerically when they all are numbers ('2' before '10'), else as text."""
    values = list(values)
    try:
        return sorted(values, key=lambda v: (float(v), v))
    except ValueError:
        return sorted(values)


def as_int_labels(y: np.ndarray, what: str) -> np.ndarray:
    """Integer labels (int, bool or integral floats; N or N × 1) as a 1-D int64 array."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{what} must be 1-D (one integer label per example), got shape {y.shape}")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise DataError(f"{what} must hold integer labels, found {y[bad][:3].tolist()}")
    elif y.dtype.kind not in "iub":
        raise DataError(f"{what} must hold integer labels, got dtype {y.dtype}")
    return y.astype(np.int64)


def encode_labels(y: np.ndarray, what: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Integer labels -> (codes 0..C-1 as int64, class names = the label values, the sorted label values)."""
    values, codes = np.unique(as_int_labels(y, what), return_inverse=True)
    return codes.astype(np.int64).ravel(), [str(v) for v in values.tolist()], values


def check_classes(names: list[str], where: str) -> None:
    """Training data with one class cannot train a classifier."""
    if len(names) < 2:
        raise DataError(f"{where}: only one class ({names[0]!r}) in the training data; a classifier needs two or more"
                        if names else f"{where}: no training examples")


def class_folders(root: Path, suffixes: tuple[str, ...], what: str) -> dict[str, dict[str, list[Path]]]:
    """{'train': {class: sorted files}, maybe 'test': …} of root/train/<class>/* (and root/test/<class>/*).

    Class folders are sorted by name (torchvision ImageFolder's order); only files with one of the suffixes
    count. A missing train/ folder, no class folders, an empty class folder or a test class that train/ lacks
    is a DataError.
    """
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected {root}/train/<class>/*{suffixes[0]})")
    out: dict[str, dict[str, list[Path]]] = {}
    for split in ("train", "test"):
        folder = root / split
        if not folder.is_dir():
            if split == "train":
                raise DataError(f"{root}: no train/ folder (expected {root}/train/<class>/*{suffixes[0]})")
            continue
        try:
            classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
            if not classes:
                raise DataError(f"{folder}: no class folders (expected {folder}/<class>/*{suffixes[0]})")
            out[split] = {}
            for c in classes:
                files = sorted(p for p in (folder / c).iterdir()
                               if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."))
                if not files:
                    raise DataError(f"{folder / c}: empty class folder (no {what} files: {', '.join(suffixes)})")
                out[split][c] = files
        except OSError as e:
            raise DataError(f"{folder}: cannot list ({e.strerror})") from None
    if "test" in out:
        unknown = sorted(set(out["test"]) - set(out["train"]))
        if unknown:
            raise DataError(f"{root / 'test'}: class folder(s) {', '.join(map(repr, unknown[:5]))} that train/ lacks")
    return out


def existing(item: str | os.PathLike) -> Path:
    """A predict input path that exists (a missing one is a DataError)."""
    if not isinstance(item, (str, os.PathLike)):
        from lit_regularize.errors import UserError

        raise UserError(f"own-data runs predict from file or folder paths, got {type(item).__name__}")
    p = Path(item).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    return p


def existing_file(item: str | os.PathLike, what: str) -> Path:
    """A predict input path that is a file (what: the kind of file expected, for the error)."""
    p = existing(item)
    if not p.is_file():
        raise DataError(f"{p}: not a file (expected {what})")
    return p


def files_of(item: str | os.PathLike, suffixes: tuple[str, ...], what: str) -> list[Path]:
    """[item] for a file (whatever its suffix), else the folder's files with one of suffixes, recursively, sorted."""
    p = existing(item)
    if p.is_file():
        return [p]
    try:
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes
                       and not any(part.startswith(".") for part in f.relative_to(p).parts))
    except OSError as e:
        from lit_regularize.oserrors import os_reason

        raise DataError(f"{p}: cannot list ({os_reason(e)})") from None
    if not files:
        raise DataError(f"{p}: empty folder (no {what} files: {', '.join(suffixes)})")
    return files


def row_names(shown: str, n: int) -> list[str]:
    """How predict names the examples of one input: the input itself, or input[i] when it holds several."""
    return [shown] if n == 1 else [f"{shown}[{i}]" for i in range(n)]


def file_names(item: str, files: list[Path]) -> list[str]:
    """How predict names the examples of a file-or-folder input: the file as given, or each file of the folder."""
    return [item] if Path(item).is_file() else [str(f) for f in files]


class OwnData:
    """Mixin (listed before the SplitDataModule subclass) for the user's own data at `path`.

    Subclasses implement `load_source()` (read or reuse the cached data; set n_features, n_classes,
    class_names; return the training labels as codes and whether a test split exists), `source_dataset(source,
    idx)` (a Dataset over rows idx of source 'train' or 'test'), and optionally `fit(train_idx)` (fit
    preprocessing on the training examples) and `artifacts()`.
    """

    def __init__(self, path: str | os.PathLike, *, test_size: float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[call-arg]
        self.path = Path(path).expanduser()
        self.test_size = test_size
        self.has_test_split = False
        self.labels: np.ndarray = np.zeros(0, np.int64)  # training-source labels as codes
        self.pool: np.ndarray = np.zeros(0, np.int64)  # training-source rows that are not held out for testing
        self.test_idx: Optional[np.ndarray] = None  # held-out rows (None when the data has its own test split)

    # -- what subclasses provide ------------------------------------------------------------------------
    def load_source(self) -> tuple[np.ndarray, bool]:
        raise NotImplementedError

    def source_dataset(self, source: str, idx: Optional[np.ndarray]) -> Dataset:
        raise NotImplementedError

    def fit(self, train_idx: np.ndarray) -> None:
        """Fit preprocessing on the training examples (rows of the training source)."""

    def artifacts(self) -> dict[str, Any]:
        """JSON-able files (name -> content) that predicting with this run needs; run() saves them in the run folder."""
        return {CLASSES_FILE: list(self.class_names or [])}  # type: ignore[attr-defined]

    # -- SplitDataModule hooks --------------------------------------------------------------------------
    def load(self) -> None:
        if not self.path.exists():
            raise DataError(f"{self.path}: no such file or folder")
        self.labels, self.has_test_split = self.load_source()
        if self.has_test_split:
            self.pool, self.test_idx = np.arange(len(self.labels)), None
        else:
            self.pool, self.test_idx = stratified_holdout(self.labels, self.test_size, self.seed,  # type: ignore
                                                          self.class_names)  # type: ignore[attr-defined]

    def train_pool(self) -> np.ndarray:
        return self.pool

    def train_labels(self) -> np.ndarray:
        """Class codes of the training source's rows (what split indices count)."""
        return self.labels

    @property
    def default_val_size(self) -> int:  # type: ignore[override]
        return int(round(DEFAULT_VAL_SHARE * len(self.pool)))

    def make_dataset(self, split: str, idx: Optional[np.ndarray]) -> Dataset:
        if split == "train":  # SplitDataModule.setup builds the training set first
            assert idx is not None
            self.fit(idx)
        if split == "test":
            return self.source_dataset("test", None) if self.has_test_split else self.source_dataset("train",
                                                                                                  self.test_idx)
        return self.source_dataset("train", idx)

    def split_record(self) -> dict[str, Any]:
        record = super().split_record()  # type: ignore[misc]
        record["test_idx"] = self.test_idx
        return record


__all__ = ["OwnData", "class_folders", "existing", "existing_file", "files_of", "row_names", "file_names",
           "stamp", "as_int_labels", "encode_labels", "sort_label_values", "check_classes",
           "DEFAULT_VAL_SHARE"]
