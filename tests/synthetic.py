"""Tiny on-disk datasets in the real formats (keras IMDB npz, idx files), so tests never touch the network."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_imdb(folder: Path, n_train: int = 240, n_test: int = 120, vocab: int = 60, seed: int = 0,
               length: int = 20) -> Path:
    """imdb.npz whose labels depend on a few 'positive' and 'negative' word ranks (learnable)."""
    rng = np.random.RandomState(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.randint(0, 2, n)
        xs = np.empty(n, dtype=object)
        for i in range(n):
            words = rng.randint(1, vocab, rng.randint(length // 2, length))
            cue = rng.choice([1, 2, 3, 4] if y[i] else [5, 6, 7, 8], 3)
            xs[i] = list(np.concatenate([words, cue]).astype(int))
        return xs, y.astype(np.int64)

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "imdb.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array in idx format (magic 0x08 0x<ndim>, big-endian dims)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root: Path, name: str = "MNIST", n_train: int = 300, n_test: int = 100, seed: int = 0) -> Path:
    """The four idx files under root/<name>/raw; class c images are brighter in a class-specific band."""
    rng = np.random.RandomState(seed)
    raw = root / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = rng.randint(0, 60, (n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 * c + 3: 2 * c + 6, 4:24] = 250
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    return raw
