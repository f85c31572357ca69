"""IMDB reviews as multi-hot vectors, kept compact (CSR word ids) and expanded per batch."""
from __future__ import annotations

import functools
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_regularize.data.base import SplitDataModule
from lit_regularize.errors import DataError

IMDB_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz"
IMDB_SHA256 = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"
START_CHAR, OOV_CHAR, INDEX_FROM, KERAS_SEED = 1, 2, 3, 113
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class MultiHot(NamedTuple):
    """A batch of multi-hot rows in CSR form: row r holds word ids cols[crow[r]:crow[r + 1]]."""

    crow: torch.Tensor
    cols: torch.Tensor
    n_features: int

    def to_dense(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The (rows, n_features) 0/1 matrix."""
        rows = torch.repeat_interleave(torch.arange(len(self.crow) - 1, device=self.cols.device),
                                       self.crow[1:] - self.crow[:-1])
        out = torch.zeros(len(self.crow) - 1, self.n_features, dtype=dtype, device=self.cols.device)
        out[rows, self.cols] = 1
        return out


class CSRArrays(NamedTuple):
    """Unique word ids of every review (CSR) and the 0/1 labels."""

    crow: torch.Tensor  # int64, len n + 1
    cols: torch.Tensor  # int64 word ids, sorted within a row
    labels: torch.Tensor  # float32


def imdb_path(data_dir: Path) -> Path:
    """Where imdb.npz is expected."""
    return data_dir / "imdb.npz"


def fetch_imdb(data_dir: Path) -> Path:
    """Return data_dir/imdb.npz, downloading keras' hash-checked release there when it is missing."""
    path = imdb_path(data_dir)
    if path.is_file():
        return path
    if path.is_symlink():  # dangling or looping: never replaced by a download, never deleted
        raise DataError(f"{path} is a broken symbolic link (to {os.readlink(path)!r}); fix or remove it")
    if path.exists():
        raise DataError(f"{path} is not a file")
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} is not a folder")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"--data-dir {data_dir}: cannot create it ({e.strerror})") from None
    if not os.access(data_dir, os.W_OK):
        raise DataError(f"{path} is missing and --data-dir {data_dir} is not writable; "
                        f"put imdb.npz there or pass --data-dir")
    try:
        import keras

        got = keras.utils.get_file(fname="imdb.npz", origin=IMDB_ORIGIN, file_hash=IMDB_SHA256,
                                   cache_dir=str(data_dir), cache_subdir="")
    except Exception as e:  # noqa: BLE001 - any import/network/hash failure becomes one line
        # keras leaves a download whose sha256 does not match in place; a later run must not read it as data.
        path.unlink(missing_ok=True)
        why = " ".join(str(e).split())[:120]
        raise DataError(f"{path} not found and downloading it failed ({type(e).__name__}: {why}); "
                        f"put keras' imdb.npz there, or pass --data-dir / set LIT_REGULARIZE_DATA_DIR") from None
    return Path(got)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read and validate keras' IMDB npz format (ragged int sequences + 0/1 labels)."""
    # np.load would unpickle a non-zip file whole: only a zip archive (npz) gets that far.
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an npz (zip) archive; truncated, or not keras' imdb.npz format")
    try:
        with np.load(path, allow_pickle=True) as f:  # keras' own file stores object arrays (pickled)
            missing = [k for k in NPZ_KEYS if k not in f.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {', '.join(missing)} (expected {', '.join(NPZ_KEYS)})")
            arrays = {k: f[k] for k in NPZ_KEYS}
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, pickle.UnpicklingError) as e:
        why = " ".join(str(e).split())
        raise DataError(f"{path}: not a readable npz file ({type(e).__name__}: {why})") from None
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 1 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{path}: x_{split} and y_{split} must be 1-D of equal length, "
                            f"got shapes {x.shape} and {y.shape}")
        if len(y) == 0:
            raise DataError(f"{path}: x_{split} is empty")
        if not np.isin(y, (0, 1)).all():
            raise DataError(f"{path}: y_{split} must hold 0/1 labels, found {np.setdiff1d(y, [0, 1])[:5].tolist()}")
    return arrays


