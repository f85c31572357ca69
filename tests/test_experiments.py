"""Comparison studies, figures, weight statistics and k-fold validation on tiny synthetic data."""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.collections import PolyCollection
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT, flags, no_val_size
from lit_regularize.comparison import compare, load_study, read_runs, study_configs
from lit_regularize.config import available_studies
from lit_regularize.config import make_config
from lit_regularize.errors import UserError
from lit_regularize.kfold import KFOLD_FIGURE, run_kfold
from lit_regularize.run import build_model
from lit_regularize.stats import overfitting
from lit_regularize.model import RegularizedMLP
from lit_regularize.plots import (curve_band, curves_figure, linear_weights, mean_abs, near_zero_fraction,
                                  weight_stats)

from lit_regularize.cli import compare as compare_script  # noqa: E402
from lit_regularize.cli import fit  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY_STUDY = """
title: tiny capacity
shared: {seed: 3, max_epochs: 3, early_stopping: false, lr: 0.01}
runs:
  h2: {hidden: 2}
  h8: {hidden: 8}
  h16_l2: {hidden: 16, reg: l2}
"""




@pytest.fixture
def fixed(quick):
    """The quick settings as a study's fixed settings (the study chooses hidden, seed, epochs; compare the logdir)."""
    return {k: v for k, v in quick.items() if k not in ("logdir", "hidden", "max_epochs")}


def _png(path: Path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000, path


def _events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "histograms": 0, "scalars": 0})
    acc.Reload()
    return acc


@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_compare_study_writes_figures_and_a_table_read_from_the_runs(tmp_path, fixed, capsys):
    study = tmp_path / "tiny.yaml"
    study.write_text(TINY_STUDY)
    out = tmp_path / "cmp"
    assert compare_script.main([str(study), "--out", str(out), *flags(fixed)]) == 0
    for name in ("curves.png", "weights.png", "sparsity.png"):
        _png(out / name)
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [r["run"] for r in rows] == ["h2", "h8", "h16_l2"]
    md = (out / "table.md").read_text()
    for r in rows:
        run_dir = out / "logs" / "tiny" / r["run"] / "version_0"
        s = json.loads((run_dir / "summary.json").read_text())
        h, hidden = s["history"], s["config"]["hidden"]
        assert s["seed"] == 3 and s["config"]["max_epochs"] == 3  # shared settings reach every run
        best = int(np.argmin(h["val_loss"]))
        assert int(r["best_epoch"]) == best + 1
        assert math.isclose(float(r["best_val_loss"]), h["val_loss"][best], rel_tol=1e-9)
        assert math.isclose(float(r["last_val_loss"]), h["val_loss"][-1], rel_tol=1e-9)
        assert math.isclose(float(r["gap_last"]), h["val_loss"][-1] - h["train_loss"][-1], rel_tol=1e-9)
        assert math.isclose(float(r["gap_at_best"]), h["val_loss"][best] - h["train_loss"][best], rel_tol=1e-9)
        # summary.json, the table and TensorBoard hold the same overfitting numbers (stats.overfitting)
        assert s["overfitting"] == overfitting(h, s["best_epoch"])
        scalars = _events(run_dir).Tags()["scalars"]
        for key, value in s["overfitting"].items():
            assert (f"val_overfitting/{key}" in scalars) == (value is not None), key
            if value is not None:
                (event,) = _events(run_dir).Scalars(f"val_overfitting/{key}")
                # float32 in the event file: 1e-6 relative, far below any epoch-to-epoch change of these numbers
                assert event.step == s["epochs_run"] and event.value == pytest.approx(value, rel=1e-6, abs=1e-7)
        assert float(r["test_acc_best"]) == s["test"]["best"]["acc"]
        assert float(r["test_acc_last"]) == s["test"]["last"]["acc"]
        assert int(r["n_params"]) == 40 * hidden + hidden + hidden * hidden + hidden + hidden + 1
        assert math.isclose(float(r["wall_time_s"]), s["wall_time"], rel_tol=1e-9)
        # weight columns come from the run's best weights (the figures say so too)
        state = torch.load(run_dir / s["best_checkpoint"], weights_only=True)["state_dict"]
        first = state["net.0.weight"].numpy()
        assert math.isclose(float(r["mean_abs_w_first"]), float(np.abs(first).mean()), rel_tol=1e-6)
        assert math.isclose(float(r["near_zero_first"]), float((np.abs(first) < 1e-3).mean()), rel_tol=1e-9)
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {r['run']} |"))
        assert f"{h['val_loss'][best]:.4f}" in line and f"{s['test']['last']['acc']:.4f}" in line
    # the L2 run was penalized, the others not: the study's regularizer reached the model
    l2 = json.loads((out / "logs" / "tiny" / "h16_l2" / "version_0" / "summary.json").read_text())
    assert l2["config"]["l2"] == 1e-3 and all(p > 0 for p in l2["history"]["train_penalty"])
    acc = _events(out / "logs" / "figures")
    assert {"compare/curves", "compare/weights", "compare/sparsity"} <= set(acc.Tags()["images"])
    assert "h16_l2" in capsys.readouterr().out

    # a second call reuses the finished runs (progress bars on or off change no result); --runs reads them back
    assert compare_script.main([str(study), "--out", str(out), *flags(fixed), "--progress"]) == 0
    assert "reusing" in capsys.readouterr().out
    assert not list((out / "logs" / "tiny").glob("*/version_1"))
    # its figures replace the first call's in TensorBoard (one image per tag, not one per call)
    assert len(list((out / "logs" / "figures").glob("events.out.tfevents.*"))) == 1
    assert len(_events(out / "logs" / "figures").Images("compare/curves")) == 1
    again = tmp_path / "again"
    assert compare_script.main(["--runs", str(out / "logs" / "tiny"), "--out", str(again)]) == 0
    rows2 = list(csv.DictReader((again / "table.csv").open()))
    key = ("best_epoch", "best_val_loss", "last_val_loss", "test_acc_last", "n_params")
    assert sorted((f"tiny/{r['run']}",) + tuple(r[k] for k in key) for r in rows) == \
        sorted((r["run"],) + tuple(r[k] for k in key) for r in rows2)


