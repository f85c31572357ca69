"""Numerical faults, interruption and resume: NaN/inf losses, SIGTERM / Ctrl-C, --resume, atomic checkpoints, a full
or read-only disk under any file a run writes.

See tests/README.md for the fault table. Signals go to real subprocesses of scripts/fit.py, except where an
in-process SIGTERM at a chosen batch makes the resume comparison exact and fast.
"""
from __future__ import annotations

import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from conftest import ROOT
from conftest import flags, quick_settings, script_val_loss
from synthetic import write_imdb
from diskfaults import FullDisk, read_only
from lit_regularize import files as files_mod
from lit_regularize.config import make_config
from lit_regularize.errors import RunInterrupted
from lit_regularize.files import DiskFull, NotWritable
from lit_regularize.model import RegularizedMLP
from lit_regularize.run import run
from lit_regularize.trainer import AtomicCheckpointIO, make_trainer

from lit_regularize.cli import fit  # noqa: E402

BATCHES_PER_EPOCH = math.ceil((240 - 60) / 32)  # synthetic IMDB train split / quick batch size


def read_summary(run_dir: str | Path) -> dict:
    """summary.json as strict JSON: a bare NaN/Infinity (invalid JSON) fails the test."""
    def bare(constant: str) -> None:
        raise AssertionError(f"summary.json holds a bare {constant}")
    return json.loads((Path(run_dir) / "summary.json").read_text(), parse_constant=bare)


def scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of a TensorBoard run folder (all its event files) as sorted (step, value) points."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    # Sorted: the loader orders event files by name, in which counter "10" sorts before "9".
    return {tag: sorted((e.step, e.value) for e in acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}


def assert_epoch_steps_unique(run_dir: str | Path, epochs: int) -> None:
    """Each per-epoch tag has one point per epoch: no duplicate steps, none missing."""
    logged = scalars(run_dir)
    for tag in ("train/loss", "val/loss", "val/acc"):
        steps = [s for s, _ in logged[tag]]
        assert len(steps) == len(set(steps)) == epochs, (tag, steps)


def finite_weights(ckpt_path: str | Path) -> bool:
    state = torch.load(ckpt_path, weights_only=True, map_location="cpu")["state_dict"]
    return all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())


# -- NaN / inf ----------------------------------------------------------------------------------------------

@pytest.fixture
def nan_from_epoch_3(monkeypatch):
    """Training loss turns NaN in the third epoch (and the weights with it)."""
    step = RegularizedMLP.training_step

    def poisoned(self, batch, batch_idx):
        loss = step(self, batch, batch_idx)
        return loss * float("nan") if self.current_epoch >= 2 else loss
    monkeypatch.setattr(RegularizedMLP, "training_step", poisoned)


@pytest.mark.parametrize("val_size", [60, 0], ids=["validated", "no-validation"])
def test_nan_loss_stops_training_and_keeps_the_best_finite_checkpoint(quick, nan_from_epoch_3, val_size):
    s = run(make_config({**quick, "val_size": val_size, "max_epochs": 8, "early_stopping": False, "lr": 0.01,
                         "name": "nan"}))
    assert s["status"] == "completed" and s["stop_reason"] == "non_finite_loss"
    assert s["epochs_run"] == 3  # stopped in the epoch that went NaN, not at max_epochs (early stopping is off)
    saved = read_summary(s["log_dir"])
    assert saved["stop_reason"] == "non_finite_loss" and saved["epochs_run"] == 3
    curve = "val_loss" if val_size else "train_loss"
    assert len(s["history"][curve]) == 3 and all(math.isfinite(v) for v in s["history"][curve][:2]) and math.isnan(s["history"][curve][2])
    assert saved["history"][curve][2] == "nan"
    if val_size:
        assert s["best_epoch"] in (1, 2) and s["best_val_loss"] == min(s["history"]["val_loss"][:2])
        ckpt = torch.load(s.path(s.best_checkpoint), weights_only=True, map_location="cpu")
        assert ckpt["epoch"] + 1 == s["best_epoch"] and finite_weights(s.path(s.best_checkpoint))
        assert math.isfinite(s["test"]["best"]["loss"])
    else:
        assert s["best_epoch"] is None and s["best_checkpoint"] is None
    assert not finite_weights(Path(s["log_dir"]) / "checkpoints" / "last.ckpt")  # the NaN epoch itself


