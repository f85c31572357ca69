"""Optuna sweeps on tiny synthetic IMDB: space, pruning, NaN, k-fold, honesty (no test set in trials), resume
checks, report, refit, workers, kill, Ctrl-C."""
from __future__ import annotations

import csv
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

import numpy as np
import optuna
import pytest

import procs
from conftest import ROOT, flags, no_val_size
from lit_regularize.cli.sweep import main as sweep_main
from lit_regularize.config import make_config
from lit_regularize.errors import ConfigError
from lit_regularize.summary import RunSummary
from lit_regularize.sweeps import objective as objective_mod
from lit_regularize.sweeps import report, space as space_mod, storage, study as study_mod, workers

SWEEP = [sys.executable, "-m", "lit_regularize", "sweep"]
States = optuna.trial.TrialState
LR_SPACE = {"lr": {"type": "float", "low": 1e-3, "high": 2e-2, "log": True}}


def write_space(path: Path, space: dict) -> Path:
    """A search-space YAML file."""
    import yaml

    path.write_text(yaml.safe_dump(space))
    return path


_STORAGES: dict[str, Any] = {}


def load(url: str, name: str) -> optuna.Study:
    """The study as another process sees it (one storage per URL: polling must not exhaust a server's
    connections)."""
    if url not in _STORAGES:
        _STORAGES[url] = storage.open_storage(url, heartbeat=0)
    return optuna.load_study(study_name=name, storage=_STORAGES[url])


def api_sweep(quick: dict, space: dict, **kw) -> study_mod.Sweep:
    return study_mod.Sweep(study_name="api", storage="unused", fixed=quick, space=space, **kw)


def wait_for_running_trial(url: str, name: str, proc: procs.Child, timeout: float = 90.0) -> Any:
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
    out = proc.communicate()[0]
    pytest.fail(f"no running trial within {timeout} s: {(out or '')[-3000:]}")


# -- search space --------------------------------------------------------------------------------------------

def test_default_space_samples_conditional_regularizer_strengths():
    space = space_mod.parse_space(space_mod.load_space(space_mod.default_space()))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(150):
        trial = study.ask()
        params = space_mod.suggest(trial, space)
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
    # every reg choice of the shipped space (the classic five and whatever the catalog adds) is sampled
    reg = next(p for p in space if p.name == "reg")
    assert {"none", "l1", "l2", "l1_l2", "dropout"} <= seen == set(reg.choices)
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
    ({}, "search space is empty"),
    ({"hidden": 32}, "search space is empty"),
])
def test_bad_space_is_one_config_error(space, message):
    with pytest.raises(ConfigError, match=message):
        space_mod.check_space(space_mod.parse_space(space, "--space s.yaml"), {}, "--space s.yaml")


def test_space_difference_and_edges():
    assert space_mod.space_difference(LR_SPACE, dict(LR_SPACE)) is None
    other = {"lr": {**LR_SPACE["lr"], "high": 0.1}}
    assert space_mod.space_difference(LR_SPACE, other).startswith("lr: ")
    assert space_mod.space_difference(LR_SPACE, {**LR_SPACE, "hidden": 8}).startswith("hidden: (absent) -> 8")
    lr = space_mod.parse_space(LR_SPACE)[0]
    assert space_mod.edge_of_range(lr, 1.05e-3) == "low" and space_mod.edge_of_range(lr, 1.9e-2) == "high"
    assert space_mod.edge_of_range(lr, 5e-3) is None