@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_seeds_repeat_every_run_and_draw_bands(tmp_path, fixed, capsys, monkeypatch):
    from lit_regularize import plots

    drawn, figures = {}, {}  # PNG name -> the Figure drawn into it (report saves render()'s image of it)
    render, save = plots.render, plots.save_figure

    def rendering(fig, *args):
        image = render(fig, *args)
        figures[id(image)] = fig
        return image

    def saving(image, path, *args):
        drawn[Path(path).stem] = figures.get(id(image), image)
        return save(image, path, *args)
    monkeypatch.setattr(plots, "render", rendering)
    monkeypatch.setattr(plots, "save_figure", saving)
    study = tmp_path / "two.yaml"
    study.write_text("shared: {seed: 11, max_epochs: 2, early_stopping: false}\n"
                     "runs:\n  none: {reg: none}\n  dropout: {reg: dropout}\n  l2: {reg: l2}\n")
    result = compare(str(study), out=tmp_path / "cmp", fixed={**fixed, "hidden": 8, "progress": True}, seeds=2,
                     log=lambda m: None)
    # 6 runs of 2 distinct models (l2 has none's layers, dropout adds Dropout layers): 2 model tables, not 6
    out = capsys.readouterr().out
    assert out.count("layer") - out.count("Linear layer") == 2 and out.count("total") == 2, out
    # every figure says which seeds it shows (weights and sparsity: all of them, not the first seed alone)
    assert set(drawn) == {"curves", "weights", "sparsity"}
    for name, fig in drawn.items():
        assert "seeds 11, 12" in plots.plotted_series(fig)["title"], name
    # results.csv: per setting and metric, n = 2 seeds, paired with the baseline `none` on the same seeds
    res = list(csv.DictReader((tmp_path / "cmp" / "results.csv").open()))
    assert {r["setting"] for r in res} == {"none", "dropout", "l2"} and {r["baseline"] for r in res} == {"none"}
    loss = {r["setting"]: r for r in res if r["metric"] == "best_val_loss"}
    assert loss["none"]["verdict"] == "baseline" and loss["l2"]["n_paired"] == "2"
    rows = [r for r in result["rows"] if r["run"] in ("l2", "none")]
    by = {(r["run"], r["seed"]): r["best_val_loss"] for r in rows}
    diff = np.mean([by["l2", s] - by["none", s] for s in (11, 12)])
    assert float(loss["l2"]["diff_vs_baseline"]) == pytest.approx(diff, rel=1e-9)
    assert "#### best val loss (lower is better" in result["markdown"]
    runs = {k: v for k, v in result["runs"].items() if k != "l2"}
    assert [len(v) for v in runs.values()] == [2, 2]
    seeds = {k: [json.loads((Path(d) / "summary.json").read_text())["seed"] for d in v] for k, v in runs.items()}
    assert seeds == {"none": [11, 12], "dropout": [11, 12]}  # shared seeds: only the regularizer differs
    histories = {k: [json.loads((Path(d) / "summary.json").read_text())["history"] for d in v]
                 for k, v in runs.items()}
    fig = curves_figure(histories)
    ax_val = fig.axes[0]
    assert sum(isinstance(c, PolyCollection) for c in ax_val.collections) == 2  # one band per run
    mean_line = next(ln for ln in ax_val.lines if ln.get_label().startswith("none"))
    expected = np.mean([h["val_loss"] for h in histories["none"]], axis=0)
    assert np.allclose(mean_line.get_ydata(), expected)
    band = next(c for c in ax_val.collections if isinstance(c, PolyCollection))
    spread = np.ptp(band.get_paths()[0].vertices[:, 1])
    assert spread > 0
    assert "±" in (tmp_path / "cmp" / "table.md").read_text()
    single = curves_figure({k: v[:1] for k, v in histories.items()})
    assert not any(isinstance(c, PolyCollection) for c in single.axes[0].collections)


