"""The Trainer every run uses: its logger, checkpoints, early stopping and progress bar."""
from __future__ import annotations

import copy
import logging
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from tqdm import tqdm

from lit_regularize.callbacks import EpochLine, History, InterruptReason, printing_epochs
from lit_regularize.files import atomic_write, read_own_yaml, write_yaml
from lit_regularize.tb_extras import TensorBoardExtras

MONITOR = "val/loss"
# TensorBoard tag prefixes of the two test passes (`withheld/best/loss`, `withheld/last/acc`, ...). TensorBoard's Time
# Series page orders tag groups (the part before the first "/") by name and opens the first two: every group of
# a run must sort after train/ and val/, or single points open first instead of the learning curves.
TEST_PREFIX = {"best": "withheld/best", "last": "withheld/last"}
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")

# Lightning's advice-level chatter (no GPU found, few workers, small logging interval) drowns the useful lines.
for _msg in (".*does not have many workers.*", ".*number of training batches.*", ".*GPU available but not used.*",
             ".*The total number of parameters detected.*", ".*Checkpoint directory.*exists and is not empty.*",
             ".*LeafSpec.*", ".*treespec.*", ".*overridden `transfer_batch_to_device`.*",
             ".*Total length of `list` across ranks is zero.*"):
    warnings.filterwarnings("ignore", message=_msg)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temp file and renamed: a kill mid-save never leaves a truncated .ckpt."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        # Serialized straight into the temp file: through a BytesIO first, a 40 MB last.ckpt (hidden 512) took
        # 65 ms instead of 37 ms on this VM, every epoch.
        atomic_write(path, lambda f: torch.save(checkpoint, f))


FLUSH_SECS = 2  # how often TensorBoard event files are flushed (see RunLogger.__init__)


class RunLogger(TensorBoardLogger):
    """TensorBoard on a 1-based epoch axis; the HParams record is written once, at the end, with real metrics."""

    # When set (run() does so around each test pass), metrics are logged at this step: the 1-based epoch whose
    # weights were tested, instead of the epoch counter (which stands one past the last epoch after a fit).
    fixed_step: Optional[int] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The event writer's thread wakes at least every FLUSH_SECS (SummaryWriter's default: 120 s). A Ctrl-C that
        # lands inside its queue's notify leaves that thread unwoken, and Lightning's interrupt handling then waits
        # for it in close(): 3 of 24 signalled fits hung until it woke (tests/test_faults.py). Live TensorBoard
        # curves also show up within seconds.
        kwargs.setdefault("flush_secs", FLUSH_SECS)
        self._saved_hparams: Optional[tuple[Path, list]] = None  # what save() last wrote or found (its path too)
        super().__init__(*args, **kwargs)

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Optional[dict[str, Any]] = None,
                        step: Optional[int] = None) -> None:
        # Lightning logs the model's init args at fit start; hparams.yaml keeps the resolved config instead
        # (set by run()), and the HParams session is written by run() once the metrics are known. The metric
        # values are not logged here: run() has them as scalars at their own epochs already.
        if metrics is None:
            return
        from torch.utils.tensorboard.summary import hparams
        from torch.utils.tensorboard.writer import FileWriter

        params = {k: _shown_as(v) for k, v in params.items()}
        booleans = {k for k, v in params.items() if isinstance(v, bool)}
        # An event file of its own in the run folder (TensorBoard reads them all): SummaryWriter.add_hparams would
        # make a run folder of its own, and Lightning's log_hyperparams adds a step-0 point per metric.
        writer = FileWriter(self.log_dir)
        try:
            for record in hparams(params, metrics):
                writer.add_summary(_booleans_as_booleans(record, booleans), 0)
        finally:
            writer.close()

    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)  # Lightning adds the 0-based epoch as a scalar of its own
        if self.fixed_step is not None:
            step = self.fixed_step
        elif epoch is not None:
            step = int(epoch) + 1
        super().log_metrics(metrics, step)

    @rank_zero_only
    def save(self) -> None:
        # hparams.yaml, atomically like every file of a run (Lightning's own write leaves a truncated file on a full
        # disk). Lightning writes it only when it is missing; a resume with a new --max-epochs must not leave the
        # old config there.
        path = Path(self.log_dir) / self.NAME_HPARAMS_FILE
        if not path.parent.is_dir():
            return
        # Lightning calls save() after every logging step: the file is read once, then only compared in memory
        # (reading it each time was 1,800 YAML parses in the fast test suite)
        current = list(self.hparams.items())
        if self._saved_hparams == (path, current):
            return
        if path.is_file():
            # in config.yaml's order too: a file of an older version with the same settings in another order is
            # rewritten
            if list((read_own_yaml(path.read_text()) or {}).items()) == current:
                self._saved_hparams = (path, copy.deepcopy(current))
                return
        write_yaml(path, dict(self.hparams))
        self._saved_hparams = (path, copy.deepcopy(current))


