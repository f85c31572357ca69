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
from lit_regularize.data.imdb import load_imdb
from lit_regularize.data.kinds.mnist import FASHION_CLASSES
from lit_regularize.data.multihot import MultiHot
from lit_regularize.errors import DataError, UserError
from lit_regularize.predict import find_checkpoint, load, load_model
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
    assert p.checkpoint == run_dir / summary["best_checkpoint"] and p.inputs.num_words == NUM_WORDS
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
    assert [r["probs"][1] for r in got] == pytest.approx(want, abs=1e-6)
    assert [r["label"] for r in got] == [int(w > 0.5) for w in want]
    # issue 25: every kind gives the same keys; probability is the named class's
    assert set(got[0]) == {"label", "name", "probability", "probs"}
    assert all(r["probability"] == r["probs"][r["label"]] for r in got)
    assert [r["name"] for r in got] == [("negative", "positive")[r["label"]] for r in got]
    assert p.predict(texts[0]) == got[:1]  # one string is one review


def test_predict_eval_mode_is_deterministic(imdb_run):
    """Dropout off and BatchNorm on running stats: repeated and single-row predictions agree."""
    run_dir, _ = imdb_run
    p = load(run_dir)
    texts = reviews(20, seed=3)
    first = p.predict(texts)
    assert p.predict(texts) == first
    singles = [p.predict([t])[0]["probs"][1] for t in texts]  # BatchNorm in train mode would fail on one row
    assert singles == pytest.approx([r["probs"][1] for r in first], abs=1e-6)
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
    from lit_regularize.data.kinds import data_kind
    from lit_regularize.data.mnist import IMAGE_DATASETS
    from torchvision.datasets import FashionMNIST

    # issue 25: every kind names its classes (MNIST: the digits), so predict prints the same columns for all
    assert data_kind("fashion_mnist").class_names({}, None) == list(FashionMNIST.classes)
    assert data_kind("mnist").class_names({}, None) == [str(d) for d in range(10)]
    assert set(IMAGE_DATASETS) == {"mnist", "fashion_mnist"}


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


def test_image_preparation_inverts_when_asked_and_fits():
    """invert=True inverts dark-on-light images (never done unasked); other sizes are cropped to the content,
    fitted and centered."""
    from PIL import Image

    from lit_regularize.data.mnist import prepare_image

    page = np.full((100, 60), 255, np.uint8)  # white paper, a black 40x20 bar
    page[30:70, 20:40] = 0
    out = prepare_image(Image.fromarray(page).convert("RGB"), "fashion_mnist", invert=True)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out[14, 14] > 200 and out[14, 0] == 0 and out[14, 27] == 0  # a light bar on black, centered
    as_is = prepare_image(Image.fromarray(page[:28, :28]), "fashion_mnist")
    assert np.array_equal(as_is, page[:28, :28])  # bright (mean > 127) but not inverted: nothing is guessed
    digit = prepare_image(Image.fromarray(page), "mnist", invert=True)
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
        assert [{k: g[k] for k in ("label", "name", "probability", "probs")} for g in got] == want, name
    rc, out, _ = cli([run_dir, *texts], capsys)
    assert rc == 0 and len(out) == len(texts)
    for line, r, t in zip(out, want, texts):  # LABEL NAME  PROBABILITY  INPUT, as for every kind
        assert line.startswith(f"{r['label']} {'positive' if r['label'] else 'negative'}  {r['probability']:.4f}  ")
        assert t.startswith(line.split("  ", 2)[2].rstrip("."))


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
    assert [(g["label"], g["name"]) for g in got] == [(w["label"], w["name"]) for w in want]
    # the CLI batches [png] + idx apart from the library's single batch: equal up to float rounding (1e-6 still
    # catches another encoding, which moves probabilities by far more)
    assert np.allclose([g["probs"] for g in got], [w["probs"] for w in want], atol=1e-6, rtol=0)
    assert got[0]["input"] == str(png) and got[1]["input"] == f"{idx}[0]" and len(got) == 1 + len(images)
    rc, out, _ = cli([run_dir, png], capsys)
    k = want[0]["label"]
    assert out == [f"{k} {FASHION_CLASSES[k]}  {want[0]['probs'][k]:.4f}  {png}"]


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


