"""Populations: K runs trained as one vectorized model must be K runs — same numbers, same files, own stopping.

Tolerance: a member and the single run with its seed see the same batches, dropout masks and updates; only float
summation order differs (batched matmuls, one loss over K members), which moves losses by ~1e-7 over a few epochs
here. TOL = 1e-5 fails on any real difference: one other batch, mask or learning rate moves a loss by > 1e-3.
"""
from __future__ import annotations

import math

import pytest
import torch

from lit_regularize.config import make_config
from lit_regularize.errors import RunInterrupted
from lit_regularize.model import RegularizedMLP
from lit_regularize.population import groups, joinable
from lit_regularize.population.train import Population, device_for, prepare, train_population
from lit_regularize.rundir import RunDir
from lit_regularize.run import run
from lit_regularize.summary import RunSummary

TOL = 1e-5
KEYS = ("train_loss", "train_acc", "train_penalty", "val_loss", "val_acc")


def same_history(a: RunSummary, b: RunSummary) -> None:
    assert a.epochs_run == b.epochs_run and a.stop_reason == b.stop_reason
    assert a.best_epoch == b.best_epoch
    for key in KEYS:
        for x, y in zip(a.history[key], b.history[key]):
            assert (x is None) == (y is None), key
            if x is not None and math.isfinite(x):
                assert abs(x - y) < TOL, (key, a.history[key], b.history[key])


def same_test(a: RunSummary, b: RunSummary) -> None:
    assert set(a.test) == set(b.test)
    for w in a.test:
        assert abs(a.test[w]["loss"] - b.test[w]["loss"]) < TOL
        assert abs(a.test[w]["acc"] - b.test[w]["acc"]) < TOL


def configs(quick, variants, **over):
    return [make_config({**quick, **over, **v, "name": f"m{i}"}) for i, v in enumerate(variants)]


# Three members share seed 1 (the same batches: gathered and multiplied as one group until dropout's masks move its
# stream), one has its own: both paths are compared with single runs.
VARIANTS = [dict(reg="none", seed=1), dict(reg="l2", seed=1, lr=3e-3), dict(reg="dropout", seed=1),
            dict(reg="l1_l2", seed=4, l1_layers=[0, 2])]


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam", "sgd"])
def test_each_member_matches_the_single_run_with_its_seed(quick, optimizer):
    # every regularizer variant with the default optimizer; the other two optimizers' formulas on two members
    variants = VARIANTS if optimizer == "rmsprop" else VARIANTS[1:3]
    cfgs = configs(quick, variants, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3)
    pops = train_population([c.replace(name=c.name + "_pop") for c in cfgs])
    for cfg, p in zip(cfgs, pops):
        s = run(cfg)
        same_history(s, p)
        same_test(s, p)
        assert p.population == {"size": len(cfgs), "index": cfgs.index(cfg)}


def test_hooked_regularizers_and_ragged_members_match_single_runs(quick):
    """Label smoothing (train_loss), weight decay (before_step), max-norm (after_step) and a member with fewer
    training rows (its last step has no batch: the masked optimizer step) each as alone."""
    variants = [dict(seed=1, label_smoothing=0.2), dict(seed=2, weight_decay=0.05), dict(seed=3, max_norm=0.3),
                dict(seed=4, train_size=70), dict(seed=5, patience=0)]
    cfgs = configs(quick, variants)
    pops = train_population([c.replace(name=c.name + "_pop") for c in cfgs])
    for cfg, p in zip(cfgs, pops):
        same_history(run(cfg), p)


def test_members_stop_on_their_own(quick):
    """A diverging member stops with non_finite_loss; the others train on; early stopping is per member."""
    variants = [dict(seed=1, lr=1e38), dict(seed=2, patience=0, lr=0.5), dict(seed=3, early_stopping=False)]
    cfgs = configs(quick, variants, max_epochs=6, optimizer="sgd")
    pops = train_population(cfgs)
    assert pops[0].stop_reason == "non_finite_loss" and pops[0].epochs_run < 6
    assert pops[2].stop_reason == "max_epochs" and pops[2].epochs_run == 6
    for cfg, p in zip(cfgs, pops):
        same_history(run(cfg.replace(name=cfg.name + "_single")), p)


