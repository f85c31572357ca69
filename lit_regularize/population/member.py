"""One member of a population: everything a single run keeps (its data split and batches, random stream, history,
early stopping, best weights, run folder, TensorBoard run, checkpoints, summary.json), apart from its weights, which
live in the population's stack.

A member draws from its own random stream exactly what a single run with its seed draws from torch's global one, in
the same order: the initial weights, each epoch's shuffle (the DataLoader's base seed and sampler seed), each
step's dropout masks, each validation pass's loader seed. So a member's batches and masks are the single run's.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Iterator, Optional

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from lit_regularize.config import Config
from lit_regularize.data.base import SplitDataModule, passthrough
from lit_regularize.model import RegularizedMLP, count_parameters
from lit_regularize.regularizers import Regularizer
from lit_regularize.rundir import RunDir
from lit_regularize.summary import RunSummary, best_of, empty_history
from lit_regularize.trainer import AtomicCheckpointIO, RunLogger

POPULATION_KEY = "population"  # last.ckpt's entry with what a member's resume needs besides its weights


class Positions(Dataset):
    """0..n-1 as a Dataset: a DataLoader over it draws exactly the random numbers the member's own loader would."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitems__(self, positions: list[int]) -> list[int]:
        return positions


@contextlib.contextmanager
def drawing_from(gen: torch.Generator) -> Iterator[None]:
    """Within the block torch's global random stream is `gen`'s (DataLoaders draw their seeds from the global
    stream); afterwards gen has moved on and the global stream is as before."""
    outside = torch.get_rng_state()
    torch.set_rng_state(gen.get_state())
    try:
        yield
    finally:
        gen.set_state(torch.get_rng_state())
        torch.set_rng_state(outside)