def _finished(proc: subprocess.Popen, timeout: float) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
def test_cli_subprocess(imdb_run):
    """The scripts/predict.py shim: --help without torch, a real prediction, a one-line error with exit 2."""
    run_dir, _ = imdb_run
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = str(ROOT / "scripts" / "predict.py")
    check = ("import sys, runpy; sys.argv = ['predict', '--help']\n"
             "try: runpy.run_path(%r, run_name='__main__')\n"
             "except SystemExit: pass\nprint('torch' in sys.modules)" % script)
    # the three processes run side by side (each of the last two spends seconds importing torch and Lightning)
    started = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for cmd in ([sys.executable, "-c", check], [sys.executable, script, str(run_dir), "w1 w2 w3"],
                           [sys.executable, script, str(run_dir), " "])]
    helped, r, refused = [_finished(p, timeout=120) for p in started]
    assert helped.returncode == 0 and helped.stdout.strip().endswith("False"), helped.stderr
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1, r.stderr
    want = load(run_dir).predict(['w1 w2 w3'])[0]  # LABEL NAME  PROBABILITY  INPUT
    label, name, prob = r.stdout.split()[:3]
    # another process: equal within the printed rounding (a wrong class or model moves it far more)
    assert [label, name] == [str(want["label"]), want["name"]] and abs(float(prob) - want["probability"]) < 2e-4
    assert refused.returncode == 2 and refused.stderr.strip() == "error: review 1: empty review text"


# -- issue 21: reliability ----------------------------------------------------------------------------------
# Each test names the fault it catches; every refusal is one `error:` line with exit 2 and writes nothing.

def copy_run(run_dir: Path, tmp_path: Path, name: str = "run") -> Path:
    """A copy of a module-scoped run folder that a test may damage."""
    import shutil

    dst = tmp_path / name
    shutil.copytree(run_dir, dst)
    return dst


def edit_summary(run_dir: Path, **changes) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.update(changes)
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return summary


def export_cli(argv: list, capsys) -> tuple[int, str]:
    from lit_regularize.cli.predict import export_main

    rc = export_main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def idx_images(data: Path, n: int) -> np.ndarray:
    return np.fromfile(data / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte", np.uint8, offset=16
                       ).reshape(-1, 28, 28)[:n]


def save_pngs(images: np.ndarray, folder: Path, prefix: str = "img") -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{prefix}{i}.png" for i in range(len(images))]
    for img, p in zip(images, paths):
        Image.fromarray(img).save(p)
    return paths


def test_checkpoint_of_another_run_is_refused(imdb_run, fashion_run, tmp_path, capsys):
    """A Fashion-MNIST best-*.ckpt copied into an IMDB run (and the reverse) was used: predict printed a label,
    export wrote metadata for the wrong input size."""
    import shutil

    imdb, fashion = copy_run(imdb_run[0], tmp_path, "imdb"), copy_run(fashion_run[0], tmp_path, "fashion")
    imdb_best, fashion_best = find_checkpoint(imdb), find_checkpoint(fashion)
    saved = imdb_best.read_bytes()
    shutil.copy(fashion_best, imdb_best)
    fashion_best.write_bytes(saved)
    png = save_pngs(idx_images(fashion_run[1], 1), tmp_path)[0]
    cases = ((imdb, ["w1 w2 w3"], "takes 784 inputs and has 10 classes, but the run (imdb with num_words 40) "
                                  "needs 40 inputs and 2 classes"),
             (fashion, [png], "takes 40 inputs and has 2 classes, but the run (fashion_mnist: 28x28 images, "
                              "10 classes) needs 784 inputs and 10 classes"))
    for run_dir, inputs, expect in cases:
        with pytest.raises(DataError, match="not this run's checkpoint"):
            load(run_dir)
        rc, out, err = cli([run_dir, *inputs], capsys)
        assert expect in _one_error_line(rc, err) and out == []
        rc, err = export_cli([run_dir, "--out", tmp_path / "m.pt"], capsys)
        assert expect in _one_error_line(rc, err)
        assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.pt.json").exists()


