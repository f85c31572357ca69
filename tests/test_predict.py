"""Issue 13: predicting with a trained run (lit_regularize.text, lit_regularize.predict, the predict CLI).

Two tiny runs are trained once per module on synthetic data (IMDB with dropout + BatchNorm, Fashion-MNIST
with dropout); every input route must give what the model gives on the directly encoded batch.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT
from synthetic import idx_bytes, write_imdb, write_mnist
from lit_regularize.cli.predict import main
from lit_regularize.config import make_config
from lit_regularize.data.imdb import MultiHot, load_imdb
from lit_regularize.errors import DataError, UserError
from lit_regularize.predict import FASHION_CLASSES, find_checkpoint, load, load_model
from lit_regularize.text import (FILTERS, decode_ranks, encode_texts, inverse_word_index, load_word_index,
                                 text_to_word_sequence)

VOCAB = 60  # synthetic reviews use ranks 1..59
NUM_WORDS = 40


def word_index_of(vocab: int = VOCAB) -> dict[str, int]:
    """A keras-style word index for the synthetic reviews: rank r is the word 'w<r>'."""
    return {f"w{r}": r for r in range(1, vocab)}


def _train(tmp: Path, overrides: dict) -> Path:
    from lit_regularize.run import quiet_lightning, run

    quiet_lightning()
    base = {"val_size": 60, "hidden": 8, "batch_size": 32, "max_epochs": 2, "logdir": str(tmp / "logs"),
            "progress": False, "accelerator": "cpu"}
    return run(make_config({**base, **overrides})).run_dir


@pytest.fixture(scope="module")
def imdb_run(tmp_path_factory):
    """(run folder, data folder) of a tiny IMDB run with dropout and BatchNorm; word index beside imdb.npz."""
    tmp = tmp_path_factory.mktemp("imdb_predict")
    data = tmp / "data"
    write_imdb(data, vocab=VOCAB)
    (data / "imdb_word_index.json").write_text(json.dumps(word_index_of()))
    run_dir = _train(tmp, {"data_dir": str(data), "num_words": NUM_WORDS, "dropout": 0.5, "batchnorm": True})
    return run_dir, data


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory):
    """(run folder, data folder) of a tiny Fashion-MNIST run with dropout."""
    tmp = tmp_path_factory.mktemp("fashion_predict")
    data = tmp / "data"
    write_mnist(data, "FashionMNIST", seed=1)
    run_dir = _train(tmp, {"data": "fashion_mnist", "data_dir": str(data), "val_size": 50, "dropout": 0.3})
    return run_dir, data


def reviews(n: int, seed: int = 0) -> list[str]:
    """Review texts mixing indexed words (some beyond num_words), unknown words, case and punctuation."""
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        words = [f"W{r}" if rng.rand() < 0.2 else f"w{r}" for r in rng.randint(1, VOCAB, rng.randint(3, 15))]
        words.insert(rng.randint(len(words)), "unknownword")
        out.append(", ".join(words[:3]) + "! " + " ".join(words[3:]) + ".")
    return out


# -- text.py ----------------------------------------------------------------------------------------------

HAND_CASES = {
    "Hello, World!": ["hello", "world"],
    "It's a DON'T-miss film... 10/10": ["it's", "a", "don't", "miss", "film", "10", "10"],
    "tabs\tand\nnewlines  and   spaces": ["tabs", "and", "newlines", "and", "spaces"],
    "<br /><br />The end": ["br", "br", "the", "end"],
    "": [],
    "?!...": [],
    "café naïve Ünïcode": ["café", "naïve", "ünïcode"],
    "a_b~c{d}e|f`g^h\\i": ["a", "b", "c", "d", "e", "f", "g", "h", "i"],
}


@pytest.mark.parametrize("text", list(HAND_CASES))
def test_text_to_word_sequence_documented_behaviour(text):
    assert text_to_word_sequence(text) == HAND_CASES[text]


def _keras_text_to_word_sequence():
    """keras' own function: keras.preprocessing.text (Keras 2) or Keras 3's legacy copy; None if neither."""
    import lit_regularize  # noqa: F401 - sets KERAS_BACKEND=torch before keras is imported

    try:
        from keras.preprocessing.text import text_to_word_sequence as f  # gone in Keras 3
        return f
    except ImportError:
        pass
    try:
        from keras.src.legacy.preprocessing.text import text_to_word_sequence as f
        return f
    except ImportError:
        return None


def test_text_to_word_sequence_matches_keras():
    keras_f = _keras_text_to_word_sequence()
    if keras_f is None:
        pytest.skip("keras has no text_to_word_sequence (keras.preprocessing.text is gone in Keras 3)")
    samples = list(HAND_CASES) + reviews(30) + [FILTERS + "x" + FILTERS, "It's   'quoted' \"double\""]
    for s in samples:
        assert text_to_word_sequence(s) == keras_f(s), s


def test_encode_texts_equals_load_data_encoding(tmp_path):
    """A review typed in as text encodes exactly like the same review read from imdb.npz."""
    path = write_imdb(tmp_path, n_train=20, n_test=10, vocab=VOCAB)
    index = word_index_of()
    (tmp_path / "imdb_word_index.json").write_text(json.dumps(index))
    index = load_word_index(tmp_path / "imdb_word_index.json")
    raw = np.load(path, allow_pickle=True)
    arrays = load_imdb(str(path), NUM_WORDS)
    # load_imdb shuffles with keras' seed: recover the order to pair every row with its raw review
    order = np.arange(len(raw["x_train"]))
    np.random.RandomState(113).shuffle(order)
    inverse = inverse_word_index(index)
    texts = [decode_ranks(raw["x_train"][i], inverse) for i in order]
    crow, cols = encode_texts(texts, index, NUM_WORDS)
    assert crow.dtype == cols.dtype == np.int64
    assert np.array_equal(crow, arrays["train"].crow.numpy())
    assert np.array_equal(cols, arrays["train"].cols.numpy())


def test_encode_texts_keras_ids():
    index = {"the": 1, "good": 2, "rare": 50}
    crow, cols = encode_texts(["The GOOD, the rare... and unseen", "good"], index, num_words=10)
    # the -> 4, good -> 5, rare -> 53 >= 10 -> OOV 2, unseen -> OOV 2, start 1 first; unique and sorted
    assert crow.tolist() == [0, 4, 6]
    assert cols.tolist() == [1, 2, 4, 5, 1, 5]


@pytest.mark.parametrize("content, expect", [
    (None, "not found"), ("{not json", "not readable JSON"), ("[1, 2]", "JSON object"),
    ('{"a": "x"}', "ranks must be integers"), ('{"a": 0}', "ranks must be integers"),
])
def test_load_word_index_errors(tmp_path, content, expect):
    path = tmp_path / "idx.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=expect) as e:
        load_word_index(path)
    assert "\n" not in str(e.value)


# -- predict.py: IMDB ---------------------------------------------------------------------------------------

def direct_imdb(run_dir: Path, texts: list[str]) -> list[float]:
    """P(positive) from the checkpoint's model called directly on the encoded CSR batch."""
    model = load_model(find_checkpoint(run_dir))
    crow, cols = encode_texts(texts, word_index_of(), NUM_WORDS)
    with torch.no_grad():
        batch = MultiHot(torch.from_numpy(crow), torch.from_numpy(cols), NUM_WORDS)
        return torch.sigmoid(model(batch)).tolist()