def test_sweep_cli_bad_input_is_one_line(tmp_path, quick, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def error(*args: str) -> str:
        assert sweep_main([*flags(quick), *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: "), err
        return err

    missing = str(tmp_path / "missing.yaml")
    assert error("--space", missing).strip() == f"error: --space: no such file {missing!r}"
    space = str(write_space(tmp_path / "s.yaml", LR_SPACE))
    assert "lr is searched" in error("--lr", "0.01", "--space", space)
    assert "exactly one device" in error("--space", space, "--devices", "2")
    assert "search space is empty" in error("--space", str(write_space(tmp_path / "e.yaml", {"hidden": 8})))
    assert "--workers must be >= 1" in error("--space", space, "--workers", "0")
    (tmp_path / "afile").write_text("x")
    assert "is a file" in error("--space", space, "--report", str(tmp_path / "afile"))
    assert "no such study" in error("--space", space, "--n-trials", "0", "--report", str(tmp_path / "r"),
                                    "--study-name", "nope")
    assert "test set" in error("--space", space, "--val-on-test")
    assert sweep_main([*flags({**quick, "data_dir": str(tmp_path / "nodata")}), "--space", space,
                       "--storage", str(tmp_path / "s.db")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "optuna").exists()  # bad input writes nothing
    assert not (tmp_path / "r").exists()


def test_gp_and_qmc_samplers_or_their_one_line_error():
    for name in ("gp", "qmc"):
        try:
            import scipy  # noqa: F401
        except ImportError:
            with pytest.raises(ConfigError, match=f"--sampler {name} needs an extra package.*pip install scipy"):
                storage.make_sampler(name, 0)
            continue
        sampler = storage.make_sampler(name, 0)
        study = optuna.create_study(sampler=sampler)
        study.optimize(lambda t: (t.suggest_float("x", -1, 1)) ** 2, n_trials=4)
        assert len(study.trials) == 4


# -- pruning ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["median", "hyperband", "halving"])
def test_pruners_warm_up_with_the_budget_start_unpruned_and_never_prune_a_final_epoch(name):
    max_epochs = 8
    pruner = storage.make_pruner(name, max_epochs)
    assert isinstance(pruner, storage.BudgetPruner) and pruner.final_step == max_epochs  # steps are 1-based epochs
    study = optuna.create_study(pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
    pruned_at = {}

    def objective(trial):
        level = trial.suggest_float("x", 0, 1)
        for step in range(1, max_epochs + 1):
            trial.report(level + 1.0 / step, step)
            if trial.should_prune():
                pruned_at[trial.number] = step
                raise optuna.TrialPruned()
        return level
    study.optimize(objective, n_trials=30)
    assert pruned_at, f"{name} pruned nothing"
    assert all(storage.warmup_epochs(max_epochs) <= s < max_epochs for s in pruned_at.values()), pruned_at
    assert min(pruned_at) >= storage.N_STARTUP_TRIALS  # the first trials are never pruned
    assert storage.warmup_epochs(8) == 2 and storage.warmup_epochs(40) == 10 and storage.warmup_epochs(1) == 1
    assert isinstance(storage.make_pruner("none", 8), optuna.pruners.NopPruner)


def test_pruned_trial_stops_early_and_keeps_a_complete_summary(quick):
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))  # any loss > 0 is pruned
    study.optimize(objective_mod.make_objective(api_sweep({**quick, "max_epochs": 5}, LR_SPACE)), n_trials=1)
    t = study.trials[0]
    assert t.state == States.PRUNED and list(t.intermediate_values) == [1]  # step = 1-based epoch
    s = RunSummary.read(t.user_attrs["run_dir"])
    assert (s.stop_reason, s.epochs_run, s.status) == ("pruned", 1, "completed")
    assert t.user_attrs["epochs_run"] == 1 and t.user_attrs["stop_reason"] == "pruned"
    assert s.test is None  # a trial never touches the test set
    assert Path(t.user_attrs["run_dir"]).parent.name == "trial_0000"


def test_no_trial_is_pruned_at_its_final_epoch(quick):
    # a pruner that always says prune: a one-epoch trial (and an early-stopped last epoch) still completes
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    study.optimize(objective_mod.make_objective(api_sweep({**quick, "max_epochs": 1}, LR_SPACE)), n_trials=2)
    assert [t.state for t in study.trials] == [States.COMPLETE] * 2
    assert all(t.user_attrs["epochs_run"] == 1 and math.isfinite(t.value) for t in study.trials)


def test_non_finite_trial_is_pruned_and_the_study_goes_on(quick):
    space = {"lr": {"type": "categorical", "choices": [1e-2, 1e30]}}
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    study.enqueue_trial({"lr": 1e30})  # diverges to NaN in the first epoch
    study.enqueue_trial({"lr": 1e-2})
    study.optimize(objective_mod.make_objective(api_sweep(quick, space)), n_trials=2)
    diverged, fine = study.trials
    assert diverged.state == States.PRUNED and diverged.user_attrs["epochs_run"] == 1
    assert RunSummary.read(diverged.user_attrs["run_dir"]).stop_reason == "non_finite_loss"
    assert fine.state == States.COMPLETE and math.isfinite(fine.value)
    assert study.best_trial.number == 1


def test_kfold_trial_value_is_fit_kfolds_mean_curve_rule(quick):
    from lit_regularize.kfold import chosen_epoch, mean_curves

    study = optuna.create_study()
    sw = api_sweep({**no_val_size(quick), "kfold": 2, "max_epochs": 3}, LR_SPACE)
    study.optimize(objective_mod.make_objective(sw), n_trials=1)
    t = study.trials[0]
    assert t.state == States.COMPLETE
    assert sorted(t.intermediate_values) == list(range(1, 7))  # step = fold * max_epochs + 1-based epoch
    folds = [RunSummary.read(d) for d in t.user_attrs["fold_dirs"]]
    assert [Path(f.run_dir).parent.name for f in folds] == ["fold_0", "fold_1"]
    assert all(f.test is None and f.epochs_run == 3 for f in folds)  # every fold runs all epochs, no test
    # epochs as people read them: 3 per fold (a fit's --max-epochs), not their sum; the work is the sum
    from lit_regularize.sweeps.report import trial_line

    assert (t.user_attrs["epochs_run"], t.user_attrs["folds_run"], t.user_attrs["epochs_trained"]) == (3, 2, 6)
    assert "epochs 3 x 2 folds" in trial_line(t)
    curves = mean_curves([f.history for f in folds])
    e = chosen_epoch(curves["val_loss"])
    assert t.user_attrs["best_epoch"] == e and math.isclose(t.value, curves["val_loss"][e - 1], rel_tol=1e-9)
    for f in range(2):  # what each fold reported is its val/loss curve
        reported = [t.intermediate_values[f * 3 + e] for e in (1, 2, 3)]
        assert np.allclose(reported, folds[f].history["val_loss"], rtol=1e-6)


# -- the CLI: resume, report, refit --------------------------------------------------------------------------

@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_sweep_resumes_reports_honestly_and_refits(tmp_path, quick, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default storage optuna/<study>.db lands here
    space = write_space(tmp_path / "s.yaml", {**LR_SPACE, "hidden": {"type": "int", "low": 4, "high": 32,
                                                                     "log": True}})
    quick = {k: v for k, v in quick.items() if k != "hidden"}
    args = [*flags(quick), "--space", str(space), "--study-name", "st"]
    assert sweep_main([*args, "--n-trials", "2"]) == 0
    out = capsys.readouterr().out
    url = storage.storage_url(None, "st")
    assert url == f"sqlite:///{tmp_path / 'optuna' / 'st.db'}"
    first = load(url, "st").trials
    assert [t.number for t in first] == [0, 1] and all(t.state in study_mod.COUNTED for t in first)
    lines = [line for line in out.splitlines() if line.startswith("trial ")]
    assert len(lines) == 2 and all("val/loss" in ln and "best epoch" in ln and "epochs" in ln for ln in lines)
    assert sweep_main([*args, "--n-trials", "4"]) == 0  # resumes: 2 more, numbering continues
    captured = capsys.readouterr()
    assert "Using an existing study" not in captured.out + captured.err
    trials = load(url, "st").trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [(t.params, t.value) for t in trials[:2]] == [(t.params, t.value) for t in first]
    rep = tmp_path / "report"
    assert sweep_main([*args, "--n-trials", "0", "--report", str(rep), "--refit-best"]) == 0  # none to run
    captured = capsys.readouterr()
    out = captured.out
    assert "study st: 4 finished trials (" in out  # counts of a finished study, no "4/0"
    assert "importance" not in captured.err.lower() or "only 4 finished" in captured.err
    study = load(url, "st")
    assert len(study.trials) == 4 and study.metric_names == ["val/loss"]
    best = study.best_trial
    for key in ("val_acc", "best_epoch", "epochs_run", "seconds", "run_dir", "seed", "config", "worker"):
        assert key in best.user_attrs, key
    assert not any(k.startswith("test") for t in study.trials for k in t.user_attrs)
    assert best.user_attrs["config"]["lr"] == best.params["lr"] and best.user_attrs["seed"] == 7777
    run_dir = Path(best.user_attrs["run_dir"])
    assert run_dir == tmp_path / "logs" / "st" / f"trial_{best.number:04d}" / "version_0"
    for t in study.trials:  # no trial has test metrics
        assert RunSummary.read(t.user_attrs["run_dir"]).test is None
    # the report, at --report and at <logdir>/<study>/report
    for folder in (rep, tmp_path / "logs" / "st" / "report"):
        for name in ("landscape.png", "curves.png", "history.png", "importances.png"):
            assert (folder / name).stat().st_size > 1000, name
        rows = list(csv.DictReader((folder / "leaderboard.csv").open()))
        assert not any("test" in k for k in rows[0])
        assert len(rows) == 4 and rows[0]["rank"] == "1" and int(rows[0]["trial"]) == best.number
        for r in rows:  # the numbers match storage
            t = study.trials[int(r["trial"])]
            best_reported = t.value if t.state == States.COMPLETE else min(t.intermediate_values.values())
            assert r["state"] == t.state.name and float(r["val_loss"]) == best_reported
            assert int(r["best_epoch"]) == t.user_attrs["best_epoch"] and int(r["epochs_run"]) == t.user_attrs[
                "epochs_run"]
        md = (folder / "leaderboard.md").read_text()
        assert "test" not in md and f"| 1 | {best.number} | COMPLETE |" in md and f"{best.value:.4f}" in md
    text = (rep / "report.md").read_text()
    assert "Final untouched test estimate" in text and "only 4 finished trial(s)" in text
    assert "![" in text and "landscape.png" in text
    assert "optuna-dashboard sqlite:///" in out
    if importlib_spec("optuna_dashboard") is None:
        assert "pip install optuna-dashboard" in out
    # refit (holdout): same config and seed -> same val loss; the one test evaluation, labelled as such
    assert "final untouched test estimate: test acc" in out
    refit_dir = tmp_path / "logs" / "st" / f"refit_trial_{best.number:04d}" / "version_0"
    refit = RunSummary.read(refit_dir)
    assert math.isclose(refit.best_val_loss, best.value, abs_tol=1e-4) and refit.test is not None
    assert f"test acc {refit.test['best']['acc']:.4f}" in text or "test acc" in (rep / "report.md").read_text()
    assert load(url, "st").user_attrs["refit"]["test_acc"] == refit.test["best"]["acc"]
    # --timeout: no new trial after it (short of --n-trials, no error)
    assert sweep_main([*args, "--n-trials", "50", "--timeout", "0.1"]) == 0
    assert len(load(url, "st").trials) == 5


def importlib_spec(name: str):
    import importlib.util

    return importlib.util.find_spec(name)


def test_refit_all_trains_on_exactly_the_trials_train_and_val_examples(tmp_path, quick, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path / "s.yaml", LR_SPACE)
    args = [*flags({**quick, "train_size": 150}), "--space", str(space), "--study-name", "ra"]
    assert sweep_main([*args, "--n-trials", "2", "--refit-best", "all"]) == 0
    out = capsys.readouterr().out
    study = load(storage.storage_url(None, "ra"), "ra")
    best = study.best_trial
    from lit_regularize.rundir import RunDir

    trial_split = RunDir(Path(best.user_attrs["run_dir"])).read_split()
    runs = sorted((tmp_path / "logs" / "ra" / f"refit_trial_{best.number:04d}").glob("version_*"))
    refit_split = RunDir(runs[-1]).read_split()
    union = np.union1d(trial_split["train_idx"], trial_split["val_idx"])
    assert len(trial_split["train_idx"]) == 150 and len(trial_split["val_idx"]) == 60
    assert np.array_equal(np.sort(refit_split["train_idx"]), union)
    assert len(refit_split.get("val_idx", [])) == 0
    refit = RunSummary.read(runs[-1])
    assert refit.epochs_run == best.user_attrs["best_epoch"] and refit.config["merge_val"]
    assert refit.test is not None
    assert f"refit of trial {best.number} on its training + validation examples for " \
           f"{best.user_attrs['best_epoch']} epochs" in out


@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_resuming_with_another_space_or_other_settings_is_one_error(tmp_path, quick, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path / "s.yaml", LR_SPACE)
    args = ["--space", str(space), "--study-name", "rs", "--n-trials", "1"]
    assert sweep_main([*flags(quick), *args]) == 0
    capsys.readouterr()
    other = write_space(tmp_path / "o.yaml", {"lr": {"type": "float", "low": 1e-3, "high": 5e-2, "log": True}})
    assert sweep_main([*flags(quick), "--space", str(other), "--study-name", "rs", "--n-trials", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another search space (lr:" in err
    assert sweep_main([*flags({**quick, "hidden": 12}), *args[:-1], "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--hidden 8 -> 12" in err and "--allow-changed-settings" in err
    assert len(load(storage.storage_url(None, "rs"), "rs").trials) == 1  # no trial started
    assert sweep_main([*flags({**quick, "progress": False, "hidden": 12}), *args[:-1], "2",
                       "--allow-changed-settings"]) == 0
    study = load(storage.storage_url(None, "rs"), "rs")  # the change is recorded and the report says so
    assert study.user_attrs["settings_changes"] == [{"from_trial": 1, "changes": [["hidden", 8, 12]]}]
    assert study.user_attrs["fixed"]["hidden"] == 12
    report = (Path(quick["logdir"]) / "rs" / "report" / "report.md").read_text()
    assert "fixed settings changed from trial 1 on (--hidden 8 -> 12" in report


def test_trial_line_and_dashboard_hint(monkeypatch):
    study = optuna.create_study()
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)})
    trial.report(0.5, 0)
    for k, v in {"best_epoch": 1, "epochs_run": 1, "seconds": 2.25}.items():
        trial.set_user_attr(k, v)
    study.tell(trial, state=States.PRUNED)
    line = report.trial_line(study.trials[0])
    assert line.startswith("trial    0 PRUNED") and "last val/loss 0.5000" in line and "epochs 1  2.2 s" in line
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "optuna_dashboard" else real(n, *a))
    assert report.dashboard_hint("sqlite:///x.db") == "pip install optuna-dashboard && optuna-dashboard sqlite:///x.db"
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object())
    assert report.dashboard_hint("journal:/a/b.log") == "optuna-dashboard /a/b.log"


def test_journal_file_storage(tmp_path, quick):
    space = write_space(tmp_path / "s.yaml", LR_SPACE)
    assert sweep_main([*flags(quick), "--space", str(space), "--study-name", "j", "--n-trials", "2",
                       "--storage", str(tmp_path / "j.log")]) == 0
    url = storage.storage_url(str(tmp_path / "j.log"), "j")
    assert url == f"journal:{tmp_path / 'j.log'}"
    study = optuna.load_study(study_name="j", storage=storage.open_storage(url))
    assert isinstance(study._storage, optuna.storages.JournalStorage) and study_mod.counted(study) == 2


# -- placement -------------------------------------------------------------------------------------------------

def test_one_worker_per_gpu_and_cores_split_on_cpu(monkeypatch):
    assert workers.placements(2, ["0", "1"], 16) == [("0", 8), ("1", 8)]
    assert workers.placements(3, ["4", "7"], 2) == [("4", 1), ("7", 1), ("4", 1)]
    assert workers.placements(2, [], 2) == [(None, 1), (None, 1)]
    assert workers.placements(1, [], 8) == [(None, 8)]
    with pytest.warns(UserWarning, match="using 2 worker"):
        assert workers.placements(5, [], 2) == [(None, 1), (None, 1)]  # capped at the cores without GPUs
    with pytest.raises(ConfigError, match="--workers must be >= 1"):
        workers.placements(0, [], 2)
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert workers.visible_gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert workers.visible_gpus() == ["3", "5"]  # the physical ids the user made visible
    assert workers.visible_gpus("1") == ["1"] and workers.visible_gpus("none") == []
    with pytest.raises(ConfigError, match="--gpus"):
        workers.visible_gpus("0;1")
    started = []
    monkeypatch.setattr(workers.subprocess, "Popen", lambda cmd, env, **kw: started.append((cmd, env)))
    sw = api_sweep({}, LR_SPACE)
    for i, place in enumerate(workers.placements(2, workers.visible_gpus(), 8)):
        workers.start_worker(sw, i, place)
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in started] == ["3", "5"]
    assert [env["OMP_NUM_THREADS"] for _, env in started] == ["4", "4"]
    cmd = started[0][0]
    assert cmd[1:3] == ["-m", "lit_regularize.sweeps.workers"] and json.loads(cmd[3])["study_name"] == "api"
    assert started[1][0][4:] == ["1", "4", str(os.getpid())]
    assert all(env.get("PYTHONPATH") == os.environ.get("PYTHONPATH") for _, env in started)  # not set by us


# -- crash safety: heartbeats, SIGKILL, Ctrl-C ---------------------------------------------------------------

@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_heartbeat_fails_a_silent_trial_and_queues_a_retry(tmp_path):
    url = storage.storage_url(str(tmp_path / "hb.db"), "hb")
    study = optuna.create_study(study_name="hb", storage=storage.open_storage(url, heartbeat=1))
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)})
    trial.set_user_attr("worker", "elsewhere:1")
    study._storage.record_heartbeat(trial._trial_id)  # what a worker's heartbeat thread does, then it dies
    optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state == States.RUNNING  # within the grace period
    grace, t0 = storage.GRACE_FACTOR * 1, time.monotonic()
    while len(study.trials) < 2 and time.monotonic() - t0 < grace + 3:  # SQLite's now() has 1 s resolution
        time.sleep(0.25)
        optuna.storages.fail_stale_trials(study)
    assert time.monotonic() - t0 > grace - 1
    failed, retry = study.trials
    assert failed.state == States.FAIL and retry.state == States.WAITING
    assert retry.params == failed.params and retry.system_attrs["failed_trial"] == 0
    assert "worker" not in retry.user_attrs  # the retry must not look like the dead worker's trial


