"""Seeded index splits shared by every dataset: holdout, train-size subsets and (iterated) K folds."""
from __future__ import annotations

import numpy as np

from lit_regularize.errors import DataError


def holdout_split(pool: np.ndarray, val_size: int, train_size: int | None, seed: int,
                  what: str = "training examples") -> tuple[np.ndarray, np.ndarray]:
    """Seeded permutation of pool: the first val_size validate, the next train_size (default: all) train."""
    if val_size > len(pool):
        raise DataError(f"--val-size {val_size} is larger than the {len(pool)} {what} available")
    perm = pool[np.random.RandomState(seed).permutation(len(pool))]
    val, rest = perm[:val_size], perm[val_size:]
    if train_size is not None:
        if train_size > len(rest):
            raise DataError(f"--train-size {train_size} is larger than the {len(rest)} {what} left "
                            f"after a validation split of {val_size}")
        rest = rest[:train_size]
    return rest, val


def kfold_split(pool: np.ndarray, k: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold `fold` of iterated K-fold: repeat fold // k reshuffles pool, chunk fold % k validates."""
    if len(pool) < k:
        raise DataError(f"--kfold {k} needs at least {k} training examples, got {len(pool)}")
    repeat, chunk = divmod(fold, k)
    perm = pool[np.random.RandomState(seed + repeat).permutation(len(pool))]
    parts = np.array_split(perm, k)
    val = parts[chunk]
    train = np.concatenate([p for i, p in enumerate(parts) if i != chunk])
    return train, val


def stratified_holdout(labels: np.ndarray, test_size: float, seed: int,
                       names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified (pool, test) split of range(len(labels)): about test_size of every class is held out.

    Every class needs at least two examples (one to train on, one to test on); each keeps at least one of each.
    """
    labels = np.asarray(labels)
    rng = np.random.RandomState([seed, 0x7e57])  # a stream of its own, apart from the validation split's
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            name = names[int(c)] if names is not None else str(c)
            raise DataError(f"class {name!r} has only {len(members)} example; a stratified test split needs at "
                            "least 2 per class (add examples, or provide a test split)")
        n_test = min(max(int(round(test_size * len(members))), 1), len(members) - 1)
        test.append(rng.choice(members, n_test, replace=False))
    test_idx = np.sort(np.concatenate(test))
    pool = np.setdiff1d(np.arange(len(labels)), test_idx)
    return pool, test_idx
