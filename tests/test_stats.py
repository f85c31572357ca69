"""Answers with uncertainty (stats.py): intervals and paired tests against scipy and planted effects, verdict
directions, overfitting numbers on scripted curves, and the comparison's results.csv (fast, no training)."""
from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from scipy import stats as sp

from lit_regularize.comparison import RESULT_FIELDS, choose_baseline, results, results_markdown
from lit_regularize.errors import UserError
from lit_regularize.report import print_summary
from lit_regularize.stats import (METRIC_BY_KEY, describe, gap_curve, gap_slope, onset_epoch, overfitting, paired,
                                  verdict)
from lit_regularize.summary import RunSummary
from lit_regularize.tables import csv_text

LOSSES = [0.281, 0.279, 0.290, 0.284, 0.286]
T_975_DF4 = 2.7764451051977987  # Student t, 97.5 % quantile, 4 degrees of freedom (tables)


# -- intervals and tests -------------------------------------------------------------------------------------

def test_describe_gives_mean_sample_std_and_the_t_interval():
    s = describe(LOSSES + [None, float("nan")])  # missing and non-finite values are left out
    mean, std = np.mean(LOSSES), np.std(LOSSES, ddof=1)
    assert s.n == 5
    assert s.mean == pytest.approx(mean, rel=1e-12) and s.std == pytest.approx(std, rel=1e-12)
    # mean ± t(0.975, 4)·std/√5 from the table value: a z interval (1.96) or a population std would miss by > 5 %
    half = T_975_DF4 * std / math.sqrt(5)
    assert (s.low, s.high) == pytest.approx((mean - half, mean + half), rel=1e-9)
    ci = sp.ttest_1samp(LOSSES, 0.0).confidence_interval(0.95)
    assert (s.low, s.high) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_describe_of_one_or_identical_values():
    assert describe([0.3]) == describe([0.3, None])
    one = describe([0.3])
    assert (one.n, one.mean, one.std, one.low, one.high) == (1, 0.3, None, None, None)
    same = describe([20, 20, 20])  # every seed ran 20 epochs: no spread, a zero-width interval (not NaN)
    assert (same.std, same.low, same.high) == (0.0, 20.0, 20.0)
    assert describe([]).n == 0 and describe([]).mean is None


def test_paired_matches_scipys_paired_t_and_wilcoxon():
    base = [0.300, 0.295, 0.310, 0.288, 0.305, 0.299]
    other = [0.290, 0.289, 0.296, 0.286, 0.291, 0.297]
    p = paired(other, base)
    d = np.subtract(other, base)
    t = sp.ttest_rel(other, base)
    assert p.n == 6 and p.diff == pytest.approx(d.mean(), rel=1e-12)
    assert p.p_t == pytest.approx(t.pvalue, rel=1e-9)
    assert (p.low, p.high) == pytest.approx(tuple(t.confidence_interval(0.95)), rel=1e-9)
    assert p.p_wilcoxon == pytest.approx(sp.wilcoxon(other, base).pvalue, rel=1e-9)
    five = paired(other[:5], base[:5])  # below 6 pairs no signed-rank p (it cannot reach 0.05 there)
    assert five.p_wilcoxon is None and five.p_t == pytest.approx(sp.ttest_rel(other[:5], base[:5]).pvalue)
    # pairs with a missing side drop out as pairs, not one side alone (which would shift the other)
    gap = paired(other[:5] + [None], base)
    assert gap.n == 5 and gap.diff == pytest.approx(five.diff, rel=1e-12)