def test_load_model_is_eval_and_checkpoint_choice(imdb_run):
    run_dir, _ = imdb_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert find_checkpoint(run_dir) == run_dir / summary["best_checkpoint"]
    assert find_checkpoint(run_dir, last=True) == run_dir / "checkpoints" / "last.ckpt"
    p = load(run_dir)
    assert not p.model.training and not any(m.training for m in p.model.modules())
    assert p.checkpoint == run_dir / summary["best_checkpoint"] and p.num_words == NUM_WORDS
    assert load(run_dir, last=True).checkpoint.name == "last.ckpt"


def test_best_checkpoint_fallbacks(imdb_run, tmp_path):
    """No summary.json: the newest best-*.ckpt; no best: last.ckpt; nothing: an error."""
    import shutil

    run_dir, _ = imdb_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "summary.json").unlink()
    assert find_checkpoint(copy).name.startswith("best-")
    for p in (copy / "checkpoints").glob("best-*.ckpt"):
        p.unlink()
    assert find_checkpoint(copy).name == "last.ckpt"
    (copy / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(UserError, match="no checkpoint"):
        find_checkpoint(copy)


def test_predict_imdb_equals_direct_model_call(imdb_run):
    run_dir, _ = imdb_run
    texts = reviews(50)
    p = load(run_dir, batch_size=16)  # several batches
    got = p.predict(texts)
    want = direct_imdb(run_dir, texts)
    assert [r["prob"] for r in got] == pytest.approx(want, abs=1e-6)
    assert [r["label"] for r in got] == [int(w > 0.5) for w in want]
    assert set(got[0]) == {"prob", "label", "name"}
    assert [r["name"] for r in got] == [("negative", "positive")[r["label"]] for r in got]
    assert p.predict(texts[0]) == got[:1]  # one string is one review


def test_predict_eval_mode_is_deterministic(imdb_run):
    """Dropout off and BatchNorm on running stats: repeated and single-row predictions agree."""
    run_dir, _ = imdb_run
    p = load(run_dir)
    texts = reviews(20, seed=3)
    first = p.predict(texts)
    assert p.predict(texts) == first
    singles = [p.predict([t])[0]["prob"] for t in texts]  # BatchNorm in train mode would fail on one row
    assert singles == pytest.approx([r["prob"] for r in first], abs=1e-6)
    p.model.train()  # a model left in train mode is put back in eval mode for predicting
    assert p.predict(texts) == first


def test_word_index_argument_and_missing_index(imdb_run, tmp_path):
    run_dir, data = imdb_run
    other = tmp_path / "wi.json"
    other.write_text(json.dumps(word_index_of()))
    texts = reviews(5)
    assert load(run_dir, word_index=other).predict(texts) == load(run_dir).predict(texts)
    with pytest.raises(DataError, match="not found"):
        load(run_dir, word_index=tmp_path / "missing.json")
    with pytest.raises(DataError, match="not found"):
        load(run_dir, data_dir=tmp_path)


@pytest.mark.parametrize("bad", ["", "   ", "\n"])
def test_empty_review_is_an_error(imdb_run, bad):
    with pytest.raises(UserError, match="empty review"):
        load(imdb_run[0]).predict(["fine", bad])


# -- predict.py: images -------------------------------------------------------------------------------------

def test_mnist_class_names_and_normalization():
    from lit_regularize.data.mnist import IMAGE_DATASETS
    from lit_regularize.predict import CLASS_NAMES
    from torchvision.datasets import FashionMNIST

    assert CLASS_NAMES["fashion_mnist"] == tuple(FashionMNIST.classes)
    assert CLASS_NAMES["mnist"] is None and set(IMAGE_DATASETS) == {"mnist", "fashion_mnist"}


def test_predict_images_equals_direct_model_call(fashion_run, tmp_path):
    """Arrays, PNG files, PIL images and an idx file all give the model's softmax on the normalized pixels."""
    from PIL import Image

    run_dir, data = fashion_run
    images = np.fromfile(data / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte", np.uint8, offset=16)
    images = images.reshape(-1, 28, 28)[:12]
    model = load_model(find_checkpoint(run_dir))
    x = (torch.from_numpy(images).float() / 255 - 0.2860) / 0.3530
    with torch.no_grad():
        want = torch.softmax(model(x.reshape(len(x), -1)), -1)
    p = load(run_dir)
    by_array = p.predict(images)
    assert torch.allclose(torch.tensor([r["probs"] for r in by_array]), want, atol=1e-6)
    assert [r["label"] for r in by_array] == want.argmax(-1).tolist()
    assert [r["name"] for r in by_array] == [FASHION_CLASSES[k] for k in want.argmax(-1).tolist()]
    paths = []
    for i, img in enumerate(images):  # light-on-dark 28x28 files are used as they are
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(paths[-1])
    assert p.predict(paths) == by_array
    assert p.predict([str(q) for q in paths]) == by_array
    assert p.predict([Image.fromarray(img) for img in images]) == by_array
    assert p.predict(images.astype(np.float32) / 255) == by_array
    assert p.predict(torch.from_numpy(images).reshape(-1, 784)) == by_array
    idx = tmp_path / "images-idx3-ubyte"
    idx.write_bytes(idx_bytes(images))
    assert p.predict([idx]) == by_array


def test_image_preparation_inverts_and_fits():
    """Dark-on-light images are inverted; other sizes are cropped to the content, fitted and centered."""
    from PIL import Image

    from lit_regularize.predict import prepare_image

    page = np.full((100, 60), 255, np.uint8)  # white paper, a black 40x20 bar
    page[30:70, 20:40] = 0
    out = prepare_image(Image.fromarray(page).convert("RGB"), "fashion_mnist")
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out[14, 14] > 200 and out[14, 0] == 0 and out[14, 27] == 0  # a light bar on black, centered
    digit = prepare_image(Image.fromarray(page), "mnist")
    rows = np.flatnonzero(digit.max(1) > 0)
    assert rows[0] >= 4 and rows[-1] <= 23  # MNIST digits fit a 20x20 box
    same = np.random.RandomState(0).randint(0, 100, (28, 28)).astype(np.uint8)
    assert np.array_equal(prepare_image(Image.fromarray(same)), same)


def test_unreadable_image_is_an_error(fashion_run, tmp_path):
    p = load(fashion_run[0])
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="not a readable image") as e:
        p.predict([bad])
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="cannot read"):
        p.predict([tmp_path / "missing.png"])
    with pytest.raises(UserError, match="28x28"):
        p.predict(np.zeros((5, 5), np.uint8))


