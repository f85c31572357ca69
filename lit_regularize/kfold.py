"""K-fold validation: one run per fold, the mean curve picks the epoch count, then a refit on all training data."""
from __future__ import annotations

from lit_regularize.config import Config


def fold_configs(cfg: Config) -> list[Config]:
    """One config per fold of (iterated) K-fold: fold r*K + k validates chunk k of reshuffle r."""
    return [cfg.replace(fold=f, name=f"{cfg.run_name}/fold_{f}") for f in range(cfg.kfold * cfg.kfold_repeats)]
