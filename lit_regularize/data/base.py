"""What every DataModule shares: seeded index splits (holdout, train-size subsets, (iterated) K folds, a
stratified test hold-out), the split from the config, bulk-gathering loaders, the split record."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from lit_regularize.errors import DataError


# -- seeded index splits ------------------------------------------------------------------------------------------

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


# -- the DataModule -----------------------------------------------------------------------------------------


def passthrough(batch: Any) -> Any:
    """collate_fn for datasets that build whole batches in __getitems__."""
    return batch


class SplitDataModule(pl.LightningDataModule):
    """Base DataModule: subclasses load arrays once and return Datasets for index arrays.

    Split arguments (every subclass takes them as keywords): batch_size; val_size (None = the dataset's
    default, 0 = no validation); train_size (keep N training examples); val_on_test (validate on the test
    set); kfold / fold (fold `fold` of seeded iterated K-fold validates); merge_val (train on the training and
    validation examples together, no validation: a refit); seed; shuffle; num_workers.
    """

    #: default validation size when val_size is None
    default_val_size = 10000
    #: False: datasets view the loaded arrays instead of holding compact copies of their rows (the members of a
    #: population set it, so that K splits of one dataset hold one copy of the data)
    copy_rows = True
    #: class names, for predictions and reports (None: the class ids)
    class_names: Optional[list[str]] = None

    def __init__(self, *, batch_size: int = 512, val_size: Optional[int] = None, train_size: Optional[int] = None,
                 val_on_test: bool = False, kfold: int = 0, fold: Optional[int] = None, merge_val: bool = False,
                 seed: int = 7777, shuffle: bool = True, num_workers: int = 0) -> None:
        super().__init__()
        self.batch_size, self.train_size, self.val_on_test = batch_size, train_size, val_on_test
        self.requested_val_size, self.kfold, self.fold, self.merge_val = val_size, kfold, fold, merge_val
        self.seed, self.shuffle, self.num_workers = seed, shuffle, num_workers
        self.train_idx: Optional[np.ndarray] = None
        self.val_idx: Optional[np.ndarray] = None
        self.train_set: Optional[Dataset] = None
        self.val_set: Optional[Dataset] = None
        self.test_set: Optional[Dataset] = None

    # -- what subclasses provide ------------------------------------------------------------------------
    n_features: int
    n_classes: int

    def load(self) -> None:
        """Read (or reuse cached) arrays; sets n_features and n_classes."""
        raise NotImplementedError

    def train_pool(self) -> np.ndarray:
        """Indices of the training set that splits draw from."""
        raise NotImplementedError

    def make_dataset(self, split: str, idx: Optional[np.ndarray]) -> Dataset:
        """Dataset over rows idx of the 'train' or 'test' arrays (idx None = all)."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------------------
    @property
    def val_size(self) -> int:
        """Validation size: the config's, else the dataset default."""
        return self.default_val_size if self.requested_val_size is None else self.requested_val_size

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(train, val) indices into the training arrays, from the seed, sizes and fold."""
        pool = self.train_pool()
        if self.kfold >= 2 and self.fold is not None:
            if self.train_size is not None:
                pool, _ = holdout_split(pool, 0, self.train_size, self.seed)
            return kfold_split(pool, self.kfold, self.fold, self.seed)
        val_size = 0 if self.val_on_test else self.val_size
        return holdout_split(pool, val_size, self.train_size, self.seed)

    def prepare_data(self) -> None:
        """Download what is missing (Lightning calls this once per machine, before setup)."""

    def setup(self, stage: Optional[str] = None) -> None:
        """Load once, split, build the three datasets."""
        if self.train_set is not None:
            return
        self.load()
        self.train_idx, self.val_idx = self.split()
        if self.merge_val:  # a refit trains on exactly the union of the split's training and validation examples
            self.train_idx, self.val_idx = np.sort(np.concatenate([self.train_idx, self.val_idx])), self.val_idx[:0]
        if len(self.train_idx) == 0:
            raise DataError(f"no training examples left after a validation split of {len(self.val_idx)}; "
                            "lower --val-size")
        self.train_set = self.make_dataset("train", self.train_idx)
        self.test_set = self.make_dataset("test", None)
        if self.val_on_test:
            self.val_set = self.test_set
        elif len(self.val_idx):
            self.val_set = self.make_dataset("val", self.val_idx)

    @property
    def has_validation(self) -> bool:
        """False when the run trains on everything (val size 0, e.g. a k-fold refit)."""
        return self.val_set is not None

    def artifacts(self) -> dict[str, Any]:
        """JSON-able files (name -> content) that predicting with this run needs (own data: the class names, fitted
        preprocessing); run() saves them in the run folder, the kind's predict inputs read them back."""
        return {}

    def split_record(self) -> dict[str, Any]:
        """Indices of the split, saved with a run so it can be reproduced."""
        record = {"train_idx": self.train_idx, "val_idx": self.val_idx}
        if self.val_on_test:  # validation was the whole test set, not the (empty) val_idx of the training arrays
            record["val_is_test"] = np.array(True)
        return record

    def _loader(self, ds: Dataset, train: bool) -> DataLoader:
        bs = self.batch_size if train else max(self.batch_size, 2048)
        # BatchNorm cannot train on a one-example batch: such a last batch is dropped (it is one example an epoch).
        drop_last = train and len(ds) % bs == 1 and len(ds) > 1
        return DataLoader(ds, batch_size=bs, shuffle=train and self.shuffle, collate_fn=passthrough,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0, drop_last=drop_last)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> Any:
        return self._loader(self.val_set, False) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False)
