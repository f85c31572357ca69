"""Export a run's model as a self-contained file: dense input -> probabilities, loadable without lit_regularize.

Formats: `pt2` (the default: `torch.export`, loaded with `torch.export.load(path).module()`), `onnx` (onnxruntime;
pip install '.[export]'), `torchscript` (`torch.jit.load`; TorchScript is deprecated in torch, kept for old users).
The exported module is a plain `torch.nn.Sequential` (Linear / BatchNorm1d / ReLU / Dropout in eval mode, then a
probability head), so loading it needs torch (or onnxruntime) only.

Input (float32, shape (N, input_size)), as the run's data kind describes it in `<out>.json` (`input`,
`normalization`, and what building a row needs):
  text kinds (imdb, textdir): multi-hot rows of width num_words; `text` holds the whole recipe (lower-case, the
        characters turned into spaces, the split, the start / out-of-vocabulary columns and every kept word's
        column), so a few lines of plain Python encode a raw review (docs/predict-export.md);
  MNIST / Fashion-MNIST: 784 pixels (row-major 28x28), normalized as in training: (x / 255 - mean) / std;
  own data: csv standardized numbers then one-hot categories (`preprocessing`: the run's preprocessing.json), npz
        the features as given, imagedir image_size^2 pixels normalized with the run's mean / std.
Output: P(class_names[1]), shape (N,) (sigmoid) for two classes; softmax probabilities (N, C) otherwise.

The model is the one `lit_regularize.predict.open_run` checks for predict as well: a k-fold folder exports its refit
model, a checkpoint of another run (input width or classes not the run's) or with non-finite weights is refused,
a run that is not completed is exported with a `warning:` line naming its status and the epoch of the weights.
--out must name a file (not a folder) whose folder can be written (missing folders are created); the model and
`<out>.json` are written atomically, both or neither: a full disk or a read-only folder is one error line and
leaves no partial file.
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn

from lit_regularize.data.kinds import PredictOptions, data_kind
from lit_regularize.errors import UserError
from lit_regularize.files import atomic_write, write_json
from lit_regularize.oserrors import is_disk_full, os_reason
from lit_regularize.predict import input_size, n_outputs, open_run
from lit_regularize.rundir import RunDir

FORMATS = ("pt2", "onnx", "torchscript")  # the first is the default


def plain_network(model: nn.Module, binary: bool) -> nn.Sequential:
    """A pure-torch copy of model.net as it computes in eval mode, + a probability head, in eval mode.

    Every Linear (the sparse first layer, a spectral-normed or otherwise parametrized one) becomes a plain
    nn.Linear holding the weights the layer uses in eval mode; a layer of a regularizer that defines `exported()`
    is replaced by what that returns (None: dropped, e.g. Gaussian noise, the identity in eval mode); torch's own
    layers (BatchNorm, ReLU, Dropout) are copied."""
    model.eval()  # parametrizations read in eval mode: spectral_norm divides by its stored sigma, updating nothing
    layers: list[nn.Module] = []
    for m in model.net:
        if isinstance(m, nn.Linear):
            layers.append(_plain_linear(m))
        elif callable(getattr(m, "exported", None)):
            replacement = m.exported()
            if replacement is not None:
                layers.append(replacement)
        elif type(m).__module__.startswith("torch.nn"):
            layers.append(copy.deepcopy(m))
        else:
            raise UserError(f"cannot export layer {type(m).__name__}: "
                            "only Linear/BatchNorm/ReLU/Dropout are supported")
    layers += [nn.Sigmoid(), nn.Flatten(0)] if binary else [nn.Softmax(dim=-1)]
    net = nn.Sequential(*layers).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _plain_linear(m: nn.Linear) -> nn.Linear:
    """An nn.Linear with the weights m computes with (MultiHotLinear's, or a parametrization's W / sigma)."""
    lin = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    with torch.no_grad():
        lin.weight.copy_(m.weight)
        if m.bias is not None:
            lin.bias.copy_(m.bias)
    return lin


def metadata(cfg: dict[str, Any], fmt: str, checkpoint: Path, input_size: int, model: nn.Module,
             options: PredictOptions = PredictOptions()) -> dict[str, Any]:
    """What a user of the exported file needs to build its input and read its output: the run's kind describes the
    input (and may add `notes` for stderr), the output follows from the model."""
    kind = data_kind(cfg["data"])
    rundir = RunDir(checkpoint.parent.parent)
    names = kind.class_names(cfg, rundir)
    binary = bool(getattr(model, "binary", False))
    meta: dict[str, Any] = {"format": fmt, "data": cfg["data"], "checkpoint": str(checkpoint),
                            "input_size": input_size, "input_dtype": "float32"}
    meta.update(kind.metadata(cfg, rundir, options))
    meta.update(class_names=list(names), output="sigmoid" if binary else "softmax",
                output_shape=["N"] if binary else ["N", n_outputs(model)],
                output_meaning=f"P({names[1]})" if binary else "class probabilities")
    return meta


def out_path(out: str | os.PathLike) -> Path:
    """--out as a file path that can be written, checked before anything is loaded or written."""
    text = os.fspath(out)
    if not text or text.endswith(("/", os.sep)):
        raise UserError(f"--out {text!r}: names a folder; give a file name (e.g. model.pt)")
    path = Path(text).expanduser()
    for target in (path, Path(f"{path}.json")):
        if target.is_dir():
            raise UserError(f"--out {path}: {target} is a folder; give a file name")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # the nearest folder that exists must take new files
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"--out {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"--out {path}: cannot write in {folder} (permission denied)")
    return path


def serialized(net: nn.Sequential, fmt: str, width: int) -> bytes:
    """The exported file's bytes (built in memory, so writing it is one atomic write); any batch size N >= 1."""
    buf = io.BytesIO()
    example = (torch.zeros(2, width),)
    if fmt == "pt2":
        program = torch.export.export(net, example, dynamic_shapes=({0: torch.export.Dim("N", min=1)},))
        torch.export.save(program, buf)
    elif fmt == "torchscript":
        with warnings.catch_warnings():  # newer torch calls TorchScript deprecated; it is still asked for
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(torch.jit.script(net), buf)
    else:  # torch's TorchScript-based ONNX exporter needs only onnx (the dynamo one also onnxscript, and 10 s)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(net, example, buf, input_names=["x"], output_names=["probs"],
                              dynamic_axes={"x": {0: "N"}, "probs": {0: "N"}}, dynamo=False)
    return buf.getvalue()