def test_dead_local_worker_trial_is_failed_and_retried_at_once(tmp_path):
    url = storage.storage_url(str(tmp_path / "j.log"), "reap")
    study = optuna.create_study(study_name="reap", storage=storage.open_storage(url))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)})
    trial.set_user_attr("worker", f"{objective_mod.machine_id()}:{dead.pid}")
    alive = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)})
    alive.set_user_attr("worker", objective_mod.worker_id())
    assert workers.reap_dead_workers(study) == [0]
    states = [t.state for t in study.trials]
    assert states == [States.FAIL, States.RUNNING, States.WAITING]
    assert study.trials[2].params == study.trials[0].params and "worker" not in study.trials[2].user_attrs


def test_a_failed_trial_is_queued_again_once_and_says_which_trial_it_retries(tmp_path):
    """Whichever process notices an interrupted trial (its worker on Ctrl-C, the launcher reaping a worker it had
    to kill, a heartbeat timeout), the trial is queued once, marked retry_of its own number."""
    url = storage.storage_url(str(tmp_path / "once.log"), "once")
    study = optuna.create_study(study_name="once", storage=storage.open_storage(url))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lr = {"lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)}
    first = study.ask(lr)
    first.set_user_attr("worker", f"{objective_mod.machine_id()}:{dead.pid}")
    study.enqueue_trial(first.params, user_attrs={"retry_of": first.number})  # its worker queued it, then hung
    assert workers.reap_dead_workers(study) == [0]
    assert [t.state for t in study.trials] == [States.FAIL, States.WAITING]  # no second copy
    retry = study.ask(lr)  # the retry (trial 1) runs with the same lr, and its worker is killed too
    retry.set_user_attr("worker", f"{objective_mod.machine_id()}:{dead.pid}")
    assert retry.params == first.params
    retry.set_user_attr("retry_of", 0)
    assert workers.reap_dead_workers(study) == [1]
    queued = study.get_trials(states=(States.WAITING,))
    assert [t.user_attrs["retry_of"] for t in queued] == [1] and queued[0].params == first.params
    assert "worker" not in queued[0].user_attrs


def sweep_cmd(quick: dict, tmp_path: Path, url: str, name: str, n_trials: int, max_epochs: int = 6,
              pruner: str = "none") -> list[str]:
    return [*SWEEP, *flags({**quick, "max_epochs": max_epochs, "early_stopping": False}),
            "--space", str(write_space(tmp_path / "s.yaml", LR_SPACE)), "--study-name", name,
            "--storage", url, "--workers", "2", "--heartbeat", "2", "--pruner", pruner, "--n-trials", str(n_trials)]


def start_sweep(cmd: list[str], cwd: Path) -> procs.Child:
    """The sweep command as its own process (a forkserver child: it starts without importing torch and
    Lightning again; its workers are fresh interpreters, `python -m lit_regularize.sweeps.workers`, as
    always), stdout and stderr together."""
    assert cmd[:2] == [sys.executable, "-m"]
    return procs.start(cmd[1:], cwd=cwd, merge_stderr=True)


def sigkill_scenario(url: str, quick: dict, tmp_path: Path, n_trials: int = 6, pruner: str = "none",
                     name: str = "kill"):
    """Two workers on one study; SIGKILL the worker of the first running trial; the study still completes."""
    cmd = sweep_cmd(quick, tmp_path, url, name, n_trials, pruner=pruner)
    proc = start_sweep(cmd, tmp_path)
    worker = wait_for_running_trial(url, name, proc).user_attrs["worker"]
    os.kill(int(worker.rsplit(":", 1)[1]), signal.SIGKILL)  # inside a trial (maybe the next one by now)
    try:
        out = proc.communicate(timeout=240)[0]
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


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_workers_share_sqlite_and_survive_a_sigkilled_worker(tmp_path, quick):
    url = storage.storage_url(str(tmp_path / "k.db"), "kill")
    cmd, study = sigkill_scenario(url, quick, tmp_path)
    before = {t.number: t.value for t in study.get_trials(states=(States.COMPLETE,))}
    # re-run (in this process, one worker): resumes, keeps every completed trial, best never gets worse
    i = cmd.index("--n-trials")
    assert sweep_main(cmd[4:i] + ["--workers", "1", "--n-trials", "8"]) == 0
    after = load(url, "kill")
    assert before == {t.number: t.value for t in after.trials if t.number in before}
    assert len(after.get_trials(states=(States.COMPLETE,))) == 8 and after.best_value <= min(before.values())
    new = [t.number for t in after.trials if t.number not in before and t.state != States.FAIL]
    assert len(new) == 2 and min(new) > max(before)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_of_the_sweep_kills_its_workers_and_the_next_run_retries_their_trials(tmp_path, quick):
    url = storage.storage_url(str(tmp_path / "p.db"), "parent")
    cmd = sweep_cmd(quick, tmp_path, url, "parent", 4, max_epochs=40)
    proc = start_sweep(cmd, tmp_path)  # output to a file, not a pipe: the workers hold it until they exit
    wait_for_running_trial(url, "parent", proc)
    kids = _children(proc.pid)
    assert len(kids) == 2
    proc.kill()  # SIGKILL: no chance to stop the workers itself
    proc.wait(timeout=30)
    deadline = time.monotonic() + 60
    while any(workers._alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(workers._alive(k) for k in kids), "workers outlived the sweep"
    i = cmd.index("--max-epochs")
    rerun = cmd[4:i] + ["--max-epochs", "2"] + cmd[i + 2:]
    rerun[rerun.index("--workers") + 1] = "1"
    # different max_epochs is a changed setting: allowed explicitly for this fast re-run
    assert sweep_main(rerun + ["--allow-changed-settings"]) == 0
    study = load(url, "parent")
    assert not study.get_trials(states=(States.RUNNING, States.WAITING))
    failed = study.get_trials(states=(States.FAIL,))
    assert failed and len(study.get_trials(states=(States.COMPLETE,))) == 4
    retried = {t.system_attrs.get("failed_trial") for t in study.trials} | {
        t.user_attrs.get("retry_of") for t in study.trials}
    assert all(f.number in retried for f in failed)


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_ctrl_c_stops_workers_and_requeues_their_trials(tmp_path, quick):
    url = storage.storage_url(str(tmp_path / "c.db"), "kill")
    cmd = sweep_cmd(quick, tmp_path, url, "kill", 10, max_epochs=30)
    proc = start_sweep(cmd, tmp_path)
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
    # every queued trial retries one interrupted trial, whichever process queued it (see RetryTrial)
    assert interrupted and sorted(t.user_attrs.get("retry_of") for t in queued) == [t.number for t in interrupted], \
        out[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_many_short_trials_from_four_processes_never_hit_a_locked_database(tmp_path):
    url = storage.storage_url(str(tmp_path / "many.db"), "many")
    optuna.create_study(study_name="many", storage=storage.open_storage(url))
    script = textwrap.dedent(f"""
        import optuna
        from lit_regularize.sweeps import storage, workers
        study = optuna.load_study(study_name="many", storage=storage.open_storage({url!r}, heartbeat=1))
        def objective(trial):
            x = trial.suggest_float("x", -1, 1)
            for step in range(3):
                trial.report(x * x + step, step)
            return x * x
        study.optimize(objective, n_trials=50, callbacks=[workers.reap_dead_workers])
    """)
    # four processes (forkserver children: they start together, without importing torch and Lightning each)
    children = [procs.start(["-c", script], cwd=ROOT) for _ in range(4)]
    outs = ["".join(c.communicate(timeout=300)) for c in children]
    assert [c.returncode for c in children] == [0] * 4, outs
    assert not any("locked" in o for o in outs)
    study = load(url, "many")
    assert len(study.get_trials(states=(States.COMPLETE,))) == 200
    assert sorted(t.number for t in study.trials) == list(range(200))


# -- per-trial costs (issue #14): no histograms or last.ckpt in trials unless asked, same results -------------

@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_trials_skip_histograms_and_last_checkpoint_with_unchanged_results_and_the_refit_keeps_them(
        tmp_path, quick, capsys, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def histogram_steps(run_dir) -> list[int]:
        acc = EventAccumulator(str(run_dir), size_guidance={"histograms": 0, "scalars": 0})
        acc.Reload()
        assert "val/loss" in acc.Tags()["scalars"]
        return [e.step for e in acc.Histograms("weights/layer0")] if "weights/layer0" in acc.Tags()["histograms"] \
            else []

    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path / "s.yaml", LR_SPACE)
    args = [*flags(quick), "--space", str(space), "--n-trials", "2", "--pruner", "none"]
    assert sweep_main([*args, "--study-name", "lean", "--refit-best"]) == 0
    assert sweep_main([*args, "--study-name", "hist", "--histogram-every", "1"]) == 0
    capsys.readouterr()
    lean = load(storage.storage_url(None, "lean"), "lean")
    hist = load(storage.storage_url(None, "hist"), "hist")
    for t in lean.trials:
        run_dir = Path(t.user_attrs["run_dir"])
        assert histogram_steps(run_dir) == []  # sweep default: no weight histograms
        assert not (run_dir / "checkpoints" / "last.ckpt").exists()  # trials are never resumed
        s = RunSummary.read(run_dir)
        assert s.last_checkpoint is None and s.best_checkpoint and s.path(s.best_checkpoint).is_file()
        assert t.user_attrs["config"]["histogram_every"] == 0
    assert "histogram_every" not in lean.user_attrs["fixed"]  # the study records what the user gave
    assert histogram_steps(hist.trials[0].user_attrs["run_dir"]) == [1, 2, 3]  # --histogram-every is honoured
    # same seed, same first params: skipping histograms and last.ckpt changes no result
    assert hist.trials[0].params == lean.trials[0].params
    assert hist.trials[0].value == pytest.approx(lean.trials[0].value, rel=1e-6)
    assert hist.trials[0].user_attrs["val_curve"] == pytest.approx(lean.trials[0].user_attrs["val_curve"], rel=1e-6)
    refit_dir = Path(lean.user_attrs["refit"]["run_dir"])
    assert histogram_steps(refit_dir) == list(range(1, RunSummary.read(refit_dir).epochs_run + 1))  # a fit's default
    assert (refit_dir / "checkpoints" / "last.ckpt").is_file()


def test_spare_cores_go_to_the_first_workers_and_cores_are_the_usable_ones(monkeypatch):
    assert [p.threads for p in workers.placements(3, [], 4)] == [2, 1, 1]
    assert [p.threads for p in workers.placements(2, [], 5)] == [3, 2]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3}, raising=False)
    assert workers.usable_cpus() == 2  # the affinity mask (taskset, cpusets), not the host's core count


def test_an_interrupted_trial_leaves_no_failed_trial_warnings_but_a_real_failure_does():
    import logging

    from optuna.study._optimize import _log_failed_trial

    from lit_regularize.errors import RunInterrupted
    from lit_regularize.sweeps.study import quiet_optuna

    quiet_optuna()
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("optuna.study._optimize")
    logger.addHandler(handler)
    try:
        for number, err in ((3, RunInterrupted("/x/trial_0003/version_0", "KeyboardInterrupt")),
                            (4, ValueError("a real bug"))):
            try:
                raise err
            except Exception as e:
                _log_failed_trial(number, {"hidden": 8}, repr(e), exc_info=sys.exc_info())
    finally:
        logger.removeHandler(handler)
    assert not [m for m in seen if m.startswith("Trial 3 ")]  # the misleading '--resume trial folder' hint is gone
    assert [m for m in seen if m.startswith("Trial 4 ")] and any("a real bug" in m for m in seen)


# -- reliability (issue 21): outputs checked up front, one folder per study, counted test looks ----------------

def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def _blocked_probe(monkeypatch, *folders: Path) -> None:
    """The write probe (a temporary file) fails with EACCES in these folders: what chmod does for a non-root user
    (root ignores chmod, so the probe itself is made to fail)."""
    import errno
    import tempfile

    real, blocked = tempfile.mkstemp, {f.resolve() for f in folders}

    def mkstemp(*args, **kwargs):
        if kwargs.get("dir") is not None and Path(kwargs["dir"]).resolve() in blocked:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, **kwargs)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_every_output_folder_is_checked_before_the_first_trial(tmp_path, quick, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = str(write_space(tmp_path / "s.yaml", LR_SPACE))
    afile = tmp_path / "afile"
    afile.write_text("x")
    for d in ("ro", "logs_ro", "logs_rep/out/report", "dbdir"):
        (tmp_path / d).mkdir(parents=True)
    cases = [  # (extra flags, folder whose write probe fails, what the one line names)
        (["--report", str(afile / "sub")], None, f"--report {afile / 'sub'}: cannot be created, {afile} is a file"),
        (["--logdir", str(afile / "logs")], None, "--logdir: the study folder"),
        (["--storage", str(afile / "s.db")], None, "--storage: the folder of the database"),
        (["--report", str(tmp_path / "ro" / "r")], tmp_path / "ro", f"cannot write in {tmp_path / 'ro'} (Permission"),
        (["--logdir", str(tmp_path / "logs_ro")], tmp_path / "logs_ro", "--logdir: the study folder"),
        (["--logdir", str(tmp_path / "logs_rep")], tmp_path / "logs_rep" / "out" / "report",
         "--logdir: the report folder"),  # the default report folder <logdir>/<study>/report
        (["--storage", str(tmp_path / "dbdir" / "s.db")], tmp_path / "dbdir", "--storage: the folder of the database"),
    ]
    for extra, blocked, expected in cases:
        with monkeypatch.context() as m:
            if blocked is not None:
                _blocked_probe(m, blocked)
            assert sweep_main([*flags(quick), "--space", space, "--study-name", "out", "--n-trials", "1",
                               *extra]) == 2, extra
        assert expected in _one_error_line(capsys), extra
        # nothing trained, no storage created, no probe file left
        assert not list(tmp_path.rglob("trial_*")) and not list(tmp_path.rglob("*.db")), extra
        assert not (tmp_path / "optuna").exists() and not list(tmp_path.rglob(".write_probe.*")), extra


def test_one_study_folder_belongs_to_one_storage(tmp_path, quick, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = str(write_space(tmp_path / "s.yaml", LR_SPACE))
    args = [*flags(quick), "--space", space, "--study-name", "same", "--n-trials", "1"]
    assert sweep_main([*args, "--storage", str(tmp_path / "a.db")]) == 0
    capsys.readouterr()
    folder = Path(quick["logdir"]) / "same"
    # the same name in another storage would share trial_* and overwrite report/: refused, nothing created
    assert sweep_main([*args, "--storage", str(tmp_path / "b.db")]) == 2
    err = _one_error_line(capsys)
    assert "b.db" in err and "a.db" in err and "another --study-name or --logdir" in err
    assert not (tmp_path / "b.db").exists() and sorted(p.name for p in folder.glob("trial_*")) == ["trial_0000"]
    assert sweep_main([*args, "--storage", str(tmp_path / "a.db")]) == 0  # its own storage still reports
    assert json.loads((folder / study_mod.STUDY_MARK).read_text())["storage"] == f"sqlite:///{tmp_path / 'a.db'}"


@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_a_second_refit_is_counted_as_the_second_look_at_the_test_set(tmp_path, quick, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = str(write_space(tmp_path / "s.yaml", LR_SPACE))
    args = [*flags({**quick, "max_epochs": 2}), "--space", space, "--study-name", "looks"]
    assert sweep_main([*args, "--n-trials", "1", "--refit-best"]) == 0
    out = capsys.readouterr().out
    assert "final untouched test estimate" in out and "the only test-set evaluation" in out
    report_md = Path(quick["logdir"]) / "looks" / "report" / "report.md"
    assert "This is the only time the study touched the test set" in report_md.read_text()
    assert sweep_main([*args, "--n-trials", "0", "--refit-best"]) == 0
    out = capsys.readouterr().out
    assert "2nd look at the test set" in out and "untouched" not in out.replace("no longer untouched", "")
    text = report_md.read_text()
    assert "## Test estimate (2nd look at the test set)" in text and "only time" not in text
    assert "This is the study's 2nd look at the test set (1st: trial 0" in text
    study = load(storage.storage_url(None, "looks"), "looks")
    assert [r["look"] for r in study.user_attrs["refits"]] == [1, 2] and study.user_attrs["refit"]["look"] == 2
    assert [study_mod.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "111th"]


def test_refit_best_without_a_complete_trial_is_an_error(tmp_path, quick, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = str(write_space(tmp_path / "s.yaml", {"lr": {"type": "categorical", "choices": [1e30, 1e31]}}))
    args = [*flags(quick), "--space", space, "--study-name", "diverged", "--pruner", "none"]
    assert sweep_main([*args, "--n-trials", "1", "--refit-best"]) == 2  # the trial diverged: pruned
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "error: --refit-best: study diverged has no complete trial to refit (1 pruned)"
    assert (Path(quick["logdir"]) / "diverged" / "report" / "report.md").is_file()  # the trials' report still
    assert not list((Path(quick["logdir"]) / "diverged").glob("refit_*"))
    # nothing left to run: known before anything is written
    assert sweep_main([*args, "--n-trials", "0", "--refit-best", "--report", str(tmp_path / "rep")]) == 2
    assert "no complete trial to refit" in _one_error_line(capsys) and not (tmp_path / "rep").exists()


@pytest.mark.parametrize("kfold", [0, 2])
def test_the_trial_value_is_the_best_val_loss_not_the_last(quick, monkeypatch, kfold):
    from conftest import script_val_loss

    curve = [0.9, 0.41, 0.6, 0.8]  # falls, then rises: the last value is far from the best
    script_val_loss(monkeypatch, curve)
    over = {**quick, "max_epochs": len(curve), "early_stopping": False}
    if kfold:  # every fold validates the same scripted curve: the mean curve is the curve
        over = {**no_val_size(over), "kfold": kfold}
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    study.optimize(objective_mod.make_objective(api_sweep(over, LR_SPACE)), n_trials=1)
    t = study.trials[0]
    assert t.state == States.COMPLETE
    # float32 logging: 1e-6 relative, far below the 0.39 between the best and the last value
    assert t.value == pytest.approx(min(curve), rel=1e-6) and t.value != pytest.approx(curve[-1], rel=1e-6)
    assert t.user_attrs["best_epoch"] == 2  # 1-based
    assert t.user_attrs["val_curve"] == pytest.approx(curve, rel=1e-6)
    # the train curve is recorded beside it (curves.png draws it dashed): the run's per-epoch train/loss (k-fold:
    # the folds' mean, like the val curve)
    dirs = t.user_attrs.get("fold_dirs") or [t.user_attrs["run_dir"]]
    runs = [RunSummary.read(d).history["train_loss"] for d in dirs]
    assert t.user_attrs["train_curve"] == pytest.approx(np.mean(runs, axis=0).tolist(), rel=1e-6)
    assert len(t.user_attrs["train_curve"]) == len(curve)


# -- the report (issue 25): what it lists, draws and links ----------------------------------------------------

def synthetic_study(folder: Path, space: dict) -> optuna.Study:
    """3 complete trials (the best unregularized), 2 pruned with reported values, 1 pruned that reported nothing;
    params sampled in the reverse of the space's order; run folders under folder/st/trial_NNNN/version_0."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import create_trial

    study = optuna.create_study(study_name="st")
    dist = {"hidden": CategoricalDistribution([4, 8, 16]), "lr": FloatDistribution(1e-3, 2e-2, log=True)}
    specs = [(States.COMPLETE, 0.30, "l2", 8), (States.COMPLETE, 0.25, "none", 4), (States.PRUNED, 0.50, "l2", 16),
             (States.COMPLETE, 0.35, "none", 16), (States.PRUNED, 0.45, "l2", 8), (States.PRUNED, None, "l2", 4)]
    for i, (state, value, reg, hidden) in enumerate(specs):
        run_dir = folder / "st" / f"trial_{i:04d}" / "version_0"
        run_dir.mkdir(parents=True)
        curve = [value + 0.2, value + 0.1, value] if value is not None else []
        study.add_trial(create_trial(
            state=state, value=value if state == States.COMPLETE else None,
            params={"hidden": hidden, "lr": 0.001 * (i + 1)}, distributions=dist,
            intermediate_values={e + 1: v for e, v in enumerate(curve)} if state == States.PRUNED else {},
            user_attrs={"config": {"reg": reg, "hidden": hidden, "l2": 1e-4 if reg == "l2" else 0.0},
                        "val_curve": curve, "train_curve": [0.6, 0.4, 0.2][:len(curve)], "run_dir": str(run_dir),
                        "best_epoch": 3, "epochs_run": len(curve)}))
    study.set_user_attr("space", space)
    return study


def test_history_shows_every_finished_trial_with_pruned_ones_marked(tmp_path):
    study = synthetic_study(tmp_path, {"lr": LR_SPACE["lr"]})
    ax = report.history_figure(study).axes[0]
    complete, pruned, lost = ax.collections  # dots, hollow triangles, crosses along the top
    assert sorted(map(tuple, complete.get_offsets().tolist())) == [(0, 0.30), (1, 0.25), (3, 0.35)]
    # a pruned trial at the lowest val/loss it reported; the one that reported nothing still marked
    assert sorted(map(tuple, pruned.get_offsets().tolist())) == [(2, 0.50), (4, 0.45)]
    assert [p[0] for p in lost.get_offsets().tolist()] == [5]
    assert "6 finished trials: 3 complete, 3 pruned" in ax.get_title()
    best_so_far = [ln for ln in ax.lines if ln.get_label() == "best so far"][0]
    assert list(best_so_far.get_xdata()) == [0, 1, 3, 5] and list(best_so_far.get_ydata())[-1] == 0.25


def test_curves_draw_each_trial_once_with_its_train_curve_dashed(tmp_path):
    study = synthetic_study(tmp_path, {"lr": LR_SPACE["lr"]})

    def drawn(top: int) -> tuple[list[str], list]:
        ax = report.curves_figure(study, top=top).axes[0]
        solid = [ln.get_label() for ln in ax.lines if ln.get_linestyle() == "-"]
        dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
        return solid, dashed
    solid, dashed = drawn(top=5)  # trial 1 is the best and the best unregularized: one line, labelled as both
    assert solid == ["trial 1 (none, best unregularized, 0.2500)", "trial 0 (l2, 0.3000)", "trial 3 (none, 0.3500)"]
    assert len(dashed) == 3 and list(dashed[0].get_ydata()) == [0.6, 0.4, 0.2]  # every trial's train/loss
    study2 = synthetic_study(tmp_path / "b", {"lr": LR_SPACE["lr"]})
    study2.add_trial(optuna.trial.create_trial(value=0.1, params={}, distributions={}, user_attrs={
        "config": {"reg": "l2"}, "val_curve": [0.2, 0.1], "train_curve": [0.3, 0.2]}))
    ax = report.curves_figure(study2, top=1).axes[0]
    solid = [ln.get_label() for ln in ax.lines if ln.get_linestyle() == "-"]
    assert solid == ["trial 6 (l2, 0.1000)", "best unregularized: trial 1 (0.2500)"]  # outside the top: added once


def test_report_lists_only_given_settings_links_html_orders_columns_by_space_and_uses_relative_paths(
        tmp_path, monkeypatch):
    import importlib
    import importlib.util

    from lit_regularize.sweeps import session

    space = {"lr": LR_SPACE["lr"], "hidden": {"type": "categorical", "choices": [4, 8, 16]}}
    study = synthetic_study(tmp_path / "logs", space)
    fixed = session.check_fixed({"max_epochs": 3, "data_dir": "data"})
    assert fixed == {"max_epochs": 3, "data_dir": "data"}  # nothing the user did not give (was: progress: false)
    cfg = objective_mod.trial_config(api_sweep(fixed, space), {"lr": 0.01}, 0)
    assert cfg.progress is False and cfg.histogram_every == 0  # the trials' own defaults still apply
    # plotly present: Optuna's interactive pages are written and linked
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "plotly" else real(n, *a))

    class Page:
        def to_html(self) -> str:
            return "<html></html>"
    # the module itself: until it is imported, optuna.visualization is a lazy proxy that the import replaces
    vis = importlib.import_module("optuna.visualization")
    monkeypatch.setattr(vis, "plot_optimization_history", lambda *a, **k: Page())
    monkeypatch.setattr(vis, "plot_param_importances", lambda *a, **k: Page())
    out = tmp_path / "logs" / "st" / "report"
    names = [p.name for p in report.write_report(study, out, space, fixed)]
    assert "history.html" in names and "importances.html" in names
    text = (out / "report.md").read_text()
    assert "![best val/loss per trial (pruned ones marked) and the best so far](history.png) " \
           "([interactive](history.html))" in text
    section = text.split("## Fixed settings")[1].split("## Search space")[0]
    assert "max_epochs: 3" in section and "data_dir: data" in section and "progress" not in section
    # leaderboard columns in the space's order (lr, hidden), not the trials' sampling order (hidden, lr)
    header = (out / "leaderboard.md").read_text().splitlines()[0]
    assert header.startswith("| rank | trial | state | lr | hidden | best val/loss |")
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert list(rows[0])[3:5] == ["lr", "hidden"]
    # every path relative to the report folder, and it leads to the run folder
    for r in rows:
        assert r["run_dir"] == f"../trial_{int(r['trial']):04d}/version_0"
        assert (out / r["run_dir"]).resolve() == (tmp_path / "logs" / "st" / f"trial_{int(r['trial']):04d}"
                                                 / "version_0")
    assert "run folder [`../trial_0001/version_0`](../trial_0001/version_0)" in text
    other = tmp_path / "elsewhere" / "rep"  # --report DIR: relative to DIR as well
    report.write_report(study, other, space, fixed)
    assert "(../../logs/st/trial_0001/version_0)" in (other / "report.md").read_text()
    monkeypatch.chdir(tmp_path)  # an older study recorded run folders relative to the sweep's working directory
    assert report.relative("logs/st/trial_0001/version_0", out) == "../trial_0001/version_0"
