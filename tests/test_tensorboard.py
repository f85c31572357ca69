"""TensorBoard: what a run logs (weights, augmented images, hparams) and what the real server then serves."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import quote
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_regularize.config import make_config
from lit_regularize.run import build_datamodule
from lit_regularize.run import run
from lit_regularize.tb_extras import GRID_IMAGES, GRID_VIEWS, TensorBoardExtras, augmentation_grid

TENSORBOARD = Path(sys.executable).with_name("tensorboard")
SERVER_TIMEOUT_S = 60


def _events(folder: str | Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "histograms": 0, "scalars": 0})
    acc.Reload()
    return acc


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
    assert [e.step for e in acc.Images("data/augmented_train_images")] == [0]
    plain = run(make_config({**over, "augment": False, "name": "plain"}))
    assert "data/augmented_train_images" not in _events(plain["log_dir"]).Tags()["images"]


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
        assert metrics["hp/best_val_loss"] == pytest.approx(s["best_val_loss"], rel=1e-6)
        assert metrics["hp/best_val_acc"] == pytest.approx(s["best_val_acc"], rel=1e-6)
        assert metrics["hp/test_acc_best"] == pytest.approx(s["test"]["best"]["acc"], rel=1e-6)
        experiment = _get(port, "/plugin/hparams/experiment", {"experimentName": ""})
        hparams = {h["name"] for h in experiment["hparamInfos"]}
        assert {"lr", "hidden", "reg", "dropout", "l2"} <= hparams
        values = groups[0]["hparams"]
        assert values["hidden"] == 8 and values["reg"] == "none"
        series = _get(port, f"/plugin/scalars/scalars?run={quote(run_name, safe='')}&tag={quote('val/loss', safe='')}")
        assert np.allclose([v[2] for v in series], s["history"]["val_loss"], rtol=1e-6)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