# -- the CLI ----------------------------------------------------------------------------------------------

def cli(argv: list[str], capsys, stdin: str | None = None, monkeypatch=None) -> tuple[int, list[str], str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors (unknown flag, both inputs and --file) exit 2
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out.splitlines(), out.err


def test_cli_every_route_agrees(imdb_run, tmp_path, capsys, monkeypatch):
    run_dir, _ = imdb_run
    texts = reviews(8, seed=5)
    want = load(run_dir).predict(texts)
    lines = tmp_path / "reviews.txt"
    lines.write_text("\n".join(texts) + "\n\n")
    jsonl = tmp_path / "reviews.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    routes = {"args": cli([run_dir, *texts, "--json"], capsys),
              "file": cli([run_dir, "--file", lines, "--json"], capsys),
              "jsonl": cli([run_dir, "--file", jsonl, "--json"], capsys),
              "stdin": cli([run_dir, "--json"], capsys, "\n".join(texts) + "\n", monkeypatch)}
    for name, (rc, out, err) in routes.items():
        assert rc == 0, (name, err)
        got = [json.loads(line) for line in out]
        assert [g["input"] for g in got] == texts, name
        assert [{k: g[k] for k in ("prob", "label", "name")} for g in got] == want, name
    rc, out, _ = cli([run_dir, *texts], capsys)
    assert rc == 0 and len(out) == len(texts)
    for line, r, t in zip(out, want, texts):
        assert line.startswith(f"{r['prob']:.4f} {'positive' if r['label'] else 'negative'}  ")
        assert t.startswith(line.split("  ", 1)[1].rstrip("."))


