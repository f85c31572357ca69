"""Populations: runs that share an architecture trained together as one vectorized model (see train.py).

`groups` says which of a study's configs can train together; `train_population` trains one such group; compare,
`fit --kfold` and `sweep --population K` use them (--no-population: one run at a time).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

from lit_regularize.config import Config, fields
from lit_regularize.regularizers import registered
from lit_regularize.settings import MEMBER

if TYPE_CHECKING:
    from lit_regularize.rundir import RunDir
    from lit_regularize.summary import RunSummary


def joinable(cfg: Config) -> bool:
    """Whether a run can train as a population member: every regularizer it switches on supports populations, and
    it trains on one device."""
    values = cfg.to_dict()
    regs = [cls for cls in registered().values() if cls.enabled(values)]
    return (all(cls.population for cls in regs) and cfg.strategy == "auto" and "," not in cfg.devices
            and cfg.devices.strip() in ("1", "auto"))


def shape_key(cfg: Config) -> tuple:
    """What members of one population share: every setting but the per-member ones and the regularizers' own."""
    # per-member settings carry the MEMBER role (lit_regularize.settings); a regularizer's own settings may differ
    # too (capacity's hidden and layers are the architecture)
    shared = {s.name for s in fields().values()
              if not s.has(MEMBER) and (s.owner == "core" or s.owner == "capacity")}
    return tuple(sorted((k, repr(v)) for k, v in cfg.to_dict().items() if k in shared))


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


def train_population(cfgs: Sequence[Config], resumes: Optional[Sequence[Optional[RunDir]]] = None,
                     **options: Any) -> list[RunSummary]:
    """run() for every config at once: lit_regularize.population.train.train_population, whose options it passes
    on (imported on use: it loads torch)."""
    from lit_regularize.population.train import train_population as train

    return train(cfgs, resumes, **options)


__all__ = ["groups", "joinable", "shape_key", "train_population"]