def test_a_paired_test_finds_a_planted_difference_and_not_a_planted_null():
    rng = np.random.default_rng(1234)
    found = false_alarms = 0
    trials = 400
    for _ in range(trials):
        seed_effect = rng.normal(0.30, 0.02, 5)  # what the seed does to both runs (shared split and init)
        base = seed_effect + rng.normal(0, 0.003, 5)
        better = seed_effect - 0.01 + rng.normal(0, 0.003, 5)  # planted: 0.01 lower loss
        same = seed_effect + rng.normal(0, 0.003, 5)  # planted null
        found += verdict(METRIC_BY_KEY["best_val_loss"], paired(better, base))[0] == "helps"
        false_alarms += verdict(METRIC_BY_KEY["best_val_loss"], paired(same, base))[0] != "no detectable difference"
    # 0.01 against a paired noise sd of 0.0042 with 5 seeds: power about 0.9; an unpaired test (seed sd 0.02)
    # would find it in under 20 % of the trials
    assert found / trials > 0.8
    # the 95 % interval's false alarms: about 5 % (binomial sd 1.1 %); a 68 % interval would alarm 30 %
    assert 0.02 < false_alarms / trials < 0.09


def test_identical_or_constant_differences_need_no_spread():
    same = paired([0.3, 0.31, 0.32], [0.3, 0.31, 0.32])
    assert (same.diff, same.low, same.high, same.p_t) == (0.0, 0.0, 0.0, 1.0)
    assert verdict(METRIC_BY_KEY["best_val_loss"], same)[0] == "no detectable difference"
    shifted = paired([6, 7, 8], [4, 5, 6])  # best epoch 2 later on every seed
    assert (shifted.diff, shifted.low, shifted.high, shifted.p_t) == (2.0, 2.0, 2.0, 0.0)
    assert verdict(METRIC_BY_KEY["best_epoch"], shifted)[0] == "later"
    assert paired([1.0], [0.5]).p_t is None and verdict(METRIC_BY_KEY["best_epoch"], paired([1], [0.5]))[0] == \
        "one paired seed"
    assert verdict(METRIC_BY_KEY["best_epoch"], paired([], []))[0] == "no paired seeds"


@pytest.mark.parametrize("metric, delta, word", [
    ("best_val_loss", -0.02, "helps"), ("best_val_loss", +0.02, "hurts"),
    ("test_acc_best", +0.02, "helps"), ("test_acc_best", -0.02, "hurts"),
    ("test_acc_last", +0.02, "helps"), ("gap_at_best", -0.02, "helps"), ("gap_slope", +0.02, "hurts"),
    ("onset_epoch", +2, "helps"), ("best_epoch", +2, "later"), ("best_epoch", -2, "earlier"),
])
def test_verdicts_follow_the_metrics_direction(metric, delta, word):
    base = [0.30, 0.28, 0.33, 0.29, 0.31]
    noise = [0.001, -0.002, 0.0015, 0.0, -0.001]
    p = paired([b + delta + n for b, n in zip(base, noise)], base)
    got, sentence = verdict(METRIC_BY_KEY[metric], p)
    assert got == word
    assert "95 % CI" in sentence and f"n={p.n}" in sentence
    assert verdict(METRIC_BY_KEY[metric], paired([b + n for b, n in zip(base, noise)], base))[0] == \
        "no detectable difference"


# -- overfitting as numbers ----------------------------------------------------------------------------------

U_VAL = [0.50, 0.40, 0.30, 0.32, 0.36, 0.42, 0.50]
U_TRAIN = [0.50, 0.35, 0.25, 0.20, 0.15, 0.10, 0.05]


def test_overfitting_numbers_of_a_u_shaped_curve():
    o = overfitting({"val_loss": U_VAL, "train_loss": U_TRAIN}, best_epoch=3)
    assert o["onset_epoch"] == 3  # the minimum; never back within 1 % (0.003) of it afterwards
    assert o["gap_at_best"] == pytest.approx(0.05) and o["gap_last"] == pytest.approx(0.45)
    gaps = np.subtract(U_VAL, U_TRAIN)[3:]  # epochs 4..7, strictly after the onset
    assert o["gap_slope"] == pytest.approx(np.polyfit([4, 5, 6, 7], gaps, 1)[0], rel=1e-9)