def test_cli_images(fashion_run, tmp_path, capsys):
    from PIL import Image

    run_dir, data = fashion_run
    idx = data / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    images = np.fromfile(idx, np.uint8, offset=16).reshape(-1, 28, 28)
    png = tmp_path / "one.png"
    Image.fromarray(images[0]).save(png)
    want = load(run_dir).predict([png, idx])
    rc, out, err = cli([run_dir, png, idx, "--json"], capsys)
    assert rc == 0, err
    got = [json.loads(line) for line in out]
    assert [{k: v for k, v in g.items() if k != "input"} for g in got] == want
    assert got[0]["input"] == str(png) and got[1]["input"] == f"{idx}[0]" and len(got) == 1 + len(images)
    rc, out, _ = cli([run_dir, png], capsys)
    k = want[0]["label"]
    assert out == [f"{k} {FASHION_CLASSES[k]}  {want[0]['probs'][k]:.2f}  {png}"]


def _one_error_line(rc: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_cli_bad_inputs(imdb_run, fashion_run, tmp_path, capsys, monkeypatch):
    run_dir, _ = imdb_run
    empty_run = tmp_path / "empty_run"
    (empty_run / "checkpoints").mkdir(parents=True)
    (empty_run / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    bad_png = tmp_path / "bad.png"
    bad_png.write_text("not an image")
    blank_inside = tmp_path / "blank.txt"
    blank_inside.write_text("good film\n\nbad film\n")
    bad_jsonl = tmp_path / "r.jsonl"
    bad_jsonl.write_text('{"review": "no text field"}\n')
    cases = {
        "empty review": ([run_dir, "fine", ""], None),
        "no checkpoint": ([empty_run, "fine"], None),
        "not found": ([tmp_path / "nope", "fine"], None),
        "not a readable image": ([fashion_run[0], bad_png], None),
        "line 2: empty review": ([run_dir, "--file", blank_inside], None),
        "'text' string field": ([run_dir, "--file", bad_jsonl], None),
        "word index": ([run_dir, "x", "--word-index", tmp_path / "none.json"], None),
        "no inputs": ([run_dir], ""),
        "--file": ([run_dir, "--file", tmp_path / "missing.txt"], None),
        "not both": ([run_dir, "x", "--file", blank_inside], None),
        "unrecognized": ([run_dir, "x", "--bogus"], None),
    }
    for expect, (argv, stdin) in cases.items():
        rc, _, err = cli(argv, capsys, stdin, monkeypatch)
        assert expect in _one_error_line(rc, err), (expect, err)


@pytest.mark.slow
def test_cli_subprocess(imdb_run):
    """The scripts/predict.py shim: --help without torch, a real prediction, a one-line error with exit 2."""
    run_dir, _ = imdb_run
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = str(ROOT / "scripts" / "predict.py")
    check = ("import sys, runpy; sys.argv = ['predict', '--help']\n"
             "try: runpy.run_path(%r, run_name='__main__')\n"
             "except SystemExit: pass\nprint('torch' in sys.modules)" % script)
    r = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout.strip().endswith("False"), r.stderr
    r = subprocess.run([sys.executable, script, str(run_dir), "w1 w2 w3"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1, r.stderr
    assert r.stdout.split()[0] == f"{load(run_dir).predict(['w1 w2 w3'])[0]['prob']:.4f}"
    r = subprocess.run([sys.executable, script, str(run_dir), " "], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == "error: review 1: empty review text"
