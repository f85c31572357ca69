"""Optuna sweeps on tiny synthetic IMDB: space, pruning, NaN, resume, workers, kill, Ctrl-C, report, refit."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from conftest import ROOT, flags
from lit_regularize import tuning
from lit_regularize.config import make_config
from lit_regularize.errors import ConfigError

sys.path.insert(0, str(ROOT / "scripts"))
import sweep  # noqa: E402

SWEEP = ROOT / "scripts" / "sweep.py"
States = optuna.trial.TrialState
LR_SPACE = {"lr": {"type": "float", "low": 1e-3, "high": 2e-2, "log": True}}




def write_space(path: Path, space: dict) -> Path:
    """A search-space YAML file."""
    import yaml

    path.write_text(yaml.safe_dump(space))
    return path


def load(url: str, name: str) -> optuna.Study:
    """The study as another process sees it."""
    return optuna.load_study(study_name=name, storage=tuning.open_storage(url, heartbeat=0))


def wait_for_running_trial(url: str, name: str, proc: subprocess.Popen, timeout: float = 90.0) -> Any:
    """The first RUNNING trial that has recorded its worker and params (i.e. is training)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            for t in load(url, name).get_trials(states=(States.RUNNING,)):
                if "worker" in t.user_attrs and t.params:
                    return t
        except KeyError:  # study not created yet
            pass
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no running trial within {timeout} s: {proc.communicate()[0][-3000:]}")


# -- search space --------------------------------------------------------------------------------------------

def test_default_space_samples_conditional_regularizer_strengths():
    space = tuning.parse_space(tuning.load_space(tuning.DEFAULT_SPACE))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(80):
        trial = study.ask()
        params = tuning.suggest(trial, space)
        study.tell(trial, 0.0)
        seen.add(params["reg"])
        assert ("l1" in params) == (params["reg"] in ("l1", "l1_l2"))
        assert ("l2" in params) == (params["reg"] in ("l2", "l1_l2"))
        assert ("dropout" in params) == (params["reg"] == "dropout")
        assert isinstance(params["hidden"], int) and 4 <= params["hidden"] <= 512
        assert 1e-4 <= params["lr"] <= 1e-2
        cfg = make_config(params)
        # an unsampled strength is the preset's zero, a sampled one is used as is
        assert cfg.l1 == params.get("l1", 0.0) and cfg.dropout == params.get("dropout", 0.0)
    assert seen == {"none", "l1", "l2", "l1_l2", "dropout"}
    hidden = study.trials[0].distributions["hidden"]
    assert hidden.log and (hidden.low, hidden.high) == (4, 512)


