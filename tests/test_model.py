"""The one LightningModule: capacity, penalties, dropout, BatchNorm, and the sparse first layer."""
from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn as nn

from lit_regularize.config import make_config
from lit_regularize.data.imdb import MultiHot
from lit_regularize.run import build_model
from lit_regularize.model import RegularizedMLP, count_parameters
from lit_regularize.sparse import MultiHotLinear


def imdb_model(**over) -> RegularizedMLP:
    cfg = make_config(over)
    return build_model(cfg, cfg.num_words, 2)


@pytest.mark.parametrize("over, expected", [
    ({"hidden": 16}, 160_305),
    ({"hidden": 4}, 40_029),
    ({"hidden": 512}, 5_383_681),
    ({"hidden": 16, "reg": "batchnorm"}, 160_369),
])
def test_parameter_counts_match_the_notebooks(over, expected):
    assert count_parameters(imdb_model(**over)) == expected


def test_network_is_built_from_the_config_in_order():
    m = imdb_model(hidden=8, layers=3, batchnorm=True, bn_position="after", dropout=0.2)
    kinds = [type(x).__name__ for x in m.net]
    assert kinds == ["MultiHotLinear", "ReLU", "BatchNorm1d", "Dropout"] + ["Linear", "ReLU", "BatchNorm1d",
                                                                           "Dropout"] * 2 + ["Linear"]
    m2 = imdb_model(hidden=8, layers=1, batchnorm=True)
    assert [type(x).__name__ for x in m2.net] == ["MultiHotLinear", "BatchNorm1d", "ReLU", "Linear"]


def test_mnist_model_has_ten_logits_and_cross_entropy():
    cfg = make_config({"data": "mnist"})
    m = build_model(cfg, 784, 10)
    x = torch.randn(5, 1, 28, 28)
    out = m(x)
    assert out.shape == (5, 10)
    y = torch.tensor([0, 1, 2, 3, 9])
    assert torch.isclose(m.data_loss(out, y), nn.functional.cross_entropy(out, y))
    assert count_parameters(m) == 784 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10


def test_penalties_are_lambda_times_norms_of_weights_only():
    m = imdb_model(hidden=8, reg="batchnorm", l1=0.01, l2=0.002)
    lins = m.linears()
    hidden_w = [lins[0].weight, lins[1].weight]
    expected = sum(0.01 * w.abs().sum() + 0.002 * w.pow(2).sum() for w in hidden_w)
    assert torch.allclose(m.penalty(), expected)
    # biases and BatchNorm parameters do not count: changing them leaves the penalty alone
    with torch.no_grad():
        for mod in m.net:
            if isinstance(mod, (nn.Linear, nn.BatchNorm1d)):
                mod.bias.add_(5.0)
            if isinstance(mod, nn.BatchNorm1d):
                mod.weight.mul_(3.0)
    assert torch.allclose(m.penalty(), expected)


def test_penalty_can_target_chosen_layers():
    m = imdb_model(hidden=8, l1=0.1, l2=0.5, l1_layers=[0], l2_layers=[1, 2])
    w0, w1, w2 = (lin.weight for lin in m.linears())
    expected = 0.1 * w0.abs().sum() + 0.5 * (w1.pow(2).sum() + w2.pow(2).sum())
    assert torch.allclose(m.penalty(), expected)
    assert imdb_model(hidden=8).penalty().item() == 0.0


def test_training_loss_adds_penalty_but_logs_data_loss():
    m = imdb_model(hidden=8, l2=0.01)
    x = torch.randint(0, 2, (8, 10000)).float()
    y = torch.tensor([0, 1, 0, 1, 1, 0, 1, 1])
    m.on_train_epoch_start()
    total = m.training_step((x[:6], y[:6]), 0)
    assert torch.isclose(total, m.data_loss(m(x[:6]), y[:6]) + m.penalty())  # the optimizer minimizes both
    m.training_step((x[6:], y[6:]), 1)  # a short last batch counts by its size
    logged = {}
    m.log = lambda name, value, *a, **k: logged.__setitem__(name, float(value))  # what Lightning receives
    m.on_train_epoch_end()
    assert logged["train/loss"] == pytest.approx(float(m.data_loss(m(x), y)), rel=1e-6)
    assert logged["train/penalty"] == pytest.approx(float(m.penalty()), rel=1e-6)


