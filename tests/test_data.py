"""DataModules: keras IMDB semantics, multi-hot rows, splits, MNIST subsets and augmentation."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import no_val_size
from lit_regularize.config import make_config
from lit_regularize.run import build_datamodule
from lit_regularize.data.imdb import load_imdb
from lit_regularize.data.multihot import MultiHot
from lit_regularize.data.mnist import balanced_subset
from lit_regularize.errors import DataError


def vectorize_sequences(sequences, dimension):
    """The notebooks' encoder."""
    results = np.zeros((len(sequences), dimension))
    for i, sequence in enumerate(sequences):
        results[i, sequence] = 1.
    return results


def keras_load_data(path, num_words):
    """keras.datasets.imdb.load_data's transformation, written out."""
    f = np.load(path, allow_pickle=True)
    rng = np.random.RandomState(113)
    out = {}
    for split in ("train", "test"):
        x, y = f[f"x_{split}"], f[f"y_{split}"]
        idx = np.arange(len(x))
        rng.shuffle(idx)
        x = [[1] + [w + 3 for w in s] for s in x[idx]]
        out[split] = ([[w if w < num_words else 2 for w in s] for s in x], y[idx])
    return out


def test_multi_hot_rows_equal_the_notebooks_vectorize_sequences(imdb_dir):
    ref = keras_load_data(imdb_dir / "imdb.npz", 40)
    arrays = load_imdb(str(imdb_dir / "imdb.npz"), 40)
    for split in ("train", "test"):
        seqs, labels = ref[split]
        a = arrays[split]
        dense = MultiHot(a.crow, a.cols, 40).to_dense().numpy()
        assert np.array_equal(dense, vectorize_sequences(seqs, 40))
        assert np.array_equal(a.labels.numpy(), labels.astype(np.float32))


def test_imdb_batches_are_gathered_in_bulk_in_both_formats(imdb_dir, quick):
    for fmt in ("sparse", "dense"):
        dm = build_datamodule(make_config({**quick, "input_format": fmt}))
        dm.setup()
        x, y = next(iter(dm.train_dataloader()))
        assert len(y) == 32
        dense = x.to_dense() if isinstance(x, MultiHot) else x
        assert dense.shape == (32, 40) and dense.dtype == torch.float32
        assert set(torch.unique(dense).tolist()) <= {0.0, 1.0}
        assert (dense[:, 1] == 1).all()  # start char in every review
    assert isinstance(x, torch.Tensor)


def test_holdout_split_is_seeded_disjoint_and_sized(imdb_dir, quick):
    a = build_datamodule(make_config(quick)); a.setup()
    b = build_datamodule(make_config(quick)); b.setup()
    c = build_datamodule(make_config({**quick, "seed": 1})); c.setup()
    assert np.array_equal(a.val_idx, b.val_idx) and not np.array_equal(a.val_idx, c.val_idx)
    assert len(a.val_idx) == 60 and len(a.train_idx) == 240 - 60
    assert not set(a.val_idx) & set(a.train_idx)
    d = build_datamodule(make_config({**quick, "train_size": 50})); d.setup()
    assert len(d.train_idx) == 50 and np.array_equal(d.val_idx, a.val_idx)


def test_val_on_test_and_kfold_splits(imdb_dir, quick):
    dm = build_datamodule(make_config({**no_val_size(quick), "val_on_test": True})); dm.setup()
    assert dm.val_set is dm.test_set and len(dm.train_idx) == 240
    folds = []
    for k in range(4):
        f = build_datamodule(make_config({**no_val_size(quick), "train_size": 100, "kfold": 4, "fold": k})); f.setup()
        assert len(f.val_idx) == 25 and len(f.train_idx) == 75
        folds.append(set(f.val_idx.tolist()))
    assert set().union(*folds) == set(f.train_idx.tolist()) | folds[-1]
    assert sum(len(s) for s in folds) == 100


def test_missing_imdb_file_is_one_clear_error(tmp_path, quick):
    with pytest.raises(DataError, match=r"imdb.npz.*--data-dir"):
        build_datamodule(make_config({**quick, "data_dir": str(tmp_path / "empty")})).setup()


def test_train_size_larger_than_data_is_an_error(quick):
    with pytest.raises(DataError, match="--train-size 5000 is larger"):
        build_datamodule(make_config({**quick, "train_size": 5000})).setup()