@pytest.mark.parametrize("space, message", [
    ({"hiden": {"type": "int", "low": 1, "high": 2}}, "did you mean 'hidden'"),
    ({"l1": {"type": "float", "low": 0.0, "high": 1e-3, "log": True}}, "log scale needs low > 0"),
    ({"l1": {"type": "float", "low": 1e-5, "high": 1e-3, "when": {"reg": ["l1"]}}}, "listed above it"),
    ({"reg": {"type": "categorical", "choices": ["l1"]},
      "l2": {"type": "float", "low": 1e-5, "high": 1e-3, "when": {"reg": ["l2"]}}}, "not all choices"),
    ({"dropout": {"type": "float", "low": 0.1, "high": 1.0}}, "dropout = 1.0 is not a valid setting"),
    ({"hidden": {"type": "int", "low": 8, "high": 4}}, "low < high"),
    ({"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}}, "type must be"),
])
def test_bad_space_is_one_config_error(space, message):
    with pytest.raises(ConfigError, match=message):
        tuning.check_space(tuning.parse_space(space, "--space s.yaml"), {}, "--space s.yaml")


def test_sweep_cli_bad_input_is_one_line(tmp_path, quick, capsys):
    assert sweep.main([*flags(quick), "--space", str(tmp_path / "missing.yaml")]) == 2
    missing = str(tmp_path / "missing.yaml")
    assert capsys.readouterr().err.strip() == f"error: --space: no such file {missing!r}"
    space = write_space(tmp_path / "s.yaml", LR_SPACE)
    assert sweep.main([*flags(quick), "--lr", "0.01", "--space", str(space)]) == 2
    assert "lr is searched" in capsys.readouterr().err
    assert sweep.main([*flags(quick), "--space", str(space), "--devices", "2"]) == 2
    assert "exactly one device" in capsys.readouterr().err
    assert sweep.main([*flags({**quick, "data_dir": str(tmp_path / "nodata")}), "--space", str(space),
                       "--storage", str(tmp_path / "s.db")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "s.db").exists()  # bad input writes nothing


# -- objective: trials, pruning, NaN, k-fold -----------------------------------------------------------------

def api_sweep(quick: dict, space: dict, **kw) -> tuning.Sweep:
    return tuning.Sweep(study_name="api", storage="unused", fixed=quick, space=space, **kw)


def test_pruned_trial_stops_early_and_keeps_a_complete_summary(quick):
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))  # any loss > 0 is pruned
    study.optimize(tuning.make_objective(api_sweep({**quick, "max_epochs": 5}, LR_SPACE)), n_trials=1)
    t = study.trials[0]
    assert t.state == States.PRUNED and list(t.intermediate_values) == [0]
    summary = json.loads(Path(t.user_attrs["summary"]).read_text())
    assert (summary["stop_reason"], summary["epochs_run"], summary["pruned_at_epoch"]) == ("pruned", 1, 1)
    assert summary["status"] == "completed" and Path(summary["best_checkpoint"]).is_file()
    assert t.user_attrs["log_dir"].endswith("api/trial_0000")


def test_non_finite_trial_is_pruned_and_the_study_goes_on(quick):
    space = {"lr": {"type": "categorical", "choices": [1e-2, 1e30]}}
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    study.enqueue_trial({"lr": 1e30})  # diverges to NaN in the first epoch
    study.enqueue_trial({"lr": 1e-2})
    study.optimize(tuning.make_objective(api_sweep(quick, space)), n_trials=2)
    diverged, fine = study.trials
    assert diverged.state == States.PRUNED and diverged.user_attrs["epochs_run"] == 1
    assert json.loads(Path(diverged.user_attrs["summary"]).read_text())["stop_reason"] == "non_finite_loss"
    assert fine.state == States.COMPLETE and math.isfinite(fine.value)
    assert study.best_trial.number == 1


def test_kfold_trial_reports_every_fold_and_averages(quick):
    study = optuna.create_study()
    sw = api_sweep({**quick, "kfold": 2, "max_epochs": 2, "early_stopping": False}, LR_SPACE)
    study.optimize(tuning.make_objective(sw), n_trials=1)
    t = study.trials[0]
    assert t.state == States.COMPLETE
    assert sorted(t.intermediate_values) == [0, 1, 2, 3]  # step = fold * max_epochs + epoch
    folds = t.user_attrs["fold_val_losses"]
    assert len(folds) == 2 and math.isclose(t.value, sum(folds) / 2, rel_tol=1e-9)
    assert [Path(p).parent.parent.name for p in t.user_attrs["summary"]] == ["fold_0", "fold_1"]
    for f in range(2):  # each fold's own best val/loss is what was reported at its best epoch
        reported = [v for s, v in t.intermediate_values.items() if s // 2 == f]
        assert math.isclose(min(reported), folds[f], rel_tol=1e-6)


# -- the CLI: resume, report, refit --------------------------------------------------------------------------

def test_sweep_resumes_counts_total_trials_reports_and_refits(tmp_path, quick, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default storage optuna/<study>.db lands here
    space = write_space(tmp_path / "s.yaml", {**LR_SPACE, "hidden": {"type": "int", "low": 4, "high": 32,
                                                                     "log": True}})
    quick = {k: v for k, v in quick.items() if k != "hidden"}
    args = [*flags(quick), "--space", str(space), "--study-name", "st"]
    assert sweep.main([*args, "--n-trials", "2"]) == 0
    url = tuning.storage_url(None, "st")
    assert url == f"sqlite:///{tmp_path / 'optuna' / 'st.db'}"
    first = load(url, "st").trials
    assert [t.number for t in first] == [0, 1] and all(t.state in tuning.COUNTED for t in first)
    assert sweep.main([*args, "--n-trials", "4"]) == 0  # resumes: 2 more, numbering continues
    trials = load(url, "st").trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [(t.params, t.value) for t in trials[:2]] == [(t.params, t.value) for t in first]
    capsys.readouterr()
    report = tmp_path / "report"
    assert sweep.main([*args, "--n-trials", "4", "--report", str(report), "--refit-best"]) == 0  # none to run
    out = capsys.readouterr().out
    study = load(url, "st")
    assert len(study.trials) == 4
    best = study.best_trial
    for key in ("val_acc", "best_epoch", "test_acc", "test_loss", "seed", "config", "summary", "worker"):
        assert key in best.user_attrs, key
    assert best.user_attrs["config"]["lr"] == best.params["lr"] and best.user_attrs["seed"] == 7777
    run_dir = Path(best.user_attrs["summary"]).parent
    assert run_dir == tmp_path / "logs" / "st" / f"trial_{best.number:04d}" / "version_0"
    assert list(run_dir.glob("events.out.tfevents.*")) and list((run_dir / "checkpoints").glob("best-*.ckpt"))
    # leaderboard and plots
    rows = (report / "leaderboard.csv").read_text().splitlines()
    assert rows[0].startswith("trial,state,val_loss") and len(rows) == 5
    assert rows[1].startswith(f"{best.number},COMPLETE,")
    assert f"| {best.number} | {best.value:.4g} |" in (report / "leaderboard.md").read_text()
    for png in ("optimization_history", "param_importances", "intermediate_values", "parallel_coordinate"):
        assert (report / f"{png}.png").stat().st_size > 1000, png
    assert "optuna-dashboard sqlite:///" in out
    # refit: same config and seed -> same val loss
    refit_line = next(line for line in out.splitlines() if line.startswith("refit of trial"))
    refit_loss = float(refit_line.split("val/loss ")[1].split()[0])
    assert math.isclose(refit_loss, best.value, abs_tol=1e-4), refit_line
    refit_dir = tmp_path / "logs" / "st" / f"refit_trial_{best.number:04d}" / "version_0"
    refit = json.loads((refit_dir / "summary.json").read_text())
    assert math.isclose(refit["best_val_loss"], best.value, abs_tol=1e-4)
    # --timeout: no new trial after it (short of --n-trials, no error); then refit on train+val
    assert sweep.main([*args, "--n-trials", "50", "--timeout", "0.1", "--refit-best", "all"]) == 0
    study = load(url, "st")
    best, epochs = study.best_trial, study.best_trial.user_attrs["best_epoch"]
    assert len(study.trials) == 5
    out = capsys.readouterr().out
    assert f"refit of trial {best.number} on train+val for {epochs} epochs: test acc" in out
    runs = sorted((tmp_path / "logs" / "st" / f"refit_trial_{best.number:04d}").glob("version_*"))
    refit = json.loads((runs[-1] / "summary.json").read_text())
    assert refit["config"]["val_size"] == 0 and refit["epochs_run"] == epochs


def test_journal_file_storage(tmp_path, quick):
    space = write_space(tmp_path / "s.yaml", LR_SPACE)
    assert sweep.main([*flags(quick), "--space", str(space), "--study-name", "j", "--n-trials", "2",
                       "--storage", str(tmp_path / "j.log")]) == 0
    url = tuning.storage_url(str(tmp_path / "j.log"), "j")
    assert url == f"journal:{tmp_path / 'j.log'}"
    study = optuna.load_study(study_name="j", storage=tuning.open_storage(url))
    assert isinstance(study._storage, optuna.storages.JournalStorage) and tuning.counted(study) == 2


# -- GPU placement -------------------------------------------------------------------------------------------

def test_one_worker_per_gpu_and_cores_split_on_cpu(monkeypatch):
    assert tuning.placements(2, ["0", "1"], 16) == [("0", 8), ("1", 8)]
    assert tuning.placements(3, ["4", "7"], 2) == [("4", 1), ("7", 1), ("4", 1)]
    assert tuning.placements(2, [], 2) == [(None, 1), (None, 1)]
    assert tuning.placements(1, [], 8) == [(None, 8)]
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert tuning.visible_gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert tuning.visible_gpus() == ["3", "5"]  # the physical ids the user made visible
    assert tuning.visible_gpus("1") == ["1"] and tuning.visible_gpus("none") == []
    with pytest.raises(ConfigError, match="--gpus"):
        tuning.visible_gpus("0;1")
    started = []
    monkeypatch.setattr(tuning.subprocess, "Popen", lambda cmd, env, **kw: started.append((cmd, env)))
    sw = api_sweep({}, LR_SPACE)
    for i, place in enumerate(tuning.placements(2, tuning.visible_gpus(), 8)):
        tuning._start_worker(sw, i, place)
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in started] == ["3", "5"]
    assert [env["OMP_NUM_THREADS"] for _, env in started] == ["4", "4"]
    assert json.loads(started[0][0][3])["study_name"] == "api" and started[1][0][4:] == ["1", "4"]


# -- crash safety: heartbeats, SIGKILL, Ctrl-C ---------------------------------------------------------------

def test_heartbeat_fails_a_silent_trial_and_queues_a_retry(tmp_path):
    url = tuning.storage_url(str(tmp_path / "hb.db"), "hb")
    study = optuna.create_study(study_name="hb", storage=tuning.open_storage(url, heartbeat=1))
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)})
    trial.set_user_attr("worker", "elsewhere:1")
    study._storage.record_heartbeat(trial._trial_id)  # what a worker's heartbeat thread does, then it dies
    optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state == States.RUNNING  # within the grace period
    grace, t0 = tuning.GRACE_FACTOR * 1, time.monotonic()
    while len(study.trials) < 2 and time.monotonic() - t0 < grace + 3:  # SQLite's now() has 1 s resolution
        time.sleep(0.25)
        optuna.storages.fail_stale_trials(study)
    assert time.monotonic() - t0 > grace - 1
    failed, retry = study.trials
    assert failed.state == States.FAIL and retry.state == States.WAITING
    assert retry.params == failed.params and retry.system_attrs["failed_trial"] == 0
    assert "worker" not in retry.user_attrs  # the retry must not look like the dead worker's trial


