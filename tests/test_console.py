"""What a person sees while a run trains (issue 25, console): one keras-style line per epoch that stays (in a
terminal, in a log, under --no-progress), a live bar in a terminal only, none of Lightning's banners; sweeps quiet.
Also: Lightning's public API only (issue 22 item 4)."""
from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, flags, script_val_loss
from lit_regularize import trainer as trainer_mod
from lit_regularize.callbacks import epoch_line, epoch_lines
from lit_regularize.cli import fit
from lit_regularize.config import make_config
from lit_regularize.run import run
from lit_regularize.summary import RunSummary

# val/loss by epoch: new lowest values at epochs 1, 2 and 4 (1-based); the run's best epoch is 4.
CURVE = [0.50, 0.30, 0.40, 0.20]
BANNERS = ("GPU available", "TPU available", "HPU available", "litlogger", "LOCAL_RANK", "Restoring states",
           "Loaded model weights", "`Trainer.fit` stopped")


def _expected_lines(s: RunSummary, marked: tuple[int, ...]) -> list[str]:
    """The epoch lines a run must have printed, rebuilt from its summary.json history (the same numbers), with
    "(best)" on the `marked` epochs."""
    h, n = s.history, s.config["max_epochs"]
    out = []
    for i, epoch in enumerate(h["epoch"]):
        line = (f"Epoch {epoch}/{n} - {h['epoch_time'][i]:6.1f}s - train/loss: {h['train_loss'][i]:.4f} - "
                f"train/acc: {h['train_acc'][i]:.4f} - val/loss: {h['val_loss'][i]:.4f} - "
                f"val/acc: {h['val_acc'][i]:.4f}")
        out.append(line + (" (best)" if epoch in marked else ""))
    return out


def _epoch_lines(out: str) -> list[str]:
    return [line for line in out.split("\n") if line.startswith("Epoch ")]


@pytest.mark.parametrize("progress", [True, False], ids=["progress", "no-progress"])
def test_fit_prints_one_line_per_epoch_in_a_log_and_under_no_progress(quick, monkeypatch, capsys, progress):
    script_val_loss(monkeypatch, CURVE)
    over = {**quick, "max_epochs": 4, "early_stopping": False, "name": "lines", "progress": progress}
    assert fit.main(flags(over)) == 0
    out = capsys.readouterr().out
    s = RunSummary.read(next((Path(quick["logdir"]) / "lines").glob("version_*")))
    assert s.best_epoch == 4
    # exact lines, 1-based epochs, "(best)" on each new lowest val/loss: the last mark is the run's best epoch
    assert _epoch_lines(out) == _expected_lines(s, marked=(1, 2, 4))
    # stdout is not a terminal here: no live bar (its \r redraws would pile up in a log), no validation bar
    assert "\r" not in out and "it/s" not in out and "Validation" not in out and "DataLoader" not in out


def test_epoch_line_format_without_validation_and_with_wide_epoch_counts():
    history = {"epoch": [1, 2], "epoch_time": [0.25, 12.34], "train_loss": [0.7, 0.6], "train_acc": [0.5, 0.625],
               "val_loss": [None, None], "val_acc": [None, None]}
    assert epoch_line(history, 100) == "Epoch   2/100 -   12.3s - train/loss: 0.6000 - train/acc: 0.6250"
    history.update(val_loss=[0.4, 0.4], val_acc=[0.8, 0.9])
    assert epoch_line(history, 2).endswith("val/loss: 0.4000 - val/acc: 0.9000")  # a tie is no new best
    history.update(val_loss=[0.4, float("nan")])
    assert epoch_line(history, 2).endswith("val/loss: nan - val/acc: 0.9000")


def test_terminal_gets_a_live_bar_and_lines_that_stay(quick, monkeypatch, capsys):
    script_val_loss(monkeypatch, CURVE)
    monkeypatch.setattr(trainer_mod, "stdout_is_terminal", lambda: True)
    with epoch_lines():
        s = run(make_config({**quick, "max_epochs": 3, "early_stopping": False, "name": "tty", "progress": True}))
    out = capsys.readouterr().out
    frames = [f.strip() for f in re.split(r"[\r\n]", out) if f.strip()]
    assert any(f.startswith("Epoch 1/3:") and "it/s" in f for f in frames)  # the live bar, counted from 1
    assert not [f for f in frames if re.match(r"Epoch \d+:", f)]  # never Lightning's 0-based "Epoch 0:"
    for line in _expected_lines(s, marked=(1, 2)):  # each whole and once, written after the bar was wiped ("\r")
        assert out.count(line) == 1 and frames.count(line) == 1 and f"\r{line}\n" in out
    tests = {f.split(":")[0] for f in frames if f.startswith("test")}
    assert tests == {"test (best weights)", "test (last weights)"}
    assert "Validation" not in out and "DataLoader" not in out and "Testing" not in out and "v_num" not in out


