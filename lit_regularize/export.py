"""Export a run's model as a self-contained TorchScript or ONNX file: dense input -> probabilities.

The exported module is a plain `torch.nn.Sequential` (Linear / BatchNorm1d / ReLU / Dropout in eval
mode, then a probability head), so loading it needs torch (or onnxruntime) only, not lit_regularize.

Input (float32, shape (N, input_size)):
  IMDB: multi-hot rows of width num_words, keras ids (1 start, 2 out-of-vocabulary, rank r -> r + 3);
        `lit_regularize.text.encode_texts` + `MultiHot.to_dense()` build them;
  MNIST / Fashion-MNIST: 784 pixels (row-major 28x28), normalized as in training: (x / 255 - mean) / std.
  own data (--data KIND:PATH): the rows training used: csv standardized numbers then one-hot categories
        (`<out>.json` copies the run's preprocessing.json), npz the features as given, textdir multi-hot rows
        (the run's word_index.json), imagedir image_size^2 pixels normalized with the run's mean / std;
        `Predictor.read` (lit_regularize.predict) builds them from files.
Output: IMDB P(positive), shape (N,) (sigmoid); images softmax probabilities, shape (N, 10); own data P(class 1)
(N,) for two classes, else softmax (N, C), classes named as in the run's classes.json.
`<out>.json` beside the file records all of this.

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
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from lit_regularize.config import data_kind
from lit_regularize.errors import UserError
from lit_regularize.files import atomic_write, write_json
from lit_regularize.oserrors import is_disk_full, os_reason
from lit_regularize.predict import CLASS_NAMES, IMAGE_SIZE, input_size, is_own_data, n_outputs, open_run
from lit_regularize.rundir import RunDir

FORMATS = ("torchscript", "onnx")


def plain_network(model: nn.Module, binary: bool) -> nn.Sequential:
    """A pure-torch copy of model.net (first layer a plain nn.Linear) + a probability head, in eval mode."""
    layers: list[nn.Module] = []
    for m in model.net:
        if type(m).__module__.startswith("torch.nn"):
            layers.append(copy.deepcopy(m))
        elif isinstance(m, nn.Linear):  # MultiHotLinear: the same weights in a plain Linear
            lin = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
            with torch.no_grad():
                lin.weight.copy_(m.weight)
                if m.bias is not None:
                    lin.bias.copy_(m.bias)
            layers.append(lin)
        else:
            raise UserError(f"cannot export layer {type(m).__name__}: "
                            "only Linear/BatchNorm/ReLU/Dropout are supported")
    layers += [nn.Sigmoid(), nn.Flatten(0)] if binary else [nn.Softmax(dim=-1)]
    net = nn.Sequential(*layers).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


OWN_INPUTS = {
    "csv": ("CSV rows: the numeric columns standardized, (x - mean) / std, then one 0/1 column per training "
            "category (a category training lacked: all zeros); see preprocessing", "preprocessing.json"),
    "npz": ("the npz's feature rows as given (no scaling)", None),
    "textdir": ("multi-hot rows: 1.0 at every keras word id of the text (1 start, 2 OOV, rank r -> id r + 3, ids >= "
                "num_words -> 2), ranks from the run folder's word_index.json", None),
    "imagedir": ("image_size x image_size grayscale images (resized bilinearly), flattened row-major, normalized "
                 "as (x / 255 - mean) / std", "normalization.json"),
}


def metadata(cfg: dict[str, Any], fmt: str, checkpoint: Path, input_size: int,
             model: nn.Module | None = None) -> dict[str, Any]:
    """What a user of the exported file needs to build its input and read its output."""
    data = cfg["data"]
    meta: dict[str, Any] = {"format": fmt, "data": data, "checkpoint": str(checkpoint),
                            "input_size": input_size, "input_dtype": "float32"}
    if is_own_data(cfg):
        rundir = RunDir(checkpoint.parent.parent)
        kind = data_kind(data)
        text, artifact = OWN_INPUTS[kind]
        binary = bool(getattr(model, "binary", False))
        n = n_outputs(model) if model is not None else None
        meta.update(input=text, normalization=None, num_words=cfg.get("num_words") if kind == "textdir" else None,
                    class_names=rundir.read_artifact("classes.json"),
                    output="sigmoid" if binary else "softmax", output_shape=["N"] if binary else ["N", n],
                    output_meaning="P(class_names[1])" if binary else "class probabilities")
        if artifact == "preprocessing.json":
            meta["preprocessing"] = rundir.read_artifact(artifact)
        elif artifact == "normalization.json":
            meta["normalization"] = rundir.read_artifact(artifact)
    elif data == "imdb":
        meta.update(input="multi-hot rows: 1.0 at every keras word id of the review (1 start, 2 OOV, "
                          "word rank r -> id r + 3, ids >= num_words -> 2)",
                    normalization=None, num_words=int(cfg["num_words"]),
                    class_names=list(CLASS_NAMES["imdb"]),
                    output="sigmoid", output_shape=["N"], output_meaning="P(positive)")
    else:
        from lit_regularize.data.mnist import IMAGE_DATASETS

        mean, std = IMAGE_DATASETS[data][1:]
        names = CLASS_NAMES[data]
        meta.update(input=f"{IMAGE_SIZE}x{IMAGE_SIZE} 8-bit grayscale images as the idx files hold them "
                          "(light on dark; invert dark-on-light pictures, 255 - x, first), flattened row-major, "
                          "normalized as (x / 255 - mean) / std",
                    normalization={"mean": mean, "std": std}, num_words=None,
                    class_names=list(names) if names else [str(k) for k in range(10)],
                    output="softmax", output_shape=["N", 10], output_meaning="class probabilities")
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
    """The exported file's bytes (built in memory, so writing it is one atomic write)."""
    buf = io.BytesIO()
    if fmt == "torchscript":
        with warnings.catch_warnings():  # newer torch calls TorchScript deprecated; it is still asked for
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(torch.jit.script(net), buf)
    else:
        torch.onnx.export(net, (torch.zeros(2, width),), buf, input_names=["x"], output_names=["probs"],
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


def export(run_dir: str | os.PathLike, fmt: str, out: str | os.PathLike, last: bool = False) -> Path:
    """Write the run's best (or last) model as fmt to out and its description to <out>.json; returns out."""
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
    binary = bool(getattr(model, "binary", cfg["data"] == "imdb"))
    width = input_size(model)
    meta = metadata(cfg, fmt, run.checkpoint, width, model)  # a missing artifact fails before anything is written
    write_export(out, serialized(plain_network(model, binary), fmt, width), meta)
    run.say_notes()
    return out


__all__ = ["export", "plain_network", "metadata", "out_path", "serialized", "write_export", "write_failure",
           "FORMATS"]