def test_png_written_from_idx_predicts_like_the_idx_image(fashion_run, tmp_path, capsys):
    """Bright images (mean > 127; 5.7 % of the real Fashion-MNIST test set) were inverted when read from a PNG, so
    the PNG and the idx image of the same picture got other labels."""
    run_dir, data = fashion_run
    images = idx_images(data, 10)
    both = np.concatenate([images, 255 - images])  # the second half is bright, like a white shirt on black
    assert (both.reshape(len(both), -1).mean(1) > 127).sum() == 10
    idx = tmp_path / "both-idx3-ubyte"
    idx.write_bytes(idx_bytes(both))
    pngs = save_pngs(both, tmp_path / "png")
    rc, out, err = cli([run_dir, idx, *pngs, "--json"], capsys)
    assert rc == 0 and err == "", err
    got = [json.loads(line) for line in out]
    from_idx, from_png = got[:len(both)], got[len(both):]
    assert [g["label"] for g in from_png] == [g["label"] for g in from_idx]
    # one batch each side; 1e-6 absorbs float rounding, an inverted image moves probabilities by far more
    assert np.allclose([g["probs"] for g in from_png], [g["probs"] for g in from_idx], atol=1e-6, rtol=0)


def test_invert_is_asked_for_never_guessed(fashion_run, imdb_run, tmp_path, capsys):
    """Inversion is explicit: --invert / load(invert=True) use 255 - pixel of every input image, for dark-on-light
    pictures; without it a picture is taken as it is."""
    run_dir, data = fashion_run
    images = idx_images(data, 6)
    want = load(run_dir).predict(images)
    on_paper = save_pngs(255 - images, tmp_path)  # dark on light: what a scan looks like
    rc, out, err = cli([run_dir, *on_paper, "--invert", "--json"], capsys)
    assert rc == 0 and err == "", err
    got = [json.loads(line) for line in out]
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert np.allclose([g["probs"] for g in got], [w["probs"] for w in want], atol=1e-6, rtol=0)
    as_is = load(run_dir).predict(on_paper)  # not inverted: the model sees dark-on-light pixels
    assert not np.allclose([g["probs"] for g in as_is], [w["probs"] for w in want], atol=1e-3)
    inverted = load(run_dir, invert=True).predict(255 - images)  # arrays too
    assert np.allclose([g["probs"] for g in inverted], [w["probs"] for w in want], atol=1e-6, rtol=0)
    rc, _, err = cli([imdb_run[0], "w1 w2", "--invert"], capsys)
    assert "--invert applies to image runs" in _one_error_line(rc, err)


NOT_UTF8 = b"w1 w2 caf\xe9 w3 \xff\xfe w4"  # 3 bytes that are not UTF-8 (Latin-1 text, a UTF-16 mark)
REPLACED = NOT_UTF8.decode("utf-8", "replace")


def test_non_utf8_text_one_rule_on_every_route(imdb_run, tmp_path, capsys, monkeypatch):
    """--file refused non-UTF-8 text tersely while stdin replaced bytes silently: now every route decodes UTF-8,
    replaces undecodable bytes and says so once, naming the source and the count."""
    run_dir, _ = imdb_run
    want = load(run_dir).predict([REPLACED])[0]
    lines = tmp_path / "reviews.txt"
    lines.write_bytes(NOT_UTF8 + b"\n")
    jsonl = tmp_path / "reviews.jsonl"
    jsonl.write_bytes(b'{"text": "' + NOT_UTF8 + b'"}\n')
    routes = {"argument 1": [os.fsdecode(NOT_UTF8)],  # how Python hands non-UTF-8 argv bytes over
              f"--file {lines}": ["--file", lines], f"--file {jsonl}": ["--file", jsonl], "stdin": []}
    for source, extra in routes.items():
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(NOT_UTF8 + b"\n"), encoding="utf-8"))
        rc, out, err = cli([run_dir, *extra, "--json"], capsys)
        assert rc == 0, (source, err)
        got = json.loads(out[0])
        assert got["input"] == REPLACED and got["probability"] == pytest.approx(want["probability"], abs=1e-6), source
        assert warnings_of(err) == [f"warning: {source}: 3 bytes not UTF-8, replaced by U+FFFD (save the text as "
                                    "UTF-8 to keep them)"], source


