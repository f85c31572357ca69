"""TensorBoard: what a run logs (weights, augmented images, hparams) and what the real server then serves.

Issue 12, "what users look at": the tests read the event files themselves (all of a run folder's files, as
TensorBoard does), so a wrong step, an extra tag or a mistyped HParams value fails here."""
from __future__ import annotations

import functools
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import quote
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2, metadata as cs_metadata
from tensorboard.plugins.hparams import api_pb2, metadata as hp_metadata, plugin_data_pb2

from conftest import InterruptAt, script_val_loss
from lit_regularize.cli import fit
from lit_regularize.config import make_config
from lit_regularize.errors import RunInterrupted
from lit_regularize.regularizers import enabled_settings
from lit_regularize.rundir import RunDir
from lit_regularize.run import HPARAM_KEYS, build_datamodule
from lit_regularize.run import run
from lit_regularize.summary import RunSummary
from lit_regularize.tb_extras import (AUGMENTED_IMAGES_TAG, CURVES_LAYOUT, GRID_IMAGES, GRID_VIEWS,
                                      TensorBoardExtras, augmentation_grid)

TENSORBOARD = Path(sys.executable).with_name("tensorboard")
SERVER_TIMEOUT_S = 60


def _events(folder: str | Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "histograms": 0, "scalars": 0})
    acc.Reload()
    return acc


def _hparams_records(folder: str | Path) -> list[plugin_data_pb2.HParamsPluginData]:
    """Every HParams plugin record (experiment, session start, session end) of every event file in the folder."""
    out = []
    for f in sorted(Path(folder).glob("events.out.tfevents.*")):
        for event in event_file_loader.EventFileLoader(str(f)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == hp_metadata.PLUGIN_NAME:
                    out.append(plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content))
    return out


def _sessions(folder: str | Path) -> list[plugin_data_pb2.SessionStartInfo]:
    return [r.session_start_info for r in _hparams_records(folder) if r.HasField("session_start_info")]


def _hparam_values(session: plugin_data_pb2.SessionStartInfo) -> dict[str, tuple[str, object]]:
    """name -> (kind of the protobuf Value: number_value | string_value | bool_value, the value)."""
    out = {}
    for name, value in session.hparams.items():
        kind = value.WhichOneof("kind")
        out[name] = (kind, getattr(value, kind))
    return out


def _steps(acc: EventAccumulator, tag: str) -> list[int]:
    return sorted(e.step for e in acc.Scalars(tag))


