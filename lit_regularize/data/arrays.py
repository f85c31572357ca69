"""--data npz:PATH: the user's own arrays, dense or CSR, with integer labels.

Keys: x_train, y_train and optionally x_test, y_test (dense numeric features, any shape N × …, flattened), or the
CSR parts x_train_indptr, x_train_indices, x_train_data, x_train_shape (and x_test_*) for sparse inputs. CSR
inputs whose stored values are all 1 are multi-hot and train through the sparse first layer (MultiHot batches);
other CSR values become dense float rows one batch at a time. Features are used as given (no scaling).
Labels are integers, remapped to 0..C-1; the class names are the label values. `NpzInputs` reads new .npz files
for predict into the very Datasets training used. The kind (settings, predict, export) is
lit_regularize.data.kinds.npz.
"""
from __future__ import annotations

import functools
import os
import pickle
import zipfile
import sys
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_regularize.data.base import SplitDataModule
from lit_regularize.data.multihot import CSRArrays, MultiHotDataset
from lit_regularize.data.own import (OwnData, as_int_labels, check_classes, encode_labels, existing_file, row_names,
                                     stamp)
from lit_regularize.errors import DataError

CSR_PARTS = ("indptr", "indices", "data", "shape")
SCALE_RATIO = 100.0  # feature std spread beyond which a fit warns that the npz features are unscaled


class Split(NamedTuple):
    """One split of an npz: dense rows (x) or CSR rows (crow, cols, values; values None when all 1), labels."""

    x: Optional[torch.Tensor]
    crow: Optional[torch.Tensor]
    cols: Optional[torch.Tensor]
    values: Optional[torch.Tensor]
    labels: torch.Tensor  # int64 codes


class NpzData(NamedTuple):
    splits: dict[str, Split]
    n_features: int
    class_names: list[str]
    sparse: bool
    binary: bool


def _first_bad_row(ok_rows: np.ndarray) -> int:
    return int(np.flatnonzero(~ok_rows)[0])


def _dense(path: Path, x: np.ndarray, name: str) -> np.ndarray:
    if x.dtype.kind not in "fiub":
        raise DataError(f"{path}: {name} must hold numbers, got dtype {x.dtype}")
    if x.ndim < 2:
        raise DataError(f"{path}: {name} must be 2-D (examples × features) or more, got shape {x.shape}")
    x = x.reshape(len(x), -1)
    out = np.empty(x.shape, np.float32)
    for start in range(0, len(x), 65536):  # chunked: the finiteness check never copies the whole array
        chunk = x[start:start + 65536].astype(np.float32)
        finite = np.isfinite(chunk).all(axis=1)
        if not finite.all():
            raise DataError(f"{path}: {name}[{start + _first_bad_row(finite)}] holds NaN or inf")
        out[start:start + len(chunk)] = chunk
    return out