def test_epoch_lines_come_from_fit_and_compare_only_and_can_be_silenced(quick, capsys):
    import lit_regularize as lr

    one = {**quick, "max_epochs": 1}
    run(make_config({**one, "name": "quiet"}))  # run() as sweep trials, k-fold workers and the benchmark call it
    assert not _epoch_lines(capsys.readouterr().out)
    with epoch_lines(False):  # how a notebook silences them (docs/training.md)
        lr.fit(**one, name="silenced")
    assert not _epoch_lines(capsys.readouterr().out)
    lr.fit(**one, name="shown")
    assert len(_epoch_lines(capsys.readouterr().out)) == 1


@pytest.mark.slow  # the sweep command (its report's figures take seconds)
def test_sweep_trials_print_no_epoch_lines(tmp_path, quick, capsys, monkeypatch):
    from lit_regularize.cli.sweep import main as sweep_main

    monkeypatch.chdir(tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"lr": {"type": "float", "low": 1e-3, "high": 2e-2, "log": True}}))
    over = {k: v for k, v in quick.items() if k != "progress"}  # the sweep's own default (progress off)
    over["max_epochs"] = 2
    assert sweep_main([*flags(over), "--space", str(space), "--study-name", "quiet", "--n-trials", "1"]) == 0
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if line.startswith("trial ")]) == 1
    assert not _epoch_lines(out)


@pytest.mark.slow  # worker processes
def test_kfold_worker_processes_print_no_epoch_lines_the_refit_does(tmp_path, quick, capfd):
    over = {k: v for k, v in quick.items() if k != "val_size"}
    # population 1: the folds in worker processes (by default they train in-process as one population)
    assert fit.main(flags({**over, "kfold": 2, "kfold_workers": 2, "train_size": 120, "name": "kf",
                           "early_stopping": False, "population": 1})) == 0
    out = capfd.readouterr().out  # the file descriptor: the workers' output does not pass through sys.stdout
    refit = RunSummary.read(next((Path(quick["logdir"]) / "kf").glob("version_*/refit/version_*")))
    assert len(_epoch_lines(out)) == refit.epochs_run  # the refit's lines only


def test_a_kfold_population_prints_one_line_per_epoch_then_the_refits(tmp_path, quick, capfd):
    over = {k: v for k, v in quick.items() if k != "val_size"}
    assert fit.main(flags({**over, "kfold": 2, "train_size": 120, "name": "kfp", "early_stopping": False})) == 0
    out = capfd.readouterr().out
    refit = RunSummary.read(next((Path(quick["logdir"]) / "kfp").glob("version_*/refit/version_*")))
    lines = _epoch_lines(out)
    assert len(lines) == quick["max_epochs"] + refit.epochs_run
    assert all("2 members" in line for line in lines[:quick["max_epochs"]])


class _Records(logging.Handler):
    """Every record that reaches Lightning's loggers (its own handler or pytest's capture may hold the text)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def lightning_records():
    handler = _Records()
    loggers = [logging.getLogger(name) for name in trainer_mod.LIGHTNING_LOGGERS]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.addHandler(handler)
    yield handler
    for log, level in zip(loggers, levels):
        log.removeHandler(handler)
        log.setLevel(level)


def test_run_prints_none_of_lightnings_banners(quick, capfd, lightning_records):
    logging.getLogger("pytorch_lightning").setLevel(logging.INFO)  # as Lightning leaves it when imported
    run(make_config({**quick, "name": "banners", "max_epochs": 1}))  # run() itself: no entry point's quieting
    captured = capfd.readouterr()
    said = "\n".join([captured.out, captured.err, *lightning_records.messages])
    for banner in BANNERS:
        assert banner not in said, banner


def test_a_debug_level_the_user_set_is_kept(quick, lightning_records):
    logging.getLogger("pytorch_lightning").setLevel(logging.DEBUG)  # how a user asks for Lightning's info lines
    run(make_config({**quick, "name": "asked", "max_epochs": 1}))
    assert logging.getLogger("pytorch_lightning").level == logging.DEBUG
    assert any(m.startswith("GPU available") for m in lightning_records.messages)


@pytest.mark.slow  # a fresh python process (imports torch and Lightning)
def test_python_api_fit_prints_no_banners(quick, tmp_path):
    script = textwrap.dedent(f"""
        import lit_regularize as lr
        lr.fit(**{quick!r}, name="api")
        """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for banner in BANNERS:
        assert banner not in out.stdout + out.stderr, banner
    assert len(_epoch_lines(out.stdout)) == quick["max_epochs"]  # the API's fit prints its epoch lines


PRIVATE_LIGHTNING = ("pytorch_lightning.callbacks.progress.tqdm_progress", "._get_file_writer", "convert_inf",
                     "self._leave", "lightning.pytorch.callbacks.progress.tqdm_progress")


def test_no_private_lightning_or_tensorboard_writer_api_is_used():
    hits = [f"{p.relative_to(ROOT)}: {needle}" for p in (ROOT / "lit_regularize").rglob("*.py")
            for needle in PRIVATE_LIGHTNING if needle in p.read_text(encoding="utf-8")]
    assert not hits
