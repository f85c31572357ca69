"""Issue 13: exported models (torch.export, TorchScript, ONNX when installed) give the checkpoint's probabilities;
issue 25: pt2 is the default, loads without lit_regularize, and a text model's <out>.json encodes raw text."""
from __future__ import annotations

import contextlib
import errno
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT
from test_predict import NUM_WORDS, fashion_run, imdb_run, reviews, word_index_of  # noqa: F401 - fixtures
from lit_regularize.cli.predict import export_main
from lit_regularize.data.multihot import MultiHot
from lit_regularize.errors import DataError, UserError
from lit_regularize.export import export
from lit_regularize.predict import _model_from_run_config, find_checkpoint, load
from lit_regularize.text import encode_texts


def imdb_inputs(n: int = 100) -> tuple[torch.Tensor, MultiHot]:
    crow, cols = encode_texts(reviews(n, seed=11), word_index_of(), NUM_WORDS)
    batch = MultiHot(torch.from_numpy(crow), torch.from_numpy(cols), NUM_WORDS)
    return batch.to_dense(), batch


def image_inputs(n: int = 100) -> torch.Tensor:
    images = np.random.RandomState(2).randint(0, 256, (n, 28, 28)).astype(np.uint8)
    return (torch.from_numpy(images).float().reshape(n, -1) / 255 - 0.2860) / 0.3530


def test_torchscript_imdb_equals_checkpoint(imdb_run, tmp_path):
    run_dir, _ = imdb_run
    out = export(run_dir, "torchscript", tmp_path / "imdb.pt")
    ts = torch.jit.load(str(out))
    assert "lit_regularize" not in ts.code and "lit_regularize" not in str(ts.graph)
    dense, csr = imdb_inputs()
    p = load(run_dir)
    with torch.no_grad():
        got = ts(dense)
    assert got.shape == (100,)
    assert torch.allclose(got, p.probabilities(csr), atol=1e-5)
    meta = json.loads((tmp_path / "imdb.pt.json").read_text())
    assert meta["input_size"] == NUM_WORDS == meta["num_words"] and meta["normalization"] is None
    assert meta["output"] == "sigmoid" and meta["class_names"] == ["negative", "positive"]
    assert meta["checkpoint"] == str(find_checkpoint(run_dir))


def test_torchscript_images_equals_checkpoint(fashion_run, tmp_path):
    run_dir, _ = fashion_run
    argv = [str(run_dir), "--format", "torchscript", "--out", str(tmp_path / "f.pt"), "--last"]
    assert export_main(argv) == 0
    ts = torch.jit.load(str(tmp_path / "f.pt"))
    x = image_inputs()
    p = load(run_dir, last=True)
    with torch.no_grad():
        got = ts(x)
    assert got.shape == (100, 10)
    assert torch.allclose(got, p.probabilities(x), atol=1e-5)
    meta = json.loads((tmp_path / "f.pt.json").read_text())
    assert meta["normalization"] == {"mean": 0.2860, "std": 0.3530} and meta["input_size"] == 784
    assert meta["output"] == "softmax" and meta["class_names"][7] == "Sneaker" and meta["num_words"] is None
    assert meta["checkpoint"].endswith("last.ckpt")


def test_pt2_is_the_default_and_equals_checkpoint(imdb_run, fashion_run, tmp_path, capsys):
    """torch.jit warns that TorchScript is deprecated: `export` writes a torch.export program by default."""
    for (run_dir, _), x, batch in ((imdb_run, *imdb_inputs()), (fashion_run, image_inputs(), None)):
        out = tmp_path / f"{run_dir.parent.name}.pt2"
        assert export_main([str(run_dir), "--out", str(out)]) == 0
        assert capsys.readouterr().err == ""
        model = torch.export.load(str(out)).module()
        with torch.no_grad():
            got = model(x)
        want = load(run_dir).probabilities(batch if batch is not None else x)
        assert torch.allclose(got, want, atol=1e-5)  # float rounding only; another network is off by far more
        assert torch.allclose(model(x[:1]), want[:1], atol=1e-5)  # any batch size, one row included
        assert json.loads(Path(f"{out}.json").read_text())["format"] == "pt2"