def test_a_member_leaves_the_same_files_as_a_run(quick):
    cfgs = configs(quick, VARIANTS[:2])
    pops = train_population(cfgs)
    single = run(cfgs[0].replace(name="single"))
    for p in pops:
        d = p.run_dir
        names = {f.name for f in d.iterdir()}
        assert {n for n in (f.name for f in single.run_dir.iterdir()) if not n.startswith("events")} <= names
        assert any(n.startswith("events.out.tfevents") for n in names)
        assert p.status == "completed" and RunSummary.read(d).status == "completed"
        best = p.path(p.best_checkpoint)
        assert best.name == f"best-epoch{p.best_epoch:03d}.ckpt"
        assert sorted(x.name for x in (d / "checkpoints").iterdir()) == sorted([best.name, "last.ckpt"])
        for ckpt, result in ((best, p.test["best"]), (p.path(p.last_checkpoint), p.test["last"])):
            model = RegularizedMLP.load_from_checkpoint(ckpt, map_location="cpu")
            assert model.hparams.hidden == quick["hidden"]
            # the loaded weights give the member's test score: they are its weights, not another member's
            dm = prepare(make_config(p.config)).dm
            model.eval()
            with torch.no_grad():
                x, y = dm.test_set.__getitems__(list(range(len(dm.test_set))))
                acc = float(((model(x) > 0).long() == y.long()).float().mean())
            assert abs(acc - result["acc"]) < 1e-6


def test_a_member_resumes_as_a_population_of_one(quick):
    cfg = configs(quick, [dict(seed=5, reg="dropout")], max_epochs=2)[0]
    straight = train_population([cfg.replace(max_epochs=4, name="straight"), cfg.replace(seed=6)])[0]
    cut = train_population([cfg, cfg.replace(seed=6, name="other")])[0]
    resumed = run(cfg.replace(max_epochs=4), resume=RunDir.open(cut.run_dir))
    same_history(straight, resumed)
    same_test(straight, resumed)
    assert resumed.run_dir == cut.run_dir and resumed.population == {"size": 1, "index": 0}


