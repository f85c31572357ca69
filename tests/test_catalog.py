"""Issue 23: the modern regularizer catalog (label smoothing, max-norm, Gaussian noise, mixup, EMA / SWA weight
averaging, spectral norm) - each one's maths, its eval-mode invariance, checkpoints, resume, predict and export."""
from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import yaml

from conftest import InterruptAt
from lit_regularize import api
from lit_regularize.cli import fit
from lit_regularize.config import make_config
from lit_regularize.data.multihot import MultiHot
from lit_regularize.errors import RunInterrupted
from lit_regularize.export import export, plain_network
from lit_regularize.model import RegularizedMLP
from lit_regularize.predict import load, load_model
from lit_regularize.regularizers import presets
from lit_regularize.regularizers.averaging import AveragedWeights
from lit_regularize.rundir import RunDir
from lit_regularize.run import run

NEW_PRESETS = ("label_smoothing", "max_norm", "noise", "mixup", "ema", "swa", "spectral_norm")


def multi_hot(n: int = 12, width: int = 40, seed: int = 0) -> MultiHot:
    """A random CSR batch of n reviews over `width` word ids (3-8 words each)."""
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randperm(width, generator=g)[: int(torch.randint(3, 9, (1,), generator=g))].sort().values
            for _ in range(n)]
    crow = torch.tensor([0, *np.cumsum([len(r) for r in rows])])
    return MultiHot(crow, torch.cat(rows), width)


def fashion(quick: dict, mnist_dir: Path, **extra) -> dict:
    """Overrides for a seconds-long Fashion-MNIST run on the tiny idx files (300 images, 100 validate)."""
    over = {k: v for k, v in quick.items() if k not in ("num_words", "val_size")}
    return {**over, "data": "fashion_mnist", "data_dir": str(mnist_dir), "val_size": 100, "hidden": 16,
            "max_epochs": 3, **extra}


def hidden_weights(model: RegularizedMLP) -> list[torch.Tensor]:
    """The weights every hidden Linear layer computes with (a spectral-normed one's W / sigma), eval mode."""
    model.eval()
    with torch.no_grad():
        return [lin.weight.detach().clone() for lin in model.linears()[:-1]]


# -- the flags ----------------------------------------------------------------------------------------------------

def test_every_preset_is_in_help_and_print_config_round_trips(capsys):
    with pytest.raises(SystemExit):
        fit.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in NEW_PRESETS:  # --reg's help lists each preset with what it switches on: "mixup (mixup_alpha 0.2)"
        first = next(iter(presets()[name]))
        assert f"{name} ({first} " in text, name
    for flag_name in ("--label-smoothing EPS", "--max-norm C", "--noise-std S", "--noise-on {input,hidden,both}",
                      "--mixup-alpha A", "--weight-averaging {none,ema,swa}", "--ema-decay D", "--swa-start E",
                      "--spectral-norm"):
        assert flag_name in text, flag_name
    for name in NEW_PRESETS:
        with pytest.raises(SystemExit) as e:
            fit.main(["--reg", name, "--print-config"])
        assert e.value.code == 0
        printed = capsys.readouterr().out
        again = make_config(yaml.safe_load(printed))
        assert again == make_config({"reg": name}), name
        assert all(again.to_dict()[k] == v for k, v in presets()[name].items()), name


