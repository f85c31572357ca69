"""The figures draw exactly the histories and weights they are given, in the agreed styles (fast, no training)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.colors import to_hex
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_regularize.plots import (NEAR_ZERO, curves_figure, epochs_phrase, figure_array, fold_figure, log_figures,
                                  near_zero_fraction, plotted_series, save_figure, sparsity_figure, weight_stats,
                                  weights_figure)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def history(n: int, best: int, floor: float = 0.3, acc: float = 0.88, seed: int = 0) -> dict:
    """A synthetic history whose val loss is a parabola with its minimum at epoch `best` (1-based)."""
    rng = np.random.default_rng(seed)
    e = np.arange(1, n + 1)
    val = floor + 0.004 * (e - best) ** 2 + 0.001 * rng.random(n)
    return {"epoch": e.tolist(), "train_loss": (0.7 * np.exp(-e / 3) + 0.02).tolist(), "val_loss": val.tolist(),
            "val_acc": (acc - 0.001 * (e - best) ** 2 + 0.001 * rng.random(n)).tolist(),
            "train_acc": (1.0 - 0.4 * np.exp(-e / 3)).tolist(), "train_penalty": [None] * n, "epoch_time": [0.5] * n}


def stuck(n: int) -> dict:
    """A 4-unit net that never learns: loss ln 2, accuracy 50 %."""
    return {"epoch": list(range(1, n + 1)), "train_loss": [0.6931] * n, "val_loss": [0.6932] * n,
            "val_acc": [0.5] * n, "train_penalty": [None] * n, "epoch_time": [None] * n}


def test_curves_plot_train_dashed_and_val_solid_in_one_colour_with_the_star_at_the_best_epoch():
    runs = {"none": [history(20, best=6)], "dropout": [history(20, best=11, floor=0.28, seed=1)],
            "4 units": [stuck(20)]}
    fig = curves_figure(runs, "IMDB: capacity")
    drawn = plotted_series(fig)
    loss, acc = drawn["axes"]["loss"], drawn["axes"]["accuracy"]
    for label, (h,) in runs.items():
        val, train, star = (loss["lines"][f"{label}: {k}"] for k in ("val loss", "train loss", "best epoch"))
        epochs = np.arange(1, 21)
        assert np.array_equal(val["x"], epochs) and np.allclose(val["y"], h["val_loss"])
        assert np.array_equal(train["x"], epochs) and np.allclose(train["y"], h["train_loss"])
        assert val["linestyle"] == "-" and train["linestyle"] == "--"
        assert val["color"] == train["color"] == star["color"]
        best = int(np.argmin(h["val_loss"]))
        assert star["marker"] == "*" and star["x"].tolist() == [best + 1] and star["y"][0] == h["val_loss"][best]
        a = acc["lines"][f"{label}: val acc"]
        assert np.array_equal(a["x"], epochs) and np.allclose(a["y"], h["val_acc"])
        assert a["linestyle"] == "-" and a["color"] == val["color"]
        if "train_acc" in h:  # the accuracy gap: training dashed beside validation, same colour
            ta = acc["lines"][f"{label}: train acc"]
            assert np.allclose(ta["y"], h["train_acc"]) and ta["linestyle"] == "--" and ta["color"] == val["color"]
        else:
            assert f"{label}: train acc" not in acc["lines"]
    assert loss["lines"]["none: best epoch"]["x"].tolist() == [6]  # in the middle, not at the last epoch
    assert loss["lines"]["dropout: best epoch"]["x"].tolist() == [11]
    assert len({loss["lines"][f"{k}: val loss"]["color"] for k in runs}) == 3
    assert np.allclose(acc["lines"]["4 units: val acc"]["y"], 0.5)  # the stuck net on its own panel
    assert acc["ylabel"] == "accuracy" and loss["ylabel"] == "loss"
    assert loss["xlabel"] == acc["xlabel"] == "epoch" and loss["yscale"] == "linear"
    ticks = [t for t in loss["xticks"] if 1 <= t <= 20]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert drawn["title"] == "IMDB: capacity (20 epochs)"
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert any(t.startswith("none") and "best epoch 6" in t for t in legend)


def test_curves_of_several_seeds_are_means_with_a_band_on_val_loss():
    runs = {"none": [history(10, 4, seed=s) for s in range(3)], "l2": [history(10, 7, seed=9 + s) for s in range(3)]}
    fig = curves_figure(runs)
    loss = plotted_series(fig)["axes"]["loss"]
    assert loss["bands"] == 2  # one ± std band per run, on the validation loss only
    for label, hs in runs.items():
        mean = np.mean([h["val_loss"] for h in hs], axis=0)
        assert np.allclose(loss["lines"][f"{label}: val loss"]["y"], mean)
        assert np.allclose(loss["lines"][f"{label}: train loss"]["y"], np.mean([h["train_loss"] for h in hs], 0))
        # the star is the table's best epoch: each seed's own best, averaged (not the mean curve's minimum)
        bests = [int(np.argmin(h["val_loss"])) for h in hs]
        star = loss["lines"][f"{label}: best epoch"]
        assert star["x"].tolist() == pytest.approx([np.mean(bests) + 1])
        assert star["y"].tolist() == pytest.approx([np.mean([h["val_loss"][b] for h, b in zip(hs, bests)])])
    assert plotted_series(fig)["axes"]["accuracy"]["bands"] == 2
    assert plotted_series(curves_figure({k: v[:1] for k, v in runs.items()}))["axes"]["loss"]["bands"] == 0


def test_title_names_the_epochs_actually_run():
    short = {"none": [history(3, 2)], "l2": [history(20, 9)]}
    assert plotted_series(curves_figure(short, "study"))["title"] == "study (3–20 epochs)"
    note = curves_figure({"none": [history(12, 5)]}, "study", epochs_note="early stopping, patience 5")
    assert plotted_series(note)["title"] == "study (12 epochs, early stopping, patience 5)"
    assert epochs_phrase([history(1, 1)]) == "1 epoch"


def test_curves_skip_missing_values():
    h = history(8, 4)
    h["val_loss"][2] = float("nan")
    h["val_acc"][5] = None
    h["val_loss"][7] = None
    loss = plotted_series(curves_figure({"run": [h]}))["axes"]["loss"]
    val = loss["lines"]["run: val loss"]
    assert val["x"].tolist() == [1, 2, 4, 5, 6, 7]
    assert np.allclose(val["y"], [h["val_loss"][i - 1] for i in val["x"].astype(int)])
    assert loss["lines"]["run: best epoch"]["x"].tolist() == [4]


def test_weights_figure_has_one_row_per_layer_and_no_all_weights_row():
    rng = np.random.default_rng(0)
    weights = {"none": [rng.normal(0, 0.1, (16, 300)), rng.normal(0, 0.1, (16, 16)), rng.normal(0, 0.1, (1, 16))],
               "l1": [rng.normal(0, 0.1, (16, 300)) * (rng.random((16, 300)) < 0.3), rng.normal(0, 0.1, (16, 16)),
                      rng.normal(0, 0.1, (1, 16))]}
    fig = weights_figure({k: [v] for k, v in weights.items()}, seeds={"none": [7], "l1": [7]})
    drawn = plotted_series(fig)
    assert drawn["title"] == "weight distributions per layer — best checkpoint (seed 7)"
    rows = [k.split(":")[0] for k in drawn["axes"] if k.endswith(": w")]
    assert rows == ["Linear layer 1", "Linear layer 2", "output layer"]
    assert len(fig.axes) == 2 * len(rows)
    assert not any("all" in ax.get_title(loc="left").lower() for ax in fig.axes)
    for row, name in enumerate(rows):
        hist = drawn["axes"][f"{name}: w"]["stairs"]
        assert set(hist) == {"none", "l1"}
        for label in weights:
            w = weights[label][row].ravel()
            values, edges = hist[label]["values"], hist[label]["edges"]
            assert math.isclose(values.sum(), 100.0)  # % of the layer's weights
            assert np.allclose(values, 100 * np.histogram(w, bins=edges)[0] / w.size)
        assert f"{weights['none'][row].size:,} weights" in drawn["axes"][f"{name}: w"]["title"]
        assert drawn["axes"][f"{name}: log10|w|"]["vlines"] == [math.log10(NEAR_ZERO)]
    assert "last epoch" in plotted_series(weights_figure({k: [v] for k, v in weights.items()},
                                                         which="last epoch"))["title"]


def test_weights_figure_puts_output_layers_of_shallower_nets_in_the_last_row():
    rng = np.random.default_rng(1)
    deep = [rng.normal(size=(8, 20)), rng.normal(size=(8, 8)), rng.normal(size=(1, 8))]
    shallow = [rng.normal(size=(4, 20)), rng.normal(size=(1, 4))]
    drawn = plotted_series(weights_figure({"deep": [deep], "shallow": [shallow]}))["axes"]
    assert set(drawn["Linear layer 2: w"]["stairs"]) == {"deep"}
    assert set(drawn["output layer: w"]["stairs"]) == {"deep", "shallow"}
    out = drawn["output layer: w"]["stairs"]["shallow"]
    assert np.allclose(out["values"], 100 * np.histogram(shallow[1].ravel(), bins=out["edges"])[0] / 4)


def test_sparsity_bars_axis_and_labels_are_all_percent():
    w_sparse = [np.where(np.arange(100).reshape(10, 10) < 40, 0.0, 0.5), np.full((1, 10), 0.5)]
    w_dense = [np.full((10, 10), 0.2), np.full((1, 10), 0.2)]
    stats = {"l1": [weight_stats(w_sparse)], "none": [weight_stats(w_dense)]}
    fig = sparsity_figure(stats)
    axes = plotted_series(fig)["axes"]
    pct = axes["near zero %"]
    assert np.allclose(pct["bars"]["first layer"]["heights"], [40.0, 0.0])
    assert np.allclose(pct["bars"]["all Linear layers"]["heights"], [100 * 40 / 110, 0.0])
    assert pct["bars"]["first layer"]["texts"] == ["40.0%", "0.0%"]
    assert pct["bars"]["all Linear layers"]["texts"] == [f"{100 * 40 / 110:.1f}%", "0.0%"]
    assert "%" in pct["ylabel"] and fig.axes[0].yaxis.get_major_formatter()(50, 0) == "50%"
    assert 40.0 < fig.axes[0].get_ylim()[1] <= 108.0
    mabs = axes["mean |w|"]
    assert mabs["ylabel"] == "mean |w|"
    assert np.allclose(mabs["bars"]["first layer"]["heights"], [0.3, 0.2])
    assert near_zero_fraction(w_sparse[0]) * 100 == pct["bars"]["first layer"]["heights"][0]


def test_fold_figure_draws_each_fold_train_dashed_val_solid_and_the_chosen_epoch():
    folds = [history(12, 5 + i, seed=i) for i in range(3)]
    mean_val = np.mean([h["val_loss"] for h in folds], axis=0).tolist()
    chosen = int(np.argmin(mean_val)) + 1
    drawn = plotted_series(fold_figure(folds, mean_val, chosen, title="x: 3-fold"))
    loss, acc = drawn["axes"]["loss"], drawn["axes"]["accuracy"]
    for i, h in enumerate(folds):
        val, train = loss["lines"][f"fold {i}: val loss"], loss["lines"][f"fold {i}: train loss"]
        assert np.allclose(val["y"], h["val_loss"]) and np.allclose(train["y"], h["train_loss"])
        assert val["x"].tolist() == list(range(1, 13)) and val["linestyle"] == "-" and train["linestyle"] == "--"
        assert val["color"] == train["color"] == acc["lines"][f"fold {i}: val acc"]["color"]
        assert np.allclose(acc["lines"][f"fold {i}: train acc"]["y"], h["train_acc"])
        assert acc["lines"][f"fold {i}: train acc"]["linestyle"] == "--"
    assert np.allclose(loss["lines"]["mean val loss"]["y"], mean_val)
    assert loss["lines"]["mean val loss"]["color"] == to_hex("k")
    assert loss["vlines"] == acc["vlines"] == [chosen] and 1 < chosen < 12
    assert drawn["title"] == "x: 3-fold (12 epochs per fold)"


def test_figures_render_wide_enough_for_tensorboard_and_save_as_png(tmp_path):
    fig = curves_figure({"none": [history(5, 3)]}, "t")
    dpi = fig.get_dpi()
    assert figure_array(fig, 1200).shape[1] == 1200
    assert fig.get_dpi() == dpi  # rendering for TensorBoard leaves the figure as it was
    assert figure_array(fig).shape[1] == round(fig.get_figwidth() * dpi)
    path = save_figure(fig, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    log_figures(tmp_path / "tb", {"compare/curves": fig})
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    (image,) = acc.Images("compare/curves")
    assert image.width == 1200


def test_a_report_draws_each_figure_once_for_its_png_and_tensorboard(tmp_path):
    # render() draws once; its image saved as PNG equals savefig's at the same dpi, and TensorBoard gets it
    # resampled to TB_WIDTH_PX with the figure's aspect ratio
    from PIL import Image

    from lit_regularize.plots import TB_WIDTH_PX, render

    fig = curves_figure({"none": [history(5, 3)]}, "t")
    image = render(fig)
    assert image.shape[2] == 4 and image.shape[1] == round(fig.get_figwidth() * 110)
    direct = np.asarray(Image.open(save_figure(fig, tmp_path / "direct.png"))).astype(float)
    rendered = np.asarray(Image.open(save_figure(image, tmp_path / "rendered.png"))).astype(float)
    assert direct.shape == rendered.shape and np.abs(direct - rendered).mean() < 1.0
    log_figures(tmp_path / "tb", {"compare/curves": image})
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    (logged,) = acc.Images("compare/curves")
    assert logged.width == TB_WIDTH_PX
    assert abs(logged.height - image.shape[0] * TB_WIDTH_PX / image.shape[1]) <= 1


@pytest.mark.parametrize("name", ["curves", "weights", "sparsity", "fold"])
def test_figures_with_nothing_to_draw_still_render(name):
    fig = {"curves": lambda: curves_figure({"empty": [{"epoch": [], "val_loss": []}]}),
           "weights": lambda: weights_figure({}),
           "sparsity": lambda: sparsity_figure({}),
           "fold": lambda: fold_figure([], [], 1)}[name]()
    assert figure_array(fig).ndim == 3


# -- issue 24/25: one best-epoch definition, stars that do not hide each other, every seed shown and named ------

def test_the_star_is_the_mean_of_each_seeds_best_epoch_as_in_the_table():
    # seeds whose own best epochs are 2, 3 and 9: the table's best epoch is their mean, 4.67; the mean curve's
    # minimum (the old star) would sit at epoch 5 with a higher loss
    hs = [history(12, best, seed=i) for i, best in enumerate((2, 3, 9))]
    loss = plotted_series(curves_figure({"none": hs}, seeds={"none": [11, 12, 13]}))["axes"]["loss"]
    star = loss["lines"]["none: best epoch"]
    own = [(int(np.argmin(h["val_loss"])) + 1, min(h["val_loss"])) for h in hs]
    assert [e for e, _ in own] == [2, 3, 9]
    assert star["x"].tolist() == pytest.approx([np.mean([e for e, _ in own])], abs=1e-9)
    assert star["y"].tolist() == pytest.approx([np.mean([v for _, v in own])], rel=1e-9)


def test_stars_of_runs_with_the_same_best_epoch_are_moved_apart_and_others_stay():
    same = history(20, best=6)
    runs = {"a": [same], "b": [dict(same)], "c": [history(20, best=15, floor=0.5)]}
    fig = curves_figure(runs)
    loss = plotted_series(fig)["axes"]["loss"]
    xa, xb, xc = (loss["lines"][f"{k}: best epoch"]["x"][0] for k in "abc")
    # a and b sit on the same point: moved apart by about a star's width (0.04 of 20 epochs), still around 6
    assert abs(xa - xb) >= 0.04 * 20 - 1e-9 and abs((xa + xb) / 2 - 6) < 1e-9
    assert xc == 15  # a star with room of its own is drawn at its epoch
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert sum("best epoch 6," in t for t in legend) == 2  # the legend keeps the exact epoch


def test_curves_name_the_seeds_they_show():
    runs = {"none": [history(5, 3, seed=s) for s in range(3)], "l2": [history(5, 3, seed=9 + s) for s in range(3)]}
    title = plotted_series(curves_figure(runs, "t", seeds={"none": [11, 12, 13], "l2": [11, 12, 13]}))["title"]
    assert title == "t (5 epochs, seeds 11–13)"
    mixed = plotted_series(curves_figure(runs, "t", seeds={"none": [11, 12, 13], "l2": [11, 15, 17]}))["title"]
    assert mixed == "t (5 epochs, none: seeds 11–13; l2: seeds 11, 15, 17)"


def test_weights_figure_pools_every_seed_and_says_so():
    rng = np.random.default_rng(3)
    seeds = [[rng.normal(0, 0.1, (8, 50)), rng.normal(0, 0.1, (1, 8))],
             [rng.normal(0, 0.3, (8, 50)), rng.normal(0, 0.3, (1, 8))]]
    drawn = plotted_series(weights_figure({"none": seeds}, seeds={"none": [7, 8]}))
    assert drawn["title"] == "weight distributions per layer — best checkpoint (seeds 7, 8, 2 seeds pooled per run)"
    layer = drawn["axes"]["Linear layer 1: w"]
    hist = layer["stairs"]["none"]
    pooled = np.concatenate([seeds[0][0].ravel(), seeds[1][0].ravel()])
    assert np.allclose(hist["values"], 100 * np.histogram(pooled, bins=hist["edges"])[0] / pooled.size)
    assert "400 weights" in layer["title"]  # one seed's layer size, not the pooled count
    first_only = 100 * np.histogram(seeds[0][0].ravel(), bins=hist["edges"])[0] / 400
    assert not np.allclose(hist["values"], first_only)  # the second seed counts


def test_log10_axis_starts_at_the_floor_and_its_first_bin_holds_the_tiny_and_zero_weights():
    from lit_regularize.plots import LOG10_FLOOR

    w = np.concatenate([np.full(10, 1e-40), np.zeros(10), np.full(20, 1e-7), np.linspace(1e-3, 0.5, 60)])
    drawn = plotted_series(weights_figure({"l1": [[w.reshape(4, 25), np.ones((1, 4))]]}))
    (log,) = drawn["axes"]["Linear layer 1: log10|w|"]["stairs"].values()
    assert log["edges"][0] == LOG10_FLOOR == -6  # not -40: the useful -5..0 keeps the width
    assert math.isclose(log["values"].sum(), 100.0)  # zeros and 1e-40 are counted, not dropped
    assert math.isclose(log["values"][0], 40.0)  # 10 at 1e-40, 10 zeros, 20 at 1e-7: all below 1e-6


def test_sparsity_bars_are_means_over_seeds_with_each_seed_as_a_dot():
    a = [np.where(np.arange(100).reshape(10, 10) < 20, 0.0, 0.5), np.full((1, 10), 0.5)]
    b = [np.where(np.arange(100).reshape(10, 10) < 60, 0.0, 0.5), np.full((1, 10), 0.5)]
    fig = sparsity_figure({"l1": [weight_stats(a), weight_stats(b)]}, seeds={"l1": [3, 4]})
    drawn = plotted_series(fig)
    pct = drawn["axes"]["near zero %"]
    assert np.allclose(pct["bars"]["first layer"]["heights"], [40.0])  # mean of 20 % and 60 %
    assert sorted(pct["lines"]["first layer: each seed"]["y"].tolist()) == [20.0, 60.0]
    assert drawn["title"] == "weight sparsity — best checkpoint (seeds 3, 4)"


def test_a_column_on_which_every_seed_agrees_prints_the_value_alone():
    from lit_regularize.tables import mean_std

    assert mean_std([10033, 10033, 10033], "{:,.0f}") == "10,033"
    assert mean_std([20, 20], "{:.3g}") == "20"
    assert mean_std([0.5, 0.7], "{:.4f}") == "0.6000 ± 0.1414"
    assert mean_std([0.5, None, float("nan")]) == "0.5000"
    assert mean_std([4, 4], "{:.1f}") == "4" and mean_std([3, 4], "{:.1f}") == "3.5 ± 0.7"
    assert mean_std([0.1, 0.12], "{:+.4f}") == "+0.1100 ± 0.0141"  # a signed mean, an unsigned spread
    # seeds that differ below the last digit: "± <0.0001", never a "± 0.0000" that reads as no spread, and never
    # the value alone (which read as "the seeds agree" where the per-metric table said ± 0.0001)
    assert mean_std([0.12344, 0.12346]) == "0.1235 ± <0.0001"
    assert mean_std([0.88434, 0.88426]) == "0.8843 ± 0.0001"
    assert mean_std([0.004, 0.006], "{:.1%}") == "0.5% ± 0.1%" and mean_std([0.12344, 0.12356], "{:.1%}") == "12.3% ± <0.1%"


def test_the_per_metric_tables_print_a_spread_as_the_run_table_does():
    # the same mean and std read the same in results.md's per-metric rows as in the run table
    from lit_regularize.comparison import results_markdown
    from lit_regularize.tables import mean_std

    values = [0.88434, 0.88426]
    mean, std = sum(values) / 2, float(np.std(values, ddof=1))
    row = {"setting": "l2", "metric": "test_acc_best", "better": "higher", "n": 2, "mean": mean, "std": std,
           "ci95_low": mean - 0.01, "ci95_high": mean + 0.01, "baseline": "l2", "verdict": "baseline"}
    assert mean_std(values) in results_markdown([row], "l2")
    tiny = dict(row, std=2e-5)
    assert "± <0.0001" in results_markdown([tiny], "l2") and "± 0.0000" not in results_markdown([tiny], "l2")