class Member:
    """A run trained in a population (see the module docstring)."""

    def __init__(self, cfg: Config, dm: SplitDataModule, template: RegularizedMLP, gen: torch.Generator,
                 rundir: Optional[RunDir] = None) -> None:
        """template: the member's RegularizedMLP, built under its seed (initial weights, hyperparameters and
        regularizers); gen: its random stream right after that."""
        self.cfg, self.dm, self.template, self.gen, self.rundir = cfg, dm, template, gen, rundir
        self.regularizers = template.regularizers
        self.hidden_hooks = [r for r in self.regularizers if type(r).member_hidden is not Regularizer.member_hidden]
        self.penalties = [r for r in self.regularizers if r.has_penalty]
        self.objective_name = template.objective_name
        loader = dm.train_dataloader()
        self.train_positions = DataLoader(Positions(len(loader.dataset)), batch_size=loader.batch_size,
                                          shuffle=isinstance(loader.sampler, RandomSampler),
                                          drop_last=loader.drop_last, collate_fn=passthrough)
        self.eval_batch = max(cfg.batch_size, 2048)  # as SplitDataModule's eval loaders
        self.history: dict[str, list] = empty_history()
        self.global_step = 0
        self.es_best, self.es_wait = math.inf, 0  # Lightning's EarlyStopping state on val/loss
        self.stop: Optional[str] = None  # why it stopped: early_stopping, non_finite_loss, max_epochs
        self.best_state: Optional[list] = None  # the best epoch's (weight, bias) per layer
        self.last_state: Optional[list] = None  # set when the member leaves the stack
        self.best_path: Optional[Path] = None
        self.logger: Optional[RunLogger] = None
        self.summary: Optional[RunSummary] = None
        self.resumed = False
        self.saved_optimizer: Optional[dict[str, Any]] = None  # a resume: the optimizer state of last.ckpt
        self._device_gen: Optional[torch.Generator] = None

    def device_generator(self, device: torch.device) -> torch.Generator:
        """The member's stream on a GPU (seeded from its CPU stream): GPU dropout never matches the CPU's anyway."""
        if self._device_gen is None:
            seed = int(torch.randint(2 ** 62, (1,), generator=self.gen))
            self._device_gen = torch.Generator(device).manual_seed(seed)
        return self._device_gen

    # -- what the population asks --------------------------------------------------------------------------
    @property
    def epochs(self) -> int:
        """Epochs trained so far."""
        return len(self.history["epoch"])

    @property
    def validating(self) -> bool:
        """Whether the member has a validation set."""
        return self.dm.has_validation

    def epoch_batches(self) -> list[list[int]]:
        """This epoch's training batches (positions in the member's training set), drawn as its own loader would."""
        with drawing_from(self.gen):
            return list(self.train_positions)

    def validation_draw(self) -> None:
        """The random number a single run's validation loader draws when its iterator is created."""
        with drawing_from(self.gen):
            iter(DataLoader(Positions(1), collate_fn=passthrough))

    def eval_set(self, split: str) -> Optional[Dataset]:
        """The 'val' or 'test' dataset (None: no validation)."""
        return self.dm.val_set if split == "val" else self.dm.test_set

    def eval_span(self, split: str, index: int) -> range:
        """The positions of evaluation batch `index` of 'val' or 'test' (the single run's batching); empty past
        the end."""
        ds = self.eval_set(split)
        n = 0 if ds is None else len(ds)
        start = index * self.eval_batch
        return range(min(start, n), min(start + self.eval_batch, n))

    def eval_batches(self, split: str) -> int:
        """How many evaluation batches 'val' or 'test' has."""
        ds = self.dm.val_set if split == "val" else self.dm.test_set
        return 0 if ds is None else -(-len(ds) // self.eval_batch)

    def end_epoch(self, row: dict[str, Optional[float]], seconds: float) -> bool:
        """Record an epoch's metrics, apply early stopping; True when this epoch is the best so far."""
        h = self.history
        h["epoch"].append(self.epochs + 1)
        h["epoch_time"].append(seconds)
        for key in ("train_loss", "train_acc", "train_penalty", "val_loss", "val_acc"):
            h[key].append(row.get(key))
        patience = self.cfg.patience if self.cfg.early_stopping else 10 ** 9
        val, train = row.get("val_loss"), row.get("train_loss")
        if train is not None and not math.isfinite(train):
            self.stop = "non_finite_loss"
        elif val is not None:  # Lightning's EarlyStopping(check_finite=True), min_delta 0, strict improvement
            if not math.isfinite(val):
                self.stop = "non_finite_loss"
            elif val < self.es_best:
                self.es_best, self.es_wait = val, 0
            else:
                self.es_wait += 1
                if self.es_wait >= patience:
                    self.stop = "early_stopping"
        if self.stop is None and self.epochs >= self.cfg.max_epochs:
            self.stop = "max_epochs"
        if self.stop == "early_stopping" and self.epochs >= self.cfg.max_epochs:
            self.stop = "max_epochs"  # as run(): stopping in the last epoch anyway is reaching max_epochs
        return best_of(h)[0] == self.epochs

    # -- files -------------------------------------------------------------------------------------------
    def weights_into_template(self, state: list) -> RegularizedMLP:
        """The template holding these (weight (out, in), bias) per layer."""
        with torch.no_grad():
            for lin, (w, b) in zip(self.template.linears(), state):
                lin.weight.copy_(w)
                lin.bias.copy_(b)
        return self.template

    def checkpoint(self, state: list, extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """A Lightning checkpoint of these weights (RegularizedMLP.load_from_checkpoint reads it)."""
        model = self.weights_into_template(state)
        ckpt = {"epoch": self.epochs - 1, "global_step": self.global_step,
                "pytorch-lightning_version": pl.__version__,
                "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
                "hparams_name": "kwargs", "hyper_parameters": dict(model.hparams)}
        if extra is not None:
            ckpt[POPULATION_KEY] = extra
        return ckpt

    def save(self, path: Path, ckpt: dict[str, Any]) -> None:
        """Write a checkpoint atomically."""
        AtomicCheckpointIO().save_checkpoint(ckpt, path)

    def resume_state(self, optimizer: dict[str, Any]) -> dict[str, Any]:
        """What last.ckpt keeps for a resume besides the weights."""
        return {"optimizer": optimizer, "rng": self.gen.get_state(), "history": self.history,
                "es_best": self.es_best, "es_wait": self.es_wait, "global_step": self.global_step,
                "best_epoch": best_of(self.history)[0]}

    def restore(self, saved: dict[str, Any]) -> None:
        """A resume: the random stream, history and early-stopping state of last.ckpt's population entry."""
        self.gen.set_state(saved["rng"])
        self.history = saved["history"]
        self.es_best, self.es_wait = float(saved["es_best"]), int(saved["es_wait"])
        self.global_step = int(saved["global_step"])
        self.resumed = True

    @property
    def n_params(self) -> int:
        """Trainable parameters of one member."""
        return count_parameters(self.template)


__all__ = ["Member", "Positions", "drawing_from", "POPULATION_KEY"]