def interrupt_on_call(monkeypatch, owner, name, n, interrupt=None):
    """owner.name raises KeyboardInterrupt (or calls interrupt()) on its n-th call; the calls counted so far."""
    calls = {"n": 0}
    original = getattr(owner, name)

    def cut(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            if interrupt is None:
                raise KeyboardInterrupt
            interrupt()
        return original(self, *args, **kwargs)
    monkeypatch.setattr(owner, name, cut)
    return calls


@pytest.mark.parametrize("how", ["KeyboardInterrupt", "SIGTERM"])
def test_interrupted_population_says_so_in_every_member(quick, monkeypatch, how):
    import os
    import signal

    cfgs = configs(quick, VARIANTS[:3], max_epochs=5)
    calls = interrupt_on_call(monkeypatch, Population, "train_epoch", 3,
                              (lambda: os.kill(os.getpid(), signal.SIGTERM)) if how == "SIGTERM" else None)
    with pytest.raises(RunInterrupted) as e:
        train_population(cfgs)
    assert e.value.reason == how
    for c in cfgs:
        s = RunSummary.read(RunDir.latest(c.logdir, c.run_name).path)
        assert s.status == "interrupted" and s.stop_reason == how and s.epochs_run == 2 and s.last_checkpoint
    assert signal.getsignal(signal.SIGTERM) is not None and calls["n"] == 3


def test_an_interrupt_while_the_members_open_their_folders_is_written_in_every_member(quick, monkeypatch):
    # Ctrl-C after the first member's files, before the others': no member folder is left saying "running" or
    # holding only a config (a helper's Ctrl-C 5 s into a compare left 7 "running" summaries and a bare folder)
    from lit_regularize.trainer import RunLogger

    cfgs = configs(quick, VARIANTS[:3])
    interrupt_on_call(monkeypatch, RunLogger, "save", 2)
    with pytest.raises(RunInterrupted):
        train_population(cfgs)
    from pathlib import Path

    for c in cfgs:
        s = RunSummary.read(Path(c.logdir) / c.run_name / "version_0")
        assert s.status == "interrupted" and s.stop_reason == "KeyboardInterrupt" and s.epochs_run == 0


def test_which_runs_train_together(quick):
    base = make_config(quick)
    cfgs = [base, base.replace(seed=9, l2=1e-3), base.replace(hidden=4), make_config({**quick, "reg": "batchnorm"}),
            make_config({**quick, "reg": "mixup"}), base.replace(dropout=0.3, lr=0.01), base.replace(strategy="ddp")]
    assert [joinable(c) for c in cfgs] == [True, True, True, False, False, True, False]
    assert groups(cfgs) == [[0, 1, 5], [2], [3], [4], [6]]
    assert groups(cfgs, size=2) == [[0, 1], [2], [3], [4], [5], [6]]
    assert groups(cfgs, size=1) == [[i] for i in range(len(cfgs))]
    # what may differ inside a population is declared with each setting (the MEMBER role); any other setting splits
    from lit_regularize.settings import MEMBER, with_role
    assert {"seed", "lr", "val_size", "max_epochs", "patience"} <= set(with_role(MEMBER))
    assert "batch_size" not in with_role(MEMBER) and "hidden" not in with_role(MEMBER)
    assert groups([base, base.replace(val_size=50, max_epochs=5, patience=1), base.replace(batch_size=16)]) == \
        [[0, 1], [2]]
    with pytest.raises(ValueError, match="share"):
        train_population([base, base.replace(optimizer="adam")])


def test_memory_is_k_models_and_one_copy_of_the_data(quick):
    cfgs = configs(quick, [dict(seed=s) for s in range(4)])
    members = [prepare(c) for c in cfgs]
    pop = Population(members, torch.device("cpu"))
    one = sum(p.numel() for p in members[0].template.parameters())
    stacked = sum(p.numel() for p in pop.stack.parameters())
    state = sum(v.numel() for s in pop.optimizer.state for v in s.values())
    assert stacked == 4 * one and state == 4 * one  # RMSprop: one square average per weight, as torch's
    sets = [m.dm.train_set for m in members]
    assert len({ds.cols.data_ptr() for ds in sets}) == 1  # every split views the same arrays
    assert len({ds.cols.data_ptr() for ds in [m.dm.val_set for m in members]}) == 1


def test_a_gpu_population_asks_for_the_gpu(quick, monkeypatch):
    cfg = make_config(quick)
    assert device_for(cfg) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_for(cfg.replace(accelerator="auto")) == torch.device("cuda")
    assert device_for(cfg.replace(accelerator="gpu", devices="1")) == torch.device("cuda")
    assert device_for(cfg.replace(accelerator="cpu")) == torch.device("cpu")


# -- sweep --population K ----------------------------------------------------------------------------------------

def _sweep(quick, **kw):
    from lit_regularize.sweeps.study import Sweep

    space = {"lr": {"type": "float", "low": 1e-3, "high": 2e-2, "log": True},
             "l2": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True}}
    return Sweep(study_name="pop", storage="unused", fixed=quick, space=space, **kw)


def test_a_sweep_population_tells_each_trial_its_own_run(quick):
    import optuna

    from lit_regularize.sweeps.population import run_trials

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3), pruner=optuna.pruners.NopPruner())
    seen = []
    run_trials(study, _sweep({**quick, "population": 3}), 3, [lambda st, t: seen.append(t.number)])
    assert seen == [0, 1, 2]
    for t in study.trials:
        s = RunSummary.read(t.user_attrs["run_dir"])
        assert t.state == optuna.trial.TrialState.COMPLETE and t.value == s.best_val_loss
        assert s.population["size"] == 3 and s.test is None  # a trial never touches the test set
        assert s.config["lr"] == t.params["lr"] and s.config["l2"] == t.params["l2"]
        assert sorted(t.intermediate_values) == list(range(1, s.epochs_run + 1))
        assert t.intermediate_values[s.best_epoch] == s.best_val_loss
        # the same trial one at a time: the same value
        alone = run(make_config({**quick, **t.params, "name": f"alone{t.number}"}), evaluate_test=False)
        assert abs(alone.best_val_loss - t.value) < TOL