def sigkill_scenario(url: str, quick: dict, tmp_path: Path, n_trials: int = 6, pruner: str = "none",
                     name: str = "kill"):
    """Two workers on one study; SIGKILL the worker of the first running trial; the study still completes."""
    cmd = [sys.executable, str(SWEEP), *flags({**quick, "max_epochs": 6, "early_stopping": False}),
           "--space", str(write_space(tmp_path / "s.yaml", LR_SPACE)), "--study-name", name,
           "--storage", url, "--workers", "2", "--heartbeat", "2", "--pruner", pruner,
           "--n-trials", str(n_trials)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    worker = wait_for_running_trial(url, name, proc).user_attrs["worker"]
    os.kill(int(worker.rsplit(":", 1)[1]), signal.SIGKILL)  # inside a trial (maybe the next one by now)
    try:
        out = proc.communicate(timeout=150)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"sweep did not finish: {proc.communicate()[0][-3000:]}")
    assert proc.returncode == 0, out[-3000:]
    assert "killed by SIGKILL" in out and "database is locked" not in out
    study = load(url, name)
    trials = study.trials
    victim, = [t for t in trials if t.state == States.FAIL]
    assert victim.user_attrs["worker"] == worker
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].state == States.COMPLETE and retries[0].params == victim.params
    assert len(study.get_trials(states=(States.COMPLETE,))) == n_trials
    assert not study.get_trials(states=(States.RUNNING, States.WAITING))
    assert [t.number for t in trials] == list(range(len(trials)))
    assert len({t.user_attrs["worker"] for t in trials}) >= 2  # both workers took part
    return cmd, study


