"""fit.py --devices 2 --strategy ddp on CPU (gloo backend, 2 processes) on tiny data."""
from __future__ import annotations

import json

import pytest
import torch


@pytest.mark.slow
@pytest.mark.xdist_group("ddp_run")  # one DDP launch (conftest.ddp_run) per worker that asks
def test_fit_runs_ddp_on_two_cpu_processes(ddp_run):
    proc, logdir = ddp_run  # quick settings, 3 epochs, no early stopping, --devices 2 --strategy ddp
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted((logdir / "ddp").iterdir())
    assert [r.name for r in runs] == ["version_0"]  # rank 1 writes no folder of its own
    run_dir = runs[0]
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "completed" and s["epochs_run"] == 3 and s["config"]["strategy"] == "ddp"
    assert (run_dir / s["best_checkpoint"]).is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    ckpt = torch.load(run_dir / s["best_checkpoint"], weights_only=True, map_location="cpu")
    assert ckpt["epoch"] + 1 == s["best_epoch"]
    # both ranks print rank 0's summary (run() broadcasts it): no line names another version folder
    assert "version_1" not in proc.stdout and f"run:        {run_dir}" in proc.stdout