class DataLossMeter(pl.Callback):
    """Each epoch's mean data loss, penalty and accuracy, computed independently before every optimizer step."""

    def __init__(self) -> None:
        self.loss: list[float] = []
        self.penalty: list[float] = []
        self.acc: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._sums = [0.0, 0.0, 0, 0]

    @torch.no_grad()
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        x, y = batch
        logits = pl_module(x)
        self._sums[0] += float(nn.functional.binary_cross_entropy_with_logits(logits, y.float())) * len(y)
        self._sums[1] += float(sum(pl_module.hparams.l2 * lin.weight.square().sum() for lin in pl_module.linears()[:-1])) * len(y)
        self._sums[2] += len(y)
        self._sums[3] += int(((logits > 0).long() == y).sum())

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.loss.append(self._sums[0] / self._sums[2])
        self.penalty.append(self._sums[1] / self._sums[2])
        self.acc.append(self._sums[3] / self._sums[2])


def test_logged_train_loss_is_the_data_loss_of_a_real_run(quick):
    """With a penalty several times the data loss, summary history and TensorBoard train/loss equal the
    cross-entropy alone; train/penalty is the penalty (README: train/loss stays comparable with val/loss)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lit_regularize.run import run

    meter = DataLossMeter()
    s = run(make_config({**quick, "l2": 2.0, "lr": 1e-3, "name": "data_loss"}), extra_callbacks=[meter])
    h = s.history
    assert min(meter.penalty) > 2 * max(meter.loss)  # a penalty in train/loss could not hide
    assert h["train_loss"] == pytest.approx(meter.loss, rel=1e-5)
    assert h["train_penalty"] == pytest.approx(meter.penalty, rel=1e-5)
    assert h["train_acc"] == pytest.approx(meter.acc, abs=1e-6)  # over examples, the weights of that step
    acc = EventAccumulator(str(s.run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    for tag, expected in (("train/loss", meter.loss), ("train/penalty", meter.penalty), ("train/acc", meter.acc)):
        points = sorted((e.step, e.value) for e in acc.Scalars(tag))
        assert [p[0] for p in points] == [1, 2, 3] and [p[1] for p in points] == pytest.approx(expected, rel=1e-5)


def test_dropout_is_stochastic_in_train_and_deterministic_in_eval():
    torch.manual_seed(0)
    m = imdb_model(hidden=64, reg="dropout")
    x = torch.randint(0, 2, (4, 10000)).float()
    m.train()
    assert not torch.equal(m(x), m(x))
    m.eval()
    assert torch.equal(m(x), m(x))


def test_batchnorm_uses_running_statistics_in_eval():
    torch.manual_seed(0)
    m = imdb_model(hidden=8, reg="batchnorm")
    x = torch.randint(0, 2, (32, 10000)).float()
    m.train()
    m(x)
    bn = m.net[1]
    assert isinstance(bn, nn.BatchNorm1d) and bn.num_batches_tracked.item() == 1
    m.eval()
    single = m(x[:1])
    batch = m(x)
    # in eval a row's output does not depend on the other rows of the batch
    assert torch.allclose(single, batch[:1], atol=1e-6)
    assert bn.num_batches_tracked.item() == 1


def _random_csr(n, v, rng, empty=()):
    rows = [np.unique(rng.randint(0, v, rng.randint(1, 30))) for _ in range(n)]
    for i in empty:  # a document none of whose words is in the vocabulary
        rows[i] = np.zeros(0, np.int64)
    crow = torch.tensor(np.concatenate([[0], np.cumsum([len(r) for r in rows])]))
    return MultiHot(crow, torch.tensor(np.concatenate(rows)), v)


def test_sparse_first_layer_equals_dense_linear_outputs_and_gradients():
    torch.manual_seed(3)
    rng = np.random.RandomState(0)
    sparse = MultiHotLinear(500, 7)
    dense = nn.Linear(500, 7)
    dense.load_state_dict(sparse.state_dict())
    x = _random_csr(9, 500, rng, empty=(0, 4, 8))
    g = torch.randn(9, 7)
    (sparse(x) * g).sum().backward()
    (dense(x.to_dense()) * g).sum().backward()
    assert torch.allclose(sparse(x), dense(x.to_dense()), atol=1e-6)
    assert torch.allclose(sparse.weight.grad, dense.weight.grad, atol=1e-6)
    assert torch.allclose(sparse.bias.grad, dense.bias.grad, atol=1e-6)


def test_sparse_layer_initializes_like_linear_and_keeps_its_state_dict():
    torch.manual_seed(11)
    a = nn.Linear(300, 5)
    torch.manual_seed(11)
    b = MultiHotLinear(300, 5)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    c = MultiHotLinear(300, 5)
    c.load_state_dict(a.state_dict())
    assert torch.equal(c.weight, a.weight)


def test_sparse_and_dense_models_train_identically():
    rng = np.random.RandomState(1)
    x = _random_csr(16, 10000, rng)
    y = torch.tensor(rng.randint(0, 2, 16))
    losses = {}
    for fmt in ("sparse", "dense"):
        torch.manual_seed(5)
        m = imdb_model(hidden=8, l1=1e-3, l2=1e-3, reg="batchnorm", dropout=0.3, input_format=fmt)
        opt = m.configure_optimizers()
        out = []
        for _ in range(3):
            batch_x = x if fmt == "sparse" else x.to_dense()
            loss = m.data_loss(m(batch_x), y) + m.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
            out.append(loss.item())
        losses[fmt] = out
    assert np.allclose(losses["sparse"], losses["dense"], atol=1e-5)


def test_weight_decay_is_decoupled_and_spares_biases():
    m = imdb_model(hidden=8, weight_decay=0.1, lr=0.5)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    m.on_before_optimizer_step(None)
    for n, p in m.named_parameters():
        factor = (1 - 0.5 * 0.1) if n.endswith("weight") else 1.0
        assert torch.allclose(p, before[n] * factor), n


def _train_with(optimizer_cls, steps=12, **opt_args):
    """A sparse-input model trained on batches whose rare words leave exact zeros in the optimizer state."""
    torch.manual_seed(5)
    rng = np.random.RandomState(1)
    model = RegularizedMLP(300, 2, hidden=32)
    opt = optimizer_cls(model.parameters(), lr=1e-2, **opt_args)
    for _ in range(steps):
        x = _random_csr(16, 300, rng)
        y = torch.from_numpy(rng.randint(0, 2, 16))
        opt.zero_grad()
        model.data_loss(model(x), y).backward()
        opt.step()
    return model, opt


@pytest.mark.parametrize("opt_args", [{}, {"momentum": 0.9}, {"centered": True, "weight_decay": 1e-3}])
def test_rmsprop_matches_torch_bit_for_bit_and_shares_its_state(opt_args):
    from lit_regularize.optim import RMSprop

    ours, opt = _train_with(RMSprop, **opt_args)
    ref, ref_opt = _train_with(torch.optim.RMSprop, **opt_args)
    if not opt_args:  # the fast path: its state holds the exact zeros it exists for
        square_avg = opt.state[ours.net[0].weight]["square_avg"]
        assert (square_avg == 0).any() and (square_avg > 0).any()
    # Elementwise maths only, so equal in practice on any CPU; compared within 1e-6 (relative) all the same: a root
    # clamped at 1e-6 (~1e-3 added to denominators of ~1e-4) or a skipped step moves parameters far more.
    close = dict(rtol=1e-6, atol=1e-12)
    for a, b in zip(ours.state_dict().values(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, **close)
    ours_state, ref_state = opt.state_dict(), ref_opt.state_dict()
    assert ours_state["param_groups"] == ref_state["param_groups"]
    for k, v in ref_state["state"].items():
        assert v.keys() == ours_state["state"][k].keys()
        for n in v:
            assert v[n].dtype == ours_state["state"][k][n].dtype
            torch.testing.assert_close(v[n], ours_state["state"][k][n], **close)
    # a checkpoint of either loads into the other
    torch.optim.RMSprop(ours.parameters(), lr=1e-2, **opt_args).load_state_dict(ours_state)
    RMSprop(ref.parameters(), lr=1e-2, **opt_args).load_state_dict(ref_state)


def test_the_shipped_rmsprop_is_the_zero_safe_one():
    from lit_regularize.optim import RMSprop

    model = RegularizedMLP(20, 2, optimizer="rmsprop")
    assert type(model.configure_optimizers()) is RMSprop