def write_failure(out: Path, e: OSError) -> UserError:
    """One error line for a failed write of --out: a full disk says so; no reason ever reads 'None'."""
    if is_disk_full(e):
        return UserError(f"--out {out}: the disk is full; nothing was written (free space, then export again)")
    return UserError(f"--out {out}: cannot write ({os_reason(e)}); nothing was written")


def write_export(out: Path, content: bytes, meta: dict[str, Any]) -> None:
    """out and <out>.json, both or neither: each is written completely under a hidden name first, then both are
    renamed into place. A failure removes what this call wrote (and folders it created) and is one UserError; an
    earlier export at out stays as it was."""
    description = Path(f"{out}.json")
    staged = [out.with_name(f".{out.name}.export"), out.with_name(f".{description.name}.export")]
    created = [d for d in [out.parent, *out.parent.parents] if not d.exists()]  # innermost first
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(staged[0], lambda f: f.write(content))
        write_json(staged[1], meta)
        os.replace(staged[0], out)
        os.replace(staged[1], description)
    except BaseException as e:  # Ctrl-C included: nothing half-done stays behind
        for path in staged:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        for d in created:
            try:
                d.rmdir()  # only ever removes an empty folder this call made
            except OSError:
                break
        if isinstance(e, OSError):
            raise write_failure(out, e) from None
        raise


def export(run_dir: str | os.PathLike, fmt: str, out: str | os.PathLike, last: bool = False,
           word_index: Optional[str | os.PathLike] = None, data_dir: Optional[str | os.PathLike] = None) -> Path:
    """Write the run's best (or last) model as fmt to out and its description to <out>.json; returns out.
    word_index / data_dir: where an IMDB run's word index is (default: its data folder), for the text recipe."""
    if fmt not in FORMATS:
        raise UserError(f"--format: unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    out = out_path(out)
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401 - torch.onnx.export needs it
        except ImportError:
            raise UserError("ONNX export needs the onnx package: pip install '.[export]'") from None
    run = open_run(run_dir, last)
    cfg, model = run.settings, run.model
    width = input_size(model)
    options = PredictOptions(word_index=os.fspath(word_index) if word_index else None,
                             data_dir=os.fspath(data_dir) if data_dir else None)
    meta = metadata(cfg, fmt, run.checkpoint, width, model, options)  # a missing artifact fails before writing
    notes = meta.pop("notes", [])
    write_export(out, serialized(plain_network(model, bool(model.binary)), fmt, width), meta)
    run.say_notes()
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    return out


__all__ = ["export", "plain_network", "metadata", "out_path", "serialized", "write_export", "write_failure",
           "FORMATS"]