def _layouts(folder: str | Path) -> list[layout_pb2.Layout]:
    """Every Custom Scalars layout written into the folder's event files."""
    out = []
    for f in sorted(Path(folder).glob("events.out.tfevents.*")):
        for event in event_file_loader.EventFileLoader(str(f)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == cs_metadata.PLUGIN_NAME:
                    out.append(layout_pb2.Layout.FromString(value.tensor.string_val[0]))
    return out


def _tb_compare(a: str, b: str) -> int:
    """TensorBoard's order of tag names (compareTagNames of its web app, as shipped in tensorboard 2.21's
    webfiles): character by character; runs of digits on both sides by their numeric value; "/" and digits before
    any other character (and equal to each other); else by character code."""
    i = j = 0
    while True:
        if i == len(a):
            return 0 if j == len(b) else -1
        if j == len(b):
            return 1
        if a[i].isdigit() and b[j].isdigit():
            m, n = i, j
            while i < len(a) and a[i].isdigit():
                i += 1
            while j < len(b) and b[j].isdigit():
                j += 1
            if int(a[m:i]) != int(b[n:j]):
                return -1 if int(a[m:i]) < int(b[n:j]) else 1
            continue
        first_a, first_b = a[i] == "/" or a[i].isdigit(), b[j] == "/" or b[j].isdigit()
        if first_a != first_b:
            return -1 if first_a else 1
        if not first_a and a[i] != b[j]:
            return -1 if a[i] < b[j] else 1
        i, j = i + 1, j + 1


def _landing_groups(acc: EventAccumulator) -> list[str]:
    """The tag groups of TensorBoard's Time Series page in its order: tags of every kind sorted by _tb_compare,
    grouped by the part before the first "/". The page opens the first two."""
    tags = sorted({t for kind in ("scalars", "histograms", "images") for t in acc.Tags()[kind]},
                  key=functools.cmp_to_key(_tb_compare))
    return list(dict.fromkeys(t.split("/", 1)[0] for t in tags))


# A scripted validation curve whose minimum is at epoch 2 (1-based), so the best and the last weights differ.
CURVE = [0.50, 0.30, 0.40, 0.45]


@pytest.fixture
def scripted_val_loss(monkeypatch):
    """val/loss follows CURVE by epoch."""
    script_val_loss(monkeypatch, CURVE)


def test_per_epoch_scalars_share_the_1_based_epoch_axis_and_no_epoch_scalar_is_written(quick):
    s = run(make_config({**quick, "name": "axis", "reg": "l1", "early_stopping": False}))
    acc = _events(s["log_dir"])
    tags = set(acc.Tags()["scalars"])
    per_epoch = {t for t in tags if t.split("/")[0] in ("train", "val", "weights") and "/best_" not in t}
    assert {"train/loss", "train/acc", "train/penalty", "val/loss", "val/acc", "weights/layer0_mean_abs",
            "weights/layer0_near_zero", "weights/layer2_near_zero"} <= per_epoch
    for tag in per_epoch:
        assert _steps(acc, tag) == [1, 2, 3], tag
    for tag in acc.Tags()["histograms"]:
        assert [e.step for e in acc.Histograms(tag)] == [1, 2, 3], tag
    assert "epoch" not in tags  # Lightning's own 0-based epoch counter is not a panel of its own
    assert not {t for t in tags if t.startswith("test")}
    # the points are the summary's history, epoch by epoch
    assert s.history["epoch"] == [1, 2, 3]
    for tag, key in (("train/loss", "train_loss"), ("train/acc", "train_acc"), ("train/penalty", "train_penalty"),
                     ("val/loss", "val_loss"), ("val/acc", "val_acc")):
        assert np.allclose([e.value for e in sorted(acc.Scalars(tag), key=lambda e: e.step)], s.history[key],
                           rtol=1e-6), tag


def test_best_and_last_test_results_are_separate_tags_at_the_epoch_of_their_weights(quick, scripted_val_loss):
    s = run(make_config({**quick, "name": "tests", "max_epochs": 4, "early_stopping": False}))
    assert s.best_epoch == 2 and s.best_checkpoint == "checkpoints/best-epoch002.ckpt"
    assert torch.load(s.path(s.best_checkpoint), weights_only=True)["epoch"] + 1 == s.best_epoch
    saved = json.loads((Path(s.log_dir) / "summary.json").read_text())
    acc = _events(s["log_dir"])
    tags = set(acc.Tags()["scalars"])
    assert {t for t in tags if t.startswith("withheld/")} == {"withheld/best/loss", "withheld/best/acc",
                                                              "withheld/last/loss", "withheld/last/acc"}
    assert not [t for t in tags if t.startswith("test")]
    for which, epoch in (("best", 2), ("last", 4)):
        for metric in ("loss", "acc"):
            (point,) = acc.Scalars(f"withheld/{which}/{metric}")
            assert point.step == epoch  # the best weights at the best epoch, the last at the last one
            assert point.value == pytest.approx(saved["test"][which][metric], rel=1e-6)
    assert saved["test"]["best"] != saved["test"]["last"]


def test_tensorboard_orders_tags_as_its_web_app_does():
    tags = ["withheld/best/acc", "val/loss", "train/loss", "val/best_loss", "weights/layer10", "weights/layer2",
            "views/augmented_train_images", "valx/a", "val2/a", "Val/a"]
    assert sorted(tags, key=functools.cmp_to_key(_tb_compare)) == [  # "/" and digits first, numbers by value
        "Val/a", "train/loss", "val2/a", "val/best_loss", "val/loss", "valx/a", "views/augmented_train_images",
        "weights/layer2", "weights/layer10", "withheld/best/acc"]


def test_landing_page_opens_the_learning_curves_first_and_a_layout_puts_train_and_val_on_one_chart(quick):
    s = run(make_config({**quick, "name": "landing", "reg": "l2"}))
    acc = _events(s.log_dir)
    groups = _landing_groups(acc)
    assert groups[:2] == ["train", "val"]  # not single points (test scores) before the curves
    assert "withheld" in groups and not [g for g in groups if g.startswith("test")]
    (layout,) = _layouts(s.log_dir)  # written once
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert charts == {title: tags for cat in CURVES_LAYOUT.values() for title, (_, tags) in cat.items()}
    scalar_tags = set(acc.Tags()["scalars"])
    for title, patterns in charts.items():  # each chart draws exactly the train and the val curve
        drawn = {t for t in scalar_tags if any(re.search(p, t) for p in patterns)}
        kind = "loss" if "loss" in title else "acc"
        assert drawn == {f"train/{kind}", f"val/{kind}"}, title


def test_hparams_hold_the_experiment_settings_with_booleans_as_booleans_and_real_metrics(quick):
    s = run(make_config({**quick, "name": "hp", "batchnorm": True, "reg": "l2"}))
    records = _hparams_records(s.log_dir)
    (session,) = [r.session_start_info for r in records if r.HasField("session_start_info")]
    values = _hparam_values(session)
    # the usual columns and the settings of the regularizers the run uses, not the ~44 config fields
    assert set(values) == set(HPARAM_KEYS) | set(enabled_settings(s.config))
    assert not {"accelerator", "data_dir", "logdir", "progress", "num_workers", "name"} & set(values)
    assert values["batchnorm"] == ("bool_value", True)
    assert values["reg"] == ("string_value", "l2")
    # integers as their digits: the HParams tab prints every number to 5 significant digits ("8.0000")
    assert values["hidden"] == ("string_value", "8") and values["batch_size"] == ("string_value", "32")
    assert values["layers"] == ("string_value", "2") and values["max_epochs"] == ("string_value", "3")
    assert values["l2"] == ("number_value", pytest.approx(s.config["l2"]))
    (experiment,) = [r.experiment for r in records if r.HasField("experiment")]
    types = {h.name: h.type for h in experiment.hparam_infos}
    assert types["batchnorm"] == api_pb2.DATA_TYPE_BOOL and types["lr"] == api_pb2.DATA_TYPE_FLOAT64
    assert {m.name.tag for m in experiment.metric_infos} == {"val/best_loss", "val/best_acc",
                                                              "withheld/best/acc", "withheld/last/acc"}
    assert not [t for t in _events(s.log_dir).Tags()["scalars"] if t.startswith("hp")]  # no landing-page group
    assert [e.step for e in _events(s.log_dir).Scalars("val/best_loss")] == [s.best_epoch]
    acc = _events(s.log_dir)
    assert acc.Scalars("val/best_loss")[-1].value == pytest.approx(s.best_val_loss, rel=1e-6)
    assert acc.Scalars("val/best_acc")[-1].value == pytest.approx(s.best_val_acc, rel=1e-6)
    assert acc.Scalars("withheld/best/acc")[-1].value == pytest.approx(s.test["best"]["acc"], rel=1e-6)
    assert acc.Scalars("withheld/last/acc")[-1].value == pytest.approx(s.test["last"]["acc"], rel=1e-6)
    # hparams.yaml is the resolved config, the same as config.yaml and the summary's
    folder = Path(s.log_dir)
    hparams = yaml.safe_load((folder / "hparams.yaml").read_text())
    assert hparams == yaml.safe_load((folder / "config.yaml").read_text()) == s.config
    assert (folder / "hparams.yaml").read_text() == (folder / "config.yaml").read_text()  # in one order
    assert hparams["batchnorm"] is True and hparams["data_dir"] == quick["data_dir"]


def test_resumed_runs_keep_one_hparams_record_one_epoch_axis_and_a_current_hparams_yaml(quick):
    cfg = make_config({**quick, "name": "res", "max_epochs": 3, "early_stopping": False})
    with pytest.raises(RunInterrupted):
        run(cfg, extra_callbacks=[InterruptAt(2)])  # stopped after epoch 2: no HParams record yet
    folder = RunDir.latest(cfg.logdir, "res").path
    assert _sessions(folder) == []
    hp = folder / "hparams.yaml"  # as an older version wrote it: the same settings in another order
    hp.write_text(yaml.safe_dump(dict(reversed(yaml.safe_load(hp.read_text()).items())), sort_keys=False))
    run(cfg, resume=RunDir.open(folder))  # finishes: the one record
    assert len(_sessions(folder)) == 1
    assert hp.read_text() == (folder / "config.yaml").read_text()  # rewritten in config.yaml's order
    # extended, then interrupted again, then finished: still one record (the run already has one)
    with pytest.raises(RunInterrupted):
        run(cfg.replace(max_epochs=6), resume=RunDir.open(folder), extra_callbacks=[InterruptAt(4)])
    assert fit.main(["--resume", str(folder), "--max-epochs", "6", "--no-progress"]) == 0
    s = RunSummary.read(folder)
    assert s.status == "completed" and s.epochs_run == 6
    assert len(_sessions(folder)) == 1
    acc = _events(folder)
    for tag in ("train/loss", "val/loss", "val/acc", "weights/layer0_mean_abs"):
        assert _steps(acc, tag) == [1, 2, 3, 4, 5, 6], tag  # continued, no epoch logged twice
    assert np.allclose([e.value for e in sorted(acc.Scalars("val/loss"), key=lambda e: e.step)],
                       s.history["val_loss"], rtol=1e-6)
    assert "epoch" not in acc.Tags()["scalars"]
    # the HParams metrics end at the finished run's values; hparams.yaml follows the new --max-epochs
    assert acc.Scalars("val/best_loss")[-1].value == pytest.approx(s.best_val_loss, rel=1e-6)
    hparams = yaml.safe_load((folder / "hparams.yaml").read_text())
    assert hparams == yaml.safe_load((folder / "config.yaml").read_text()) == s.config
    assert hparams["max_epochs"] == 6 and hp.read_text() == (folder / "config.yaml").read_text()
    assert len(_layouts(folder)) == 1  # the Custom Scalars layout once, not once per session


def test_sweep_trials_and_the_refit_log_the_searched_settings_as_hparams(quick, monkeypatch, tmp_path):
    from lit_regularize.sweeps import objective as objective_mod, study as study_mod

    space = {"weight_decay": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
             "batchnorm": {"type": "categorical", "choices": [True, False]}}
    sweep = study_mod.Sweep(study_name="hpst", storage="unused", fixed={**quick, "max_epochs": 2}, space=space)
    study = optuna.create_study()
    sweep.record_or_check(study)
    study.optimize(objective_mod.make_objective(sweep), n_trials=1)
    (trial,) = study.trials
    values = _hparam_values(_sessions(trial.user_attrs["run_dir"])[0])
    assert set(values) == set(HPARAM_KEYS) | {"weight_decay"}  # weight_decay is not one of the usual columns
    assert values["weight_decay"] == ("number_value", pytest.approx(trial.params["weight_decay"]))
    assert values["batchnorm"] == ("bool_value", trial.params["batchnorm"])
    names = {m.name.tag for r in _hparams_records(trial.user_attrs["run_dir"]) if r.HasField("experiment")
             for m in r.experiment.metric_infos}
    assert names == {"val/best_loss", "val/best_acc"}  # a trial never sees the test set
    refit = study_mod.refit_best(study)
    refit_values = _hparam_values(_sessions(refit["run_dir"])[0])
    assert set(refit_values) == set(values)  # the refit's row has the trials' columns
    assert "withheld/best/acc" in _events(refit["run_dir"]).Tags()["scalars"]


def test_every_run_logs_weight_histograms_and_exact_sparsity(quick):
    s = run(make_config({**quick, "name": "hist", "reg": "l1"}))
    acc = _events(s["log_dir"])
    assert {"weights/layer0", "weights/layer1", "weights/layer2"} <= set(acc.Tags()["histograms"])
    assert [e.step for e in acc.Histograms("weights/layer0")] == [1, 2, 3]  # once per epoch
    state = torch.load(s.path(s.last_checkpoint), weights_only=True)["state_dict"]
    w = state["net.0.weight"]
    near_zero = acc.Scalars("weights/layer0_near_zero")[-1].value
    assert near_zero == pytest.approx(float((w.abs() < 1e-3).float().mean()), abs=1e-6)
    assert acc.Scalars("weights/layer0_mean_abs")[-1].value == pytest.approx(float(w.abs().mean()), rel=1e-5)
    hist = acc.Histograms("weights/layer0")[-1].histogram_value
    assert hist.num == w.numel() and hist.min == pytest.approx(float(w.min()))
    assert hist.max == pytest.approx(float(w.max())) and sum(hist.bucket) == w.numel()
    assert hist.sum == pytest.approx(float(w.double().sum()), abs=1e-6)
    assert hist.sum_squares == pytest.approx(float((w.double() ** 2).sum()), rel=1e-6)
    # the buckets hold the weights: counts per bucket equal a histogram over the logged limits
    edges = np.concatenate([[hist.min], hist.bucket_limit])
    expected, _ = np.histogram(w.double().numpy(), bins=edges)
    assert np.abs(np.asarray(hist.bucket) - expected).sum() <= 2  # float rounding at a bucket edge


def test_histogram_of_equal_values_is_one_bucket(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from lit_regularize.tb_extras import add_histogram

    with SummaryWriter(str(tmp_path)) as writer:
        add_histogram(writer, "w", torch.full((5,), 0.25), 3)
        add_histogram(writer, "v", torch.arange(10.0), 4)
    acc = _events(tmp_path)
    (one,) = acc.Histograms("w")
    h = one.histogram_value
    assert one.step == 3 and list(h.bucket) == [5] and h.min == h.max == 0.25 and h.sum == 1.25
    h = acc.Histograms("v")[0].histogram_value
    assert sum(h.bucket) == 10 and (h.min, h.max, h.sum, h.sum_squares) == (0, 9, 45, 285)


def test_histogram_subsample_is_fixed_bounded_and_leaves_the_global_rng_alone():
    cb = TensorBoardExtras(hist_sample=100)
    w = torch.randn(50, 40)
    state = torch.get_rng_state()
    a, b = cb._sample(0, w), cb._sample(0, w)
    assert torch.equal(torch.get_rng_state(), state)
    assert len(a) == 100 and torch.equal(a, b)  # the same weights are followed every epoch
    assert set(a.tolist()) <= set(w.reshape(-1).tolist())
    assert len(cb._sample(1, torch.randn(5, 5))) == 25  # small layers are logged whole


def test_augmented_mnist_run_logs_an_image_grid_once_without_moving_the_rng(tmp_path, mnist_dir):
    over = {"data": "mnist", "data_dir": str(mnist_dir), "n_per_class": 10, "val_size": 50, "augment": True,
            "hidden": 8, "max_epochs": 2, "logdir": str(tmp_path / "logs"), "progress": False, "name": "aug"}
    dm = build_datamodule(make_config(over))
    dm.setup()
    state = torch.get_rng_state()
    grid = augmentation_grid(dm)
    assert torch.equal(torch.get_rng_state(), state)
    side = 28 + 2
    assert grid.shape == (3, (1 + GRID_VIEWS) * side + 2, GRID_IMAGES * side + 2)
    top = grid[0, 2:30, 2:30]  # first original: stored pixels / 255
    assert torch.allclose(top, dm.train_set.images[dm.train_set.idx[0]].float() / 255, atol=1e-6)
    s = run(make_config(over))
    acc = _events(s["log_dir"])
    assert [e.step for e in acc.Images(AUGMENTED_IMAGES_TAG)] == [0]
    assert _landing_groups(acc)[:2] == ["train", "val"]  # the image group sorts after the curves
    plain = run(make_config({**over, "augment": False, "name": "plain"}))
    assert AUGMENTED_IMAGES_TAG not in _events(plain["log_dir"]).Tags()["images"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int, path: str, body: dict | None = None) -> object:
    """GET (or POST a JSON body to) the loopback server; http.client, so no proxy settings apply."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        if body is None:
            conn.request("GET", "/data" + path)
        else:
            conn.request("POST", "/data" + path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise ValueError(f"{path}: HTTP {resp.status}")
        return json.loads(resp.read())
    finally:
        conn.close()


@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_real_tensorboard_server_serves_scalars_and_hparams_with_real_metrics(quick):
    s = run(make_config({**quick, "name": "served", "max_epochs": 2}))
    run_name = "served/version_0"
    port = _free_port()
    proc = subprocess.Popen([str(TENSORBOARD), "--logdir", quick["logdir"], "--port", str(port),
                             "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_TIMEOUT_S
        tags, groups, last_error = {}, [], None
        while time.monotonic() < deadline:
            assert proc.poll() is None, "tensorboard exited early"
            try:
                tags = _get(port, "/plugin/scalars/tags").get(run_name, {})
                groups = _get(port, "/plugin/hparams/session_groups",
                              {"experimentName": "", "startIndex": 0, "sliceSize": 100,
                               "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                                   "STATUS_RUNNING"], "colParams": []})["sessionGroups"]
                if {"val/loss", "val/acc", "train/loss"} <= set(tags) and groups:
                    break
            except (OSError, ValueError, KeyError) as e:  # not up yet / not loaded yet
                last_error = e
            time.sleep(0.5)
        else:
            pytest.fail(f"tensorboard served no run within {SERVER_TIMEOUT_S} s (last error: {last_error})")
        assert {"val/loss", "val/acc", "train/loss", "weights/layer0_near_zero"} <= set(tags)
        assert run_name in _get(port, "/runs")
        assert "weights/layer0" in _get(port, "/plugin/histograms/tags")[run_name]
        metrics = {m["name"]["tag"]: m["value"] for m in groups[0]["metricValues"]}
        assert "hp_metric" not in metrics and "hp_metric" not in tags
        assert metrics["val/best_loss"] == pytest.approx(s["best_val_loss"], rel=1e-6)
        assert metrics["val/best_acc"] == pytest.approx(s["best_val_acc"], rel=1e-6)
        assert metrics["withheld/best/acc"] == pytest.approx(s["test"]["best"]["acc"], rel=1e-6)
        experiment = _get(port, "/plugin/hparams/experiment", {"experimentName": ""})
        hparams = {h["name"] for h in experiment["hparamInfos"]}
        assert {"lr", "hidden", "reg", "dropout", "l2"} <= hparams
        values = groups[0]["hparams"]
        assert values["hidden"] == "8" and values["reg"] == "none"
        series = _get(port, f"/plugin/scalars/scalars?run={quote(run_name, safe='')}&tag={quote('val/loss', safe='')}")
        assert np.allclose([v[2] for v in series], s["history"]["val_loss"], rtol=1e-6)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_event_files_are_flushed_within_seconds(tmp_path):
    # SummaryWriter's default 120 s: a Ctrl-C inside the event queue's notify left Lightning's interrupt handling
    # waiting up to that long for the writer thread (3 of 24 signalled fits hung); live curves also lagged by it
    from lit_regularize.trainer import FLUSH_SECS, RunLogger

    logger = RunLogger(save_dir=str(tmp_path), name="", version="v")
    assert FLUSH_SECS <= 5 and logger.experiment.flush_secs == FLUSH_SECS
    logger.finalize("success")