def test_text_run_refuses_an_existing_file_as_a_review(imdb_run, tmp_path, capsys, monkeypatch):
    """`predict IMDB_RUN review.txt` classified the string 'review.txt'."""
    run_dir, _ = imdb_run
    review = tmp_path / "review.txt"
    review.write_text("w1 w2 w3\n")
    monkeypatch.chdir(tmp_path)
    rc, out, err = cli([run_dir, "w4 w5", "review.txt"], capsys)
    line = _one_error_line(rc, err)
    assert "argument 2: 'review.txt' is a file" in line and "--file review.txt" in line and out == []
    rc, _, err = cli([run_dir], capsys, "w1 w2\nreview.txt\n", monkeypatch)
    assert "stdin line 2: 'review.txt' is a file" in _one_error_line(rc, err)
    rc, out, _ = cli([run_dir, "--file", "review.txt"], capsys)  # what the hint says works
    assert rc == 0 and len(out) == 1


def test_completed_run_says_nothing(imdb_run, capsys):
    rc, out, err = cli([imdb_run[0], "w1 w2"], capsys)
    assert rc == 0 and len(out) == 1 and err == ""


@pytest.mark.parametrize("status", ["running", "interrupted", "failed"])
def test_unfinished_run_is_used_with_a_warning(imdb_run, tmp_path, capsys, status):
    """predict / export used a running, interrupted or failed run's current best checkpoint without saying so."""
    run_dir = copy_run(imdb_run[0], tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    epoch, ckpt = summary["best_epoch"], Path(summary["best_checkpoint"]).name
    # a run still training has recorded no best checkpoint yet: the newest best-*.ckpt is its current best
    edit_summary(run_dir, status=status, **({"best_checkpoint": None, "best_epoch": None} if status == "running"
                                            else {}))
    rc, out, err = cli([run_dir, "w1 w2"], capsys)
    assert rc == 0 and len(out) == 1
    [line] = warnings_of(err)
    said = "still running (or was killed)" if status == "running" else status  # a killed run stays 'running'
    assert line == f"warning: {run_dir}: the run is {said}, not completed; using {ckpt}, the weights of epoch {epoch}"
    rc, err = export_cli([run_dir, "--out", tmp_path / "m.pt"], capsys)
    assert rc == 0 and warnings_of(err) == [line]


def test_missing_best_checkpoint_is_refused_not_replaced_by_last(imdb_run, tmp_path, capsys):
    """A deleted best checkpoint silently fell back to last.ckpt: the last weights were used as 'best'."""
    run_dir = copy_run(imdb_run[0], tmp_path)
    (run_dir / json.loads((run_dir / "summary.json").read_text())["best_checkpoint"]).unlink()
    with pytest.raises(UserError, match="is missing; restore it, or use the last weights with --last"):
        load(run_dir)
    rc, out, err = cli([run_dir, "w1 w2"], capsys)
    assert "(named in summary.json) is missing" in _one_error_line(rc, err) and out == []
    rc, err = export_cli([run_dir, "--out", tmp_path / "m.pt"], capsys)
    assert "--last" in _one_error_line(rc, err) and not (tmp_path / "m.pt").exists()
    rc, out, err = cli([run_dir, "w1 w2", "--last"], capsys)  # asked for: fine, and nothing to warn about
    assert rc == 0 and len(out) == 1 and err == ""


def test_run_without_validation_uses_last_and_says_so(imdb_run, tmp_path, capsys):
    """No validation, no best checkpoint at all: last.ckpt is the model, and the warning says so."""
    run_dir = _train(tmp_path, {"data_dir": str(imdb_run[1]), "num_words": NUM_WORDS, "val_size": 0,
                                "max_epochs": 1})
    assert json.loads((run_dir / "summary.json").read_text())["best_checkpoint"] is None
    rc, out, err = cli([run_dir, "w1 w2"], capsys)
    assert rc == 0 and len(out) == 1
    assert warnings_of(err) == [f"warning: {run_dir}: no best checkpoint (nothing was validated, or no validation "
                                "loss was finite); using checkpoints/last.ckpt, the weights of epoch 1"]


@pytest.mark.parametrize("tensor", ["net.0.weight", "running_var"])
def test_diverged_weights_are_refused(imdb_run, tmp_path, capsys, tensor):
    """A run whose loss went NaN predicted `nan negative` with exit 0 (weights, or BatchNorm statistics)."""
    run_dir = copy_run(imdb_run[0], tmp_path)
    ckpt = find_checkpoint(run_dir)
    content = torch.load(ckpt, map_location="cpu", weights_only=False)
    key = next(k for k in content["state_dict"] if k.endswith(tensor))
    content["state_dict"][key][(0,) * content["state_dict"][key].dim()] = float("nan")
    torch.save(content, ckpt)
    with pytest.raises(DataError, match="checkpoint weights are not finite"):
        load(run_dir)
    rc, out, err = cli([run_dir, "w1 w2"], capsys)
    line = _one_error_line(rc, err)
    assert "checkpoint weights are not finite" in line and tensor in line and "the run diverged" in line
    assert out == []
    rc, err = export_cli([run_dir, "--out", tmp_path / "m.pt"], capsys)
    assert "not finite" in _one_error_line(rc, err) and not (tmp_path / "m.pt").exists()


def test_kfold_folder_predicts_with_its_refit(imdb_run, tmp_path, capsys):
    """The folder `fit --kfold` prints (fold_*/ and refit/, no checkpoint of its own) was refused with an error
    that did not point to refit/: it now predicts and exports with the refit model, and says so."""
    from lit_regularize.kfold import run_kfold
    from lit_regularize.run import quiet_lightning

    quiet_lightning()
    cfg = make_config({"data_dir": str(imdb_run[1]), "num_words": NUM_WORDS, "kfold": 2, "max_epochs": 2,
                       "hidden": 8, "batch_size": 32, "logdir": str(tmp_path / "logs"), "progress": False,
                       "accelerator": "cpu"})
    summary = run_kfold(cfg, verbose=False)
    parent, refit = Path(summary.run_dir), Path(summary.run_dir) / summary.refit_dir
    rc, out, err = cli([parent, "w1 w2", "--json"], capsys)
    assert rc == 0
    assert warnings_of(err) == [f"note: {parent} is a k-fold folder: using its refit model {refit} (trained on the "
                                f"whole training pool for the chosen {summary.chosen_epoch} epochs)"]
    rc2, out2, _ = cli([refit, "w1 w2", "--json"], capsys)
    assert rc2 == 0 and out == out2  # the very same model and input
    rc, err = export_cli([parent, "--out", tmp_path / "k.pt"], capsys)
    assert rc == 0 and json.loads((tmp_path / "k.pt.json").read_text())["checkpoint"].startswith(str(refit))
    busy = tmp_path / "busy"  # a k-fold folder whose folds are still training: point to refit/
    (busy / "fold_0" / "version_0").mkdir(parents=True)
    rc, _, err = cli([busy, "w1"], capsys)
    assert "k-fold folder whose refit has not finished" in _one_error_line(rc, err) and "refit" in err


def test_full_stdout_is_one_error_line(imdb_run, capsys, monkeypatch):
    """predict's own output path: a full disk under `> out.txt` is one line, not a traceback."""
    import errno

    class Full(io.StringIO):
        def write(self, s):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sys, "stdout", Full())
    rc = main([str(imdb_run[0]), "w1 w2"])
    err = capsys.readouterr().err
    assert _one_error_line(rc, err) == "error: cannot write the predictions to standard output (the disk is full)"


def test_inputs_may_follow_flags(imdb_run, capsys):
    """`predict RUN --json "a review"` was refused as 'unrecognized arguments' (argparse ends nargs='*' early)."""
    rc, out, err = cli([imdb_run[0], "--json", "w1 w2", "--batch-size", "4", "w3"], capsys)
    assert rc == 0 and err == "" and [json.loads(line)["input"] for line in out] == ["w1 w2", "w3"]
