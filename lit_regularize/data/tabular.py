"""--data csv:PATH: one CSV file, or a folder holding train.csv (and optionally test.csv).

The first line is the header; --target names the label column (default: the last). A column whose every
value is a number is numeric, any other is categorical. Numeric columns are standardized with the mean and
standard deviation of the training examples only; categorical columns are one-hot encoded with the categories of
the training examples (a category they lack becomes all zeros). A missing value (empty, NA, N/A, NaN, null,
None, ?) is an error naming its line and column, unless --dropna drops such rows; inf is always an error.

Memory: the file is streamed twice with the csv module (pass 1 finds column types, row count and labels; pass
2 fills preallocated arrays): float32 numbers, int32 category codes, int64 labels, nothing per cell in Python
objects, so the arrays take about 4 bytes a cell whatever the file's size.

`CSVInputs` reads new CSV files for predict with the run's preprocessing.json into the training TableDataset; a
category training never saw is all zeros, and one warning line per file says so. The kind (settings, predict,
export) is lit_regularize.data.kinds.csv.
"""
from __future__ import annotations

import csv
import functools
import math
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_regularize.data.base import SplitDataModule
from lit_regularize.data.own import OwnData, check_classes, existing_file, row_names, sort_label_values, stamp
from lit_regularize.errors import DataError

MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
CHUNK = 65536
MAX_GUESSED_CLASSES = 20  # more distinct values than this (and than half the rows) in a defaulted label column: ask


class Table(NamedTuple):
    """One CSV file as arrays: numeric features, categorical codes (into Tabular.categories), label codes."""

    numeric: np.ndarray  # float32, rows × numeric columns
    codes: np.ndarray  # int32, rows × categorical columns
    labels: np.ndarray  # int64 label codes
    lines: np.ndarray  # int64, the 1-based line number each row came from


class Tabular(NamedTuple):
    """A CSV dataset: its tables ('train', maybe 'test'), column names and the label values."""

    tables: dict[str, Table]
    numeric_columns: list[str]
    categorical_columns: list[str]
    categories: list[list[str]]  # every value seen, per categorical column, in code order
    class_names: list[str]
    target: str


def _is_missing(v: str) -> bool:
    return v.strip().lower() in MISSING


def _open(path: Path) -> Any:
    try:
        return open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None


def _rows(path: Path, f: Any):  # type: ignore[no-untyped-def]
    """(line number, row) of every non-blank data row, csv and decoding errors as one line."""
    reader = csv.reader(f)
    try:
        for row in reader:
            if row:
                yield reader.line_num, row
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text near line {reader.line_num + 1} ({e.reason})") from None
    except csv.Error as e:
        raise DataError(f"{path}: line {reader.line_num}: {e}") from None


def _header(path: Path, rows: Any) -> list[str]:
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}: empty file (expected a header line, then one example per line)")
    header = [h.strip() for h in first[1]]
    dup = next((h for i, h in enumerate(header) if h in header[:i]), None)
    if dup is not None:
        raise DataError(f"{path}: column {dup!r} appears twice in the header")
    return header


class _Scan(NamedTuple):
    header: list[str]
    order: list[int]  # this file's column index of every column of the training header
    numeric: list[bool]
    n_rows: int
    labels: set
    first_inf: dict[int, int]  # column -> line of its first inf
    dropped: int  # rows with a missing value, left out by --dropna


