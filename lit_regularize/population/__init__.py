"""Populations: runs that share an architecture trained together as one vectorized model (see train.py).

`groups` says which of a study's configs can train together; `train_population` trains one such group; compare,
`fit --kfold` and `sweep --population K` use them (--no-population: one run at a time).
"""
from __future__ import annotations

from typing import Sequence

from lit_regularize.config import Config, fields
from lit_regularize.regularizers import registered

# Settings that may differ between members of one population: the split and seed, the optimizer's learning rate,
# early stopping and epochs, names and places (and the regularizers' strengths, see `joinable`).
MEMBER_SETTINGS = frozenset({"seed", "lr", "max_epochs", "patience", "early_stopping", "name", "logdir", "fold",
                             "kfold", "kfold_repeats", "kfold_workers", "val_size", "train_size", "merge_val",
                             "val_on_test", "shuffle", "progress", "histogram_every", "num_workers", "population",
                             "reg", "plugins"})


def joinable(cfg: Config) -> bool:
    """Whether a run can train as a population member: every regularizer it switches on supports populations, and
    it trains on one device."""
    values = cfg.to_dict()
    regs = [cls for cls in registered().values() if cls.enabled(values)]
    return (all(cls.population for cls in regs) and cfg.strategy == "auto" and "," not in cfg.devices
            and cfg.devices.strip() in ("1", "auto"))


def shape_key(cfg: Config) -> tuple:
    """What members of one population share: every setting but the per-member ones and the regularizers' own."""
    owned = {s.name for s in fields().values() if s.owner != "core" and s.owner != "capacity"}
    values = cfg.to_dict()
    return tuple(sorted((k, repr(v)) for k, v in values.items() if k not in MEMBER_SETTINGS and k not in owned))


def groups(cfgs: Sequence[Config], size: int = 0) -> list[list[int]]:
    """Indices of cfgs in populations: those that can share (same shape_key, joinable) together, at most `size`
    at once (0: no limit; 1: each alone); a config that cannot join any is a group of its own."""
    if size == 1:
        return [[i] for i in range(len(cfgs))]
    by_key: dict[tuple, list[int]] = {}
    out: list[list[int]] = []
    for i, cfg in enumerate(cfgs):
        if joinable(cfg):
            by_key.setdefault(shape_key(cfg), []).append(i)
        else:
            out.append([i])
    for members in by_key.values():
        step = size or len(members)
        out += [members[j:j + step] for j in range(0, len(members), step)]
    return sorted(out)


def train_population(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See lit_regularize.population.train.train_population (imported on use: it loads torch)."""
    from lit_regularize.population.train import train_population as train

    return train(*args, **kwargs)


__all__ = ["groups", "joinable", "shape_key", "train_population", "MEMBER_SETTINGS"]
