"""What every DataModule shares: index splits from the config, bulk-gathering loaders, the split record."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from lit_regularize.config import Config
from lit_regularize.data.splits import holdout_split, kfold_split


def passthrough(batch: Any) -> Any:
    """collate_fn for datasets that build whole batches in __getitems__."""
    return batch


class SplitDataModule(pl.LightningDataModule):
    """Base DataModule: subclasses load arrays once and return Datasets for index arrays."""

    #: default validation size when the config leaves it unset
    default_val_size = 10000

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
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
        return self.default_val_size if self.cfg.val_size is None else self.cfg.val_size

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(train, val) indices into the training arrays, from the config's seed, sizes and fold."""
        c, pool = self.cfg, self.train_pool()
        if c.kfold >= 2 and c.fold is not None:
            if c.train_size is not None:
                pool, _ = holdout_split(pool, 0, c.train_size, c.seed)
            return kfold_split(pool, c.kfold, c.fold, c.seed)
        val_size = 0 if c.val_on_test else self.val_size
        return holdout_split(pool, val_size, c.train_size, c.seed)

    def setup(self, stage: Optional[str] = None) -> None:
        """Load once, split, build the three datasets."""
        if self.train_set is not None:
            return
        self.load()
        self.train_idx, self.val_idx = self.split()
        self.train_set = self.make_dataset("train", self.train_idx)
        self.test_set = self.make_dataset("test", None)
        if self.cfg.val_on_test:
            self.val_set = self.test_set
        elif len(self.val_idx):
            self.val_set = self.make_dataset("val", self.val_idx)

    @property
    def has_validation(self) -> bool:
        """False when the run trains on everything (val size 0, e.g. a k-fold refit)."""
        return self.val_set is not None

    def split_record(self) -> dict[str, Any]:
        """Indices of the split, saved with a run so it can be reproduced."""
        return {"train_idx": self.train_idx, "val_idx": self.val_idx}

    def _loader(self, ds: Dataset, train: bool) -> DataLoader:
        bs = self.cfg.batch_size if train else max(self.cfg.batch_size, 2048)
        return DataLoader(ds, batch_size=bs, shuffle=train and self.cfg.shuffle, collate_fn=passthrough,
                          num_workers=self.cfg.num_workers, persistent_workers=self.cfg.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> Any:
        return self._loader(self.val_set, False) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False)