def _shown_as(value: Any) -> Any:
    """An HParams value as TensorBoard's HParams tab should print it: that tab prints every number with 5
    significant digits (hidden 512 as "512.00"), so an int is logged as its digits (a string); booleans stay
    booleans, floats numbers."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _booleans_as_booleans(record: Any, keys: set[str]) -> Any:
    """torch's hparams() stores a bool as a number (bool is an int); make `keys` bool values of type BOOL."""
    from tensorboard.plugins.hparams.api_pb2 import DataType
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    for value in record.value:
        data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
        if data.HasField("session_start_info"):
            for k in keys & set(data.session_start_info.hparams):
                data.session_start_info.hparams[k].bool_value = bool(data.session_start_info.hparams[k].number_value)
        elif data.HasField("experiment"):
            for info in data.experiment.hparam_infos:
                if info.name in keys:
                    info.type = DataType.DATA_TYPE_BOOL
        else:
            continue
        value.metadata.plugin_data.content = data.SerializeToString()
    return record


class EpochCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose file names count epochs from 1 and which follows its run folder when it moves."""

    def format_checkpoint_name(self, metrics: dict[str, Any], filename: Optional[str] = None,
                               ver: Optional[int] = None, prefix: Optional[str] = None) -> str:
        metrics = dict(metrics)
        if "epoch" in metrics:
            metrics["epoch"] = int(metrics["epoch"]) + 1
        return super().format_checkpoint_name(metrics, filename, ver, prefix)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and os.path.abspath(old) != os.path.abspath(self.dirpath):
            # A copied or moved run folder: its checkpoints are here now, and the old folder is not ours to touch.
            def here(p: Any) -> Any:
                return os.path.join(self.dirpath, os.path.basename(p)) if isinstance(p, str) and p else p
            state_dict = {**state_dict, "dirpath": self.dirpath,
                          "best_model_path": here(state_dict.get("best_model_path")),
                          "kth_best_model_path": here(state_dict.get("kth_best_model_path")),
                          "last_model_path": here(state_dict.get("last_model_path")),
                          "best_k_models": {here(k): v for k, v in (state_dict.get("best_k_models") or {}).items()}}
        super().load_state_dict(state_dict)


class ProgressBar(TQDMProgressBar):
    """The live bar of a terminal: epochs counted from 1 ("Epoch 3/20"), no validation bar (its "Validation
    DataLoader 0" lines), test passes named by the weights they test ("test (best weights)"), none of Lightning's
    0-based "Epoch 2:" or "Testing" texts, not even for one refresh. Every bar is wiped when it ends: what stays on
    screen is the epoch lines (callbacks.EpochLine), written above the bar with `print`."""

    def _bar(self, desc: str) -> tqdm:
        return tqdm(desc=desc, position=2 * self.process_position, disable=self.is_disabled, leave=False,
                    dynamic_ncols=True, file=sys.stdout, smoothing=0, bar_format=self.BAR_FORMAT)

    def init_train_tqdm(self) -> tqdm:
        return self._bar(self.train_description)

    def init_validation_tqdm(self) -> tqdm:
        return tqdm(disable=True)  # a validation pass takes a moment; the epoch line reports it

    def init_test_tqdm(self) -> tqdm:
        return self._bar(self.test_description)

    @property
    def train_description(self) -> str:
        trainer = self.trainer
        return f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        bar = self.train_progress_bar
        bar.set_description(self.train_description, refresh=False)
        bar.reset(total=_finite_or_none(self.total_train_batches))
        bar.initial = 0

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)  # the tail of the version folder's name ("on_0"), which says nothing
        return items

    @property
    def test_description(self) -> str:
        prefix = getattr(self.trainer.lightning_module, "test_prefix", "test")
        return {TEST_PREFIX["best"]: "test (best weights)", TEST_PREFIX["last"]: "test (last weights)"}.get(prefix,
                                                                                                          "test")

    def on_test_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        if not self.has_dataloader_changed(dataloader_idx):
            return
        bar = self.test_progress_bar
        bar.set_description(self.test_description, refresh=False)  # not Lightning's "... DataLoader 0"
        bar.reset(total=_finite_or_none(self.total_test_batches_current_dataloader))
        bar.initial = 0


def _finite_or_none(n: Optional[float]) -> Optional[float]:
    """A batch count for tqdm, which takes None (unknown) but not inf or NaN."""
    return None if n is None or not math.isfinite(n) else n


def stdout_is_terminal() -> bool:
    """Whether stdout is a terminal: the live bar is drawn there only (in a log file or a pipe its redraws would
    pile up as '\\r' frames; the epoch lines say the same once per epoch)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stdout
        return False


def make_callbacks(ckpt_dir: Path, validating: bool, patience: int, early_stopping: bool, progress: bool,
                   histogram_every: int, save_last: bool = True) -> list[pl.Callback]:
    """History, checkpoints on the best val/loss and of the last epoch (unless save_last is False), early
    stopping, TensorBoard extras."""
    history = History()
    callbacks: list[pl.Callback] = [history, InterruptReason(), TensorBoardExtras(every=histogram_every)]
    if printing_epochs():  # fit and compare; not sweep trials, k-fold workers or the benchmark
        callbacks.insert(1, EpochLine(history))  # after History, whose row of the epoch it prints
    if validating:
        # With --no-early-stopping the callback still ends a run whose val/loss turns NaN/inf.
        callbacks.append(EarlyStopping(monitor=MONITOR, mode="min", patience=patience if early_stopping else 10 ** 9,
                                       check_finite=True))
    # A NaN/inf training loss ends the run as well, also when nothing is validated (e.g. a k-fold refit).
    callbacks.append(EarlyStopping(monitor="train/loss", mode="min", patience=10 ** 9, check_finite=True,
                                   check_on_train_epoch_end=True))
    if validating:
        # Before "last" on purpose: last.ckpt must hold this epoch's best path and score, or a resume reports
        # the previous best (Lightning keeps the given order among checkpoint callbacks).
        # Weights only: best weights are tested, predicted and exported, never resumed (last.ckpt is); without
        # the optimizer state the file is half the size (20 MB less written per improving epoch at hidden 512).
        # No version counter: a resume retrains the epochs after last.ckpt, and an epoch whose best-epochNNN.ckpt a
        # cut session (a full disk between the best and the last save, a kill) already wrote is rewritten in place,
        # not kept beside a best-epochNNN-v1.ckpt that nothing reads.
        callbacks.append(EpochCheckpoint(dirpath=ckpt_dir, filename="best-epoch{epoch:03d}", monitor=MONITOR,
                                         mode="min", save_top_k=1, auto_insert_metric_name=False,
                                         save_weights_only=True, enable_version_counter=False))
    # Lightning 2.6's save_last only writes when a top-k checkpoint was written in the same step, so last.ckpt
    # would lag at the best epoch; a monitor-less checkpoint named "last" is rewritten every epoch instead.
    if save_last:
        callbacks.append(EpochCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                                         enable_version_counter=False))
    if progress and stdout_is_terminal():
        callbacks.append(ProgressBar(refresh_rate=20))
    return callbacks