def _scan(path: Path, columns: Optional[list[str]], target: Optional[str], dropna: bool) -> _Scan:
    """Pass 1: header, which columns hold only numbers, kept-row count and label values; missing values fail."""
    with _open(path) as f:
        rows = _rows(path, f)
        header = _header(path, rows)
        if columns is None:
            columns = header
        else:
            missing = [c for c in columns if c not in header]
            if missing:
                raise DataError(f"{path}: no column(s) {', '.join(map(repr, missing[:5]))} that train.csv has")
        order = [header.index(c) for c in columns]
        ncols = len(header)
        t = columns.index(target) if target is not None else len(columns) - 1
        t_file = order[t]
        numeric = [True] * len(columns)
        candidates = [i for i in range(len(columns)) if i != t]
        first_inf: dict[int, int] = {}
        labels: set = set()
        n = dropped = 0
        for line, row in rows:
            if len(row) != ncols:
                raise DataError(f"{path}: line {line} has {len(row)} fields but the header has {ncols}")
            bad = next((i for i in range(len(columns)) if _is_missing(row[order[i]])), None)
            if bad is not None:
                if dropna:
                    dropped += 1
                    continue
                raise DataError(f"{path}: line {line}, column {columns[bad]!r}: missing value "
                                f"{row[order[bad]]!r} (fill it in, or drop such rows with --dropna)")
            n += 1
            labels.add(row[t_file].strip())
            for i in candidates:
                if numeric[i]:
                    try:
                        v = float(row[order[i]])
                    except ValueError:
                        numeric[i] = False
                        continue
                    if math.isinf(v) and i not in first_inf:
                        first_inf[i] = line
            if not all(numeric[i] for i in candidates):
                candidates = [i for i in candidates if numeric[i]]
    numeric[t] = False
    return _Scan(header, order, numeric, n, labels, first_inf, dropped)


def _fill(path: Path, scan: _Scan, num_cols: list[int], cat_cols: list[int], t: int,
          vocab: list[dict[str, int]], label_code: dict[str, int], dropna: bool) -> Table:
    """Pass 2: the kept rows into preallocated float32 / int32 / int64 arrays."""
    numeric = np.empty((scan.n_rows, len(num_cols)), np.float32)
    codes = np.empty((scan.n_rows, len(cat_cols)), np.int32)
    labels = np.empty(scan.n_rows, np.int64)
    lines = np.empty(scan.n_rows, np.int64)
    num_file = [scan.order[i] for i in num_cols]
    cat_file = [scan.order[i] for i in cat_cols]
    all_file = list(scan.order)
    t_file = scan.order[t]
    k = 0
    with _open(path) as f:
        rows = _rows(path, f)
        next(rows)
        for line, row in rows:
            if dropna and any(_is_missing(row[j]) for j in all_file):  # --dropna (pass 1 failed on these otherwise)
                continue
            if num_file:
                numeric[k] = [float(row[j]) for j in num_file]
            for c, j in enumerate(cat_file):
                v = row[j].strip()
                code = vocab[c].get(v)
                if code is None:
                    code = vocab[c][v] = len(vocab[c])
                codes[k, c] = code
            labels[k] = label_code[row[t_file].strip()]
            lines[k] = line
            k += 1
    if k != scan.n_rows:
        raise DataError(f"{path}: changed while being read ({k} rows, then {scan.n_rows})")
    return Table(numeric, codes, labels, lines)


def csv_files(path: Path) -> dict[str, Path]:
    """{'train': …, 'test': …} for a folder with train.csv (and test.csv), or {'train': path} for one file."""
    if path.is_dir():
        train, test = path / "train.csv", path / "test.csv"
        if not train.is_file():
            raise DataError(f"{path}: a CSV folder needs train.csv (and optionally test.csv)")
        return {"train": train, "test": test} if test.is_file() else {"train": train}
    return {"train": path}