def _encode(seqs: np.ndarray, num_words: int) -> tuple[np.ndarray, np.ndarray]:
    """keras load_data semantics (start 1, ids + 3, OOV 2 above num_words), then unique ids per row (CSR)."""
    rows_ids = []
    for s in seqs:
        try:
            a = np.asarray(s)
            if a.dtype.kind == "O":  # Python ints: exact, or an OverflowError for ids beyond int64
                a = np.asarray(s, dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as e:
            raise DataError(f"reviews must be sequences of integer word ids ({e})") from None
        if a.size and a.dtype.kind not in "iu":
            raise DataError(f"word ids must be integers, found {a.dtype} values (e.g. {a.ravel()[0]!r})")
        if a.dtype.kind == "u":  # ids beyond the vocabulary become OOV anyway; clip before the int64 cast
            a = np.minimum(a, np.uint64(2 ** 62))
        rows_ids.append(a.astype(np.int64, copy=False).ravel())
    lens = np.fromiter((len(a) for a in rows_ids), dtype=np.int64, count=len(rows_ids))
    flat = np.concatenate(rows_ids) if rows_ids else np.zeros(0, np.int64)
    flat = np.minimum(flat, np.int64(2 ** 62))  # + INDEX_FROM must not overflow
    if flat.size and flat.min() < 0:
        raise DataError(f"word ids must be >= 0, found {flat.min()}")
    ids = flat + INDEX_FROM
    ids[ids >= num_words] = OOV_CHAR
    rows = np.repeat(np.arange(len(seqs), dtype=np.int64), lens)
    # The start char begins every row; adding it as one more id per row keeps the encoding vectorized.
    rows = np.concatenate([np.arange(len(seqs), dtype=np.int64), rows])
    ids = np.concatenate([np.full(len(seqs), START_CHAR, np.int64), ids])
    keys = np.sort(rows * num_words + ids)  # sort + mask: numpy 2's hashing np.unique is 10x slower here
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if keys.size else keys
    r, c = np.divmod(keys, num_words)
    crow = np.zeros(len(seqs) + 1, np.int64)
    np.cumsum(np.bincount(r, minlength=len(seqs)), out=crow[1:])
    return crow, c


@functools.lru_cache(maxsize=4)
def load_imdb(path: str, num_words: int) -> dict[str, CSRArrays]:
    """keras-shuffled train/test splits of imdb.npz as CSR arrays; cached per process."""
    arrays = _read_npz(Path(path))
    rng = np.random.RandomState(KERAS_SEED)  # one generator for both splits, exactly as keras does
    out = {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        order = np.arange(len(x))
        rng.shuffle(order)
        try:
            crow, cols = _encode(x[order], num_words)
        except DataError as e:
            raise DataError(f"{path}: x_{split}: {e}") from None
        out[split] = CSRArrays(torch.from_numpy(crow), torch.from_numpy(cols),
                               torch.from_numpy(y[order].astype(np.float32)))
    return out


def gather_rows(crow: torch.Tensor, cols: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR (crow, cols) of rows idx, gathered without a Python loop."""
    starts = crow[idx]
    lens = crow[idx + 1] - starts
    new_crow = torch.zeros(len(idx) + 1, dtype=torch.long)
    torch.cumsum(lens, 0, out=new_crow[1:])
    total = int(new_crow[-1])
    pos = torch.repeat_interleave(starts - new_crow[:-1], lens, output_size=total).add_(torch.arange(total))
    return new_crow, cols[pos]


class MultiHotDataset(Dataset):
    """Rows of a CSR matrix; __getitems__ builds a whole batch (CSR or dense float) at once."""

    def __init__(self, arrays: CSRArrays, idx: Optional[np.ndarray], n_features: int, dense: bool) -> None:
        self.n_features, self.dense = n_features, dense
        if idx is None:
            self.crow, self.cols, self.labels = arrays
        else:  # a compact copy of just these rows, so sequential (eval) batches are plain slices
            rows = torch.as_tensor(idx, dtype=torch.long)
            self.crow, self.cols = gather_rows(arrays.crow, arrays.cols, rows)
            self.labels = arrays.labels[rows]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, positions: list[int]) -> tuple[torch.Tensor | MultiHot, torch.Tensor]:
        first, last = positions[0], positions[-1]
        if last - first + 1 == len(positions) and positions == list(range(first, last + 1)):
            crow = self.crow[first:last + 2] - self.crow[first]
            cols = self.cols[self.crow[first]:self.crow[last + 1]]
            y = self.labels[first:last + 1]
        else:
            rows = torch.as_tensor(positions, dtype=torch.long)
            crow, cols = gather_rows(self.crow, self.cols, rows)
            y = self.labels[rows]
        x = MultiHot(crow, cols, self.n_features)
        return (x.to_dense() if self.dense else x), y

    def __getitem__(self, i: int) -> tuple[torch.Tensor | MultiHot, torch.Tensor]:
        x, y = self.__getitems__([i])
        return (x[0] if self.dense else x), y[0]


class IMDBDataModule(SplitDataModule):
    """IMDB (keras npz) as num_words-wide multi-hot reviews; binary labels."""

    default_val_size = 10000
    n_classes = 2
    class_names = ["negative", "positive"]

    def __init__(self, data_dir: str | os.PathLike, num_words: int = 10000, dense: bool = False, **split: Any) -> None:
        """data_dir holds imdb.npz; dense: float rows instead of CSR batches; split: SplitDataModule's arguments."""
        super().__init__(**split)
        self.data_dir, self.num_words, self.dense = Path(data_dir), num_words, dense
        self.n_features = num_words
        self.arrays: dict[str, CSRArrays] = {}

    def prepare_data(self) -> None:
        fetch_imdb(self.data_dir)

    def load(self) -> None:
        path = imdb_path(self.data_dir)
        if not path.is_file():
            self.prepare_data()
        self.arrays = load_imdb(str(path.resolve()), self.num_words)

    def train_pool(self) -> np.ndarray:
        return np.arange(len(self.arrays["train"].labels))

    def train_labels(self) -> np.ndarray:
        """0/1 labels of the training reviews (k-fold's class check)."""
        return self.arrays["train"].labels.numpy().astype(np.int64)

    def make_dataset(self, split: str, idx: Optional[np.ndarray]) -> Dataset:
        source = "test" if split == "test" else "train"
        return MultiHotDataset(self.arrays[source], idx, self.n_features, self.dense)