@pytest.mark.parametrize("val, onset", [
    ([0.5, 0.4, 0.35, 0.3], None),  # still improving: never overfits
    ([0.5, 0.3, 0.35, 0.301, 0.4], 4),  # back within 1 % of the minimum at epoch 4: the onset is 4, not 2
    ([0.5, 0.3, 0.302], None),  # the last epoch is still within tolerance of the minimum
    ([0.5, float("nan"), 0.3, 0.4, None, 0.45], 3),  # missing epochs are skipped, epochs stay 1-based
    ([0.5, 0.3, float("nan"), float("nan")], None),  # a diverged tail is not overfitting
    ([0.4], None), ([], None), ([float("nan")] * 3, None),
    ([0.3, 0.5], 1),
])
def test_onset_epoch_on_scripted_curves(val, onset):
    assert onset_epoch(val) == onset


def test_gap_slope_edge_cases():
    gaps = gap_curve({"val_loss": [0.5, float("nan"), 0.3, 0.4, 0.6, 0.7],
                      "train_loss": [0.5, 0.4, 0.3, 0.2, None, 0.1]})
    assert gaps == pytest.approx([0.0, None, 0.0, 0.2, None, 0.6])
    assert gap_slope(gaps, after=3) == pytest.approx(0.2)  # epochs 4 and 6 (5 has no train loss): (0.6-0.2)/2
    assert gap_slope(gaps, after=4) is None  # one epoch with a gap after it
    assert gap_slope(gaps, after=None) is None
    one = overfitting({"val_loss": [0.4], "train_loss": [0.5]}, best_epoch=1)
    assert one == {"gap_at_best": pytest.approx(-0.1), "gap_last": pytest.approx(-0.1), "onset_epoch": None,
                   "gap_slope": None}
    assert overfitting({}, None) == {"gap_at_best": None, "gap_last": None, "onset_epoch": None, "gap_slope": None}


def test_the_fit_summary_prints_the_last_epoch_and_the_gaps(capsys, tmp_path):
    h = {"epoch": list(range(1, 8)), "val_loss": U_VAL, "train_loss": U_TRAIN, "val_acc": [0.8] * 6 + [0.75]}
    s = RunSummary(status="completed", stop_reason="max_epochs", epochs_run=7, n_params=10, best_epoch=3,
                   best_val_loss=0.3, best_val_acc=0.8, history=h, run_dir=tmp_path)
    print_summary(s)  # no overfitting field (an older summary): computed from the history
    out = capsys.readouterr().out
    assert "best epoch: 3  val/loss 0.3000  val/acc 0.8000  gap (val − train loss) +0.0500" in out
    assert "last epoch: 7  val/loss 0.5000  val/acc 0.7500  gap (val − train loss) +0.4500" in out
    slope = np.polyfit([4, 5, 6, 7], np.subtract(U_VAL, U_TRAIN)[3:], 1)[0]
    assert f"overfitting: from epoch 3 (" in out and f"the gap grows {slope:+.4f} per epoch after it" in out
    s.history = {"epoch": [1, 2], "val_loss": [0.5, 0.4], "train_loss": [0.6, 0.5], "val_acc": [0.7, 0.8]}
    s.epochs_run, s.best_epoch = 2, 2
    print_summary(s)
    assert "overfitting: none seen" in capsys.readouterr().out


# -- the comparison's results (rows as compare builds them) --------------------------------------------------

def _rows(label: str, losses, accs, seeds=range(1, 7)) -> list[dict]:
    return [{"run": label, "seed": s, "best_val_loss": v, "test_acc_best": a, "test_acc_last": a,
             "best_epoch": 4, "gap_at_best": 0.01, "onset_epoch": None} for s, v, a in zip(seeds, losses, accs)]