@pytest.mark.parametrize("argv, message", [
    (["--noise-on", "hidden"], "--noise-on hidden only applies with --noise-std"),
    (["--ema-decay", "0.9"], "--ema-decay only applies with --weight-averaging ema"),
    (["--reg", "ema", "--swa-start", "3"], "--swa-start only applies with --weight-averaging swa"),
    (["--spectral-norm", "--max-norm", "2"], "--max-norm does not apply with --spectral-norm"),
    (["--label-smoothing", "1.5"], "--label-smoothing must be in [0, 1)"),
    (["--reg", "ema", "--ema-decay", "0"], "--ema-decay must be in (0, 1)"),
])
def test_settings_that_cannot_work_are_one_error_line(argv, message, tmp_path, capsys):
    assert fit.main([*argv, "--logdir", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "logs").exists()


# -- label smoothing ----------------------------------------------------------------------------------------------

def confident(model: RegularizedMLP) -> None:
    """Output biases far from 0, so smoothed and plain targets give clearly different losses."""
    with torch.no_grad():
        model.linears()[-1].bias.copy_(torch.linspace(3.0, -3.0, model.linears()[-1].out_features))


def test_label_smoothing_loss_is_the_formula_and_val_loss_stays_plain():
    eps = 0.2
    torch.manual_seed(0)
    # binary (one logit): targets y(1 - eps) + eps / 2
    model = RegularizedMLP(40, 2, hidden=8, label_smoothing=eps)
    confident(model)
    x, y = multi_hot(), torch.tensor([1.] * 10 + [0.] * 2)  # mostly 1: smoothing shifts the mean loss
    loss = model.training_step((x, y), 0).detach()
    p = torch.sigmoid(model(x)).detach()
    t = y * (1 - eps) + eps / 2
    formula = -(t * p.log() + (1 - t) * (1 - p).log()).mean()
    # float32 logs: ~1e-7 apart; an unsmoothed loss or eps / C of the wrong C is > 1e-2 away
    assert float(loss) == pytest.approx(float(formula), rel=1e-5)
    plain = F.binary_cross_entropy_with_logits(model(x), y).item()
    assert abs(plain - float(formula)) > 1e-2  # the test can tell the two apart
    metrics = model.train_epoch_metrics()
    assert metrics["train/loss"] == pytest.approx(plain, rel=1e-5)
    assert metrics["train/smoothed_loss"] == pytest.approx(float(formula), rel=1e-5)
    model.eval()
    model.validation_step((x, y), 0)
    assert float(model.val_loss.compute()) == pytest.approx(plain, rel=1e-5)
    # multiclass: q = onehot(1 - eps) + eps / C
    model = RegularizedMLP(784, 10, hidden=8, label_smoothing=eps)
    confident(model)
    x, y = torch.randn(16, 1, 28, 28), torch.arange(16) % 10
    loss = model.training_step((x, y), 0).detach()
    logp = torch.log_softmax(model(x), -1).detach()
    q = F.one_hot(y, 10).float() * (1 - eps) + eps / 10
    assert float(loss) == pytest.approx(float(-(q * logp).sum(-1).mean()), rel=1e-5)
    assert abs(float(loss) - float(F.cross_entropy(model(x), y))) > 1e-2
    model.eval()
    model.validation_step((x, y), 0)
    assert float(model.val_loss.compute()) == pytest.approx(float(F.cross_entropy(model(x), y)), rel=1e-5)


# -- max-norm -----------------------------------------------------------------------------------------------------

def test_max_norm_bound_holds_for_every_hidden_unit_after_training(quick):
    c = 0.3  # below the norms of these layers at initialization (~0.6) and after training without it
    s = api.fit(**{**quick, "max_norm": c, "lr": 0.01, "max_epochs": 2, "early_stopping": False})
    for ckpt in (s.path(s.best_checkpoint), s.path(s.last_checkpoint)):
        model = load_model(ckpt)
        for i, w in enumerate(hidden_weights(model)):
            norms = w.norm(dim=1)  # one row = one unit's incoming weights (the sparse first layer's too)
            assert float(norms.max()) <= c * (1 + 1e-5), (ckpt.name, i)
            assert float(norms.max()) > 0.9 * c, (ckpt.name, i)  # the bound was reached, so it was enforced
        assert float(model.linears()[-1].weight.norm(dim=1).max()) > c  # the output layer is not constrained


# -- noise and mixup: training only ---------------------------------------------------------------------------------

def test_noise_and_mixup_change_nothing_in_eval():
    model = RegularizedMLP(784, 10, hidden=16, noise_std=0.5, noise_on="both", mixup_alpha=0.4)
    x = torch.randn(20, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
        plain = plain_network(model, binary=False)(x.flatten(1))
    assert torch.equal(first, second)  # no random draw in eval mode
    # the network without its noise layers (export drops them): same numbers, float32 rounding aside
    assert [type(m).__name__ for m in plain_network(model, False)] == ["Linear", "ReLU", "Linear", "ReLU", "Linear",
                                                                      "Softmax"]
    assert torch.allclose(torch.softmax(first, -1), plain, atol=1e-6)
    model.train()  # while training, the hidden noise does change the output (so the checks above can fail)
    with torch.no_grad():
        assert not torch.allclose(model(x), first, atol=1e-3)
    # predict uses the model in eval mode: covered with real runs in test_resume_predict_and_export_of_each


def test_input_noise_on_a_multi_hot_batch_is_added_to_its_dense_rows():
    model = RegularizedMLP(40, 2, hidden=8, noise_std=0.5)
    (reg,) = model.regularizers
    x = multi_hot()
    torch.manual_seed(3)
    noisy, _ = reg.train_batch(model, x, torch.zeros(12))
    torch.manual_seed(3)
    expected = x.to_dense() + 0.5 * torch.randn(12, 40)
    # the same draws: equal up to float rounding; another std, or noise on the CSR ids, is ~0.5 away
    assert noisy.shape == (12, 40) and torch.allclose(noisy, expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_mixup_loss_is_the_mixed_cross_entropy_of_a_fixed_batch(kind):
    alpha = 0.4
    torch.manual_seed(0)
    if kind == "binary":
        model = RegularizedMLP(40, 2, hidden=8, mixup_alpha=alpha)
        x, y = multi_hot(), torch.tensor([0., 1., 1.] * 4)
        dense = x.to_dense()
    else:
        model = RegularizedMLP(784, 10, hidden=8, mixup_alpha=alpha)
        dense = torch.randn(12, 1, 28, 28)
        x, y = dense, torch.arange(12) % 10
    torch.manual_seed(5)
    loss = model.training_step((x, y), 0).detach()
    torch.manual_seed(5)  # the same draws: lambda ~ Beta(alpha, alpha), then one permutation of the batch
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(12)
    logits = model(lam * dense + (1 - lam) * dense[perm])
    if kind == "binary":
        ce = lambda t: F.binary_cross_entropy_with_logits(logits, t)  # noqa: E731
    else:
        ce = lambda t: F.cross_entropy(logits, t)  # noqa: E731
    mixed = lam * ce(y) + (1 - lam) * ce(y[perm])  # Zhang et al. (2018), eq. 1's loss
    assert 0.01 < lam < 0.99 and not torch.equal(perm, torch.arange(12))  # a real mix: the check can fail
    # float32: ~1e-7 apart; the unmixed loss, or the wrong lambda or partner, differs by > 1e-3 here
    assert float(loss) == pytest.approx(float(mixed), rel=1e-5)
    assert abs(float(ce(y)) - float(mixed)) > 1e-3
    # train/acc counts a mixed example as right when the prediction is its dominant label
    dominant = y if lam >= 0.5 else y[perm]
    preds = (logits > 0).long() if kind == "binary" else logits.argmax(-1)
    assert model.train_epoch_metrics()["train/acc"] == pytest.approx(float((preds == dominant.long()).float().mean()))


# -- weight averaging -----------------------------------------------------------------------------------------------

def test_ema_weights_equal_the_closed_form_average_of_a_scripted_weight_sequence():
    decay = 0.8
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    module = types.SimpleNamespace(net=net)
    cb = AveragedWeights("ema", decay=decay)
    cb.setup(None, module, "fit")
    ws = [torch.full((2, 3), float(k)) + torch.arange(6.).reshape(2, 3) * k ** 2 for k in range(1, 6)]
    for w in ws:
        with torch.no_grad():
            net[0].weight.copy_(w)
        cb.on_train_batch_end(None, module, None, None, 0)
    n = len(ws)
    # A_1 = w_1, A_k = d A_(k-1) + (1 - d) w_k  =>  A_n = d^(n-1) w_1 + sum_(k>=2) (1 - d) d^(n-k) w_k
    closed = decay ** (n - 1) * ws[0] + sum((1 - decay) * decay ** (n - k) * ws[k - 1] for k in range(2, n + 1))
    got = cb.average.module[0].weight
    assert torch.allclose(got, closed, rtol=1e-6)
    assert not torch.allclose(got, sum(ws) / n, rtol=1e-3)  # not an equal (SWA) average, not the last weights


class Snapshots(pl.Callback):
    """The averaged and the trained weights at every validation (the model holds the average then)."""

    def __init__(self) -> None:
        self.average: list[dict] = []
        self.trained: list[dict] = []
        self.held: list[dict] = []

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        cb = next(c for c in trainer.callbacks if isinstance(c, AveragedWeights))
        self.average.append({k: v.clone() for k, v in cb.average.module.state_dict().items()})
        self.trained.append({k: v.clone() for k, v in (cb.trained or pl_module.net.state_dict()).items()})
        self.held.append({k: v.clone() for k, v in pl_module.net.state_dict().items()})


@pytest.mark.parametrize("reg", ["ema", "swa"])
def test_validation_checkpoint_test_predict_and_export_use_the_averaged_weights(reg, quick, mnist_dir, tmp_path):
    # 200 training images in batches of 40: update_bn's mean of 5 equal batch means is the training-set mean
    over = fashion(quick, mnist_dir, reg=reg, max_epochs=3, early_stopping=False, batchnorm=True, lr=0.01,
                   batch_size=40, **({"swa_start": 2} if reg == "swa" else {}))
    spy = Snapshots()
    s = run(make_config(over), extra_callbacks=[spy])
    first = 1 if reg == "swa" else 0  # SWA validates the trained weights until its first average (epoch 2)
    assert all(torch.equal(spy.held[i][k], spy.average[i][k]) for i in range(first, 3) for k in spy.held[i])
    if reg == "swa":  # epoch 1: no average yet, validation saw the trained weights
        assert all(torch.equal(spy.held[0][k], spy.trained[0][k]) for k in spy.held[0])
    e = s.best_epoch - 1
    best = torch.load(s.path(s.best_checkpoint), weights_only=True)["state_dict"]
    if e >= first:
        assert all(torch.equal(best[f"net.{k}"], v) for k, v in spy.average[e].items())  # the validated weights
    w = "0.weight"
    assert not torch.allclose(spy.average[-1][w], spy.trained[-1][w], atol=1e-4)  # averaging changed something
    last = torch.load(s.path(s.last_checkpoint), weights_only=True)["state_dict"]
    assert all(torch.equal(last[f"net.{k}"], v) for k, v in spy.average[-1].items())
    # export and predict (of last.ckpt: the average of the last epoch, which test_last scored) use those weights
    ts = torch.jit.load(str(export(s.run_dir, "torchscript", tmp_path / f"{reg}.pt", last=True)))
    assert torch.equal(ts.state_dict()["0.weight"], spy.average[-1][w])
    x = torch.randn(10, 784)
    assert torch.allclose(ts(x), load(s.run_dir, last=True).probabilities(x), atol=1e-6)
    if reg == "swa":  # BatchNorm statistics recomputed for the averaged weights over the training set
        from lit_regularize.run import build_datamodule

        dm = build_datamodule(make_config(over))
        dm.setup("fit")
        xs, _ = dm.train_set.__getitems__(list(range(len(dm.train_set))))
        model = load_model(s.path(s.last_checkpoint))
        with torch.no_grad():
            pre_bn = model.net[0](xs)  # BatchNorm comes right after Linear 0
        # float32 sums: ~1e-6; statistics carried over from training (momentum 0.1, the trained weights) are
        # ~1e-2 away
        assert torch.allclose(model.net[1].running_mean, pre_bn.mean(0), atol=1e-4)
        assert not torch.allclose(spy.trained[-1]["1.running_mean"], pre_bn.mean(0), atol=1e-3)


# -- spectral norm ----------------------------------------------------------------------------------------------------

def test_spectral_norm_keeps_each_hidden_layers_largest_singular_value_at_one_and_exports_plain(quick):
    # Gaussian noise on the inputs and hidden units too: the exported network must drop its layers
    s = api.fit(**{**quick, "spectral_norm": True, "noise_std": 0.3, "noise_on": "both", "lr": 0.01, "max_epochs": 3,
                   "early_stopping": False})
    path = s.path(s.best_checkpoint)
    state = torch.load(path, weights_only=True)["state_dict"]
    assert "net.0.parametrizations.weight.original" in state  # the parametrized layer's own state dict
    model = RegularizedMLP.load_from_checkpoint(path)  # alone: the checkpoint carries everything
    for i, w in enumerate(hidden_weights(model)):
        # settled power iteration: ~1e-4 from 1; a one-step estimate lagging training was 8 % off, no norm > 1.5
        assert float(torch.linalg.matrix_norm(w, 2)) == pytest.approx(1.0, abs=0.01), i
    out_w = model.linears()[-1].weight.detach()
    assert float(torch.linalg.matrix_norm(out_w, 2)) != pytest.approx(1.0, abs=0.05)  # output layer untouched
    net = plain_network(model, binary=True)
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU", "Linear", "ReLU", "Linear", "Sigmoid", "Flatten"]
    plain = [m.weight for m in net if isinstance(m, torch.nn.Linear)][:-1]
    assert all(torch.equal(a, b) for a, b in zip(plain, hidden_weights(model)))
    x = multi_hot(width=40)
    with torch.no_grad():  # the sparse first layer as a plain Linear on the dense rows
        assert torch.allclose(net(x.to_dense()), torch.sigmoid(model(x)), atol=1e-6)
    # compare's weight figures and statistics read the same weights from the checkpoint
    from lit_regularize.plots import checkpoint_weights

    read = checkpoint_weights(path)
    assert len(read) == 3 and all(np.allclose(a, b.numpy(), atol=1e-6) for a, b in zip(read, hidden_weights(model)))


def test_spectral_norm_estimate_is_settled_when_an_epochs_training_ends():
    torch.manual_seed(0)
    model = RegularizedMLP(784, 10, hidden=16, spectral_norm=True)
    (settle,) = [cb for r in model.regularizers for cb in r.callbacks()]
    lin = model.linears()[1]
    with torch.no_grad():  # the weights move (as training moves them) while the sigma estimate stays behind
        lin.parametrizations.weight.original.add_(torch.randn(16, 16))
    sigma = lambda: float(torch.linalg.matrix_norm(hidden_weights(model)[1], 2))  # noqa: E731
    assert sigma() > 1.05  # eval mode divides by the stale estimate
    model.train()
    settle.on_train_epoch_start(None, model)
    settle.on_train_epoch_end(None, model)
    assert model.training  # settling leaves the mode as it was
    # converged power iteration: ~1e-6 from 1 (float32); one step per batch left it 5 % or more off here
    assert sigma() == pytest.approx(1.0, abs=1e-4)


def test_weight_histograms_read_spectral_normed_weights_without_stepping_their_estimate(tmp_path):
    from pytorch_lightning.loggers import TensorBoardLogger

    from lit_regularize.tb_extras import TensorBoardExtras

    torch.manual_seed(0)
    model = RegularizedMLP(784, 10, hidden=16, spectral_norm=True)
    with torch.no_grad():  # weights the estimate has not caught up with: one more power iteration would move it
        model.linears()[1].parametrizations.weight.original.add_(torch.randn(16, 16))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = types.SimpleNamespace(is_global_zero=True, loggers=[TensorBoardLogger(str(tmp_path))], current_epoch=0)
    TensorBoardExtras(every=1).on_train_epoch_end(trainer, model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # u, v untouched
    assert model.training


# -- every new regularizer: resume, predict, export ------------------------------------------------------------------

# Two runs hold all seven (swa / ema and spectral norm / max-norm exclude each other); a regularizer that broke
# resume, predict or export breaks its run's checks.
COMBINED = {"ema+label_smoothing+max_norm+noise+mixup": {"reg": "ema", "label_smoothing": 0.1, "max_norm": 3.0,
                                                          "noise_std": 0.1, "noise_on": "both", "mixup_alpha": 0.2},
            "swa+spectral_norm+batchnorm": {"reg": "swa", "swa_start": 1, "spectral_norm": True, "batchnorm": True}}


@pytest.mark.parametrize("settings", COMBINED.values(), ids=COMBINED.keys())
def test_resume_predict_and_export_of_each(settings, quick, mnist_dir, tmp_path):
    over = fashion(quick, mnist_dir, max_epochs=3, early_stopping=False, deterministic=True, **settings)
    straight = run(make_config({**over, "name": "straight"}))
    cfg = make_config({**over, "name": "cut"})
    with pytest.raises(RunInterrupted):
        run(cfg, extra_callbacks=[InterruptAt(2)])
    resumed = run(cfg, resume=RunDir.latest(cfg.logdir, "cut"))
    # same process and kernels: ~1e-7 apart; a resume that lost the average, a random draw (noise, mixup) or the
    # trained weights behind the average moves these by > 1e-3
    for curve in ("train_loss", "val_loss", "val_acc"):
        assert resumed.history[curve] == pytest.approx(straight.history[curve], rel=1e-6), curve
    for which in ("best", "last"):
        assert resumed.test[which] == pytest.approx(straight.test[which], rel=1e-6), which
    a = torch.load(resumed.path(resumed.last_checkpoint), weights_only=True)
    b = torch.load(straight.path(straight.last_checkpoint), weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.allclose(v.float(), b["state_dict"][k].float(), atol=1e-6) for k, v in a["state_dict"].items())
    # predict and export of the run: the same probabilities, no noise, no parametrization, no lit_regularize
    ts = torch.jit.load(str(export(straight.run_dir, "torchscript", tmp_path / "m.pt")))
    assert "lit_regularize" not in ts.code and "parametriz" not in ts.code
    images = np.random.RandomState(0).randint(0, 256, (6, 28, 28)).astype(np.uint8)
    predictor = load(straight.run_dir)
    results, again = predictor.predict(images), predictor.predict(images)
    assert [r["probs"] for r in results] == [r["probs"] for r in again]  # no random draw when predicting
    _, dataset = predictor.read(images)  # the images as predict encodes them: normalized as in training
    x, _ = dataset.__getitems__(list(range(len(dataset))))
    assert np.allclose([r["probs"] for r in results], ts(x.reshape(len(x), -1)).numpy(), atol=1e-6)


# -- sweeps, studies, reports ------------------------------------------------------------------------------------------

def test_a_two_trial_sweep_over_the_new_choices_runs(quick, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"reg": {"type": "categorical", "choices": ["ema", "swa", "mixup"]}}))
    study = api.sweep(n_trials=2, space=space, study_name="cat", storage=f"sqlite:///{tmp_path / 's.db'}",
                      sampler="random", **{**quick, "max_epochs": 1})
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2
    for t in done:
        strength = {"ema": "ema_decay", "swa": "swa_start", "mixup": "mixup_alpha"}[t.params["reg"]]
        assert strength in t.params  # sampled from the regularizer's own search entry
        assert t.user_attrs["config"][strength] == t.params[strength]


def test_shipped_space_and_studies_hold_the_catalog():
    from lit_regularize.comparison import load_study, varying_keys
    from lit_regularize.sweeps.space import check_space, default_space, load_space, parse_space

    params = {p.name: p for p in parse_space(load_space(default_space()))}
    assert set(NEW_PRESETS) <= set(params["reg"].choices)
    for name in ("label_smoothing", "max_norm", "noise_std", "mixup_alpha", "ema_decay", "swa_start"):
        assert params[name].when and params[name].when[0][0] == "reg", name  # only when its preset is chosen
    check_space(list(params.values()), {"max_epochs": 2})  # every bound valid where it is sampled
    for name, data in (("modern_imdb", "imdb"), ("modern_fmnist", "fashion_mnist")):
        study = load_study(name)
        regs = {m.get("reg", "none") for m in study.members.values()}
        assert regs == {"none", "l2", "dropout", *NEW_PRESETS}, name
        assert {m.get("data", "imdb") for m in study.members.values()} == {data}
        assert {"label_smoothing", "mixup_alpha", "weight_averaging"} <= varying_keys(study.members)


def test_tensorboard_shows_the_smoothed_loss_and_the_new_settings_as_hparams(quick):
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    s = api.fit(**{**quick, "reg": "label_smoothing", "max_epochs": 1})
    events = EventAccumulator(str(s.log_dir))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert "train/smoothed_loss" in scalars and "train/loss" in scalars and "val/loss" in scalars
    records = [plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
               for f in sorted(Path(s.log_dir).glob("events.out.tfevents.*"))
               for e in event_file_loader.EventFileLoader(str(f)).Load() for v in e.summary.value
               if v.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME]
    (session,) = [r.session_start_info for r in records if r.HasField("session_start_info")]
    assert session.hparams["label_smoothing"].number_value == pytest.approx(0.1)
    assert "mixup_alpha" not in session.hparams  # only the regularizers the run uses
    from lit_regularize.regularizers import enabled_settings

    shown = {reg: enabled_settings(make_config({"reg": reg}).to_dict()) for reg in ("ema", "swa", "batchnorm")}
    # each run's strength (also at its default), not the other kind's, nor BatchNorm's default position
    assert shown == {"ema": ["weight_averaging", "ema_decay"], "swa": ["weight_averaging", "swa_start"],
                     "batchnorm": ["batchnorm"]}
