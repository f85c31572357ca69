"""Issue 15: predict on runs trained with --data KIND:PATH, end to end through the CLI, one test per format.

Each test: `fit` (in process), a 2-trial `sweep`, then `predict` on new files of the training kind. The new files
hold the run's own held-out test examples, so the predictions must equal what the trained model gives on the
DataModule's test batches, and their accuracy the run's recorded test accuracy: predict-time encoding (from the
run folder's saved statistics only) must be the training encoding. Class names must be the user's labels.
Then each predict-time bad input is one `error:` line with exit 2.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from test_custom_data import HEADER, csr_parts, tabular_rows, write_csv, write_imagedir, write_npz, write_textdir
from lit_regularize.cli.fit import main as fit_main
from lit_regularize.cli.predict import export_main
from lit_regularize.cli.predict import main as predict_main
from lit_regularize.cli.sweep import main as sweep_main
from lit_regularize.predict import load
from lit_regularize.rundir import RunDir
from lit_regularize.summary import RunSummary

QUICK = ["--max-epochs", "2", "--hidden", "8", "--batch-size", "16", "--accelerator", "cpu", "--no-progress",
         "--seed", "3"]
LR_SPACE = "lr:\n  type: float\n  low: 0.001\n  high: 0.02\n  log: true\n"


def run_cli(main, argv, capsys) -> tuple[int, list[str], str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out.splitlines(), out.err


def fit_and_sweep(tmp_path: Path, data: str, capsys, monkeypatch, extra=()) -> tuple[Path, Path]:
    """(the fit's run folder, the sweep's best trial's run folder), both trained on data."""
    monkeypatch.chdir(tmp_path)  # the sweep's default storage optuna/<study>.db lands here
    logs = tmp_path / "logs"
    rc, _, err = run_cli(fit_main, ["--data", data, "--logdir", logs, "--name", "fit", *QUICK, *extra], capsys)
    assert rc == 0, err
    space = tmp_path / "space.yaml"
    space.write_text(LR_SPACE)
    rc, _, err = run_cli(sweep_main, ["--data", data, "--logdir", logs, *QUICK, *extra, "--space", space,
                                      "--study-name", "st", "--n-trials", "2", "--pruner", "none"], capsys)
    assert rc == 0, err
    trials = sorted((logs / "st").glob("trial_*/version_0"))
    assert len(trials) == 2
    best = min(trials, key=lambda d: RunSummary.read(d).best_val_loss)
    return logs / "fit" / "version_0", best


def predicted(run_dir: Path, inputs: list, capsys) -> list[dict]:
    rc, out, err = run_cli(predict_main, [run_dir, *inputs, "--json"], capsys)
    assert rc == 0, err
    return [json.loads(line) for line in out]


def run_own_test_predictions(run_dir: Path) -> tuple[list[int], np.ndarray, list[int]]:
    """(labels, probabilities, true codes) of the best checkpoint on the DataModule's own test batches: what the
    run's test evaluation saw (the test may re-read the training data; predict never does)."""
    from lit_regularize.run import build_datamodule

    dm = build_datamodule(RunDir(run_dir).read_config())
    dm.setup("fit")
    model = load(run_dir).model
    ds = dm.test_set
    x, y = ds.__getitems__(list(range(len(ds))))
    with torch.no_grad():
        logits = model(x)
    if model.binary:
        return (logits > 0).long().tolist(), torch.sigmoid(logits).numpy(), y.tolist()
    return logits.argmax(-1).tolist(), torch.softmax(logits, -1).numpy(), y.tolist()


def check_consistency(run_dir: Path, got: list[dict], names: list[str], ref) -> None:
    """Predictions on the new files = ref, the model on the run's test batches (run_own_test_predictions, taken
    before the training data was removed); their accuracy = the run's recorded test accuracy."""
    labels, probs, truth = ref
    assert [g["label"] for g in got] == labels
    assert [g["name"] for g in got] == [names[k] for k in labels]
    got_probs = np.asarray([g["probs"] for g in got])
    want = np.stack([1 - probs, probs], 1) if probs.ndim == 1 else probs
    assert np.allclose(got_probs, want, atol=1e-6)
    acc = float(np.mean(np.asarray(labels) == np.asarray(truth)))
    assert acc == pytest.approx(RunSummary.read(run_dir).test["best"]["acc"], abs=1e-6)


def one_error(main, argv, capsys, expect: str) -> None:
    rc, _, err = run_cli(main, argv, capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (expect, err)
    assert expect in lines[0], (expect, lines[0])


# -- csv ------------------------------------------------------------------------------------------------------

def test_csv_fit_sweep_predict(tmp_path, capsys, monkeypatch):
    rows = tabular_rows(120, seed=4)
    src = write_csv(tmp_path / "churn.csv", HEADER, rows)
    run_dir, best = fit_and_sweep(tmp_path, f"csv:{src}", capsys, monkeypatch, ["--optimizer", "adam"])
    ref = run_own_test_predictions(run_dir)
    shutil.move(src, tmp_path / "gone.csv")  # predict reads the run folder only, never the training data
    assert sorted(json.loads((run_dir / "classes.json").read_text())) == ["no", "yes"]
    test_idx = RunDir(run_dir).read_split()["test_idx"]
    # the held-out rows, columns reordered, label column dropped, one extra column (ignored)
    new = write_csv(tmp_path / "new.csv", ["id", "color", "x2", "x1"],
                    [[i, rows[i][2], rows[i][1], rows[i][0]] for i in test_idx])
    got = predicted(run_dir, [new], capsys)
    assert [g["input"] for g in got] == [f"{new}[{i}]" for i in range(len(test_idx))]
    check_consistency(run_dir, got, ["no", "yes"], ref)
    with_label = write_csv(tmp_path / "with_label.csv", HEADER, [rows[i] for i in test_idx])
    assert predicted(run_dir, [with_label], capsys) == [{**g, "input": f"{with_label}[{i}]"}
                                                        for i, g in enumerate(got)]
    # a category training never saw is all zeros: the row predicts like one with no category column set
    unseen = write_csv(tmp_path / "unseen.csv", HEADER[:3], [["0.5", "5.0", "purple"]])
    one = predicted(best, [unseen], capsys)
    assert len(one) == 1 and one[0]["name"] in ("no", "yes") and one[0]["input"] == str(unseen)
    prep = json.loads((best / "preprocessing.json").read_text())
    x = torch.zeros(1, prep["n_features"])
    for name, v in (("x1", 0.5), ("x2", 5.0)):
        x[0, prep["numeric"][name]["column"]] = float((np.float32(v) - np.float32(prep["numeric"][name]["mean"]))
                                                      / np.float32(prep["numeric"][name]["std"]))
    with torch.no_grad():
        p = torch.sigmoid(load(best).model(x)).item()
    assert one[0]["probs"][1] == pytest.approx(p, abs=1e-6)
    # bad input at predict time
    bad_fields = tmp_path / "fields.csv"
    bad_fields.write_text("x1,x2,color\n1.0,2.0\n")
    no_col = write_csv(tmp_path / "nocol.csv", ["x1", "color"], [["1.0", "red"]])
    text = write_csv(tmp_path / "text.csv", HEADER[:3], [["abc", "1", "red"]])
    missing = write_csv(tmp_path / "missing.csv", HEADER[:3], [["1.0", "NA", "red"]])
    header_only = write_csv(tmp_path / "header.csv", HEADER[:3], [])
    for argv, expect in (([bad_fields], "line 2 has 2 fields but the header has 3"),
                         ([no_col], "no column(s) 'x2'"),
                         ([text], "'abc' is not a number"),
                         ([missing], "column 'x2': missing value"),
                         ([header_only], "no rows to predict"),
                         ([tmp_path / "nope.csv"], "no such file"),
                         ([tmp_path], "not a file")):
        one_error(predict_main, [run_dir, *argv], capsys, expect)


# -- npz ------------------------------------------------------------------------------------------------------

def test_npz_dense_fit_sweep_predict(tmp_path, capsys, monkeypatch):
    src = write_npz(tmp_path / "arrays.npz", n=150, seed=2)
    run_dir, best = fit_and_sweep(tmp_path, f"npz:{src}", capsys, monkeypatch)
    x = np.load(src)["x_train"]
    ref = run_own_test_predictions(run_dir)
    src.unlink()
    test_idx = RunDir(run_dir).read_split()["test_idx"]
    np.savez(tmp_path / "new.npz", x=x[test_idx])
    got = predicted(run_dir, [tmp_path / "new.npz"], capsys)
    check_consistency(run_dir, got, ["3", "7", "9"], ref)
    assert {g["name"] for g in predicted(best, [tmp_path / "new.npz"], capsys)} <= {"3", "7", "9"}
    np.savez(tmp_path / "narrow.npz", x=x[:4, :5])
    np.savez(tmp_path / "nox.npz", x_train=x[:4])
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    for argv, expect in (([tmp_path / "narrow.npz"], "x has 5 features but the run was trained on 6"),
                         ([tmp_path / "nox.npz"], "keys found: x_train"),
                         ([tmp_path / "junk.npz"], "not an npz")):
        one_error(predict_main, [run_dir, *argv], capsys, expect)


def test_npz_csr_fit_sweep_predict(tmp_path, capsys, monkeypatch):
    rng = np.random.RandomState(5)
    y = rng.randint(0, 2, 140)
    dense = (rng.rand(140, 30) < 0.15).astype(np.float32)
    dense[:, 0] = y  # a learnable multi-hot feature
    src = tmp_path / "csr.npz"
    np.savez(src, y_train=np.where(y == 1, 10, 20), **csr_parts(dense, "x_train"))
    run_dir, best = fit_and_sweep(tmp_path, f"npz:{src}", capsys, monkeypatch)
    test_idx = RunDir(run_dir).read_split()["test_idx"]
    ref = run_own_test_predictions(run_dir)
    src.unlink()
    np.savez(tmp_path / "new.npz", **csr_parts(dense[test_idx], "x"))
    got = predicted(run_dir, [tmp_path / "new.npz"], capsys)
    check_consistency(run_dir, got, ["10", "20"], ref)
    assert len(predicted(best, [tmp_path / "new.npz"], capsys)) == len(test_idx)


# -- textdir --------------------------------------------------------------------------------------------------

@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_textdir_fit_sweep_predict(tmp_path, capsys, monkeypatch):
    root = write_textdir(tmp_path / "reviews", n=30, test=True, seed=1)
    run_dir, best = fit_and_sweep(tmp_path, f"textdir:{root}", capsys, monkeypatch, ["--num-words", "20"])
    new = tmp_path / "new"
    shutil.copytree(root / "test", new)  # the run's test split (test/<class>/*.txt), sorted as training sorted it
    ref = run_own_test_predictions(run_dir)
    shutil.rmtree(root)
    got = predicted(run_dir, [new], capsys)
    files = sorted(new.rglob("*.txt"))
    assert [g["input"] for g in got] == [str(f) for f in files]
    check_consistency(run_dir, got, ["neg", "pos"], ref)
    one = files[0]
    assert predicted(best, [one], capsys)[0]["input"] == str(one)
    raw = tmp_path / "raw.txt"
    raw.write_text("An AWFUL, boring... terrible film!!! Never again.")
    assert predicted(run_dir, [raw], capsys)[0]["name"] in ("neg", "pos")
    # issue 21: a .txt file that is not UTF-8 is read as training read it, and said once with the byte count
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("An awful, boring film. Caf\xe9 na\xefve.".encode("latin-1"))
    rc, out, err = run_cli(predict_main, [run_dir, latin1, "--json"], capsys)
    assert rc == 0 and len(out) == 1
    assert err.splitlines() == [f"warning: {latin1}: 2 bytes not UTF-8, replaced by U+FFFD (save the text as UTF-8 "
                                "to keep them)"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("not a .txt")
    one_error(predict_main, [run_dir, tmp_path / "empty"], capsys, "empty folder (no text files: .txt)")
    one_error(predict_main, [run_dir, tmp_path / "missing.txt"], capsys, "no such file or folder")
    broken = tmp_path / "broken_run"
    shutil.copytree(run_dir, broken)
    (broken / "word_index.json").unlink()
    one_error(predict_main, [broken, raw], capsys, "no word_index.json in the run folder")


def test_textdir_training_reads_text_by_the_same_rule(tmp_path, capsys):
    """textdir training's read_text replaced undecodable bytes silently (while predict --file refused them): one
    rule now, a warning naming the file and the count, the same text at training and at predict time."""
    from lit_regularize.data.textdir import load_textdir, read_text

    root = write_textdir(tmp_path / "reviews", n=3)
    bad = root / "train" / "neg" / "latin1.txt"
    bad.write_bytes(b"\xef\xbb\xbfcaf\xe9 cr\xe8me")  # a UTF-8 byte-order mark, then Latin-1 text
    data = load_textdir(str(root), "key")
    assert capsys.readouterr().err.splitlines() == [f"warning: {bad}: 2 bytes not UTF-8, replaced by U+FFFD (save "
                                                    "the text as UTF-8 to keep them)"]
    assert "caf\ufffd" in data.vocabulary and "cr\ufffdme" in data.vocabulary  # the mark is no part of a word
    assert read_text(bad) == "caf\ufffd cr\ufffdme"
    good = root / "train" / "pos" / "000.txt"
    assert read_text(good) == good.read_text(encoding="utf-8") and capsys.readouterr().err.count("warning") == 1


# -- imagedir -------------------------------------------------------------------------------------------------

@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_imagedir_fit_sweep_predict(tmp_path, capsys, monkeypatch):
    root = write_imagedir(tmp_path / "shapes", n=20, size=10, seed=2)
    run_dir, best = fit_and_sweep(tmp_path, f"imagedir:{root}", capsys, monkeypatch, ["--image-size", "8"])
    # the held-out images: test_idx counts files sorted by class folder, then name; copied in that order
    files = [f for c in ("dark", "light") for f in sorted((root / "train" / c).iterdir())]
    test_idx = RunDir(run_dir).read_split()["test_idx"]
    new = tmp_path / "new"
    for i in test_idx:
        (new / files[i].parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(files[i], new / files[i].parent.name / files[i].name)
    ref = run_own_test_predictions(run_dir)
    shutil.rmtree(root)
    got = predicted(run_dir, [new], capsys)
    assert len(got) == len(test_idx)
    check_consistency(run_dir, got, ["dark", "light"], ref)
    assert json.loads((run_dir / "normalization.json").read_text())["image_size"] == 8
    assert len(predicted(best, [new], capsys)) == len(test_idx)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not an image")
    one_error(predict_main, [run_dir, bad], capsys, "cannot decode the image")
    (tmp_path / "none").mkdir()
    one_error(predict_main, [run_dir, tmp_path / "none"], capsys, "empty folder")
    broken = tmp_path / "broken_run"
    shutil.copytree(run_dir, broken)
    (broken / "normalization.json").unlink()
    one_error(predict_main, [broken, new], capsys, "no normalization.json in the run folder")
    (broken / "classes.json").unlink()
    one_error(predict_main, [broken, new], capsys, "no classes.json in the run folder")
    shutil.rmtree(broken / "checkpoints")
    one_error(predict_main, [broken, new], capsys, "no checkpoint")
    # issue 21: --invert of an imagedir run uses 255 - pixel, never guessed (8x8 files: no resizing, so exact)
    from PIL import Image

    from lit_regularize.data.imagedir import read_image

    decoded = [read_image(f, 8) for f in sorted(new.rglob("*")) if f.is_file()]
    (tmp_path / "as_is").mkdir()
    (tmp_path / "flipped").mkdir()
    for i, a in enumerate(decoded):
        Image.fromarray(a).save(tmp_path / "as_is" / f"{i:03d}.png")
        Image.fromarray(255 - a).save(tmp_path / "flipped" / f"{i:03d}.png")
    plain = predicted(run_dir, [tmp_path / "as_is"], capsys)
    rc, out, err = run_cli(predict_main, [run_dir, tmp_path / "flipped", "--json", "--invert"], capsys)
    assert rc == 0 and err == "", err
    inverted = [json.loads(line) for line in out]
    assert [g["label"] for g in inverted] == [g["label"] for g in plain]
    # the same pixels in the same batch: equal up to float rounding (a missing inversion is off by far more)
    assert np.allclose([g["probs"] for g in inverted], [g["probs"] for g in plain], atol=1e-6, rtol=0)
    not_inverted = predicted(run_dir, [tmp_path / "flipped"], capsys)  # the model sees other pixels
    assert not np.allclose([g["probs"] for g in not_inverted], [g["probs"] for g in plain], atol=1e-3)
    # issue 21: a checkpoint that is not the run's (classes or image size of another run) is refused
    other = tmp_path / "other_run"
    shutil.copytree(run_dir, other)
    (other / "classes.json").write_text(json.dumps(["dark", "light", "grey"]))
    one_error(predict_main, [other, new], capsys, "needs 64 inputs and 3 classes")
    (other / "classes.json").write_text(json.dumps(["dark", "light"]))
    spec = json.loads((other / "normalization.json").read_text())
    (other / "normalization.json").write_text(json.dumps({**spec, "image_size": 9}))
    one_error(predict_main, [other, new], capsys, "takes 64 inputs and has 2 classes, but the run (imagedir data: "
              "2 classes in classes.json, 9x9 images in normalization.json) needs 81 inputs and 2 classes")
    one_error(export_main, [other, "--out", tmp_path / "m.pt"], capsys, "not this run's checkpoint")
    assert not (tmp_path / "m.pt").exists()


# -- export ---------------------------------------------------------------------------------------------------

def test_export_own_data_run(tmp_path, capsys):
    from lit_regularize.config import make_config
    from lit_regularize.run import quiet_lightning, run

    quiet_lightning()
    src = write_csv(tmp_path / "d.csv", HEADER, tabular_rows(60))
    cfg = make_config({"data": f"csv:{src}", "logdir": str(tmp_path / "logs"), "max_epochs": 1, "progress": False,
                       "accelerator": "cpu", "hidden": 8, "batch_size": 16})
    run_dir = run(cfg).run_dir
    out = tmp_path / "model.pt"
    rc, _, err = run_cli(export_main, [run_dir, "--format", "torchscript", "--out", out], capsys)
    assert rc == 0, err
    meta = json.loads(Path(f"{out}.json").read_text())
    assert meta["class_names"] == ["no", "yes"] and meta["data"] == f"csv:{src}"
    assert meta["preprocessing"] == json.loads((run_dir / "preprocessing.json").read_text())
    new = write_csv(tmp_path / "new.csv", HEADER, tabular_rows(10, seed=9))
    p = load(run_dir)
    _, ds = p.read(str(new))
    x, _ = ds.__getitems__(list(range(len(ds))))
    assert meta["input_size"] == x.shape[1]
    scripted = torch.jit.load(str(out))
    want = [r["probs"][1] for r in p.predict_datasets([ds])]
    assert np.allclose(scripted(x).numpy(), want, atol=1e-5)