def _csr(path: Path, f: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Validated CSR parts of name: (crow, cols, values) without explicit zeros, duplicates summed, sorted."""
    try:
        indptr, indices, data, shape = (np.asarray(f[f"{name}_{p}"]) for p in CSR_PARTS)
    except KeyError as e:
        raise DataError(f"{path}: missing key {e.args[0]} (CSR inputs need {', '.join(f'{name}_{p}' for p in CSR_PARTS)})"
                        ) from None
    if shape.shape != (2,) or shape.dtype.kind not in "iu" or (shape < 0).any():
        raise DataError(f"{path}: {name}_shape must be two non-negative integers (rows, features), got {shape}")
    n, n_features = int(shape[0]), int(shape[1])
    if indptr.ndim != 1 or len(indptr) != n + 1 or indptr.dtype.kind not in "iu":
        raise DataError(f"{path}: {name}_indptr must be {n + 1} integers for {n} rows, got shape {indptr.shape}")
    if indices.ndim != 1 or data.ndim != 1 or len(indices) != len(data) or indices.dtype.kind not in "iu":
        raise DataError(f"{path}: {name}_indices (integers) and {name}_data must be 1-D of equal length, "
                        f"got shapes {indices.shape} and {data.shape}")
    indptr = indptr.astype(np.int64)
    if indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any():
        raise DataError(f"{path}: {name}_indptr must rise from 0 to {len(indices)} (the number of stored values)")
    if data.dtype.kind not in "fiub":
        raise DataError(f"{path}: {name}_data must hold numbers, got dtype {data.dtype}")
    values = data.astype(np.float32)
    if not np.isfinite(values).all():
        bad = int(np.searchsorted(indptr, np.flatnonzero(~np.isfinite(values))[0], side="right") - 1)
        raise DataError(f"{path}: {name} row {bad} holds NaN or inf")
    cols = indices.astype(np.int64)
    if len(cols) and (cols.min() < 0 or cols.max() >= n_features):
        raise DataError(f"{path}: {name}_indices must lie in 0..{n_features - 1} ({name}_shape), found "
                        f"{cols.min() if cols.min() < 0 else cols.max()}")
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    keys = rows * max(n_features, 1) + cols
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    uniq, start = np.unique(keys, return_index=True)
    values = np.add.reduceat(values, start) if len(values) else values  # duplicates sum, as in scipy
    keep = values != 0
    uniq, values = uniq[keep], values[keep]
    r, c = np.divmod(uniq, max(n_features, 1))
    crow = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(r, minlength=n), out=crow[1:])
    return crow, c, values, n, n_features


@functools.lru_cache(maxsize=4)
def load_npz(path: str, key: str) -> NpzData:
    """The npz at path, validated and converted (float32 rows or CSR, int64 label codes); cached per process.

    key (the file's mtime and size) makes a changed file load again.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: not a file")
    if not zipfile.is_zipfile(p):
        raise DataError(f"{p}: not an npz (zip) archive")
    try:
        with np.load(p, allow_pickle=False) as f:
            files = set(f.files)
            sparse = "x_train" not in files and "x_train_indptr" in files
            if "x_train" not in files and not sparse:
                raise DataError(f"{p}: no x_train (dense features) or x_train_indptr/indices/data/shape (CSR); "
                                f"keys found: {', '.join(sorted(files)) or 'none'}")
            if "y_train" not in files:
                raise DataError(f"{p}: no y_train (the labels)")
            has_test = "y_test" in files or "x_test" in files or "x_test_indptr" in files
            if has_test and ("y_test" not in files or ("x_test_indptr" if sparse else "x_test") not in files):
                raise DataError(f"{p}: a test split needs both {'x_test_*' if sparse else 'x_test'} and y_test")
            splits = ("train", "test") if has_test else ("train",)
            raw: dict[str, Any] = {}
            n_features = 0
            for s in splits:
                y = np.asarray(f[f"y_{s}"])
                if sparse:
                    crow, cols, values, n, nf = _csr(p, f, f"x_{s}")
                    raw[s] = (crow, cols, values, y)
                else:
                    x = _dense(p, np.asarray(f[f"x_{s}"]), f"x_{s}")
                    n, nf = len(x), x.shape[1]
                    raw[s] = (x, y)
                if len(y) != n:
                    raise DataError(f"{p}: x_{s} has {n} rows but y_{s} has {len(y)} labels")
                if s == "train":
                    n_features = nf
                elif nf != n_features:
                    raise DataError(f"{p}: x_test has {nf} features but x_train has {n_features}")
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, pickle.UnpicklingError) as e:
        why = " ".join(str(e).split())[:120]
        raise DataError(f"{p}: not a readable npz file ({type(e).__name__}: {why})") from None
    if n_features == 0:
        raise DataError(f"{p}: x_train has no features")
    codes, names, values = encode_labels(raw["train"][-1], f"{p}: y_train")
    check_classes(names, str(p))
    out: dict[str, Split] = {}
    binary = sparse and all(bool((raw[s][2] == 1).all()) for s in splits)
    for s in splits:
        if s == "train":
            y = codes
        else:
            y_raw = as_int_labels(raw[s][-1], f"{p}: y_test")
            unknown = np.setdiff1d(y_raw, values)
            if len(unknown):
                raise DataError(f"{p}: y_test holds label(s) {unknown[:5].tolist()} that y_train does not have")
            y = np.searchsorted(values, y_raw).astype(np.int64)
        labels = torch.from_numpy(y)
        if sparse:
            crow, cols, vals, _ = raw[s]
            out[s] = Split(None, torch.from_numpy(crow), torch.from_numpy(cols),
                           None if binary else torch.from_numpy(vals), labels)
        else:
            out[s] = Split(torch.from_numpy(raw[s][0]), None, None, None, labels)
    note = scale_warning(out["train"].x)
    if note:  # said here, where the file is read: once per process, not once per fold or data module
        print(f"warning: {path}: {note}", file=sys.stderr)
    return NpzData(out, n_features, names, sparse, binary)


class DenseRowsDataset(Dataset):
    """Rows idx of a float matrix; __getitems__ gathers a whole batch."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor, idx: Optional[np.ndarray]) -> None:
        self.x, self.labels = x, labels
        self.idx = torch.arange(len(labels)) if idx is None else torch.as_tensor(idx, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitems__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.idx[torch.as_tensor(positions, dtype=torch.long)]
        return self.x[rows], self.labels[rows]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([i])
        return x[0], y[0]


class CSRValuesDataset(Dataset):
    """Rows idx of a CSR matrix with real values, expanded to dense float rows one batch at a time."""

    def __init__(self, crow: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, labels: torch.Tensor,
                 idx: Optional[np.ndarray], n_features: int) -> None:
        self.crow, self.cols, self.values, self.labels, self.n_features = crow, cols, values, labels, n_features
        self.idx = torch.arange(len(labels)) if idx is None else torch.as_tensor(idx, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitems__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.idx[torch.as_tensor(positions, dtype=torch.long)]
        starts, lens = self.crow[rows], self.crow[rows + 1] - self.crow[rows]
        total = int(lens.sum())
        out_rows = torch.repeat_interleave(torch.arange(len(rows)), lens, output_size=total)
        offsets = torch.cumsum(lens, 0) - lens  # where each row starts in the gathered values
        pos = (starts - offsets).repeat_interleave(lens, output_size=total) + torch.arange(total)
        x = torch.zeros(len(rows), self.n_features)
        x[out_rows, self.cols[pos]] = self.values[pos]
        return x, self.labels[rows]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([i])
        return x[0], y[0]


def scale_warning(x: Optional[torch.Tensor], ratio: float = SCALE_RATIO) -> Optional[str]:
    """A note when dense features' scales differ by more than `ratio` (npz features are used as given: an MLP
    with one learning rate trains badly on columns of std 0.1 beside std 1000), else None."""
    if x is None or x.shape[0] < 2:
        return None
    std = x.reshape(len(x), -1).double().std(0)
    std = std[std > 0]
    if len(std) < 2 or float(std.max() / std.min()) <= ratio:
        return None
    return (f"features are used as given and their standard deviations range from {float(std.min()):.3g} to "
            f"{float(std.max()):.3g}; standardize them with training statistics (or use csv:, which does)")


class NpzDataModule(OwnData, SplitDataModule):
    """The user's npz arrays (dense or CSR); a seeded stratified test split is held out when there is no x_test."""

    def __init__(self, path: str | os.PathLike, *, test_size: float = 0.2, dense: bool = False,
                 **split: Any) -> None:
        """path: the .npz; test_size: held-out share without x_test; dense: multi-hot CSR as dense rows;
        split: SplitDataModule's arguments."""
        super().__init__(path, test_size=test_size, **split)
        self.dense = dense
        self.data: Optional[NpzData] = None

    def load_source(self) -> tuple[np.ndarray, bool]:
        p = self.path.resolve()
        self.data = load_npz(str(p), stamp(p))
        self.n_features, self.n_classes = self.data.n_features, len(self.data.class_names)
        self.class_names = list(self.data.class_names)
        return self.data.splits["train"].labels.numpy(), "test" in self.data.splits

    def source_dataset(self, source: str, idx: Optional[np.ndarray]) -> Dataset:
        assert self.data is not None
        s = self.data.splits[source]
        if s.x is not None:
            return DenseRowsDataset(s.x, s.labels, idx)
        if s.values is None:  # 0/1 multi-hot: the sparse first layer
            return MultiHotDataset(CSRArrays(s.crow, s.cols, s.labels), idx, self.n_features, self.dense,
                                   copy=self.copy_rows)
        return CSRValuesDataset(s.crow, s.cols, s.values, s.labels, idx, self.n_features)