def test_a_run_that_is_never_finite_says_so_and_reports_no_best_weights(quick, monkeypatch, capsys):
    """NaN from the first batch on: there are no best weights, and the summary does not pretend there was no
    validation set, nor label the (NaN) last weights as the best."""
    step = RegularizedMLP.training_step
    monkeypatch.setattr(RegularizedMLP, "training_step", lambda self, b, i: step(self, b, i) * float("nan"))
    assert fit.main(flags({**quick, "max_epochs": 4, "early_stopping": False, "name": "never"})) == 0
    out, err = capsys.readouterr()
    s = read_summary(Path(quick["logdir"]) / "never" / "version_0")
    assert s["stop_reason"] == "non_finite_loss" and s["epochs_run"] == 1 and s["best_epoch"] is None
    assert s["best_checkpoint"] is None and "best" not in s["test"] and "last" in s["test"]
    assert any("never finite" in n for n in s["notes"])
    assert "best epoch: none (the validation loss was never finite: the run diverged in epoch 1)" in out
    assert "no validation set" not in out and "test (best weights)" not in out
    assert len([line for line in err.splitlines() if line.startswith("warning: ")]) == 1


@pytest.fixture
def lr_jumps_in_epoch_3(monkeypatch):
    """SGD whose learning rate becomes absurd (1e20) from the third epoch: a real divergence (the weights blow up
    through the updates, nothing is injected) that comes after two finite epochs."""
    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr)
        jump = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0 if epoch < 2 else 1e20 / self.lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": jump, "interval": "epoch"}}
    monkeypatch.setattr(RegularizedMLP, "configure_optimizers", configure_optimizers)


def test_diverging_lr_stops_with_no_early_stopping(quick, lr_jumps_in_epoch_3, capsys):
    """Through the CLI: the run stops in the epoch that diverged and keeps the best of the finite epochs."""
    assert fit.main(flags({**quick, "optimizer": "sgd", "lr": 0.01, "early_stopping": False, "max_epochs": 6,
                           "name": "diverge"})) == 0
    run_dir = Path(quick["logdir"]) / "diverge" / "version_0"
    s = read_summary(run_dir)
    assert s["stop_reason"] == "non_finite_loss" and s["epochs_run"] == 3
    losses = [float(v) for v in s["history"]["val_loss"]]
    train = [float(v) for v in s["history"]["train_loss"]]
    # not vacuous: two finite epochs before the divergence, so there is a finite best to keep
    assert all(math.isfinite(v) for v in losses[:2] + train[:2])
    assert not (math.isfinite(losses[2]) and math.isfinite(train[2]))
    assert s["best_epoch"] in (1, 2) and s["best_val_loss"] == min(losses[:2])
    best = run_dir / s["best_checkpoint"]
    assert torch.load(best, weights_only=True, map_location="cpu")["epoch"] + 1 == s["best_epoch"]
    assert finite_weights(best) and math.isfinite(s["test"]["best"]["loss"])
    assert not finite_weights(run_dir / "checkpoints" / "last.ckpt")  # the diverged weights themselves
    assert "stopped by non_finite_loss" in capsys.readouterr().out


# -- resume ---------------------------------------------------------------------------------------------------

class SigtermAt(pl.Callback):
    """Sends this process SIGTERM in epoch `epoch` (1-based): after its 2nd batch, or at its end."""

    def __init__(self, epoch: int, mid_epoch: bool) -> None:
        self.epoch, self.mid_epoch = epoch, mid_epoch

    def _kill(self) -> None:
        # Lightning's handler only records the signal; without it SIGTERM would end the test process.
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        os.kill(os.getpid(), signal.SIGTERM)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.mid_epoch and trainer.current_epoch + 1 == self.epoch and batch_idx == 1:
            self._kill()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.mid_epoch and trainer.current_epoch + 1 == self.epoch:
            self._kill()