def test_curve_band_handles_runs_of_different_length():
    epochs, mean, std = curve_band([[1.0, 2.0, 3.0], [3.0, 4.0], [None, 6.0, float("nan")]])
    assert epochs.tolist() == [1, 2, 3]
    assert np.allclose(mean, [2.0, 4.0, 3.0]) and np.allclose(std, [np.std([1.0, 3.0], ddof=1), np.std([2.0, 4.0, 6.0], ddof=1), 0.0])


def test_weight_statistics_on_a_known_tensor():
    w = torch.tensor([[0.0, 5e-4, -9e-4], [1e-3, -0.5, 2.0]])
    assert near_zero_fraction(w) == 0.5  # |1e-3| is not below the threshold
    assert math.isclose(mean_abs(w), (5e-4 + 9e-4 + 1e-3 + 0.5 + 2.0) / 6)
    stats = weight_stats([w.numpy(), np.zeros((2, 2))])
    assert stats["near_zero_first"] == 0.5 and stats["near_zero_all"] == 7 / 10
    assert math.isclose(stats["mean_abs_w_all"], (5e-4 + 9e-4 + 1e-3 + 0.5 + 2.0) / 10)
    cfg = make_config({"hidden": 6, "layers": 2, "reg": "batchnorm", "num_words": 30})
    model = build_model(cfg, 30, 2)
    shapes = [w.shape for w in linear_weights(model.state_dict())]
    assert shapes == [(6, 30), (6, 6), (1, 6)]  # BatchNorm's 1-D weights are not Linear weights


def test_shipped_studies_load_and_share_their_split():
    names = available_studies()
    assert {"imdb_capacity", "imdb_penalty", "imdb_dropout", "imdb_batchnorm", "mnist100"} <= set(names)
    capacity = study_configs(load_study("imdb_capacity"), {"data_dir": "/x"}, 1, "/tmp/logs")
    assert [c[0].hidden for c in capacity.values()] == [4, 16, 512]
    for name in names:
        cfgs = [c[0] for c in study_configs(load_study(name), {}, 1, "/tmp/logs").values()]
        for key in ("seed", "data", "val_size", "train_size", "n_per_class", "max_epochs", "lr", "batch_size"):
            assert len({getattr(c, key) for c in cfgs}) == 1, (name, key)
        if not name.startswith("modern_"):  # the notebooks' figures run every epoch; modern_* studies stop early
            assert not any(c.early_stopping for c in cfgs), name
    penalty = {k: v[0] for k, v in study_configs(load_study("imdb_penalty"), {}, 1, "/l").items()}
    assert (penalty["none"].l2, penalty["l2"].l2, penalty["l1"].l1, penalty["l1_l2"].l1) == (0, 1e-3, 1e-4, 1e-4)