def test_the_pruner_stops_members_of_a_sweep_population(quick):
    import optuna

    from lit_regularize.sweeps.population import run_trials

    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))  # any loss > 0 is pruned
    run_trials(study, _sweep({**quick, "max_epochs": 5, "population": 2}), 2)
    for t in study.trials:
        s = RunSummary.read(t.user_attrs["run_dir"])
        assert t.state == optuna.trial.TrialState.PRUNED and list(t.intermediate_values) == [1]
        assert (s.stop_reason, s.epochs_run, s.status) == ("pruned", 1, "completed")


def test_sweep_cli_population_runs_the_budget(quick, tmp_path, capsys):
    from lit_regularize.cli.sweep import main as sweep_main
    from conftest import flags

    space = tmp_path / "space.yaml"
    space.write_text("lr: {type: float, low: 0.001, high: 0.02, log: true}\n")
    args = [*flags({**quick, "max_epochs": 2}), "--space", str(space), "--study-name", "popcli", "--n-trials", "3",
            "--population", "2", "--storage", f"sqlite:///{tmp_path / 'o.db'}"]
    assert sweep_main(args) == 0
    import optuna

    study = optuna.load_study(study_name="popcli", storage=f"sqlite:///{tmp_path / 'o.db'}")
    assert len(study.trials) == 3 and all(t.state.is_finished() for t in study.trials)
    assert [t.user_attrs["population"] for t in study.trials] == [2, 2, 1]  # 2 + the last one alone


def test_fit_says_that_population_does_nothing_for_a_single_run(quick, capsys):
    from lit_regularize.cli.fit import main as fit_main
    from conftest import flags

    assert fit_main([*flags({**quick, "max_epochs": 1}), "--population", "4"]) == 0
    assert "--population has no effect on a single fit" in capsys.readouterr().err
    assert fit_main([*flags({**quick, "max_epochs": 1, "seed": 3}), "--pop", "4"]) == 0  # argparse's abbreviation
    assert "--population has no effect on a single fit" in capsys.readouterr().err
    assert fit_main([*flags({**quick, "max_epochs": 1, "seed": 2})]) == 0
    assert "--population" not in capsys.readouterr().err


def test_members_times_are_their_shares_of_the_population(quick):
    import time

    cfgs = configs(quick, [dict(seed=1, max_epochs=2), dict(seed=2, early_stopping=False)], max_epochs=5)
    t0 = time.perf_counter()
    a, b = train_population(cfgs)
    total = time.perf_counter() - t0
    assert a.epochs_run == 2 and b.epochs_run == 5  # the first left after 2 epochs: it had a smaller share
    assert a.wall_time < b.wall_time and a.wall_time + b.wall_time <= total
    assert a.wall_time + b.wall_time > 0.5 * total  # the population's time is accounted for, not lost
    assert sum(b.history["epoch_time"]) < b.wall_time


@pytest.mark.parametrize("spans", [[(0, 2), (2, 3), (3, 5)], [(0, 2), (2, 4), (4, 6)], [(0, 1), (1, 2), (2, 3)],
                                   [(0, 3)]], ids=["2-1-2", "2-2-2", "1-1-1", "3"])
def test_grouped_first_layer_equals_dense_products_and_gradients(spans):
    # groups of members with their own (padded) rows, one row empty: outputs and the gradient of the member-minor
    # table equal each member's dense X @ W + b (a wrong group offset, row or member mixes them up): groups of
    # mixed sizes, of equal sizes, all of one member (k-fold) and one group of all (a sweep population)
    from lit_regularize.population.stack import GroupedRows, MemberLinear, StackedMLP, padded_crow

    gen = torch.Generator().manual_seed(0)
    K, n_in, out, width = spans[-1][1], 30, 4, 6
    dense = [(torch.rand(n, n_in, generator=gen) < 0.2).float() for n in (6, 4, 5)[:len(spans)]]
    dense[0][2] = 0
    crows = [padded_crow(torch.cat([torch.zeros(1, dtype=torch.long), d.sum(1).long().cumsum(0)]), width)
             for d in dense]
    cols = [d.nonzero()[:, 1] for d in dense]
    layers = [[MemberLinear(torch.randn(out, n_in, generator=gen), torch.randn(out, generator=gen)),
               MemberLinear(torch.randn(1, out, generator=gen), torch.randn(1, generator=gen))] for _ in range(K)]
    stack = StackedMLP(layers, binary=True)
    got = stack.first_layer(GroupedRows(spans, crows, cols), width)
    up = torch.randn(K, width, out, generator=gen)
    (got * up).sum().backward()
    w = stack.weights[0].detach().clone().requires_grad_()
    x = torch.zeros(K, width, n_in)
    for (a, b), d in zip(spans, dense):
        x[a:b, :len(d)] = d
    want = torch.baddbmm(stack.biases[0].detach().unsqueeze(1), x, w)
    (want * up).sum().backward()
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(stack.weights[0].grad, w.grad, atol=1e-5)
    assert stack.weights[0].grad.stride() == stack.weights[0].stride()  # updates keep the table's layout