def docs_snippet() -> str:
    """The Python block of docs/predict-export.md that classifies a review without lit_regularize."""
    text = (ROOT / "docs" / "predict-export.md").read_text()
    section = text.split("### Classify a review without lit_regularize", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def snippet_for(model: Path, review: str) -> str:
    """The docs' block with its file names and review replaced."""
    code = docs_snippet()
    assert len([line for line in code.splitlines() if line.strip()]) <= 11  # what the docs promise: a few lines
    for old, new in (('"imdb.pt2.json"', f"{model}.json"), ('"imdb.pt2"', str(model)),
                     ('"A moving, wonderful film."', review)):
        assert old in code
        code = code.replace(old, json.dumps(new))
    return code


def run_snippet(model: Path, review: str, monkeypatch) -> tuple[str, float]:
    """(class name, probability) the docs' block prints, run while lit_regularize cannot be imported."""
    import builtins

    real_import = builtins.__import__

    def no_package(name, *args, **kwargs):
        if name.split(".")[0] == "lit_regularize":
            raise ImportError(f"{name} must not be needed")
        return real_import(name, *args, **kwargs)
    out = io.StringIO()
    with monkeypatch.context() as m, contextlib.redirect_stdout(out):
        m.setattr(builtins, "__import__", no_package)
        exec(snippet_for(model, review), {})  # noqa: S102 - the documented lines, as a user runs them
    name, p = out.getvalue().rsplit(maxsplit=1)
    return name, float(p)


def test_docs_snippet_classifies_a_raw_review_like_predict(imdb_run, tmp_path, monkeypatch):
    run_dir, _ = imdb_run
    out = export(run_dir, "pt2", tmp_path / "imdb.pt2")
    meta = json.loads(Path(f"{out}.json").read_text())
    assert meta["text"]["word_ids"] == {f"w{r}": r + 3 for r in range(1, NUM_WORDS - 3)}  # only ids < num_words
    p = load(run_dir)
    for review in reviews(3, seed=4):
        name, prob = run_snippet(out, review, monkeypatch)
        want = p.predict([review])[0]
        assert name == want["name"] and prob == pytest.approx(want["probs"][1], abs=1e-4)  # printed to 4 places


@pytest.mark.slow
def test_docs_snippet_runs_in_a_process_without_lit_regularize(imdb_run, tmp_path):
    run_dir, _ = imdb_run
    out = export(run_dir, "pt2", tmp_path / "imdb.pt2")
    review = reviews(1, seed=6)[0]
    code = "import sys\nsys.modules['lit_regularize'] = None  # any import of it fails\n" + snippet_for(out, review)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    name, prob = done.stdout.rsplit(maxsplit=1)
    want = load(run_dir).predict([review])[0]
    assert name == want["name"] and float(prob) == pytest.approx(want["probs"][1], abs=1e-4)


def test_an_imdb_run_without_its_word_index_still_exports(imdb_run, tmp_path, capsys):
    """export needed no word index before: without one the recipe lacks the vocabulary and one warning says so;
    predict, which needs it, still refuses."""
    run_dir, _ = imdb_run
    assert export_main([str(run_dir), "--out", str(tmp_path / "m.pt2"), "--data-dir", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "m.pt2.json").read_text())
    assert meta["text"] is None and "notes" not in meta
    assert capsys.readouterr().err.splitlines() == [
        f"warning: no {tmp_path / 'imdb_word_index.json'}: the vocabulary is left out (export again with "
        "--word-index PATH)"]
    with pytest.raises(DataError, match="word index .* not found"):
        load(run_dir, data_dir=tmp_path)


def test_export_extra_installs_what_loading_needs():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extra = {line.split(">")[0].split("=")[0].strip() for line in cfg["options.extras_require"]["export"].split()}
    assert {"onnx", "onnxruntime"} <= extra


HAVE_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


@pytest.mark.skipif(not HAVE_ONNX, reason="onnx / onnxruntime not installed")
def test_onnx_equals_checkpoint(imdb_run, fashion_run, tmp_path):
    import onnxruntime

    for (run_dir, _), x, batch in ((imdb_run, *imdb_inputs()), (fashion_run, image_inputs(), None)):
        out = export(run_dir, "onnx", tmp_path / f"{run_dir.parent.name}.onnx")
        sess = onnxruntime.InferenceSession(str(out))
        got = sess.run(None, {"x": x.numpy()})[0]
        want = load(run_dir).probabilities(batch if batch is not None else x).numpy()
        assert np.allclose(got, want, atol=1e-5)


def test_onnx_without_onnx_is_one_line(imdb_run, tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx":
            raise ImportError("no onnx")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_onnx)
    rc = export_main([str(imdb_run[0]), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == "error: ONNX export needs the onnx package: pip install '.[export]'"
    assert not (tmp_path / "m.onnx").exists()


def test_export_errors(imdb_run, tmp_path, capsys):
    with pytest.raises(UserError, match="unknown format"):
        export(imdb_run[0], "tflite", tmp_path / "m")
    with pytest.raises(SystemExit) as e:
        export_main([str(imdb_run[0]), "--format", "tflite", "--out", str(tmp_path / "m")])
    assert e.value.code == 2 and capsys.readouterr().err.startswith("error: argument --format")
    assert export_main([str(tmp_path), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_rebuilding_from_config_yaml_matches_load_from_checkpoint(imdb_run):
    """load_model's fallback (model from the run's config.yaml + state dict) gives the same model."""
    run_dir, _ = imdb_run
    ckpt = find_checkpoint(run_dir)
    rebuilt = _model_from_run_config(ckpt).eval()
    _, batch = imdb_inputs(20)
    with torch.no_grad():
        assert torch.equal(rebuilt(batch), load(run_dir).model(batch))


# -- issue 21: every output path of export ---------------------------------------------------------------------

def one_line(rc: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def leftovers(folder) -> list[str]:
    """Every file and folder under folder (temporary files included)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("fails", ["model", "json"])
@pytest.mark.parametrize("error", [OSError(errno.ENOSPC), OSError(errno.ENOSPC, "No space left on device")],
                         ids=["bare errno", "with strerror"])
def test_export_on_a_full_disk(imdb_run, tmp_path, capsys, monkeypatch, fails, error):
    """A full disk said `cannot write (None)`: it must say the disk is full and leave no partial model or .json
    (an OSError built from a bare errno has no strerror)."""
    from lit_regularize import export as export_module
    from lit_regularize import files

    def full_disk(f):
        f.write(b"half a file")
        raise error

    earlier = tmp_path / "old" / "m.pt"  # an earlier export at --out stays as it was, model and .json
    assert export_main([str(imdb_run[0]), "--out", str(earlier)]) == 0
    before = {p: p.read_bytes() for p in (earlier, Path(f"{earlier}.json"))}
    capsys.readouterr()
    if fails == "model":
        monkeypatch.setattr(export_module, "atomic_write", lambda path, write: files.atomic_write(path, full_disk))
    else:  # the model is written, its description is not: neither may be left
        monkeypatch.setattr(export_module, "write_json", lambda path, obj: files.atomic_write(path, full_disk))
    for out in (tmp_path / "new" / "m.pt", earlier):
        rc = export_main([str(imdb_run[0]), "--out", str(out)])
        line = one_line(rc, capsys.readouterr().err)
        assert line == f"error: --out {out}: the disk is full; nothing was written (free space, then export again)"
    # no new model, .json, temporary file or created folder; the earlier export untouched
    assert leftovers(tmp_path) == ["old", "old/m.pt", "old/m.pt.json"]
    assert all(p.read_bytes() == content for p, content in before.items())


def test_export_out_paths(imdb_run, tmp_path, capsys, monkeypatch):
    """--out in a missing folder (created), a folder name, a path through a file, a read-only folder."""
    import os
    import tempfile

    run_dir = str(imdb_run[0])
    deep = tmp_path / "new" / "sub" / "m.pt"
    assert export_main([run_dir, "--out", str(deep)]) == 0
    assert deep.is_file() and json.loads(Path(f"{deep}.json").read_text())["input_size"] == NUM_WORDS
    capsys.readouterr()
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "taken.pt.json").mkdir()
    cases = {str(tmp_path): "is a folder; give a file name",
             f"{tmp_path}/newdir/": "names a folder; give a file name",
             str(tmp_path / "afile" / "m.pt"): f"{tmp_path / 'afile'} is a file, not a folder",
             str(tmp_path / "taken.pt"): "taken.pt.json is a folder"}
    for out, expect in cases.items():
        rc = export_main([run_dir, "--out", out])
        assert expect in one_line(rc, capsys.readouterr().err), out
    assert not (tmp_path / "newdir").exists() and not (tmp_path / "taken.pt").exists()
    # a read-only folder, checked up front (root may write anyway, so the check is simulated)
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    rc = export_main([run_dir, "--out", str(tmp_path / "ro" / "m.pt")])
    assert f"cannot write in {tmp_path} (permission denied)" in one_line(rc, capsys.readouterr().err)
    monkeypatch.undo()

    def refused(*args, **kwargs):  # what a read-only mount says when the file is created
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(tempfile, "mkstemp", refused)
    before = leftovers(tmp_path)
    rc = export_main([run_dir, "--out", str(tmp_path / "ro" / "m.pt")])
    line = one_line(rc, capsys.readouterr().err)
    assert line.startswith(f"error: --out {tmp_path / 'ro' / 'm.pt'}: cannot write (Permission denied")
    assert "None" not in line
    assert leftovers(tmp_path) == before  # the folder it created for --out is removed again


def test_export_agrees_with_predict_on_bright_images(fashion_run, tmp_path, capsys):
    """predict inverted bright PNGs (mean > 127) while the exported model, fed the idx pixels, did not."""
    from PIL import Image

    from lit_regularize.cli.predict import main as predict_main

    run_dir, data = fashion_run
    images = 255 - np.fromfile(data / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte", np.uint8,
                               offset=16).reshape(-1, 28, 28)[:8]  # bright pictures
    paths = []
    for i, img in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(paths[-1])
    assert predict_main([str(run_dir), *map(str, paths), "--json"]) == 0
    by_predict = np.asarray([json.loads(line)["probs"] for line in capsys.readouterr().out.splitlines()])
    out = export(run_dir, "torchscript", tmp_path / "f.pt")
    meta = json.loads(Path(f"{out}.json").read_text())
    x = (torch.from_numpy(images).float().reshape(len(images), -1) / 255 - meta["normalization"]["mean"]) \
        / meta["normalization"]["std"]
    with torch.no_grad():
        by_export = torch.jit.load(str(out))(x).numpy()
    assert np.allclose(by_predict, by_export, atol=1e-5)  # float rounding only; an inverted input is far off