class NpzInputs:
    """Rows of x (dense) or x_indptr/x_indices/x_data/x_shape (CSR) of new .npz files, as training's Datasets."""

    takes_text = False

    def __init__(self, n_features: int, dense: bool) -> None:
        """n_features: the model's input width (new files must match it); dense: multi-hot CSR as dense rows."""
        self.n_features, self.dense = n_features, dense

    def read(self, item: Any) -> tuple[list[str], Dataset]:
        """(a name per row, the Dataset of the rows) of one .npz file."""
        p = existing_file(item, "an .npz file")
        if not zipfile.is_zipfile(p):
            raise DataError(f"{p}: not an npz (zip) archive")
        try:
            with np.load(p, allow_pickle=False) as f:
                x, csr, n, nf = self._rows(p, f)
        except DataError:
            raise
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            why = " ".join(str(e).split())[:120]
            raise DataError(f"{p}: not a readable npz file ({type(e).__name__}: {why})") from None
        if nf != self.n_features:
            raise DataError(f"{p}: x has {nf} features but the run was trained on {self.n_features}")
        if n == 0:
            raise DataError(f"{p}: x has no rows")
        labels = torch.zeros(n, dtype=torch.long)
        if csr is None:
            ds: Dataset = DenseRowsDataset(torch.from_numpy(x), labels, None)
        elif bool((csr[2] == 1).all()):  # 0/1 multi-hot: the sparse first layer, as in training
            ds = MultiHotDataset(CSRArrays(torch.from_numpy(csr[0]), torch.from_numpy(csr[1]), labels), None,
                                 self.n_features, self.dense)
        else:
            ds = CSRValuesDataset(*(torch.from_numpy(a) for a in csr), labels, None, self.n_features)
        return row_names(str(item), n), ds

    @staticmethod
    def _rows(p: Path, f: Any) -> tuple[Any, Any, int, int]:
        """(dense x or None, CSR (crow, cols, values) or None, rows, features) of an open npz."""
        if "x" in f.files:
            x = _dense(p, np.asarray(f["x"]), "x")
            return x, None, len(x), x.shape[1]
        if "x_indptr" in f.files:
            crow, cols, values, n, nf = _csr(p, f, "x")
            return None, (crow, cols, values), n, nf
        raise DataError(f"{p}: no x (dense features) or x_indptr/x_indices/x_data/x_shape (CSR); "
                        f"keys found: {', '.join(sorted(f.files)) or 'none'}")


__all__ = ["NpzDataModule", "NpzInputs", "load_npz", "DenseRowsDataset", "CSRValuesDataset"]