@pytest.fixture
def resume_setup(quick):
    """Dropout + shuffling + deterministic: a resume only matches if the RNG states are restored too."""
    over = {**quick, "reg": "dropout", "max_epochs": 6, "early_stopping": False, "deterministic": True,
            "lr": 0.01}
    assert fit.main(flags({**over, "name": "straight"})) == 0
    return over, Path(quick["logdir"]) / "straight" / "version_0"


@pytest.mark.parametrize("mid_epoch", [False, True], ids=["after-epoch-3", "inside-epoch-4"])
def test_resume_matches_an_uninterrupted_run(resume_setup, mid_epoch):
    over, straight_dir = resume_setup
    name = "cut_mid" if mid_epoch else "cut_end"
    with pytest.raises(RunInterrupted):
        run(make_config({**over, "name": name}), extra_callbacks=[SigtermAt(4 if mid_epoch else 3, mid_epoch)])
    cut_dir = Path(over["logdir"]) / name / "version_0"
    cut = read_summary(cut_dir)
    assert cut["status"] == "interrupted" and cut["stop_reason"] == "SIGTERM" and cut["epochs_run"] == 3
    # summary.json names the checkpoints written so far, as a completed run's does
    assert cut["last_checkpoint"] == "checkpoints/last.ckpt" and (cut_dir / cut["best_checkpoint"]).is_file()
    # last.ckpt stays at the end of epoch 3 (an interrupt never writes a mid-epoch checkpoint)
    assert torch.load(cut_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2

    assert fit.main(["--resume", str(cut_dir)]) == 0
    resumed, straight = read_summary(cut_dir), read_summary(straight_dir)
    assert resumed["status"] == "completed"
    for key in ("epochs_run", "global_step", "best_epoch"):
        assert resumed[key] == straight[key], key
    # Same process, same kernels: equal in practice; within 1e-6 on any CPU, far below the ~1e-2 that a resume
    # redrawing a shuffle or a dropout mask, or restarting the optimizer state, moves these numbers.
    for key in ("best_val_loss", "best_val_acc"):
        assert resumed[key] == pytest.approx(straight[key], rel=1e-6), key
    for which in ("best", "last"):
        assert resumed["test"][which] == pytest.approx(straight["test"][which], rel=1e-6), which
    for curve in ("train_loss", "val_loss", "val_acc"):
        assert resumed["history"][curve] == pytest.approx(straight["history"][curve], rel=1e-6), curve
    assert resumed["global_step"] == 6 * BATCHES_PER_EPOCH
    # One TensorBoard run: the resumed process appended to the same folder; same points as the straight run.
    cut_points, straight_points = scalars(cut_dir), scalars(straight_dir)
    assert cut_points.keys() == straight_points.keys()
    for tag, points in straight_points.items():  # the same steps; values within 1e-6 as above
        assert [s for s, _ in cut_points[tag]] == [s for s, _ in points], tag
        assert [v for _, v in cut_points[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag
    assert_epoch_steps_unique(cut_dir, 6)


# -- signals to a real fit.py process --------------------------------------------------------------------------

SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}


@pytest.fixture(scope="module")
def signalled_fits(tmp_path_factory) -> dict[str, tuple[int, str, Path]]:
    """A real `fit` process per signal, started side by side (each spends seconds importing torch and Lightning),
    each signalled once it has written its first checkpoint: name -> (exit status, stderr, run folder)."""
    started = {}
    for name in SIGNALS:
        folder = tmp_path_factory.mktemp(name)
        over = {**quick_settings(write_imdb(folder / "data").parent, folder / "logs"), "reg": "dropout",
                "max_epochs": 100000, "early_stopping": False, "deterministic": True, "name": "sig"}
        # output to files: a process that trains on while the other is signalled never waits on a full pipe
        with open(folder / "stdout", "w") as out, open(folder / "stderr", "w") as err:
            # SIGINT must raise KeyboardInterrupt in the child even when this test runs with SIGINT ignored.
            proc = subprocess.Popen([sys.executable, "-m", "lit_regularize", "fit", *flags(over)], stdout=out,
                                    stderr=err, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        started[name] = (proc, folder, Path(over["logdir"]) / "sig" / "version_0")
    try:
        for name, (proc, folder, run_dir) in started.items():
            last = run_dir / "checkpoints" / "last.ckpt"
            deadline = time.monotonic() + 90
            while not last.exists():
                assert proc.poll() is None, (folder / "stderr").read_text()
                assert time.monotonic() < deadline, "no checkpoint within 90 s"
                time.sleep(0.05)
            time.sleep(0.2)  # a few epochs further on, so the signal lands at an arbitrary point of training
            proc.send_signal(SIGNALS[name])
        for proc, _, _ in started.values():
            proc.wait(timeout=60)
    finally:
        for proc, _, _ in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {name: (proc.returncode, (folder / "stderr").read_text(), run_dir)
            for name, (proc, folder, run_dir) in started.items()}


@pytest.mark.slow  # real fit processes, signalled
@pytest.mark.parametrize("sig", list(SIGNALS.values()), ids=list(SIGNALS))
def test_signal_during_fit_leaves_a_resumable_run(signalled_fits, sig):
    returncode, err, run_dir = signalled_fits[sig.name]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert returncode == 130, err
    assert "Traceback" not in err and f"--resume {run_dir}" in err.strip().splitlines()[-1], err

    cut = read_summary(run_dir)
    assert cut["status"] == "interrupted"
    assert cut["stop_reason"] == ("SIGTERM" if sig == signal.SIGTERM else "KeyboardInterrupt")
    ckpt = torch.load(last, weights_only=True, map_location="cpu")  # loadable, weights-only safe
    assert "state_dict" in ckpt and finite_weights(last)
    assert not [p.name for p in last.parent.iterdir() if p.name.endswith(".tmp")]  # no half-written file left

    done = ckpt["epoch"] + 1
    assert fit.main(["--resume", str(run_dir), "--max-epochs", str(done + 2)]) == 0
    resumed = read_summary(run_dir)
    assert resumed["status"] == "completed" and resumed["epochs_run"] == done + 2
    assert resumed["global_step"] == (done + 2) * BATCHES_PER_EPOCH
    # deterministic resume: the epochs both processes trained are identical
    n = min(len(cut["history"]["val_loss"]), done + 2)
    # two processes (thread counts may differ): within 1e-5, far below what a redrawn shuffle or mask moves
    assert resumed["history"]["val_loss"][:n] == pytest.approx(cut["history"]["val_loss"][:n], rel=1e-5)
    if sig == signal.SIGTERM:  # Lightning stops at a batch or epoch boundary: the TensorBoard run stays exact
        assert_epoch_steps_unique(run_dir, done + 2)


# -- atomic checkpoint files -----------------------------------------------------------------------------------

@pytest.mark.parametrize("failure", ["unpicklable", "disk full", "ctrl-c"])
def test_a_failed_checkpoint_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch, failure):
    ckpt_io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    ckpt_io.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)
    before = path.read_bytes()
    new = {"epoch": 2, "w": torch.zeros(3)}
    if failure == "unpicklable":
        new["hook"] = lambda: None  # torch.save cannot pickle it: fails while serializing
        expected: type[BaseException] = Exception
    else:  # fails after the bytes went to the temp file, before the rename
        expected = OSError if failure == "disk full" else KeyboardInterrupt

        def fsync(fd: int) -> None:
            raise OSError(28, "No space left on device") if failure == "disk full" else KeyboardInterrupt()
        monkeypatch.setattr(files_mod.os, "fsync", fsync)
    with pytest.raises(expected):
        ckpt_io.save_checkpoint(new, path)
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    with pytest.raises(expected):
        ckpt_io.save_checkpoint(new, tmp_path / "first.ckpt")
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_trainer_writes_checkpoints_through_atomic_io(quick):
    trainer = make_trainer(False, [], max_epochs=1, accelerator="cpu")
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


# -- a full disk, a read-only folder -------------------------------------------------------------------------------
# Every file a run writes (checkpoints, summary.json, config.yaml, split.npz, hparams.yaml, event files) on a full or
# read-only disk: one error line naming the file and how to go on, exit 2, a summary.json that says what happened
# (where one can still be written), and the last good checkpoint kept. See tests/diskfaults.py for the simulation.

def one_error_line(capsys) -> str:
    """The command's stderr is exactly one 'error: ...' line (warnings aside), no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception in thread" not in err, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_torch_save_on_a_full_disk_is_disk_full_not_torchs_runtime_error(tmp_path, monkeypatch):
    """torch.save turns the ENOSPC of write(2) into RuntimeError('[enforce fail at inline_container.cc...]')."""
    ckpt_io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    ckpt_io.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)
    before = path.read_bytes()
    disk = FullDisk(monkeypatch, "last.ckpt")
    with pytest.raises(DiskFull) as caught:  # 40 KB of weights: more than the room left on the disk
        ckpt_io.save_checkpoint({"epoch": 2, "w": torch.zeros(10_000)}, path)
    # the real torch path was taken: its RuntimeError is what the one-line error replaced
    assert isinstance(caught.value.__context__, RuntimeError) and "inline_container" in str(caught.value.__context__)
    assert disk.failed and str(path) in str(caught.value) and "disk is full" in str(caught.value)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_disk_full_while_checkpointing_is_one_line_keeps_the_last_good_epoch_and_resumes(quick, monkeypatch, capsys):
    # hidden 64: a first layer of 10 KB, written past torch's buffer, so the full disk shows as torch's RuntimeError
    over = {**quick, "hidden": 64, "max_epochs": 3, "early_stopping": False, "lr": 0.01, "name": "full"}
    run_dir = Path(quick["logdir"]) / "full" / "version_0"
    # epoch 2 is the best: its best-epoch002.ckpt is written just before the full disk stops last.ckpt, and written
    # again when the resume retrains epoch 2
    script_val_loss(monkeypatch, [0.5, 0.3, 0.4])
    with monkeypatch.context() as m:
        disk = FullDisk(m, "last.ckpt", after=1)  # epoch 1's last.ckpt is written, epoch 2's hits the full disk
        assert fit.main(flags(over)) == 2
    assert disk.failed
    line = one_error_line(capsys)
    assert str(run_dir / "checkpoints" / "last.ckpt") in line and "disk is full" in line
    assert f"--resume {run_dir}" in line
    s = read_summary(run_dir)
    assert s["status"] == "failed" and s["exit_code"] == 2 and s["stop_reason"] == "disk_full"
    # not "max_epochs" after 2 of 3 epochs; epoch 2 trained, but its last.ckpt could not be saved
    assert s["epochs_run"] == 2 and "disk is full" in s["error"]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0 and finite_weights(last)  # epoch 1, intact
    assert not [p.name for p in run_dir.rglob("*.tmp")]
    # space freed: the resume retrains epoch 2 from epoch 1 and leaves one best checkpoint, no '-v1' copy of it
    assert fit.main(["--resume", str(run_dir)]) == 0
    s = read_summary(run_dir)
    assert s["status"] == "completed" and s["epochs_run"] == 3 and s["stop_reason"] == "max_epochs"
    assert s["best_checkpoint"] == "checkpoints/best-epoch002.ckpt"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best-epoch002.ckpt", "last.ckpt"]
    assert_epoch_steps_unique(run_dir, 3)


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # TensorBoard's writer thread
@pytest.mark.parametrize("pattern,after,epochs", [
    ("config.yaml", 0, 0), ("split.npz", 0, 0), ("summary.json", 0, 0), ("summary.json", 1, 2),
    ("hparams.yaml", 0, 0), ("events.out.tfevents", 0, None), ("best-epoch", 0, 1),
], ids=["config", "split", "summary-first", "summary-last", "hparams", "events", "best-ckpt"])
def test_disk_full_on_any_file_of_a_run_is_one_line_with_a_truthful_summary(quick, monkeypatch, capsys, pattern,
                                                                            after, epochs):
    over = {**quick, "max_epochs": 2, "early_stopping": False, "name": "full"}
    run_dir = Path(quick["logdir"]) / "full" / "version_0"
    with monkeypatch.context() as m:
        disk = FullDisk(m, pattern, after=after, room=0)
        assert fit.main(flags(over)) == 2
    assert disk.failed
    line = one_error_line(capsys)
    assert pattern in line and "disk is full" in line and str(run_dir) in line
    if pattern == "summary.json":  # the summary itself cannot be written: none, or the first one ("running")
        assert (run_dir / "summary.json").is_file() == bool(after)
        assert not after or read_summary(run_dir)["status"] == "running"
        return
    s = read_summary(run_dir)
    assert s["status"] == "failed" and s["exit_code"] == 2 and s["stop_reason"] == "disk_full"
    if epochs is not None:  # event files fail whenever TensorBoard's writer thread first writes
        assert s["epochs_run"] == epochs  # the epochs trained (an epoch is recorded before it is checkpointed)
    assert not [p.name for p in run_dir.rglob("*.tmp")]
    if pattern != "events.out.tfevents":  # written atomically: absent (its first write failed), never truncated
        assert not [p.name for p in run_dir.rglob(f"{pattern}*")]


def test_resume_of_a_read_only_run_folder_is_one_line_and_changes_nothing(quick, monkeypatch, capsys):
    s = run(make_config({**quick, "max_epochs": 2, "early_stopping": False, "name": "ro"}))
    before = {p: p.read_bytes() for p in s.run_dir.rglob("*") if p.is_file()}
    with monkeypatch.context() as m:
        read_only(m, s.run_dir)
        assert fit.main(["--resume", str(s.run_dir), "--max-epochs", "3"]) == 2
    line = one_error_line(capsys)
    # said up front, before the data is loaded and anything is attempted
    assert line.startswith(f"error: --resume {s.run_dir}: ") and os.strerror(errno.EROFS) in line
    assert {p: p.read_bytes() for p in s.run_dir.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("err", [errno.EROFS, errno.EACCES], ids=["read-only-mount", "no-permission"])
def test_a_run_folder_that_turns_read_only_mid_run_is_one_line(quick, monkeypatch, capsys, err):
    over = {**quick, "max_epochs": 3, "early_stopping": False, "name": "ro"}
    run_dir = Path(quick["logdir"]) / "ro" / "version_0"

    class ReadOnlyFromEpoch2(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                read_only(monkeypatch, run_dir / "checkpoints", err)
    with pytest.raises(NotWritable):
        run(make_config(over), extra_callbacks=[ReadOnlyFromEpoch2()])
    monkeypatch.undo()
    s = read_summary(run_dir)
    assert s["status"] == "failed" and s["exit_code"] == 2 and s["stop_reason"] == "not_writable"
    # epoch 2 trained (an epoch is recorded before it is checkpointed); last.ckpt still holds epoch 1
    assert s["epochs_run"] == 2 and os.strerror(err) in s["error"]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0


def test_an_interrupt_inside_a_file_write_stays_an_interrupt(tmp_path):
    # Ctrl-C mid-record of torch.save: its zip writer raises "unexpected pos" on the way out, which hid the
    # interrupt (a traceback and exit 1 in 1 of 28 signalled fits): the write is cleaned up and Ctrl-C stays Ctrl-C
    from lit_regularize.files import atomic_write

    target = tmp_path / "last.ckpt"
    target.write_bytes(b"good")

    def write(f):
        try:
            f.write(b"half")
            raise KeyboardInterrupt
        finally:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 13120 vs 13012")
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write)
    assert target.read_bytes() == b"good" and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    with pytest.raises(RuntimeError, match="unexpected pos"):  # the same error without an interrupt stays itself
        atomic_write(target, lambda f: (_ for _ in ()).throw(RuntimeError("unexpected pos")))


@pytest.mark.slow  # a real fit process, signalled while it starts
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_a_fit_starts_is_one_line_and_exit_130(tmp_path, sig):
    # SIGTERM 1 s in (torch and Lightning still loading) killed the process with no line and status 143
    over = {**quick_settings(write_imdb(tmp_path / "data").parent, tmp_path / "logs"), "name": "early"}
    proc = subprocess.Popen([sys.executable, "-m", "lit_regularize", "fit", *flags(over)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # the machine was fast enough to finish first: nothing to check
        pytest.skip("the fit finished before the signal")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted"), err
    if sig == signal.SIGTERM:
        assert "SIGTERM" in err.strip().splitlines()[-1]