def test_two_workers_share_sqlite_and_survive_a_sigkilled_worker(tmp_path, quick, capfd):
    url = tuning.storage_url(str(tmp_path / "k.db"), "kill")
    cmd, study = sigkill_scenario(url, quick, tmp_path)
    before = {t.number: t.value for t in study.get_trials(states=(States.COMPLETE,))}
    # re-run (in this process, one worker): resumes, keeps every completed trial, best never gets worse
    i = cmd.index("--n-trials")
    assert sweep.main(cmd[2:i] + ["--workers", "1", "--n-trials", "8"]) == 0
    after = load(url, "kill")
    assert before == {t.number: t.value for t in after.trials if t.number in before}
    assert len(after.get_trials(states=(States.COMPLETE,))) == 8 and after.best_value <= min(before.values())
    new = [t.number for t in after.trials if t.number not in before and t.state != States.FAIL]
    assert len(new) == 2 and min(new) > max(before)


def test_ctrl_c_stops_workers_and_requeues_their_trials(tmp_path, quick):
    url = tuning.storage_url(str(tmp_path / "c.db"), "kill")
    cmd = [sys.executable, str(SWEEP), *flags({**quick, "max_epochs": 30, "early_stopping": False}),
           "--space", str(write_space(tmp_path / "s.yaml", LR_SPACE)), "--study-name", "kill",
           "--storage", url, "--workers", "2", "--n-trials", "10"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_running_trial(url, "kill", proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=90)[0]
    assert proc.returncode == 130, out[-3000:]
    assert "re-run the same command to resume" in out
    study = load(url, "kill")
    assert not study.get_trials(states=(States.RUNNING,))
    interrupted = study.get_trials(states=(States.FAIL,))
    queued = study.get_trials(states=(States.WAITING,))
    assert interrupted and sorted(t.user_attrs["retry_of"] for t in queued) == [t.number for t in interrupted]


@pytest.mark.slow
def test_many_short_trials_from_four_processes_never_hit_a_locked_database(tmp_path):
    url = tuning.storage_url(str(tmp_path / "many.db"), "many")
    optuna.create_study(study_name="many", storage=tuning.open_storage(url))
    script = textwrap.dedent(f"""
        import optuna
        from lit_regularize import tuning
        study = optuna.load_study(study_name="many", storage=tuning.open_storage({url!r}, heartbeat=1))
        def objective(trial):
            x = trial.suggest_float("x", -1, 1)
            for step in range(3):
                trial.report(x * x + step, step)
            return x * x
        study.optimize(objective, n_trials=50, callbacks=[tuning.reap_dead_workers])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    assert not any("locked" in o for o in outs)
    study = load(url, "many")
    assert len(study.get_trials(states=(States.COMPLETE,))) == 200
    assert sorted(t.number for t in study.trials) == list(range(200))