@pytest.mark.parametrize("reg", ["l1", "l2"])
def test_population_penalties_equal_each_members_own_penalty_and_gradient(reg):
    # the stacked penalty (summed in memory order, differentiated by hand) against autograd over each member's
    # own strength * norm(W), for the member-minor first layer and a member-major one; a member without the
    # penalty (strength 0) gets none of it
    from lit_regularize.population.stack import member_minor, weighted_term_sums
    from lit_regularize.regularizers import registered

    cls = registered()[reg]
    gen = torch.Generator().manual_seed(3)
    strengths = torch.tensor([1e-3, 0.0, 5e-2])
    for layout in (member_minor, torch.Tensor.contiguous):
        w = layout(torch.randn(3, 40, 6, generator=gen)).requires_grad_()
        up = torch.randn(3, generator=gen)
        got = weighted_term_sums(w, strengths, cls.term, cls.term_grad)
        (got * up).sum().backward()
        ref = w.detach().clone().requires_grad_()
        want = torch.stack([strengths[k] * cls.norm(ref[k]) for k in range(3)])
        (want * up).sum().backward()
        assert torch.allclose(got, want, rtol=1e-5)
        assert torch.allclose(w.grad, ref.grad, rtol=1e-5, atol=1e-9)
        assert float(w.grad[1].abs().max()) == 0.0 and float(w.grad[0].abs().max()) > 0


def test_a_penalty_plugin_that_defines_only_norm_still_trains_in_a_population():
    # a WeightPenalty subclass written against the older API (norm alone, no term/term_grad) gets each member's own
    # penalty: the same values and gradients as the built-in L1's stacked path
    from lit_regularize.penalties import WeightPenalty
    from lit_regularize.population.stack import MemberLinear, MemberView, StackedMLP
    from lit_regularize.regularizers import registered

    L1 = registered()["l1"]

    class NormOnly(L1):
        term, term_grad = WeightPenalty.term, WeightPenalty.term_grad

        @staticmethod
        def norm(w):
            return w.abs().sum()

    gen = torch.Generator().manual_seed(2)
    layers = [[MemberLinear(torch.randn(4, 9, generator=gen), torch.randn(4, generator=gen)),
               MemberLinear(torch.randn(1, 4, generator=gen), torch.randn(1, generator=gen))] for _ in range(3)]
    out = {}
    for cls in (L1, NormOnly):
        stack = StackedMLP(layers, binary=True)
        views = [MemberView(stack, k, 1e-3) for k in range(3)]
        regs = [cls(l1=1e-2), None, cls(l1=3e-2)]
        value = cls.population_penalty(regs, views, list(stack.weights))
        value.sum().backward()
        out[cls] = (value.detach(), stack.weights[0].grad.clone())
    assert torch.allclose(out[L1][0], out[NormOnly][0], rtol=1e-5) and float(out[L1][0][1]) == 0.0
    assert torch.allclose(out[L1][1], out[NormOnly][1], rtol=1e-5, atol=1e-9)