def test_balanced_subset_is_balanced_seeded_and_disjoint_from_rest():
    labels = np.repeat(np.arange(10), 30)
    a, rest = balanced_subset(labels, 7, seed=1)
    b, _ = balanced_subset(labels, 7, seed=1)
    c, _ = balanced_subset(labels, 7, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(labels[a]).tolist() == [7] * 10
    assert not set(a) & set(rest) and len(a) + len(rest) == 300
    with pytest.raises(DataError, match="--n-per-class 31"):
        balanced_subset(labels, 31, seed=0)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_subset_split_and_normalization(mnist_dir, tmp_path, name):
    cfg = make_config({"data": name, "data_dir": str(mnist_dir), "n_per_class": 10, "val_size": 50,
                       "logdir": str(tmp_path)})
    dm = build_datamodule(cfg)
    dm.setup()
    labels = dm.arrays["train"][1].numpy()
    assert np.bincount(labels[dm.train_idx]).tolist() == [10] * 10
    assert len(dm.val_idx) == 50 and not set(dm.val_idx) & set(dm.train_idx)
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (50, 1, 28, 28) and x.dtype == torch.float32


def test_augmentation_touches_only_the_training_split(mnist_dir, tmp_path):
    base = {"data": "mnist", "data_dir": str(mnist_dir), "n_per_class": 10, "val_size": 50, "logdir": str(tmp_path)}
    plain = build_datamodule(make_config(base)); plain.setup()
    aug = build_datamodule(make_config({**base, "augment": True})); aug.setup()
    pos = list(range(8))
    batch = aug.train_set.__getitems__(pos)
    assert torch.equal(batch[0], plain.train_set.__getitems__(pos)[0])  # datasets are never augmented
    aug.trainer = plain.trainer = SimpleNamespace(training=True)  # a training batch after transfer
    first = aug.on_after_batch_transfer(batch, 0)[0]
    assert not torch.equal(first, batch[0]) and first.shape == batch[0].shape
    assert torch.equal(plain.on_after_batch_transfer(batch, 0)[0], batch[0])
    # two draws of the same training images differ: augmentation is random per batch
    assert not torch.equal(aug.on_after_batch_transfer(batch, 0)[0], first)
    aug.trainer = SimpleNamespace(training=False)  # validation and test batches are never augmented
    assert torch.equal(aug.on_after_batch_transfer(batch, 0)[0], batch[0])


def test_mnist_batches_are_normalized_with_the_dataset_statistics(mnist_dir, tmp_path):
    dm = build_datamodule(make_config({"data": "fashion_mnist", "data_dir": str(mnist_dir), "logdir": str(tmp_path),
                                       "n_per_class": 10, "val_size": 50}))
    dm.setup()
    images = dm.arrays["train"][0][torch.as_tensor(dm.train_idx)].float() / 255
    x, _ = dm.train_set.__getitems__(list(range(len(dm.train_set))))
    assert (dm.mean, dm.std) == (0.2860, 0.3530)  # Fashion-MNIST's training mean and std (README)
    assert torch.allclose(x.squeeze(1), (images - 0.2860) / 0.3530, atol=1e-6)


def test_missing_mnist_files_are_one_clear_error(tmp_path):
    cfg = make_config({"data": "mnist", "data_dir": str(tmp_path / "nothing"), "logdir": str(tmp_path)})
    with pytest.raises(DataError, match="idx files not found.*--data-dir"):
        build_datamodule(cfg).setup()


def test_iterated_kfold_reshuffles_per_repeat():
    from lit_regularize.data.base import kfold_split

    pool = np.arange(40)
    first = [kfold_split(pool, 4, f, seed=3)[1] for f in range(4)]
    second = [kfold_split(pool, 4, f, seed=3)[1] for f in range(4, 8)]
    for folds in (first, second):  # each repeat's validation chunks partition the pool
        assert sorted(np.concatenate(folds).tolist()) == list(range(40))
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))
    train, val = kfold_split(pool, 4, 5, seed=3)
    assert not set(train) & set(val) and len(train) + len(val) == 40


def write_marked_imdb(folder, n_train: int = 300, n_test: int = 100, seed: int = 3):
    """imdb.npz whose every review carries its label: word 5 iff positive, word 6 iff negative (columns 8 and 9
    after keras' offset of 3); the other words are noise from 10..49."""
    rng = np.random.RandomState(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.randint(0, 2, n)
        x = np.empty(n, dtype=object)
        for i in range(n):
            words = rng.randint(10, 50, rng.randint(3, 15)).tolist()
            words.insert(rng.randint(0, len(words) + 1), 5 if y[i] else 6)
            x[i] = words
        arrays.update({f"x_{split}": x, f"y_{split}": y.astype(np.int64)})
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "imdb.npz", **arrays)
    return folder


@pytest.mark.parametrize("fmt", ["sparse", "dense"])
def test_imdb_rows_stay_with_their_labels_in_every_loader(tmp_path, fmt):
    """Shuffled training batches (gathered rows), sequential validation and test batches: each row's marker word
    agrees with its label, and a training epoch sees every training row once."""
    data = write_marked_imdb(tmp_path / f"marked_{fmt}")
    dm = build_datamodule(make_config({"data_dir": str(data), "num_words": 60, "val_size": 70, "batch_size": 16,
                                       "input_format": fmt, "logdir": str(tmp_path / "logs")}))
    dm.setup()
    loaders = {"train": dm.train_dataloader(), "val": dm.val_dataloader(), "test": dm.test_dataloader()}
    sizes = {"train": 230, "val": 70, "test": 100}
    for name, loader in loaders.items():
        seen, positives = 0, 0
        for x, y in loader:
            assert isinstance(x, MultiHot) == (fmt == "sparse")
            dense = x.to_dense() if isinstance(x, MultiHot) else x
            assert torch.equal(dense[:, 8], y.float()) and torch.equal(dense[:, 9], 1 - y.float()), name
            seen, positives = seen + len(y), positives + int(y.sum())
        assert seen == sizes[name] and 0 < positives < seen, name
    labels = dm.arrays["train"].labels
    assert int(labels[torch.as_tensor(dm.train_idx)].sum()) == sum(int(y.sum()) for _, y in dm.train_dataloader())
    # the shuffled order really is not the stored one (so the gathering path was exercised)
    torch.manual_seed(0)
    first = next(iter(dm.train_dataloader()))[1]
    assert not torch.equal(first, labels[torch.as_tensor(dm.train_idx[:16])])
