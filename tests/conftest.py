"""Shared fixtures: tiny synthetic datasets and a quick config."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl

from synthetic import write_imdb, write_mnist

ROOT = Path(__file__).resolve().parents[1]

REAL_DATA = Path(os.environ.get("LIT_REGULARIZE_REAL_DATA", ROOT.parent / "shared" / "data"))

# Under pytest-xdist (-n auto, see setup.cfg) the workers share the CPUs: each worker's torch gets its share of the
# threads (on 2 cores: 1 each; torch's default of every core per worker made the fast suite 10% slower than no
# workers at all). The processes tests start keep torch's default: they mostly wait for each other.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    """No test may reach the network: downloads must fail loudly."""
    import urllib.request

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)
    monkeypatch.delenv("LIT_REGULARIZE_DATA_DIR", raising=False)


@pytest.fixture
def imdb_dir(tmp_path):
    """A folder holding a tiny imdb.npz."""
    write_imdb(tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture
def mnist_dir(tmp_path):
    """A folder holding tiny MNIST and FashionMNIST idx files."""
    write_mnist(tmp_path / "data", "MNIST")
    write_mnist(tmp_path / "data", "FashionMNIST", seed=1)
    return tmp_path / "data"


def quick_settings(data_dir: Path, logdir: Path) -> dict:
    """Overrides for a seconds-long IMDB run on the tiny data."""
    return {"data_dir": str(data_dir), "num_words": 40, "val_size": 60, "hidden": 8, "batch_size": 32,
            "max_epochs": 3, "logdir": str(logdir), "progress": False, "accelerator": "cpu"}


@pytest.fixture
def quick(tmp_path, imdb_dir):
    """Overrides for a seconds-long IMDB run on the tiny data."""
    return quick_settings(imdb_dir, tmp_path / "logs")


@pytest.fixture(scope="session")
def ddp_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One `fit --devices 2 --strategy ddp` (gloo, 2 CPU ranks) of 3 epochs, shared by test_ddp (the run) and
    test_rundir (a DDP resume of a copy of it): every launch is two fresh interpreters importing torch and
    Lightning one after the other. Returns the finished process and its logdir (run folder
    logdir/ddp/version_0); tests must not write into it."""
    root = tmp_path_factory.mktemp("ddp_run")
    data = write_imdb(root / "data").parent
    over = {**quick_settings(data, root / "logs"), "name": "ddp", "early_stopping": False}
    proc = subprocess.run([sys.executable, "-m", "lit_regularize", "fit", *flags(over), "--devices", "2",
                           "--strategy", "ddp"], cwd=root, capture_output=True, text=True, timeout=300)
    return proc, root / "logs"


def no_val_size(over: dict) -> dict:
    """Overrides without val_size (for --val-on-test and --kfold, which refuse one)."""
    return {k: v for k, v in over.items() if k != "val_size"}


def flags(over: dict) -> list[str]:
    """Config overrides as fit.py / sweep.py command-line flags."""
    out = []
    for k, v in over.items():
        flag = "--" + k.replace("_", "-")
        out += ([flag] if v else ["--no-" + k.replace("_", "-")]) if isinstance(v, bool) else [flag, str(v)]
    return out


def script_val_loss(monkeypatch, curve: list[float]) -> None:
    """Make val/loss follow curve by (0-based) epoch; the real loss is still computed, then discarded."""
    from lit_regularize.model import RegularizedMLP

    def on_validation_epoch_end(self):
        self.val_loss.reset()
        self.log("val/loss", curve[self.current_epoch], prog_bar=True)
        self.log("val/acc", self.val_acc.compute())
        self.val_acc.reset()
    monkeypatch.setattr(RegularizedMLP, "on_validation_epoch_end", on_validation_epoch_end)


class InterruptAt(pl.Callback):
    """Ctrl-C at the start of a 0-based epoch."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


def real_data_or_skip() -> Path:
    """../shared/data when present, else skip the test."""
    if not (REAL_DATA / "imdb.npz").is_file():
        pytest.skip(f"real data not found at {REAL_DATA}")
    return REAL_DATA


def pytest_configure(config):
    """Worker processes (-n auto in setup.cfg) pay for themselves on the slow, process-level tests, which mostly
    wait on their subprocesses (full suite on 2 cores: 280-340 s against 338-508 s in one process). The fast tests
    alone are faster in one process (61 s against 73-81 s: each worker imports torch and Lightning again, and two
    busy workers slow each other's tests down ~2x), so a run of only them (-m "not slow") stays in this process."""
    if config.getoption("markexpr", "").replace(" ", "") == "notslow" and config.getoption("dist", "no") != "no":
        config.option.dist, config.option.numprocesses = "no", 0
