"""Confirmed winners (--confirm-top K --confirm-seeds N) and capacity as a cost (--objectives val/loss,params).

Most tests script the confirmation runs' values (confirm.run_one) on in-memory studies: picking, intervals, the
verdict, resuming and staleness need no training. Two end-to-end sweeps on tiny synthetic IMDB check what only
real runs show: exactly K x N runs, new seeds, no test pass, the refit of the winner, the Pareto study."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from conftest import flags
from lit_regularize.cli.sweep import main as sweep_main
from lit_regularize.config import make_config
from lit_regularize.errors import ConfigError
from lit_regularize.summary import RunSummary
from lit_regularize.sweeps import confirm as confirming, report, session, storage, study as study_mod

LR = {"lr": {"type": "float", "low": 1e-3, "high": 2e-2, "log": True}}
SIZE_SPACE = {"hidden": {"type": "int", "low": 2, "high": 32, "log": True}, **LR}


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage.open_storage(url, heartbeat=0))


def write_space(path: Path, space: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(space))
    return path


def fake_study(values: list[float], seed: int = 7777, **attrs: Any) -> optuna.Study:
    """An in-memory study of complete trials with these one-seed values (trial i has lr 0.001 * (i + 1))."""
    study = optuna.create_study(study_name="fake")
    study.set_user_attr("space", LR)
    dist = {"lr": FloatDistribution(1e-4, 1.0, log=True)}
    for i, v in enumerate(values):
        lr = 0.001 * (i + 1)
        cfg = make_config({"lr": lr, "seed": seed, "name": f"fake/trial_{i:04d}", **attrs}).to_dict()
        study.add_trial(create_trial(value=v, params={"lr": lr}, distributions=dist,
                                     user_attrs={"config": cfg, "seed": seed, "run_dir": f"/r/trial_{i:04d}"}))
    return study


def scripted(monkeypatch, table: dict[tuple[int, int], float]) -> list[tuple[int, int]]:
    """confirm.run_one returns table[(trial, seed)] (trial from its lr); the calls are recorded."""
    calls: list[tuple[int, int]] = []

    def run_one(cfg, searched):
        trial = round(cfg.lr / 0.001) - 1
        calls.append((trial, cfg.seed))
        assert cfg.run_name == f"fake/confirm_trial_{trial:04d}/seed_{cfg.seed}"
        return {"val_loss": table[(trial, cfg.seed)], "best_epoch": 1, "epochs_run": 1,
                "run_dir": f"/r/{cfg.run_name}/version_0", "seconds": 0.0}
    monkeypatch.setattr(confirming, "run_one", run_one)
    return calls


# -- statistics ---------------------------------------------------------------------------------------------------

def test_new_seeds_differ_from_the_trials_and_intervals_and_welch_match_hand_values():
    assert confirming.new_seeds(7777, 3) == [8777, 9777, 10777]
    assert confirming.new_seeds(2 ** 32 - 500, 2) == [500, 1500]  # wrap into numpy's seed range
    assert all(s != 7777 for s in confirming.new_seeds(7777, 50))
    # mean 2, sd 1, n 3: t(0.975, 2) = 4.302653 -> half-width 4.302653 / sqrt(3) = 2.484138; 1e-5 catches a z
    # quantile (1.96 -> 1.13) or a std instead of a standard error (4.30)
    mean, half = confirming.interval([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0, abs=1e-12) and half == pytest.approx(2.484138, abs=1e-5)
    assert confirming.interval([0.3, 0.3])[1] == 0.0  # no spread: a zero-width interval, not NaN
    # Welch: t = -3 / sqrt(2/3) = -3.674, df 4 -> p = 0.02131 (Student's pooled test gives the same here; the next
    # case tells them apart: variances 0.01 and 2.25, t = -1.9 / sqrt(0.7533) = -2.189, Welch df 2.018 -> p 0.1589,
    # pooled df 4 -> p 0.0938)
    assert confirming.welch_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.02131, abs=2e-4)
    assert confirming.welch_p([1.0, 1.1, 1.2], [1.5, 3.0, 4.5]) == pytest.approx(0.1589, abs=1e-3)
    assert confirming.welch_p([1.0], [2.0, 3.0]) is None and confirming.welch_p([1.0, 1.0], [1.0, 1.0]) is None


# -- picking, the verdict, resuming ----------------------------------------------------------------------------------

def test_the_winner_is_picked_by_the_confirmed_mean_not_the_one_seed_value(monkeypatch):
    study = fake_study([0.20, 0.25, 0.30, 0.50])  # trial 0 wins on its one (lucky) seed
    seeds = confirming.new_seeds(7777, 3)
    table = {**{(0, s): v for s, v in zip(seeds, (0.40, 0.42, 0.41))},
             **{(1, s): v for s, v in zip(seeds, (0.30, 0.31, 0.305))},
             **{(2, s): v for s, v in zip(seeds, (0.35, 0.36, 0.355))}}
    calls = scripted(monkeypatch, table)
    lines: list[str] = []
    r = confirming.confirm(study, 3, 3, echo=lines.append)
    assert sorted(calls) == sorted((t, s) for t in range(3) for s in seeds)  # exactly K x N runs, the K best
    assert [row["trial"] for row in r["rows"]] == [1, 2, 0] and r["winner"] == 1 and r["one_seed_winner"] == 0
    assert r["rows"][0]["mean"] == pytest.approx(0.305, abs=1e-12)  # the new seeds only, not the trial's 0.25
    assert r["runner_up"] == 2 and r["distinguishable"] is True and r["p_value"] < 0.05
    assert r["sentence"].startswith("Trial 1 (val/loss 0.3050 ± ") and "is distinguishable from the runner-up, " \
        "trial 2" in r["sentence"]
    assert study.user_attrs[confirming.RESULT]["winner"] == 1 and len(lines) == 9
    assert confirming.confirmed_winner(study).number == 1
    # resumed: nothing re-run; more seeds: only the new ones
    calls.clear()
    assert confirming.confirm(study, 3, 3, echo=lines.append)["winner"] == 1 and calls == []
    table.update({(t, confirming.new_seeds(7777, 4)[3]): 0.33 for t in range(3)})
    confirming.confirm(study, 3, 4, echo=lines.append)
    assert sorted(calls) == [(t, 7777 + 4000) for t in range(3)]


def test_overlapping_trials_are_not_distinguishable_and_a_diverged_seed_ranks_last(monkeypatch):
    study = fake_study([0.20, 0.21, 0.22])
    s1, s2 = confirming.new_seeds(7777, 2)
    scripted(monkeypatch, {(0, s1): 0.30, (0, s2): 0.34, (1, s1): 0.31, (1, s2): 0.35,
                           (2, s1): 0.10, (2, s2): None})  # trial 2: best on one seed, diverged on the other
    r = confirming.confirm(study, 3, 2, echo=lambda _: None)
    assert [row["trial"] for row in r["rows"]] == [0, 1, 2] and r["rows"][2]["diverged"] == 1
    assert r["distinguishable"] is False and r["p_value"] > 0.05
    assert "is not distinguishable from the runner-up, trial 1" in r["sentence"]
    assert "either is as good a choice" in r["sentence"]
    one = confirming.summarize(study, [study.trials[0]], 2, study.user_attrs[confirming.RUNS])
    assert "only confirmed trial" in one["sentence"] and one["distinguishable"] is None


def test_an_interrupted_confirmation_keeps_its_finished_runs(monkeypatch):
    study = fake_study([0.20, 0.25])
    seeds = confirming.new_seeds(7777, 2)
    calls = scripted(monkeypatch, {(t, s): 0.3 + 0.01 * t for t in range(2) for s in seeds})
    real = confirming.run_one

    def interrupted(cfg, searched):
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(cfg, searched)
    monkeypatch.setattr(confirming, "run_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        confirming.confirm(study, 2, 2, echo=lambda _: None)
    assert len(study.user_attrs[confirming.RUNS]) == 2 and confirming.RESULT not in study.user_attrs
    monkeypatch.setattr(confirming, "run_one", real)
    confirming.confirm(study, 2, 2, echo=lambda _: None)
    assert calls == [(0, seeds[0]), (0, seeds[1]), (1, seeds[0]), (1, seeds[1])]  # each run once


def test_a_confirmation_goes_stale_when_new_trials_change_the_top_and_refit_says_so(monkeypatch):
    study = fake_study([0.20, 0.25, 0.30])
    seeds = confirming.new_seeds(7777, 2)
    scripted(monkeypatch, {(t, s): 0.4 - 0.05 * t + 0.001 * i for t in range(3) for i, s in enumerate(seeds)})
    confirming.confirm(study, 2, 2, echo=lambda _: None)
    trial, why = session.refit_choice(study)
    assert trial.number == 1 and "confirmed winner" in why  # 0.35 beats trial 0's 0.40 on the new seeds
    cfg = make_config({"lr": 0.009, "seed": 7777}).to_dict()
    study.add_trial(create_trial(value=0.1, params={"lr": 0.009}, distributions={"lr": FloatDistribution(1e-4, 1.0,
                                 log=True)}, user_attrs={"config": cfg, "seed": 7777}))
    assert not confirming.current(study) and confirming.confirmed_winner(study) is None
    trial, why = session.refit_choice(study)
    assert trial.number == 3 and "predates" in why
    text = "\n".join(report.confirmation_lines(study, Path("/r/report")))
    assert "**Confirmed winner: trial 1** (the one-seed winner was trial 0)" in text and "changed the top" in text


def test_bad_confirm_and_objectives_options_are_one_error_line(tmp_path, quick, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = str(write_space(tmp_path / "s.yaml", LR))
    for extra, message in ((["--confirm-top", "-1"], "--confirm-top must be >= 0"),
                           (["--confirm-top", "2", "--confirm-seeds", "1"], "--confirm-seeds must be >= 2"),
                           (["--objectives", "val/loss,size"], "unknown 'size'"),
                           (["--objectives", "params"], "val/loss is required"),
                           (["--objectives", "val/loss,params,params"], "listed twice")):
        assert sweep_main([*flags(quick), "--space", space, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and message in err, (extra, err)
    assert not (tmp_path / "optuna").exists() and not Path(quick["logdir"]).exists()
    assert study_mod.parse_objectives("params, val/loss") == ["val/loss", "params"]


# -- end to end --------------------------------------------------------------------------------------------------

@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_confirm_top_trains_k_times_n_new_seed_runs_without_a_test_pass_resumes_and_refits_the_winner(
        tmp_path, quick, capsys, monkeypatch):
    import lit_regularize.run as run_mod

    monkeypatch.chdir(tmp_path)
    calls: list[tuple[str, bool]] = []
    real = run_mod.run

    def counting(cfg, *args, **kw):
        calls.append((cfg.run_name, kw.get("evaluate_test", True)))
        return real(cfg, *args, **kw)
    monkeypatch.setattr(run_mod, "run", counting)
    space = str(write_space(tmp_path / "s.yaml", LR))
    args = [*flags({**quick, "max_epochs": 1}), "--space", space, "--study-name", "cf", "--pruner", "none",
            "--n-trials", "2", "--confirm-top", "2", "--confirm-seeds", "2"]
    assert sweep_main(args) == 0
    out = capsys.readouterr().out
    study = load(storage.storage_url(None, "cf"), "cf")
    top = [t.number for t in study_mod.ranked(study)[:2]]
    confirms = [(name, test) for name, test in calls if "/confirm_trial_" in name]
    assert sorted(n for n, _ in confirms) == sorted(f"cf/confirm_trial_{t:04d}/seed_{s}" for t in top
                                                    for s in (8777, 9777))  # K x N, seeds = 7777 + 1000 (i + 1)
    assert not any(test for _, test in confirms)  # evaluate_test=False: no test pass
    for t in top:
        for s in (8777, 9777):
            summary = RunSummary.read(Path(quick["logdir"]) / "cf" / f"confirm_trial_{t:04d}" / f"seed_{s}" /
                                      "version_0")
            assert summary.test is None and summary.seed == s
            assert summary.config["lr"] == study.trials[t].params["lr"]  # the trial's settings, a new seed
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(quick["logdir"]) / "cf" / f"confirm_trial_{top[0]:04d}" / "seed_8777" /
                               "version_0"))
    acc.Reload()
    assert "val/loss" in acc.Tags()["scalars"] and not [k for k in acc.Tags()["scalars"] if "test" in k]
    result = study.user_attrs[confirming.RESULT]
    assert "confirmed winner: trial" in out and result["sentence"] in out
    text = (Path(quick["logdir"]) / "cf" / "report" / "report.md").read_text()
    assert "## Confirmation (2 new seeds for each of the 2 best complete trials)" in text and result["sentence"] in text
    # a re-run with --refit-best: no confirmation run again; the refit is of the confirmed winner, and says so
    calls.clear()
    assert sweep_main([*args, "--refit-best"]) == 0
    out = capsys.readouterr().out
    assert [n for n, _ in calls] == [f"cf/refit_trial_{result['winner']:04d}"]
    assert "4 of 4 runs recorded earlier are kept" in out
    assert f"refit of trial {result['winner']} on its training examples" in out and "the confirmed winner" in out
    refit = load(storage.storage_url(None, "cf"), "cf").user_attrs["refit"]
    assert refit["trial"] == result["winner"] and "confirmed winner" in refit["chosen"]


def test_capacity_as_a_cost_gives_a_pareto_study_without_pruning(tmp_path, quick, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = str(write_space(tmp_path / "s.yaml", SIZE_SPACE))
    over = {k: v for k, v in quick.items() if k != "hidden"}
    base = [*flags({**over, "max_epochs": 1}), "--space", space, "--study-name", "po"]
    multi = ["--objectives", "val/loss,params"]
    assert sweep_main([*base, *multi, "--n-trials", "3", "--pruner", "median", "--refit-best"]) == 0
    out = capsys.readouterr().out
    assert out.count("pruning is off: Optuna cannot prune multi-objective studies") == 1
    url = storage.storage_url(None, "po")
    sweep = study_mod.Sweep("po", url, over, SIZE_SPACE, pruner="median", objectives=["val/loss", "params"])
    assert isinstance(sweep.open().pruner, optuna.pruners.NopPruner)  # whatever --pruner says
    study = load(url, "po")
    assert len(study.directions) == 2 and study.metric_names == ["val/loss", "params"]
    for t in study.trials:
        assert t.state == TrialState.COMPLETE and not t.intermediate_values  # nothing reported: nothing to prune
        s = RunSummary.read(t.user_attrs["run_dir"])
        assert t.values[1] == s.n_params == t.user_attrs["n_params"]  # the model's count, known before training
        assert t.values[0] == pytest.approx(s.best_val_loss, rel=1e-6)  # float32 logging; a last-epoch value is off
    front = {t.number for t in study_mod.pareto_front(study)}
    lowest = min(study.trials, key=lambda t: (t.values[0], t.values[1], t.number))
    assert study_mod.best_trial(study).number == lowest.number and lowest.number in front
    assert f"refit of trial {lowest.number} on its training examples" in out and "Pareto front's lowest" in out
    folder = Path(quick["logdir"]) / "po" / "report"
    assert (folder / "pareto.png").stat().st_size > 1000
    text = (folder / "report.md").read_text()
    assert "## Pareto front" in text and "![best val/loss against the parameter count" in text
    for t in study.trials:
        assert (f"| {t.number} | {int(t.values[1])} | {t.values[0]:.4f} |" in text) == (t.number in front)
    # the study's objectives are part of it: resuming with one objective is one error line
    assert sweep_main([*base, "--n-trials", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--objectives: study po was started with --objectives val/loss,params" in err
    assert len(load(url, "po").trials) == 3


# -- the Pareto front ----------------------------------------------------------------------------------------------

def dominates(a: optuna.trial.FrozenTrial, b: optuna.trial.FrozenTrial) -> bool:
    return all(x <= y for x, y in zip(a.values, b.values)) and any(x < y for x, y in zip(a.values, b.values))


def pareto_study(n: int = 40, seed: int = 0) -> optuna.Study:
    import random

    rng = random.Random(seed)
    study = optuna.create_study(study_name="pf", directions=["minimize", "minimize"])
    study.set_metric_names(["val/loss", "params"])
    dist = {"hidden": IntDistribution(2, 512, log=True)}
    for i in range(n):
        hidden = rng.choice([4, 8, 16, 32, 64]) if i % 7 else 16  # repeated sizes: ties in params
        loss = round(rng.uniform(0.25, 0.6), 2)  # rounded: ties in val/loss, and an exact duplicate or two
        study.add_trial(create_trial(values=[loss, 10 * hidden + 1], params={"hidden": hidden}, distributions=dist,
                                     user_attrs={"n_params": 10 * hidden + 1, "config": {"reg": "none",
                                                                                       "hidden": hidden},
                                                 "val_curve": [loss + 0.1, loss], "train_curve": [0.5, 0.3]}))
    study.add_trial(create_trial(state=TrialState.PRUNED, params={"hidden": 8}, distributions=dist,
                                 user_attrs={"n_params": 81}))  # diverged: no values
    return study


def test_the_pareto_front_is_non_dominated_and_dominates_every_other_trial():
    study = pareto_study()
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    front = study_mod.pareto_front(study)
    ids = {t.number for t in front}
    assert 1 < len(front) < len(complete)
    assert not any(dominates(o, f) for f in front for o in complete)  # nothing beats a front trial on both
    for t in complete:
        if t.number not in ids:
            assert any(dominates(f, t) for f in front), t.number  # every other trial is beaten by one on the front
    assert study_mod.best_trial(study).number == min(complete, key=lambda t: (t.values, t.number)).number
    rows = report.leaderboard(study)
    assert {r["trial"] for r in rows if r["pareto"] == "front"} == ids
    fig = report.pareto_figure(study)
    ax = fig.axes[0]
    points = {tuple(map(float, p)) for c in ax.collections for p in c.get_offsets()}
    assert len(ax.collections) == 2 and ax.get_xscale() == "log"
    front_pts = {tuple(map(float, p)) for p in ax.collections[1].get_offsets()}
    assert front_pts == {(t.values[1], t.values[0]) for t in front}  # the highlighted set is exactly the front
    assert len(ax.collections[0].get_offsets()) == len(complete) - len(front)  # the rest grey
    assert ax.collections[0].get_facecolors()[0][:3].tolist() == pytest.approx([0.7] * 3)
    assert len(points) <= len(complete)
    assert "parameters" in ax.get_xlabel() and "val/loss" in ax.get_ylabel()


def test_the_python_api_passes_confirmation_and_objectives_through(monkeypatch):
    import lit_regularize as lr

    seen = []
    monkeypatch.setattr(session, "run_sweep", lambda request, echo=print: seen.append(request) or
                        session.SweepOutcome(study="the study", code=0))
    assert lr.sweep(n_trials=4, confirm_top=3, confirm_seeds=5, objectives="val/loss,params", max_epochs=2) == \
        "the study"
    r = seen[0]
    assert (r.confirm_top, r.confirm_seeds, r.objectives, r.fixed) == (3, 5, "val/loss,params", {"max_epochs": 2})
