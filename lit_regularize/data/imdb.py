"""IMDB reviews (keras' imdb.npz) as multi-hot vectors, kept compact (CSR word ids) and expanded per batch.

The kind (settings, predict, export) is lit_regularize.data.kinds.imdb; the multi-hot pieces are
lit_regularize.data.multihot.
"""
from __future__ import annotations

import functools
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_regularize.data.base import SplitDataModule
from lit_regularize.data.kinds.imdb import CLASS_NAMES
from lit_regularize.data.multihot import CSRArrays, MultiHot, MultiHotDataset, encode  # noqa: F401 - MultiHot: old path
from lit_regularize.errors import DataError

IMDB_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz"
IMDB_SHA256 = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"
KERAS_SEED = 113
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


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
            crow, cols = encode(x[order], num_words)
        except DataError as e:
            raise DataError(f"{path}: x_{split}: {e}") from None
        out[split] = CSRArrays(torch.from_numpy(crow), torch.from_numpy(cols),
                               torch.from_numpy(y[order].astype(np.float32)))
    return out


class IMDBDataModule(SplitDataModule):
    """IMDB (keras npz) as num_words-wide multi-hot reviews; binary labels."""

    default_val_size = 10000
    n_classes = 2
    class_names = list(CLASS_NAMES)

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
        return MultiHotDataset(self.arrays[source], idx, self.n_features, self.dense, copy=self.copy_rows)