def test_members_that_share_batches_are_gathered_once(quick, monkeypatch):
    # seed-5 members without per-step draws of their own see the same batches: one group (gathered and multiplied
    # once); the dropout member leaves the group once its masks have moved its stream (that grouped members equal
    # their single runs: test_each_member_matches_the_single_run_with_its_seed, whose variants share a seed)
    variants = [dict(reg="l2", seed=5), dict(reg="none", seed=6), dict(reg="l1", seed=5, lr=3e-3),
                dict(reg="dropout", seed=5), dict(reg="none", seed=5)]
    cfgs = configs(quick, variants, max_epochs=3)
    seen: dict[str, list] = {"train": [], "eval": []}
    phase = ["train"]
    gather, evaluate = Population._gather_groups, Population.evaluate

    def spy(self, *args):
        out = gather(self, *args)
        seen[phase[0]].append(out[0].spans)
        return out

    def evaluating(self, *args):
        phase[0] = "eval"
        try:
            return evaluate(self, *args)
        finally:
            phase[0] = "train"
    monkeypatch.setattr(Population, "_gather_groups", spy)
    monkeypatch.setattr(Population, "evaluate", evaluating)
    train_population(cfgs)
    train = seen["train"]
    assert train[0] == [(0, 4), (4, 5)]  # seed 5: l2, l1, dropout, none (sharing order); seed 6 alone
    assert max(b - a for spans in train[len(train) // 2:] for a, b in spans) == 2  # later: l2 and l1 still share
    assert max(b - a for spans in seen["eval"] for a, b in spans) >= 4  # the seed-5 members' val/test rows


def test_a_run_of_a_study_cannot_set_the_population(quick, tmp_path):
    # `population:` inside one run of a study was silently ignored (a new-user trial): it is the study's setting
    import lit_regularize as lr
    from lit_regularize.errors import ConfigError

    settings = {k: v for k, v in quick.items() if k != "logdir"}
    with pytest.raises(ConfigError, match="'b' sets 'population', a setting of the whole study"):
        lr.compare({"a": {}, "b": {"reg": "l2", "population": 5}}, seeds=1, out=str(tmp_path / "cmp"),
                   logdir=quick["logdir"], **settings)
    assert not (tmp_path / "cmp").exists() and not (tmp_path / "logs").exists()


@pytest.mark.parametrize("population", [0, 1], ids=["together", "one-at-a-time"])
def test_a_compare_run_again_after_an_interrupt_resumes_its_runs(quick, tmp_path, monkeypatch, population):
    # Ctrl-C in epoch 3 of a compare; the same compare again trains its runs on from their last.ckpt in the same
    # folders (a new-user trial found them restarted from epoch 1 in new folders) and ends where an uninterrupted
    # compare ends; the interrupt's message says to run the command again. Members resume in a population, single
    # runs (Lightning checkpoints) on their own.
    import lit_regularize as lr
    from pytorch_lightning import Callback

    from lit_regularize import run as run_module

    study = {"none": {}, "l2": {"reg": "l2"}}
    settings = {**{k: v for k, v in quick.items() if k != "logdir"}, "max_epochs": 4, "early_stopping": False,
                "population": population}
    lr.compare(study, seeds=1, out=str(tmp_path / "straight"), **settings)
    calls = {"n": 0}
    if population == 0:
        calls = interrupt_on_call(monkeypatch, Population, "train_epoch", 3)
    else:
        class Cut(Callback):
            def on_train_epoch_start(self, trainer, pl_module):
                if trainer.current_epoch == 2:
                    raise KeyboardInterrupt
        original_run = run_module.run
        monkeypatch.setattr(run_module, "run", lambda cfg, *a, **k: original_run(cfg, [Cut()], *a[1:], **k))
    with pytest.raises(RunInterrupted, match="run the same command again to finish the study"):
        lr.compare(study, seeds=1, out=str(tmp_path / "cut"), **settings)
    monkeypatch.undo()
    lr.compare(study, seeds=1, out=str(tmp_path / "cut"), **settings)

    def summaries(out):
        found = sorted((tmp_path / out).rglob("summary.json"))
        return {RunSummary.read(p).config["reg"]: RunSummary.read(p) for p in found}
    again, want = summaries("cut"), summaries("straight")
    assert sorted(again) == sorted(want) == ["l2", "none"]  # one folder per run: no second version
    for reg, s in again.items():
        assert s.status == "completed" and s.run_dir.name == "version_0" and s.epochs_run == 4
        assert s.history["epoch"] == [1, 2, 3, 4]
        assert s.history["val_loss"] == pytest.approx(want[reg].history["val_loss"], rel=1e-4)
    assert calls["n"] == (3 if population == 0 else 0)