def parse_devices(devices: str) -> Any:
    """'2' -> 2, '0,1' -> [0, 1], 'auto' / '-1' stay as Lightning takes them."""
    d = str(devices).strip()
    if d.isdigit():
        return int(d)
    if "," in d:
        return [int(p) for p in d.split(",") if p.strip()]
    return -1 if d == "-1" else d


def make_trainer(logger: Any, callbacks: Sequence[pl.Callback], max_epochs: int, accelerator: str = "auto",
                 devices: str = "1", strategy: str = "auto", deterministic: bool = False,
                 progress: bool = True) -> pl.Trainer:
    """The Trainer every run uses; Lightning's info lines stay quiet (quiet_lightning)."""
    quiet_lightning()
    # A bar only where make_callbacks put one (a terminal): enabled without one, Lightning would add its own.
    bar = progress and any(isinstance(c, TQDMProgressBar) for c in callbacks)
    return pl.Trainer(
        max_epochs=max_epochs, accelerator=accelerator, devices=parse_devices(devices), strategy=strategy,
        logger=logger, callbacks=list(callbacks), deterministic=deterministic, enable_progress_bar=bar,
        enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=50, plugins=[AtomicCheckpointIO()],
        # without our checkpoints (a trial with nothing to validate) Lightning must not add its own default one
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
    )


def quiet_lightning() -> None:
    """Keep Lightning's info lines (GPU/TPU/HPU availability, the litlogger tip, LOCAL_RANK, "Restoring states ...")
    out of the output. Asked for: a level below INFO that the user set (logging.DEBUG) is left alone."""
    for name in LIGHTNING_LOGGERS:
        log = logging.getLogger(name)
        if log.level in (logging.NOTSET, logging.INFO):  # unset, or what Lightning sets when it is imported
            log.setLevel(logging.WARNING)


def callback(callbacks: Sequence[pl.Callback], kind: type) -> Any:
    """The first callback of a type."""
    return next((c for c in callbacks if isinstance(c, kind)), None)


__all__ = ["MONITOR", "TEST_PREFIX", "AtomicCheckpointIO", "RunLogger", "EpochCheckpoint", "ProgressBar",
           "make_callbacks", "make_trainer", "parse_devices", "callback", "quiet_lightning", "stdout_is_terminal"]
