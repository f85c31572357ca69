"""Issue 13: exported models (TorchScript, ONNX when installed) give the checkpoint's probabilities."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from test_predict import NUM_WORDS, fashion_run, imdb_run, reviews, word_index_of  # noqa: F401 - fixtures
from lit_regularize.cli.predict import export_main
from lit_regularize.data.imdb import MultiHot
from lit_regularize.errors import UserError
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