@functools.lru_cache(maxsize=4)
def load_csv(path: str, key: str, target: Optional[str], dropna: bool) -> Tabular:
    """The CSV file or folder at path as compact arrays; cached per process (key: the files' mtimes and sizes)."""
    files = csv_files(Path(path))
    scans: dict[str, _Scan] = {}
    for split, p in files.items():
        columns = scans["train"].header if split == "test" else None
        if split == "train":
            with _open(p) as f:
                header = _header(p, _rows(p, f))
            if target is not None and target not in header:
                raise DataError(f"{p}: no label column {target!r} (--target); the columns are "
                                f"{', '.join(header[:20])}{' …' if len(header) > 20 else ''}")
            if len(header) < 2:
                raise DataError(f"{p}: needs feature columns and a label column, the header has {len(header)} column")
        scans[split] = _scan(p, columns, target, dropna)
        if scans[split].n_rows == 0:
            raise DataError(f"{p}: no examples" + (" left after --dropna" if dropna else ""))
    columns = scans["train"].header
    t = columns.index(target) if target is not None else len(columns) - 1
    numeric = [all(s.numeric[i] for s in scans.values()) for i in range(len(columns))]
    for split, s in scans.items():
        for i, line in sorted(s.first_inf.items(), key=lambda kv: kv[1]):
            if numeric[i]:
                raise DataError(f"{files[split]}: line {line}, column {columns[i]!r}: inf is not a usable feature value")
    class_names = sort_label_values(scans["train"].labels)
    n_rows = scans["train"].n_rows
    if target is None and len(class_names) > max(MAX_GUESSED_CLASSES, n_rows // 2):  # an id or a measurement
        raise DataError(f"{files['train']}: the last column {columns[t]!r}, taken as the label (no --target), has "
                        f"{len(class_names)} distinct values in {n_rows} rows; name the label column with --target")
    check_classes(class_names, str(files["train"]))
    if "test" in scans:
        unknown = sorted(scans["test"].labels - scans["train"].labels)
        if unknown:
            raise DataError(f"{files['test']}: label(s) {', '.join(map(repr, unknown[:5]))} in column "
                            f"{columns[t]!r} that train.csv does not have")
    label_code = {v: i for i, v in enumerate(class_names)}
    num_cols = [i for i in range(len(columns)) if i != t and numeric[i]]
    cat_cols = [i for i in range(len(columns)) if i != t and not numeric[i]]
    vocab: list[dict[str, int]] = [{} for _ in cat_cols]
    tables = {split: _fill(files[split], s, num_cols, cat_cols, t, vocab, label_code, dropna) for split, s in scans.items()}
    dropped = {k: s.dropped for k, s in scans.items() if s.dropped}
    if dropped:  # said here, where the file is read: once per process, not once per fold or data module
        print("note: --dropna left out " + ", ".join(f"{n} of {n + scans[k].n_rows} rows of {files[k]}"
                                                      for k, n in dropped.items()) + " (rows with a missing value)",
              file=sys.stderr)
    return Tabular(tables, [columns[i] for i in num_cols], [columns[i] for i in cat_cols],
                   [list(v) for v in vocab], class_names, columns[t])


class Preprocessing(NamedTuple):
    """Fitted on the training examples: numeric means / stds, and every category's one-hot column (-1: none)."""

    mean: np.ndarray  # float32
    std: np.ndarray  # float32
    onehot: np.ndarray  # int64 column of (categorical column base + code), -1 for categories training lacked
    base: np.ndarray  # int64 offset of every categorical column's codes in onehot
    n_features: int


def fit_preprocessing(data: Tabular, idx: np.ndarray) -> Preprocessing:
    """Means, standard deviations (population; 1 for constant columns) and one-hot columns of the rows idx."""
    table = data.tables["train"]
    n_num = table.numeric.shape[1]
    total = np.zeros(n_num, np.float64)
    for s in range(0, len(idx), CHUNK):  # chunked: never a float64 copy of the whole table
        total += table.numeric[idx[s:s + CHUNK]].sum(axis=0, dtype=np.float64)
    mean = total / max(len(idx), 1)
    sq = np.zeros(n_num, np.float64)
    for s in range(0, len(idx), CHUNK):
        sq += ((table.numeric[idx[s:s + CHUNK]].astype(np.float64) - mean) ** 2).sum(axis=0)
    std = np.sqrt(sq / max(len(idx), 1))
    std[~(std > 1e-12)] = 1.0
    sizes = np.array([len(c) for c in data.categories], np.int64)
    base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if len(sizes) else np.zeros(0, np.int64)
    onehot = np.full(int(sizes.sum()), -1, np.int64)
    col = n_num
    for c in range(len(sizes)):
        present = np.unique(table.codes[idx, c])
        onehot[base[c] + present] = col + np.arange(len(present))
        col += len(present)
    return Preprocessing(mean.astype(np.float32), std.astype(np.float32), onehot, base, col)


class TableDataset(Dataset):
    """Rows idx of a Table, standardized and one-hot encoded a whole batch at a time (float32 rows)."""

    def __init__(self, table: Table, idx: Optional[np.ndarray], prep: Preprocessing) -> None:
        self.table, self.prep = table, prep
        self.idx = np.arange(len(table.labels)) if idx is None else np.asarray(idx, np.int64)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitems__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.idx[np.asarray(positions, np.int64)]
        p = self.prep
        x = np.zeros((len(rows), p.n_features), np.float32)
        n_num = len(p.mean)
        x[:, :n_num] = (self.table.numeric[rows] - p.mean) / p.std
        if len(p.base):
            cols = p.onehot[self.table.codes[rows] + p.base]  # rows × categorical columns
            r, c = np.nonzero(cols >= 0)
            x[r, cols[r, c]] = 1.0
        return torch.from_numpy(x), torch.from_numpy(self.table.labels[rows])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([i])
        return x[0], y[0]


class CSVDataModule(OwnData, SplitDataModule):
    """A CSV file or train.csv/test.csv folder: standardized numbers, one-hot categories, a label column."""

    def __init__(self, path: str | os.PathLike, *, target: Optional[str] = None, dropna: bool = False,
                 test_size: float = 0.2, **split: Any) -> None:
        """path: a .csv or a folder with train.csv (+ test.csv); target: the label column (default last);
        dropna: drop rows with missing values instead of failing; test_size: held-out share without test.csv;
        split: SplitDataModule's arguments."""
        super().__init__(path, test_size=test_size, **split)
        self.target, self.dropna = target, dropna
        self.data: Optional[Tabular] = None
        self.prep: Optional[Preprocessing] = None

    def load_source(self) -> tuple[np.ndarray, bool]:
        p = self.path.resolve()
        self.data = load_csv(str(p), stamp(p), self.target, self.dropna)
        self.class_names = list(self.data.class_names)
        self.n_classes = len(self.class_names)
        # the width until fit() knows the training categories: every category seen
        self.n_features = len(self.data.numeric_columns) + sum(len(c) for c in self.data.categories)
        return self.data.tables["train"].labels, "test" in self.data.tables

    def fit(self, train_idx: np.ndarray) -> None:
        assert self.data is not None
        self.prep = fit_preprocessing(self.data, train_idx)
        self.n_features = self.prep.n_features

    def source_dataset(self, source: str, idx: Optional[np.ndarray]) -> Dataset:
        assert self.data is not None and self.prep is not None
        return TableDataset(self.data.tables[source], idx, self.prep)

    def artifacts(self) -> dict[str, Any]:
        out = super().artifacts()
        if self.data is not None and self.prep is not None:
            p, d = self.prep, self.data
            categories = {}
            for c, name in enumerate(d.categorical_columns):
                cols = p.onehot[p.base[c]:p.base[c] + len(d.categories[c])]
                categories[name] = {v: int(col) for v, col in zip(d.categories[c], cols) if col >= 0}
            out["preprocessing.json"] = {
                "target": d.target, "classes": d.class_names, "n_features": p.n_features,
                "numeric": {name: {"column": i, "mean": float(p.mean[i]), "std": float(p.std[i])}
                            for i, name in enumerate(d.numeric_columns)},
                "categorical": categories}  # value -> input column; values not listed are all zeros
        return out


class CSVInputs:
    """Rows of new CSV files, encoded with a run's preprocessing.json by the training TableDataset: the header names
    the training feature columns (the label column, if present, and any other column are ignored)."""

    takes_text = False

    def __init__(self, where: Path, spec: dict[str, Any]) -> None:
        """where: the preprocessing.json the spec was read from (named in errors); spec: its content."""
        try:
            numeric = sorted(spec["numeric"].items(), key=lambda kv: kv[1]["column"])
            categorical = list(spec["categorical"].items())  # name -> {value: input column}
            self.target, n_features = spec["target"], int(spec["n_features"])
            mean = np.asarray([v["mean"] for _, v in numeric], np.float32)
            std = np.asarray([v["std"] for _, v in numeric], np.float32)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DataError(f"{where}: not the preprocessing a CSV run saves") from None
        # code k < len(values) is the k-th saved category; code len(values) stands for every unseen one (-1: zeros)
        self.values = [list(v) for _, v in categorical]
        onehot = np.concatenate([[*cats.values(), -1] for _, cats in categorical]).astype(np.int64) \
            if categorical else np.zeros(0, np.int64)
        base = np.cumsum([0] + [len(v) + 1 for v in self.values[:-1]]).astype(np.int64) if self.values \
            else np.zeros(0, np.int64)
        self.prep = Preprocessing(mean, std, onehot, base, n_features)
        self.num_names = [name for name, _ in numeric]
        self.cat_names = [name for name, _ in categorical]

    def read(self, item: Any) -> tuple[list[str], Dataset]:
        """(a name per row, the Dataset of the rows) of one CSV file."""
        p = existing_file(item, "a CSV file")
        with _open(p) as f:
            rows = _rows(p, f)
            table, unseen = self._table(p, _header(p, rows), rows)
        if unseen:
            shown = ", ".join(f"{c} {sorted(v)[:3]!r}" for c, v in unseen.items())
            print(f"warning: {p}: categories training never saw ({shown}); they are encoded as all zeros",
                  file=sys.stderr)
        return row_names(str(item), len(table.labels)), TableDataset(table, None, self.prep)

    def _table(self, p: Path, header: list[str], rows: Any) -> tuple[Table, dict[str, set]]:
        """The rows as a Table (category codes: the saved ones, len(values) for unseen), and the unseen values."""
        names = self.num_names + self.cat_names
        missing = [c for c in names if c not in header]
        if missing:
            raise DataError(f"{p}: no column(s) {', '.join(map(repr, missing[:5]))} that the training data had "
                            f"(the model needs {', '.join(names)}; {self.target!r} is optional)")
        num_at = [header.index(c) for c in self.num_names]
        cat_at = [header.index(c) for c in self.cat_names]
        code_of = [{v: k for k, v in enumerate(vals)} for vals in self.values]
        nums, codes, lines = [], [], []
        unseen: dict[str, set] = {}
        for line, row in rows:
            nums.append(self._numbers(p, line, row, header, num_at, cat_at))
            cat = [row[j].strip() for j in cat_at]
            codes.append([code_of[c].get(v, len(self.values[c])) for c, v in enumerate(cat)])
            for c, v in enumerate(cat):
                if v not in code_of[c]:
                    unseen.setdefault(self.cat_names[c], set()).add(v)
            lines.append(line)
        if not lines:
            raise DataError(f"{p}: no rows to predict (only a header)")
        n = len(lines)
        return Table(np.asarray(nums, np.float32).reshape(n, len(num_at)),
                     np.asarray(codes, np.int32).reshape(n, len(cat_at)), np.zeros(n, np.int64),
                     np.asarray(lines, np.int64)), unseen

    def _numbers(self, p: Path, line: int, row: list[str], header: list[str], num_at: list[int],
                 cat_at: list[int]) -> list[float]:
        """One row's numeric features; a short row, a missing value, text or inf is one DataError."""
        if len(row) != len(header):
            raise DataError(f"{p}: line {line} has {len(row)} fields but the header has {len(header)}")
        for name, j in zip(self.num_names + self.cat_names, num_at + cat_at):
            if _is_missing(row[j]):
                raise DataError(f"{p}: line {line}, column {name!r}: missing value {row[j]!r}")
        x = []
        for name, j in zip(self.num_names, num_at):
            try:
                v = float(row[j])
            except ValueError:
                raise DataError(f"{p}: line {line}, column {name!r}: {row[j]!r} is not a number (the column is "
                                "numeric in the training data)") from None
            if not math.isfinite(v):
                raise DataError(f"{p}: line {line}, column {name!r}: inf is not a usable feature value")
            x.append(v)
        return x


__all__ = ["CSVDataModule", "CSVInputs", "load_csv", "fit_preprocessing", "TableDataset", "MISSING"]
