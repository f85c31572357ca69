"""scripts/fit.py end to end on tiny data: checkpoints, TensorBoard, summary.json, best-epoch choice."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from conftest import ROOT, flags, no_val_size, real_data_or_skip, script_val_loss
from lit_regularize.config import make_config
from lit_regularize.cli.args import config_from_args
from lit_regularize.run import run

from lit_regularize.cli import fit  # noqa: E402




def test_fit_writes_checkpoint_tensorboard_and_complete_summary(quick, capsys):
    assert fit.main(flags({**quick, "reg": "l1_l2", "name": "e2e"})) == 0
    run_dir = Path(quick["logdir"]) / "e2e" / "version_0"
    s = json.loads((run_dir / "summary.json").read_text())
    for key in ("config", "seed", "n_params", "best_epoch", "best_val_loss", "history", "test", "best_checkpoint"):
        assert key in s, key
    assert s["status"] == "completed" and s["seed"] == 7777 and s["config"]["l1"] == 1e-4
    assert s["n_params"] == 40 * 8 + 8 + 8 * 8 + 8 + 8 + 1
    for key in ("train_loss", "val_loss", "val_acc", "train_penalty"):
        assert len(s["history"][key]) == s["epochs_run"] == 3
    assert all(p > 0 for p in s["history"]["train_penalty"])
    for which in ("best", "last"):
        assert 0 <= s["test"][which]["acc"] <= 1 and s["test"][which]["loss"] > 0
    assert (run_dir / s["best_checkpoint"]).is_file() and (run_dir / s["last_checkpoint"]).is_file()
    assert s["last_checkpoint"] == "checkpoints/last.ckpt"  # paths relative to the run folder
    assert list(run_dir.glob("events.out.tfevents.*"))
    assert (run_dir / "config.yaml").is_file() and (run_dir / "split.npz").is_file()
    out = capsys.readouterr().out
    assert "test (best weights)" in out and "test (last weights)" in out


def test_summary_paths_are_relative_to_the_run_folder_and_survive_a_move(quick, tmp_path):
    s = run(make_config({**quick, "name": "rel"}))
    moved = tmp_path / "moved"
    Path(s.log_dir).rename(moved)
    saved = json.loads((moved / "summary.json").read_text())
    saved.pop("config")  # the settings it was run with (data_dir, logdir) are not paths of the folder

    def strings(v):
        if isinstance(v, dict):
            return [x for k in v.values() for x in strings(k)]
        if isinstance(v, list):
            return [x for k in v for x in strings(k)]
        return [v] if isinstance(v, str) else []
    assert not [v for v in strings(saved) if Path(v).is_absolute() or str(tmp_path) in v]
    assert saved["best_checkpoint"] == f"checkpoints/best-epoch{saved['best_epoch']:03d}.ckpt"
    assert (moved / saved["best_checkpoint"]).is_file() and (moved / saved["last_checkpoint"]).is_file()


def test_best_checkpoint_is_the_epoch_with_lowest_val_loss(quick):
    s = run(make_config({**quick, "max_epochs": 6, "early_stopping": False, "lr": 0.01, "name": "best"}))
    vals = s["history"]["val_loss"]
    best = min(range(len(vals)), key=vals.__getitem__)
    assert s["best_epoch"] == best + 1 and math.isclose(s["best_val_loss"], vals[best], rel_tol=1e-6)
    ckpt = torch.load(s.path(s.best_checkpoint), weights_only=True, map_location="cpu")
    assert ckpt["epoch"] == best  # Lightning counts epochs from 0; the file name from 1
    assert s.best_checkpoint == f"checkpoints/best-epoch{best + 1:03d}.ckpt"
    assert "optimizer_states" not in ckpt  # best weights are tested/predicted, never resumed: weights only
    last = torch.load(s.path(s.last_checkpoint), weights_only=True, map_location="cpu")
    tracker = last["callbacks"][next(k for k in last["callbacks"] if k.startswith("EpochCheckpoint{'monitor': 'val/loss'"))]
    assert math.isclose(float(tracker["best_model_score"]), vals[best], rel_tol=1e-6)
    assert Path(tracker["best_model_path"]).name == Path(s.best_checkpoint).name
    assert last["optimizer_states"]  # last.ckpt resumes: full training state
    assert last["epoch"] == len(vals) - 1
    # the checkpoint carries the model's own settings only (no run paths)
    assert ckpt["hyper_parameters"]["lr"] == 0.01 and "logdir" not in ckpt["hyper_parameters"]


def test_checkpoint_loads_into_plain_torch_linear_layers(quick):
    s = run(make_config({**quick, "name": "plain"}))
    state = torch.load(s.path(s.best_checkpoint), weights_only=True, map_location="cpu")["state_dict"]
    plain = torch.nn.Sequential(torch.nn.Linear(40, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 1))
    plain.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})


def test_yaml_config_and_flags_merge(tmp_path, quick):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("reg: dropout\nhidden: 12\nlr: 0.005\n")
    argv = ["--config", str(cfg_file), "--hidden", "6"]
    cfg = config_from_args(fit.parser(argv).parse_args(argv))
    assert (cfg.reg, cfg.dropout, cfg.hidden, cfg.lr) == ("dropout", 0.5, 6, 0.005)
    assert make_config({"reg": "dropout", "dropout": 0.2}).dropout == 0.2
    assert make_config({"reg": "l2"}).l2 == 1e-3 and make_config({"data": "mnist"}).hidden == 128


def test_help_lists_every_flag():
    out = subprocess.run([sys.executable, "-m", "lit_regularize", "fit", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    for flag in ("--config", "--data", "--data-dir", "--reg", "--hidden", "--layers", "--l1", "--l2", "--dropout",
                 "--batchnorm", "--optimizer", "--lr", "--batch-size", "--max-epochs", "--patience",
                 "--no-early-stopping", "--seed", "--logdir", "--name", "--train-size", "--n-per-class",
                 "--augment", "--accelerator", "--devices", "--resume", "--kfold", "--input-format"):
        assert flag in out.stdout, flag


@pytest.mark.slow  # a real python process
def test_missing_data_is_one_line_and_nonzero_exit(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lit_regularize", "fit", "--data-dir", str(tmp_path / "none"),
                          "--logdir", str(tmp_path / "logs")], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "no_proxy": "*",
                              "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "imdb.npz" in lines[0] and "--data-dir" in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
@pytest.mark.realdata
def test_real_imdb_smoke(tmp_path):
    data = real_data_or_skip()
    s = run(make_config({"data_dir": str(data), "reg": "dropout", "max_epochs": 2, "logdir": str(tmp_path),
                         "progress": False}))
    assert s["test"]["best"]["acc"] > 0.8 and s["n_params"] == 160_305


@pytest.mark.slow
@pytest.mark.realdata
def test_real_fashion_mnist_smoke(tmp_path):
    data = real_data_or_skip()
    s = run(make_config({"data": "fashion_mnist", "data_dir": str(data), "n_per_class": 20, "max_epochs": 3,
                         "logdir": str(tmp_path), "progress": False}))
    assert s["test"]["best"]["acc"] > 0.4


@pytest.mark.slow
@pytest.mark.realdata
def test_real_imdb_unregularized_net_overfits_like_the_notebooks(tmp_path):
    data = real_data_or_skip()
    s = run(make_config({"data_dir": str(data), "reg": "none", "early_stopping": False, "max_epochs": 20,
                         "logdir": str(tmp_path), "progress": False}))
    assert s["best_epoch"] <= 6
    assert s["history"]["val_loss"][-1] >= 1.5 * s["best_val_loss"]
    assert s["test"]["best"]["acc"] > s["test"]["last"]["acc"]


# -- early stopping -------------------------------------------------------------------------------------------

# val/loss by 1-based epoch: a new best at 2, a worse epoch 3 (wait 1), a new best at 4, then never better.
EARLY_CURVE = [0.50, 0.40, 0.45, 0.30, 0.35, 0.36, 0.37, 0.38, 0.39, 0.40, 0.41, 0.42]


@pytest.fixture
def early_curve(monkeypatch):
    """val/loss follows EARLY_CURVE by epoch."""
    script_val_loss(monkeypatch, EARLY_CURVE)


@pytest.mark.parametrize("patience, best, stopped", [(1, 2, 3), (2, 4, 6), (3, 4, 7)])
def test_early_stopping_stops_patience_epochs_after_the_best(quick, early_curve, patience, best, stopped):
    """Stops after `patience` epochs without a new best (a new best resets the count), not at max_epochs."""
    assert fit.main(flags({**quick, "max_epochs": len(EARLY_CURVE), "patience": patience,
                           "name": f"es{patience}"})) == 0
    s = json.loads((Path(quick["logdir"]) / f"es{patience}" / "version_0" / "summary.json").read_text())
    assert s["stop_reason"] == "early_stopping" and s["status"] == "completed"
    assert s["best_epoch"] == best and s["epochs_run"] == stopped == best + patience
    assert s["history"]["epoch"] == list(range(1, stopped + 1))
    assert s["history"]["val_loss"] == pytest.approx(EARLY_CURVE[:stopped])
    assert s["best_checkpoint"] == f"checkpoints/best-epoch{best:03d}.ckpt"


def test_no_early_stopping_runs_every_epoch(quick, early_curve):
    s = run(make_config({**quick, "max_epochs": 8, "patience": 1, "early_stopping": False, "name": "no_es"}))
    assert s["stop_reason"] == "max_epochs" and s["epochs_run"] == 8 and s["best_epoch"] == 4


# -- flags that must reach the data module ----------------------------------------------------------------

@pytest.mark.parametrize("hflip", [True, False], ids=["hflip", "no-hflip"])
def test_hflip_reaches_the_training_augmentation(mnist_dir, tmp_path, monkeypatch, hflip):
    """fit --augment [--hflip] on MNIST: the config records the flag and training batches are flipped (about half
    of them) exactly when it is given."""
    from lit_regularize.data import augment

    draws = []
    sample = augment.sample_params

    def spy(*args, **kwargs):
        params = sample(*args, **kwargs)
        draws.append((kwargs.get("hflip"), params.flip.clone()))
        return params
    monkeypatch.setattr(augment, "sample_params", spy)
    over = {"data": "mnist", "data_dir": str(mnist_dir), "n_per_class": 10, "val_size": 50, "hidden": 16,
            "max_epochs": 2, "augment": True, "hflip": hflip, "logdir": str(tmp_path / "logs"), "progress": False,
            "accelerator": "cpu", "name": "flip"}
    assert fit.main(flags(over)) == 0
    run_dir = tmp_path / "logs" / "flip" / "version_0"
    assert json.loads((run_dir / "summary.json").read_text())["config"]["hflip"] is hflip
    assert ("hflip: true" if hflip else "hflip: false") in (run_dir / "config.yaml").read_text()
    assert len(draws) >= 2 * math.ceil(100 / 32)  # every training batch of both epochs was augmented
    assert all(flag is hflip for flag, _ in draws)
    flips = torch.cat([f for _, f in draws])
    if hflip:
        assert 0.3 < flips.float().mean() < 0.7
    else:
        assert not flips.any()


def test_val_on_test_validates_on_exactly_the_test_set(quick, capsys):
    """fit --val-on-test (the notebooks that validated on the test set): every training example trains, none is
    held out, and val/* of an epoch are the test scores of that epoch's weights."""
    over = {**no_val_size(quick), "val_on_test": True, "early_stopping": False, "max_epochs": 4, "lr": 0.01, "name": "vot"}
    assert fit.main(flags(over)) == 0
    run_dir = Path(quick["logdir"]) / "vot" / "version_0"
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["config"]["val_on_test"] is True and "val_on_test: true" in (run_dir / "config.yaml").read_text()
    import numpy as np

    with np.load(run_dir / "split.npz") as split:
        assert sorted(split["train_idx"].tolist()) == list(range(240)) and len(split["val_idx"]) == 0
        assert bool(split["val_is_test"])
    h = s["history"]
    assert len(set(h["val_loss"])) == 4  # the weights changed every epoch
    assert s["test"]["last"]["loss"] == pytest.approx(h["val_loss"][-1], rel=1e-6)
    assert s["test"]["last"]["acc"] == pytest.approx(h["val_acc"][-1], abs=1e-9)
    assert s["test"]["best"]["loss"] == pytest.approx(s["best_val_loss"], rel=1e-6)
    assert s["test"]["best"]["loss"] == pytest.approx(min(h["val_loss"]), rel=1e-6)


# -- best and last weights, each checked on its own ---------------------------------------------------------------

# A scripted val/loss curve whose minimum (epoch 4) is neither the first nor the last epoch: best != last.
MID_CURVE = [0.50, 0.30, 0.40, 0.20, 0.60, 0.70]


class WeightsByEpoch(pl.Callback):
    """A copy of the weights each epoch was validated with, by 1-based epoch."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_validation_end(self, trainer, pl_module):
        self.weights[trainer.current_epoch + 1] = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def test_the_best_checkpoint_holds_the_weights_of_the_lowest_val_loss_epoch(quick, monkeypatch):
    script_val_loss(monkeypatch, MID_CURVE)
    snap = WeightsByEpoch()
    s = run(make_config({**quick, "max_epochs": 6, "early_stopping": False, "lr": 0.01, "name": "which"}),
            extra_callbacks=[snap])
    assert s.best_epoch == 4 and s.best_checkpoint == "checkpoints/best-epoch004.ckpt"
    ckpt = torch.load(s.path(s.best_checkpoint), weights_only=True, map_location="cpu")
    assert ckpt["epoch"] + 1 == 4
    # the saved tensors are the validated ones, serialized losslessly: equal to epoch 4's and to no other epoch's
    # (the weights change every epoch), so a checkpoint of the highest val/loss (epoch 6) or any other fails here
    same = [e for e, w in snap.weights.items() if all(torch.equal(ckpt["state_dict"][k], v) for k, v in w.items())]
    assert same == [4]
    last = torch.load(s.path(s.last_checkpoint), weights_only=True, map_location="cpu")
    assert all(torch.equal(last["state_dict"][k], v) for k, v in snap.weights[6].items())


def _test_scores(ckpt: Path, cfg) -> tuple[float, float]:
    """Mean test loss and accuracy of a checkpoint's weights, computed here without Lightning's test loop."""
    from lit_regularize.model import RegularizedMLP
    from lit_regularize.run import build_datamodule

    model = RegularizedMLP.load_from_checkpoint(ckpt, map_location="cpu").eval()
    dm = build_datamodule(cfg)
    dm.setup("fit")
    loss_sum, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in dm.test_dataloader():
            logits = model(x)
            loss_sum += float(model.data_loss(logits, y)) * len(y)
            preds = (logits > 0).long() if model.binary else logits.argmax(-1)
            correct += int((preds == y.long()).sum())
            n += len(y)
    return loss_sum / n, correct / n


def test_test_scores_of_best_and_last_are_those_of_their_own_checkpoints(quick, monkeypatch):
    script_val_loss(monkeypatch, MID_CURVE)
    cfg = make_config({**quick, "max_epochs": 6, "early_stopping": False, "lr": 0.01, "name": "scores"})
    s = run(cfg)
    best, last = _test_scores(s.path(s.best_checkpoint), cfg), _test_scores(s.path(s.last_checkpoint), cfg)
    # 1e-5: float32 sums in another batch order; the two weights' losses differ by far more, so swapped or
    # duplicated test.best / test.last fail here
    assert abs(best[0] - last[0]) > 1e-3
    assert s.test["best"]["loss"] == pytest.approx(best[0], abs=1e-5)
    assert s.test["last"]["loss"] == pytest.approx(last[0], abs=1e-5)
    # 1e-6: torchmetrics' float32 ratio; one test example of 120 more or less right is 0.008
    assert s.test["best"]["acc"] == pytest.approx(best[1], abs=1e-6)
    assert s.test["last"]["acc"] == pytest.approx(last[1], abs=1e-6)