def test_compare_rejects_bad_input_in_one_line(tmp_path, capsys):
    assert compare_script.main(["imdb_capacty", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown study" in err and "imdb_capacity" in err
    assert compare_script.main(["imdb_capacity", "--hidden", "8", "--out", str(tmp_path / "o")]) == 2
    assert "--hidden" in capsys.readouterr().err
    # imdb_penalty's runs differ by their --reg preset; a fixed --l2 would give 'none' an L2 penalty too
    assert compare_script.main(["imdb_penalty", "--l2", "0.01", "--out", str(tmp_path / "o")]) == 2
    assert "--l2" in capsys.readouterr().err
    assert compare_script.main(["--runs", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no completed run" in capsys.readouterr().err
    assert compare_script.main(["imdb_penalty", "--baseline", "L2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--baseline L2: not a run of this comparison" in err and "'l2'" in err
    assert not (tmp_path / "o").exists()


def _kfold_overrides(quick: dict, logdir: Path, workers: int) -> dict:
    return {**no_val_size(quick), "logdir": str(logdir), "kfold": 4, "train_size": 160, "max_epochs": 4, "lr": 0.01,
            "kfold_workers": workers, "name": "kf"}


@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_kfold_mean_curve_chooses_the_refit_epoch(tmp_path, quick, capsys):
    assert fit.main(flags(_kfold_overrides(quick, tmp_path / "serial", 1))) == 0
    out = capsys.readouterr().out
    parent = tmp_path / "serial" / "kf" / "version_0"
    s = json.loads((parent / "summary.json").read_text())
    s["mean_val_loss"] = s["history"]["val_loss"]
    assert len(s["folds"]) == 4 and [f["fold"] for f in s["folds"]] == [0, 1, 2, 3]
    curves = np.array([f["history"]["val_loss"] for f in s["folds"]])
    assert curves.shape == (4, 4)  # folds run every epoch (no early stopping) so the mean is well defined
    assert np.allclose(s["mean_val_loss"], curves.mean(0))
    assert s["chosen_epoch"] == int(np.argmin(curves.mean(0))) + 1
    # each fold validated on a different quarter of the same 160 examples
    splits = [np.load(parent / f["run_dir"] / "split.npz") for f in s["folds"]]
    vals = [set(sp["val_idx"].tolist()) for sp in splits]
    assert all(len(v) == 40 for v in vals) and len(set().union(*vals)) == 160
    refit_dir = parent / s["refit_dir"]
    refit = json.loads((refit_dir / "summary.json").read_text())
    assert refit["epochs_run"] == s["chosen_epoch"] and refit["config"]["val_size"] == 0
    assert set(np.load(refit_dir / "split.npz")["train_idx"].tolist()) == set().union(*vals)
    assert s["test"] == {"last": refit["test"]["last"]} and 0 <= s["test"]["last"]["acc"] <= 1
    assert s["test"]["last"]["loss"] > 0
    _png(parent / KFOLD_FIGURE)
    assert "kfold/curves" in _events(refit_dir).Tags()["images"]
    assert "val/loss per fold" in out and f"{s['mean_val_loss'][0]:.4f}" in out and "test acc" in out
    # a comparison over the tree reads the k-fold summary (its mean curve), not the fold runs beneath it
    groups = read_runs([tmp_path / "serial"])
    assert list(groups) == ["kf"] and groups["kf"][0]["kind"] == "kfold"

    # the same k-fold in 2 worker processes gives the same numbers
    par = run_kfold(make_config(_kfold_overrides(quick, tmp_path / "parallel", 2)), verbose=False)
    # Two processes with other thread counts may sum in another order: equal within 1e-5, far below the ~1e-2 a
    # fold trained on other rows, another seed or another epoch count would move these numbers.
    for a, b in zip(s["folds"], par["folds"]):
        for key in ("train_loss", "val_loss", "val_acc"):
            assert np.allclose(a["history"][key], b["history"][key], rtol=1e-5, atol=1e-6), key
    assert par["chosen_epoch"] == s["chosen_epoch"]
    for which in s["test"]:
        assert par["test"][which] == pytest.approx(s["test"][which], rel=1e-5, abs=1e-6)


def test_kfold_rejects_a_single_fold(quick):
    with pytest.raises(UserError, match="--kfold"):
        run_kfold(make_config({**quick, "kfold": 0}))


# -- k-fold and classes too small for K folds (issue 21) -----------------------------------------------------

def _rare_class_npz(path: Path, rare: int) -> Path:
    """Classes 3 and 7 with 20 examples each and class 9 with `rare`, and a test split of its own (so every
    example is in the pool the folds split)."""
    rng = np.random.RandomState(0)
    y = np.array([3] * 20 + [7] * 20 + [9] * rare)
    x = rng.randn(len(y), 4).astype(np.float32) + (y == 3)[:, None]
    np.savez(path, x_train=x, y_train=y, x_test=x[::4], y_test=y[::4])
    return path


def _npz_kfold(tmp_path: Path, npz: Path, k: int) -> dict:
    return {"data": f"npz:{npz}", "logdir": str(tmp_path / "logs"), "name": "kf", "kfold": k, "max_epochs": 1,
            "hidden": 4, "batch_size": 16, "progress": False, "accelerator": "cpu", "seed": 3}


def test_kfold_warns_once_naming_the_class_some_folds_validate_without(tmp_path, capsys):
    npz = _rare_class_npz(tmp_path / "rare.npz", rare=2)
    assert fit.main(flags(_npz_kfold(tmp_path, npz, 3))) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1, err  # once for the run, not once per fold
    parent = tmp_path / "logs" / "kf" / "version_0"
    folds = json.loads((parent / "summary.json").read_text())["folds"]
    y = np.load(npz)["y_train"]
    # the folds that really validated without class 9, from the splits they recorded
    lacking = sum(9 not in y[np.load(parent / f["run_dir"] / "split.npz")["val_idx"]] for f in folds)
    assert lacking >= 1  # 2 examples cannot reach 3 validation chunks
    assert f"warning: --kfold 3: {lacking} of 3 folds validate without class '9' (2 examples): " in err, err


@pytest.mark.parametrize("command", ["fit", "sweep"])
def test_kfold_refuses_a_fold_that_would_train_without_a_class(tmp_path, capsys, command, monkeypatch):
    from lit_regularize.cli import sweep

    monkeypatch.chdir(tmp_path)
    npz = _rare_class_npz(tmp_path / "one.npz", rare=1)  # the fold validating it trains without class 9
    over = _npz_kfold(tmp_path, npz, 3)
    if command == "fit":
        rc = fit.main(flags(over))
    else:
        space = tmp_path / "s.yaml"
        space.write_text("lr: {type: float, low: 0.001, high: 0.01, log: true}\n")
        rc = sweep.main(flags({k: v for k, v in over.items() if k != "name"}) + ["--space", str(space)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: --kfold 3: fold_"), err
    assert "would train without class '9' (all 1 of its examples validate in that fold)" in err
    assert not (tmp_path / "logs").exists() and not (tmp_path / "optuna").exists()  # nothing trained or created


@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_compare_runs_of_different_datasets_warns_naming_them(tmp_path, quick, mnist_dir, capsys):
    logs = tmp_path / "mixed"
    assert fit.main(flags({**quick, "logdir": str(logs), "max_epochs": 1, "name": "text"})) == 0
    images = {k: v for k, v in quick.items() if k != "num_words"}
    assert fit.main(flags({**images, "data": "mnist", "data_dir": str(mnist_dir), "logdir": str(logs),
                           "max_epochs": 1, "name": "images"})) == 0
    capsys.readouterr()
    assert compare_script.main(["--runs", str(logs / "text"), str(logs / "images"), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if ln.startswith("warning:")] == [
        "warning: --runs mix datasets (imdb, mnist): their losses and accuracies are not comparable across datasets"]
    assert "[data: imdb, mnist]" in (tmp_path / "o" / "table.md").read_text()
    # runs of one dataset: no warning
    assert compare_script.main(["--runs", str(logs / "text"), "--out", str(tmp_path / "o2")]) == 0
    assert "warning" not in capsys.readouterr().err
    # an --out that cannot be created: one line before anything is read or drawn (not a traceback at the end)
    (tmp_path / "afile").write_text("x")
    assert compare_script.main(["--runs", str(logs / "text"), "--out", str(tmp_path / "afile" / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: --out {tmp_path / 'afile' / 'o'}: cannot be created" in err, err


def test_compare_out_that_cannot_be_created_fails_naming_out_before_any_run(tmp_path, fixed, capsys):
    study = tmp_path / "tiny.yaml"
    study.write_text(TINY_STUDY)
    (tmp_path / "afile").write_text("x")
    assert compare_script.main([str(study), "--out", str(tmp_path / "afile" / "cmp"), *flags(fixed)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {tmp_path / 'afile' / 'cmp'}: cannot be created" in err, err


def test_a_study_reuses_the_newest_completed_run_of_a_config(tmp_path):
    # versions 2 and 10 of a run both completed with the study's config: the newest (10, not 2 by name) is reused;
    # an interrupted version 11 without a checkpoint is neither reused nor resumed
    from lit_regularize.comparison import finished_run, interrupted_run
    from lit_regularize.summary import RunSummary

    cfg = make_config({"logdir": str(tmp_path / "logs"), "name": "study/none"})
    for k, status in ((2, "completed"), (10, "completed"), (11, "interrupted")):
        folder = tmp_path / "logs" / "study" / "none" / f"version_{k}"
        RunSummary(config=cfg.to_dict(), status=status, run_dir=folder).write()
    assert finished_run(cfg).run_dir.name == "version_10"
    assert interrupted_run(cfg) is None
