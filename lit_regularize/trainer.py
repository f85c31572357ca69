"""The Trainer every run uses: its logger, checkpoints, early stopping and progress bar."""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm, convert_inf
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from lit_regularize.callbacks import History, InterruptReason
from lit_regularize.files import atomic_write, write_yaml
from lit_regularize.tb_extras import TensorBoardExtras

MONITOR = "val/loss"

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


class RunLogger(TensorBoardLogger):
    """TensorBoard on a 1-based epoch axis; the HParams record is written once, at the end, with real metrics."""

    # When set (run() does so around each test pass), metrics are logged at this step: the 1-based epoch whose
    # weights were tested, instead of the epoch counter (which stands one past the last epoch after a fit).
    fixed_step: Optional[int] = None

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Optional[dict[str, Any]] = None,
                        step: Optional[int] = None) -> None:
        # Lightning logs the model's init args at fit start; hparams.yaml keeps the resolved config instead
        # (set by run()), and the HParams session is written by run() once the metrics are known. The metric
        # values are not logged here: run() has them as scalars at their own epochs already.
        if metrics is None:
            return
        from torch.utils.tensorboard.summary import hparams

        params = dict(params)
        booleans = {k for k, v in params.items() if isinstance(v, bool)}
        writer = self.experiment._get_file_writer()
        for record in hparams(params, metrics):
            writer.add_summary(_booleans_as_booleans(record, booleans), 0)

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
        if path.is_file():
            import yaml

            if yaml.safe_load(path.read_text()) == dict(self.hparams):
                return
        write_yaml(path, dict(self.hparams))


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
    """Epochs counted from 1 ("Epoch 3/20"), test passes named by the weights they test ("test (best weights)");
    none of Lightning's 0-based "Epoch 2:", "Testing" or "DataLoader 0" texts, not even for one refresh."""

    @property
    def train_description(self) -> str:
        trainer = self.trainer
        return f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        bar = self.train_progress_bar
        bar.set_description(self.train_description, refresh=False)
        bar.reset(total=convert_inf(self.total_train_batches))
        bar.initial = 0

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)  # the tail of the version folder's name ("on_0"), which says nothing
        return items

    @property
    def test_description(self) -> str:
        module = self.trainer.lightning_module if self._trainer is not None else None
        prefix = getattr(module, "test_prefix", "test")
        return {"test_best": "test (best weights)", "test_last": "test (last weights)"}.get(prefix, "test")

    def init_test_tqdm(self) -> Tqdm:
        return Tqdm(desc=self.test_description, position=2 * self.process_position, disable=self.is_disabled,
                    leave=True, dynamic_ncols=True, file=sys.stdout, bar_format=self.BAR_FORMAT)

    def on_test_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        if not self.has_dataloader_changed(dataloader_idx):
            return
        bar = self.test_progress_bar
        bar.reset(total=convert_inf(self.total_test_batches_current_dataloader))
        bar.initial = 0


def make_callbacks(ckpt_dir: Path, validating: bool, patience: int, early_stopping: bool, progress: bool,
                   histogram_every: int, save_last: bool = True) -> list[pl.Callback]:
    """History, checkpoints on the best val/loss and of the last epoch (unless save_last is False), early
    stopping, TensorBoard extras."""
    callbacks: list[pl.Callback] = [History(), InterruptReason(), TensorBoardExtras(every=histogram_every)]
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
    if progress:
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
    """The Trainer every run uses."""
    return pl.Trainer(
        max_epochs=max_epochs, accelerator=accelerator, devices=parse_devices(devices), strategy=strategy,
        logger=logger, callbacks=list(callbacks), deterministic=deterministic, enable_progress_bar=progress,
        enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=50, plugins=[AtomicCheckpointIO()],
        # without our checkpoints (a trial with nothing to validate) Lightning must not add its own default one
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
    )


def callback(callbacks: Sequence[pl.Callback], kind: type) -> Any:
    """The first callback of a type."""
    return next((c for c in callbacks if isinstance(c, kind)), None)


__all__ = ["MONITOR", "AtomicCheckpointIO", "RunLogger", "EpochCheckpoint", "ProgressBar", "make_callbacks",
           "make_trainer", "parse_devices", "callback"]