def test_results_rows_pair_by_seed_and_say_which_way():
    base_loss = [0.30, 0.28, 0.33, 0.29, 0.31, 0.30]
    base_acc = [0.88, 0.87, 0.885, 0.875, 0.88, 0.878]
    rows = (_rows("none", base_loss, base_acc)
            + _rows("l2", [v - 0.01 + 1e-3 * (i % 3) for i, v in enumerate(base_loss)],
                    [a - 0.01 + 1e-3 * (i % 2) for i, a in enumerate(base_acc)])
            # seeds listed in another order: paired by seed, not by position
            + _rows("same", base_loss[::-1], base_acc[::-1], seeds=range(6, 0, -1)))
    res = results(rows, "none")
    table = list(csv.DictReader(io.StringIO(csv_text(res, RESULT_FIELDS))))
    assert set(RESULT_FIELDS) >= {"setting", "metric", "n", "mean", "std", "ci95_low", "ci95_high",
                                  "diff_vs_baseline", "diff_ci95_low", "diff_ci95_high", "p_value", "verdict"}
    assert list(table[0]) == RESULT_FIELDS
    got = {(r["setting"], r["metric"]): r for r in res}
    assert got["l2", "best_val_loss"]["verdict"] == "helps"  # lower loss
    assert got["l2", "test_acc_best"]["verdict"] == "hurts"  # lower accuracy
    assert got["none", "best_val_loss"]["verdict"] == "baseline"
    same = got["same", "best_val_loss"]  # same seeds, same numbers: no difference on any seed (by position: ±0.03)
    assert (same["diff_vs_baseline"], same["diff_ci95_low"], same["diff_ci95_high"], same["p_value"]) == (0, 0, 0, 1)
    assert got["same", "best_epoch"]["verdict"] == "no detectable difference"
    assert got["l2", "onset_epoch"]["n"] == 0 and got["l2", "onset_epoch"]["verdict"] == "no paired seeds"
    l2 = got["l2", "best_val_loss"]
    assert l2["n"] == l2["n_paired"] == 6 and l2["p_wilcoxon"] is not None
    assert l2["diff_ci95_low"] < l2["diff_vs_baseline"] < l2["diff_ci95_high"] < 0
    md = results_markdown(res, "none")
    assert "#### best val loss (lower is better" in md and "| l2 | 6 |" in md
    assert "#### overfitting onset" not in md and "#### gap at best epoch" in md  # no table without values
    one = results(_rows("none", [0.3], [0.8], seeds=[1]) + _rows("l2", [0.2], [0.9], seeds=[1]), "none")
    assert results_markdown(one, "none").startswith("One seed per setting")


def test_the_baseline_is_none_or_the_one_asked_for():
    assert choose_baseline(["l2", "none", "l1"]) == "none"
    assert choose_baseline(["tiny/l2", "tiny/none"]) == "tiny/none"
    assert choose_baseline(["a", "b"]) == "a"
    assert choose_baseline(["l2", "none"], "l2") == "l2"
    with pytest.raises(UserError, match=r"--baseline nope: not a run of this comparison \(runs: l2, none\)"):
        choose_baseline(["l2", "none"], "nope")


def test_the_apis_aggregate_gives_intervals_and_counts_seeds_without_a_value():
    from lit_regularize.api import aggregate

    rows = _rows("none", LOSSES, [0.8] * 5, seeds=range(5))
    rows[0]["onset_epoch"], rows[1]["onset_epoch"] = 3, 5
    (row,) = aggregate(rows)
    assert row["n"] == 5 and row["best_val_loss_mean"] == pytest.approx(np.mean(LOSSES), rel=1e-12)
    ci = sp.ttest_1samp(LOSSES, 0.0).confidence_interval(0.95)
    assert (row["best_val_loss_ci95_low"], row["best_val_loss_ci95_high"]) == pytest.approx((ci.low, ci.high))
    assert row["test_acc_best_std"] == 0.0 and "test_acc_best_n" not in row
    assert row["onset_epoch_mean"] == 4 and row["onset_epoch_n"] == 2  # 3 of 5 seeds never overfit
