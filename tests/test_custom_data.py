"""The user's own data (--data npz|csv|textdir|imagedir:PATH): tiny synthetic files of every format.

Formats load into the right batches, fitted preprocessing sees training examples only, a missing test split is
held out seeded and stratified, every bad input is one DataError line, and one run() per format trains and tests.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_regularize.config import make_config
from lit_regularize.data.arrays import NpzDataModule, load_npz
from lit_regularize.data.imagedir import ImageDirDataModule
from lit_regularize.data.multihot import MultiHot
from lit_regularize.data.base import stratified_holdout
from lit_regularize.data.tabular import CSVDataModule
from lit_regularize.data.textdir import TextDirDataModule
from lit_regularize.errors import DataError
from lit_regularize.text import encode_texts

SPLIT = dict(batch_size=16, seed=7)


# -- writing tiny datasets -----------------------------------------------------------------------------------

def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def tabular_rows(n: int, seed: int = 0, shift: float = 0.0) -> list[list]:
    """x1 decides the label (learnable), x2 is noise, color is categorical."""
    rng = np.random.RandomState(seed)
    rows = []
    for _ in range(n):
        x1, x2 = rng.randn() + shift, rng.randn() * 10 + 5
        rows.append([f"{x1:.4f}", f"{x2:.4f}", rng.choice(["red", "green", "blue"]), "yes" if x1 > shift else "no"])
    return rows


HEADER = ["x1", "x2", "color", "label"]


def write_npz(path: Path, n: int = 120, features: int = 6, seed: int = 0, labels=(3, 7, 9), **extra) -> Path:
    rng = np.random.RandomState(seed)
    y = np.asarray(labels)[rng.randint(0, len(labels), n)]
    x = rng.randn(n, features).astype(np.float32)
    x[:, 0] += (y == labels[0]) * 3.0
    arrays = {"x_train": x, "y_train": y, **extra}
    np.savez(path, **arrays)
    return path


def csr_parts(dense: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    indptr, indices, data = [0], [], []
    for row in dense:
        nz = np.flatnonzero(row)
        indices += nz.tolist()
        data += row[nz].tolist()
        indptr.append(len(indices))
    return {f"{prefix}_indptr": np.asarray(indptr), f"{prefix}_indices": np.asarray(indices, np.int64),
            f"{prefix}_data": np.asarray(data, np.float32), f"{prefix}_shape": np.asarray(dense.shape)}


POS, NEG = ["great", "wonderful", "superb"], ["awful", "boring", "terrible"]
FILLER = ["the", "a", "movie", "film", "was", "and", "it", "plot", "actors", "music"]


def write_textdir(root: Path, n: int = 30, test: bool = False, seed: int = 0) -> Path:
    rng = np.random.RandomState(seed)
    for split in (["train", "test"] if test else ["train"]):
        for c, cue in (("neg", NEG), ("pos", POS)):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n if split == "train" else n // 3):
                words = list(rng.choice(FILLER, 8)) + list(rng.choice(cue, 2))
                (d / f"{i:03d}.txt").write_text(" ".join(words).capitalize() + "!", encoding="utf-8")
    return root


def write_imagedir(root: Path, n: int = 24, size: int = 12, test: bool = False, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.RandomState(seed)
    for split in (["train", "test"] if test else ["train"]):
        for c, (lo, hi) in (("dark", (0, 90)), ("light", (140, 255))):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n if split == "train" else n // 3):
                rgb = rng.randint(lo, hi, (size, size, 3)).astype(np.uint8)
                Image.fromarray(rgb, "RGB").save(d / f"{i:03d}.{'png' if i % 2 else 'jpg'}")
    return root


def setup(dm):
    dm.setup("fit")
    return dm


def batch(ds, n: int = 8):
    return ds.__getitems__(list(range(min(n, len(ds)))))


# -- formats -------------------------------------------------------------------------------------------------

def test_npz_dense_labels_remapped_and_held_out(tmp_path):
    dm = setup(NpzDataModule(write_npz(tmp_path / "d.npz"), **SPLIT))
    assert dm.class_names == ["3", "7", "9"] and dm.n_classes == 3 and dm.n_features == 6
    x, y = batch(dm.train_set)
    assert x.dtype == torch.float32 and x.shape == (8, 6) and y.dtype == torch.int64 and set(y.tolist()) <= {0, 1, 2}
    rec = dm.split_record()
    parts = [rec["train_idx"], rec["val_idx"], rec["test_idx"]]
    assert sum(map(len, parts)) == 120 and len(np.unique(np.concatenate(parts))) == 120
    assert len(dm.test_set) == len(rec["test_idx"]) == pytest.approx(24, abs=2)


def test_npz_features_on_very_different_scales_are_used_as_given_with_one_warning(tmp_path, capsys):
    rng = np.random.RandomState(0)
    x = rng.randn(60, 3) * np.array([0.1, 1.0, 1000.0])  # like raw wine: proline beside hue
    np.savez(tmp_path / "raw.npz", x_train=x, y_train=np.arange(60) % 2)
    dm = NpzDataModule(tmp_path / "raw.npz", **SPLIT)
    dm.setup("fit")
    dm.setup("test")
    setup(NpzDataModule(tmp_path / "raw.npz", **SPLIT))  # another fold's data module: no second warning
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "standardize them" in err and "raw.npz" in err
    assert torch.allclose(dm.data.splits["train"].x, torch.tensor(x, dtype=torch.float32))  # not rescaled
    np.savez(tmp_path / "std.npz", x_train=rng.randn(60, 3), y_train=np.arange(60) % 2)
    setup(NpzDataModule(tmp_path / "std.npz", **SPLIT))
    assert "warning" not in capsys.readouterr().err


def test_npz_with_test_split_and_csr(tmp_path):
    rng = np.random.RandomState(0)
    dense = (rng.rand(60, 20) < 0.2).astype(np.float32)
    y = np.array([0, 1] * 30)
    parts = {**csr_parts(dense, "x_train"), **csr_parts(dense[:10], "x_test")}
    np.savez(tmp_path / "s.npz", y_train=y, y_test=y[:10], **parts)
    dm = setup(NpzDataModule(tmp_path / "s.npz", **SPLIT))
    assert dm.test_idx is None and len(dm.test_set) == 10 and "test_idx" in dm.split_record()
    x, _ = batch(dm.test_set, 10)
    assert isinstance(x, MultiHot) and torch.equal(x.to_dense(), torch.from_numpy(dense[:10]))
    dense_rows = setup(NpzDataModule(tmp_path / "s.npz", dense=True, **SPLIT))
    assert batch(dense_rows.test_set, 10)[0].shape == (10, 20)
    # real-valued CSR: dense float rows per batch
    values = dense * rng.rand(60, 20).astype(np.float32) * 5
    np.savez(tmp_path / "v.npz", y_train=y, **csr_parts(values, "x_train"))
    dm = setup(NpzDataModule(tmp_path / "v.npz", **SPLIT))
    idx = dm.test_idx[:5]
    x, _ = dm.test_set.__getitems__(list(range(5)))
    assert isinstance(x, torch.Tensor) and np.allclose(x.numpy(), values[idx])


def test_csv_types_standardization_and_onehot(tmp_path):
    train = write_csv(tmp_path / "f" / "train.csv", HEADER, tabular_rows(80))
    test_rows = tabular_rows(20, seed=1, shift=100.0)
    test_rows[0][2] = "purple"  # a category the training examples lack
    write_csv(tmp_path / "f" / "test.csv", HEADER, test_rows)
    dm = setup(CSVDataModule(tmp_path / "f", **SPLIT))
    assert dm.class_names == ["no", "yes"] and dm.data.numeric_columns == ["x1", "x2"]
    assert dm.data.categorical_columns == ["color"] and dm.n_features == 2 + 3
    # statistics of the training examples only (not validation, not test.csv)
    raw = np.array([[float(r[0]), float(r[1])] for r in tabular_rows(80)], np.float32)
    np.testing.assert_allclose(dm.prep.mean, raw[dm.train_idx].mean(0), rtol=1e-5)
    np.testing.assert_allclose(dm.prep.std, raw[dm.train_idx].std(0), rtol=1e-5)
    x, _ = batch(dm.train_set, len(dm.train_set))
    assert abs(float(x[:, 0].mean())) < 1e-4 and abs(float(x[:, 0].std(unbiased=False)) - 1) < 1e-3
    x, _ = batch(dm.test_set, 20)
    assert float(x[:, 0].mean()) > 50  # test.csv is shifted: standardized with training statistics, not its own
    assert x[0, 2:].tolist() == [0, 0, 0]  # unseen category -> zeros
    assert (x[1:, 2:].sum(1) == 1).all()
    art = dm.artifacts()
    assert art["classes.json"] == ["no", "yes"] and set(art["preprocessing.json"]["categorical"]["color"]) == {
        "red", "green", "blue"}
    assert str(train).endswith("train.csv")


def test_csv_category_only_in_validation_maps_to_zeros(tmp_path):
    rows = tabular_rows(40)
    rows[5][2] = "teal"
    path = write_csv(tmp_path / "d.csv", HEADER, rows)
    dm = setup(CSVDataModule(path, val_size=len(rows) - 8 - 5, **SPLIT))
    where = "train" if 5 in dm.train_idx else "val" if 5 in dm.val_idx else "test"
    assert ("teal" in dm.artifacts()["preprocessing.json"]["categorical"]["color"]) == (where == "train")


def test_csv_target_and_dropna(tmp_path, capsys):
    rows = tabular_rows(40)
    rows[3][1] = ""
    rows[7][0] = "NA"
    path = write_csv(tmp_path / "d.csv", ["label2", "x2", "color", "y"], [[r[3], r[1], r[2], r[0]] for r in rows])
    with pytest.raises(DataError, match=r"line 5, column 'x2': missing value ''.*--dropna"):
        setup(CSVDataModule(path, target="label2", **SPLIT))
    capsys.readouterr()
    dm = setup(CSVDataModule(path, target="label2", dropna=True, **SPLIT))
    assert len(dm.data.tables["train"].labels) == 38 and dm.class_names == ["no", "yes"]
    assert dm.data.numeric_columns == ["x2", "y"]
    # a user learns how much data --dropna cost, once (not again per stage, fold or data module)
    dm.setup("test")
    setup(CSVDataModule(path, target="label2", dropna=True, **SPLIT))
    err = capsys.readouterr().err
    assert err.count("--dropna left out 2 of 40 rows of") == 1 and str(path) in err


def test_stratified_holdout_is_seeded_and_stratified():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    pool, test = stratified_holdout(labels, 0.2, seed=1)
    assert np.bincount(labels[test]).tolist() == [10, 6, 4]
    assert len(np.intersect1d(pool, test)) == 0 and len(pool) + len(test) == 100
    assert np.array_equal(test, stratified_holdout(labels, 0.2, seed=1)[1])
    assert not np.array_equal(test, stratified_holdout(labels, 0.2, seed=2)[1])
    with pytest.raises(DataError, match="class 'b' has only 1 example"):
        stratified_holdout(np.array([0, 0, 1]), 0.2, 0, names=["a", "b"])


def test_textdir_vocabulary_from_training_examples_and_encode_texts(tmp_path):
    root = write_textdir(tmp_path / "t", test=True)
    (root / "test" / "pos" / "zzz.txt").write_text("Unheardof words great", encoding="utf-8")
    dm = setup(TextDirDataModule(root, num_words=12, **SPLIT))
    assert dm.class_names == ["neg", "pos"] and dm.n_features == 12 and dm.test_idx is None
    wi = dm.artifacts()["word_index.json"]
    assert len(wi) == 12 - 4 and sorted(wi.values()) == list(range(1, 9)) and "unheardof" not in wi
    # new texts encoded with the saved word index give the very rows training used
    files = [p for c in ("neg", "pos") for p in sorted((root / "test" / c).glob("*.txt"))]
    crow, cols = encode_texts([p.read_text(encoding="utf-8") for p in files], wi, 12)
    x, _ = batch(dm.test_set, len(files))
    assert torch.equal(x.crow, torch.from_numpy(crow)) and torch.equal(x.cols, torch.from_numpy(cols))
    # the vocabulary counts training examples only: validation texts do not move it
    big = setup(TextDirDataModule(root, num_words=1000, **SPLIT))
    train_words = set()
    for i in big.train_idx:
        f = [p for c in ("neg", "pos") for p in sorted((root / "train" / c).glob("*.txt"))][i]
        train_words |= set(f.read_text().lower().replace("!", " ").split())
    assert set(big.artifacts()["word_index.json"]) == train_words


def test_write_artifacts_saves_the_word_index_for_predict(tmp_path):
    from lit_regularize.data.imdb import IMDBDataModule
    from lit_regularize.rundir import RunDir
    from lit_regularize.text import load_word_index

    def write_artifacts(dm, folder):  # what run() does after writing the split
        return RunDir(folder).write_artifacts(dm.artifacts())

    dm = setup(TextDirDataModule(write_textdir(tmp_path / "t"), num_words=10, **SPLIT))
    names = sorted(p.name for p in write_artifacts(dm, tmp_path / "run"))
    assert names == ["classes.json", "word_index.json"]
    assert load_word_index(tmp_path / "run" / "word_index.json") == dm.word_index
    assert json.loads((tmp_path / "run" / "classes.json").read_text()) == ["neg", "pos"]
    assert write_artifacts(IMDBDataModule(tmp_path), tmp_path / "none") == []


def test_imagedir_grayscale_uint8_training_statistics(tmp_path):
    root = write_imagedir(tmp_path / "im", size=10)
    dm = setup(ImageDirDataModule(root, image_size=8, augment=True, **SPLIT))
    assert dm.class_names == ["dark", "light"] and dm.n_features == 64
    images = dm.data.splits["train"][0]
    assert images.dtype == torch.uint8 and images.shape[1:] == (8, 8)
    pix = images[torch.as_tensor(dm.train_idx)].double() / 255
    assert dm.mean == pytest.approx(float(pix.mean())) and dm.std == pytest.approx(float(pix.std(unbiased=False)))
    x, y = batch(dm.train_set, len(dm.train_set))
    assert x.shape[1:] == (1, 8, 8) and abs(float(x.mean())) < 1e-4
    sub = setup(ImageDirDataModule(root, image_size=8, n_per_class=5, **SPLIT))
    assert np.bincount(sub.labels[sub.train_idx]).tolist() == [5, 5]
    assert len(np.intersect1d(sub.val_idx, sub.test_idx)) == 0 and len(np.intersect1d(sub.train_idx, sub.test_idx)) == 0


def test_loaded_once_per_process_and_again_when_changed(tmp_path):
    path = write_npz(tmp_path / "d.npz")
    load_npz.cache_clear()
    setup(NpzDataModule(path, **SPLIT))
    setup(NpzDataModule(path, seed=8, batch_size=4))
    assert load_npz.cache_info().misses == 1 and load_npz.cache_info().hits == 1
    write_npz(path, seed=3)
    os.utime(path, ns=(1, 1))
    setup(NpzDataModule(path, **SPLIT))
    assert load_npz.cache_info().misses == 2


def test_custom_datamodule_maps_config(tmp_path):
    path = write_csv(tmp_path / "d.csv", HEADER, tabular_rows(30))
    cfg = make_config({"data": f"csv:{path}", "target": "label", "dropna": True, "test_size": 0.3})
    dm = cfg.kind.datamodule(cfg, dict(batch_size=8, seed=1))
    assert isinstance(dm, CSVDataModule) and dm.target == "label" and dm.dropna and dm.test_size == 0.3
    img_cfg = make_config({"data": f"imagedir:{tmp_path}", "image_size": 16, "augment": True})
    img = img_cfg.kind.datamodule(img_cfg, {})
    assert isinstance(img, ImageDirDataModule) and img.image_size == 16 and img.augment


# -- bad input: one DataError line ---------------------------------------------------------------------------

def _bad_npz(tmp_path, **arrays):
    np.savez(tmp_path / "bad.npz", **arrays)
    return NpzDataModule(tmp_path / "bad.npz", **SPLIT)


X, Y = np.random.RandomState(0).randn(20, 3), np.array([0, 1] * 10)


def _nan_x():
    x = X.copy()
    x[4, 1] = np.nan
    return x


BAD = {
    "missing file": (lambda t: NpzDataModule(t / "nope.npz"), "no such file"),
    "not an npz": (lambda t: (t.joinpath("x.npz").write_text("hello"), NpzDataModule(t / "x.npz"))[1],
                   "not an npz"),
    "npz no labels": (lambda t: _bad_npz(t, x_train=X), "no y_train"),
    "npz single class": (lambda t: _bad_npz(t, x_train=X, y_train=np.zeros(20, int)), "only one class"),
    "npz one example of a class": (lambda t: _bad_npz(t, x_train=X, y_train=np.array([0] * 19 + [1])),
                                   "class '1' has only 1 example"),
    "npz nan": (lambda t: _bad_npz(t, x_train=_nan_x(), y_train=Y), r"x_train\[4\] holds NaN or inf"),
    "npz shapes": (lambda t: _bad_npz(t, x_train=X, y_train=Y[:15]), "20 rows but y_train has 15"),
    "npz test width": (lambda t: _bad_npz(t, x_train=X, y_train=Y, x_test=X[:, :2], y_test=Y),
                       "x_test has 2 features but x_train has 3"),
    "npz unknown test label": (lambda t: _bad_npz(t, x_train=X, y_train=Y, x_test=X, y_test=Y + 5),
                               "y_test holds label"),
    "npz float labels": (lambda t: _bad_npz(t, x_train=X, y_train=Y + 0.5), "integer labels"),
    "csr indices": (lambda t: _bad_npz(t, y_train=Y[:2], x_train_indptr=np.array([0, 1, 2]),
                                       x_train_indices=np.array([0, 9]), x_train_data=np.ones(2),
                                       x_train_shape=np.array([2, 5])), "indices must lie in 0..4"),
    "csv no target": (lambda t: CSVDataModule(write_csv(t / "d.csv", HEADER, tabular_rows(10)), target="y"),
                      "no label column 'y'"),
    "csv id as label": (lambda t: CSVDataModule(write_csv(t / "d.csv", ["x1", "id"],
                                                          [[str(i % 3), str(i)] for i in range(60)])),
                        r"last column 'id', taken as the label \(no --target\), has 60 distinct values in 60 rows"),
    "csv missing": (lambda t: CSVDataModule(write_csv(t / "d.csv", HEADER, tabular_rows(3) + [["1", "", "red", "no"]])),
                    r"line 5, column 'x2': missing value"),
    "csv inf": (lambda t: CSVDataModule(write_csv(t / "d.csv", HEADER, tabular_rows(3) + [["inf", "1", "red", "no"]])),
                r"line 5, column 'x1': inf"),
    "csv ragged": (lambda t: CSVDataModule(write_csv(t / "d.csv", HEADER, tabular_rows(3) + [["1", "2"]])),
                   "line 5 has 2 fields but the header has 4"),
    "csv single class": (lambda t: CSVDataModule(write_csv(t / "d.csv", HEADER, [r[:3] + ["yes"] for r in tabular_rows(9)])),
                         "only one class"),
    "csv empty": (lambda t: (t.joinpath("e.csv").write_text(""), CSVDataModule(t / "e.csv"))[1], "empty file"),
    "csv not utf8": (lambda t: (t.joinpath("b.csv").write_bytes(b"a,b\n\xff\xfe,1\n"), CSVDataModule(t / "b.csv"))[1],
                     "not UTF-8"),
    "csv folder without train.csv": (lambda t: (t.joinpath("f").mkdir(), CSVDataModule(t / "f"))[1], "needs train.csv"),
    "csv test label": (lambda t: (write_csv(t / "f" / "train.csv", HEADER, tabular_rows(10)),
                                  write_csv(t / "f" / "test.csv", HEADER, [["1", "2", "red", "maybe"]]),
                                  CSVDataModule(t / "f"))[2], r"label\(s\) 'maybe'"),
    "textdir no train": (lambda t: (t.joinpath("t").mkdir(), TextDirDataModule(t / "t"))[1], "no train/ folder"),
    "textdir empty class": (lambda t: (write_textdir(t / "t"), (t / "t" / "train" / "meh").mkdir(),
                                       TextDirDataModule(t / "t"))[2], "meh: empty class folder"),
    "textdir single class": (lambda t: (write_textdir(t / "t"), __import__("shutil").rmtree(t / "t" / "train" / "neg"),
                                        TextDirDataModule(t / "t"))[2], "only one class"),
    "imagedir undecodable": (lambda t: (write_imagedir(t / "i", n=4), (t / "i" / "train" / "dark" / "x.png")
                                        .write_bytes(b"not a png"), ImageDirDataModule(t / "i"))[2],
                             r"x.png: cannot decode the image"),
    "imagedir test class unknown": (lambda t: (write_imagedir(t / "i", n=4, test=True),
                                               (t / "i" / "test" / "dark").rename(t / "i" / "test" / "dim"),
                                               ImageDirDataModule(t / "i"))[2], "'dim' that train/ lacks"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_data_error(tmp_path, case):
    make, pattern = BAD[case]
    dm = make(tmp_path)
    with pytest.raises(DataError, match=pattern) as e:
        dm.setup("fit")
    assert "\n" not in str(e.value)


# -- end to end -----------------------------------------------------------------------------------------------

def _fit(tmp_path, data: str, **over):
    from lit_regularize.run import run

    cfg = make_config({"data": data, "logdir": str(tmp_path / "logs"), "max_epochs": 2, "progress": False,
                       "accelerator": "cpu", "hidden": 8, "batch_size": 16, **over})
    summary = run(cfg)
    assert summary.status == "completed" and 0.0 <= summary.test["best"]["acc"] <= 1.0
    split = np.load(summary.run_dir / "split.npz")
    return summary, split


def test_run_csv(tmp_path):
    path = write_csv(tmp_path / "d.csv", HEADER, tabular_rows(120))
    summary, split = _fit(tmp_path, f"csv:{path}", optimizer="adam", lr=0.01, max_epochs=5)
    assert "test_idx" in split.files and len(split["test_idx"]) == 24
    assert summary.test["best"]["acc"] >= 0.7


def test_run_npz(tmp_path):
    _, split = _fit(tmp_path, f"npz:{write_npz(tmp_path / 'd.npz')}", reg="dropout")
    assert "test_idx" in split.files


def test_run_textdir(tmp_path):
    _fit(tmp_path, f"textdir:{write_textdir(tmp_path / 't', test=True)}", num_words=20)


def test_run_imagedir(tmp_path):
    _fit(tmp_path, f"imagedir:{write_imagedir(tmp_path / 'i', size=8)}", image_size=8, augment=True,
         max_epochs=2, patience=1)


# -- fitted preprocessing sees the training rows only: every kind, both ways to get a test split (issue 21) -----
# A held-out test split of one file/folder and a separate test file/folder; the validation rows of the pool are
# left out too. Every non-training row brings something the training rows lack (a unique category, a unique
# word, a shifted value), so statistics fitted on any of them differ from the training rows' own.

SPLIT_PATHS = ["held_out", "separate_test"]


def _not_training(dm, n_source: int) -> dict[str, np.ndarray]:
    """Rows of the training source that must not reach the statistics: validation and (held out) test rows."""
    out = {"val": np.asarray(dm.val_idx)}
    if dm.test_idx is not None:
        out["test"] = np.asarray(dm.test_idx)
    assert len(out["val"]) and len(np.intersect1d(dm.train_idx, np.concatenate(list(out.values())))) == 0
    assert len(dm.train_idx) + sum(map(len, out.values())) == n_source
    return out


@pytest.mark.parametrize("split", SPLIT_PATHS)
def test_csv_statistics_and_categories_come_from_training_rows_only(tmp_path, split):
    def rows(n, seed, shift=0.0, tag="tr"):
        out = tabular_rows(n, seed, shift)
        for i, r in enumerate(out):
            r[2] = f"{tag}{i}"  # a category of this row only
        return out
    train = rows(60, 0)
    if split == "held_out":
        path = write_csv(tmp_path / "d.csv", HEADER, train)
    else:
        write_csv(tmp_path / "f" / "train.csv", HEADER, train)
        test = rows(20, 1, shift=50.0, tag="te")
        path = write_csv(tmp_path / "f" / "test.csv", HEADER, test).parent
    dm = setup(CSVDataModule(path, **SPLIT))
    assert (dm.test_idx is None) == (split == "separate_test")
    prep = dm.artifacts()["preprocessing.json"]
    raw = np.array([[float(r[0]), float(r[1])] for r in train], np.float64)
    fitted = np.array([[prep["numeric"][c]["mean"], prep["numeric"][c]["std"]] for c in ("x1", "x2")])
    expected = np.stack([raw[dm.train_idx].mean(0), raw[dm.train_idx].std(0)], 1)
    # float32 statistics: 1e-5 relative; a leak moves them by more than 1e-3 (checked below for every leak)
    np.testing.assert_allclose(fitted, expected, rtol=1e-5)
    assert set(prep["categorical"]["color"]) == {train[i][2] for i in dm.train_idx}
    leaks = {k: np.concatenate([dm.train_idx, idx]) for k, idx in _not_training(dm, len(train)).items()}
    if split == "separate_test":
        test_raw = np.array([[float(r[0]), float(r[1])] for r in test])
        raw = np.concatenate([raw, test_raw])
        leaks["test"] = np.concatenate([dm.train_idx, len(train) + np.arange(len(test))])
    for name, rows_ in leaks.items():  # the test can fail: any leaked rows move the statistics
        leaked = np.stack([raw[rows_].mean(0), raw[rows_].std(0)], 1)
        assert not np.allclose(leaked, expected, rtol=1e-3), name


def _write_brightness_images(root: Path, split: str, n: int, seed: int) -> None:
    """Images of one random grey level each (class 'dark' below 100, 'light' above 150)."""
    from PIL import Image

    rng = np.random.RandomState(seed)
    for c, (lo, hi) in (("dark", (0, 100)), ("light", (150, 256))):
        d = root / split / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((6, 6), rng.randint(lo, hi), np.uint8), "L").save(d / f"{i:03d}.png")


@pytest.mark.parametrize("split", SPLIT_PATHS)
def test_imagedir_normalization_comes_from_training_images_only(tmp_path, split):
    root = tmp_path / "im"
    _write_brightness_images(root, "train", 15, seed=0)
    if split == "separate_test":
        _write_brightness_images(root, "test", 5, seed=1)
    dm = setup(ImageDirDataModule(root, image_size=6, **SPLIT))
    assert (dm.test_idx is None) == (split == "separate_test")
    images = dm.data.splits["train"][0].numpy().astype(np.float64) / 255
    pix = images[dm.train_idx]
    norm = dm.artifacts()["normalization.json"]
    # float64 sums of uint8 pixels: 1e-9 relative; a leaked image moves the mean by far more (checked below)
    assert (norm["mean"], norm["std"]) == (pytest.approx(pix.mean(), rel=1e-9), pytest.approx(pix.std(), rel=1e-9))
    leaks = {k: images[np.concatenate([dm.train_idx, idx])] for k, idx in _not_training(dm, len(images)).items()}
    if split == "separate_test":
        leaks["test"] = np.concatenate([pix, dm.data.splits["test"][0].numpy() / 255])
    for name, leaked in leaks.items():
        assert abs(leaked.mean() - pix.mean()) > 1e-4 or abs(leaked.std() - pix.std()) > 1e-4, name


@pytest.mark.parametrize("split", SPLIT_PATHS)
def test_textdir_word_index_comes_from_training_texts_only(tmp_path, split):
    root = tmp_path / "t"
    for part, n in (("train", 15), ("test", 5)) if split == "separate_test" else (("train", 15),):
        for c, cue in (("neg", NEG), ("pos", POS)):
            d = root / part / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (d / f"{i:03d}.txt").write_text(f"{FILLER[i % 10]} {cue[i % 3]} only{part}{c}{i}", encoding="utf-8")
    dm = setup(TextDirDataModule(root, num_words=1000, **SPLIT))  # room for every word: none is cut
    assert (dm.test_idx is None) == (split == "separate_test")
    files = [p for c in ("neg", "pos") for p in sorted((root / "train" / c).glob("*.txt"))]  # the rows' order

    def words(rows) -> set:
        return {w for i in rows for w in files[i].read_text(encoding="utf-8").split()}
    assert set(dm.artifacts()["word_index.json"]) == words(dm.train_idx)
    for name, idx in _not_training(dm, len(files)).items():  # each such text has a word of its own
        assert words(idx) - words(dm.train_idx), name
    if split == "separate_test":  # test/ texts have words of their own that the index must not hold
        assert {w for p in (root / "test").rglob("*.txt") for w in p.read_text().split()} - words(dm.train_idx)


def test_npz_fits_no_statistics(tmp_path):
    """npz features are used as given: nothing is fitted, so there is nothing that could see other rows."""
    dm = setup(NpzDataModule(write_npz(tmp_path / "d.npz"), **SPLIT))
    assert list(dm.artifacts()) == ["classes.json"]
    x, _ = batch(dm.train_set, 4)
    assert torch.equal(x, torch.from_numpy(np.load(tmp_path / "d.npz")["x_train"][dm.train_idx[:4]]))
