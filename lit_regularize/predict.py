"""Use a trained run: load its checkpoint in eval mode and classify new inputs of the kind it trained on.

    from lit_regularize.predict import load
    p = load("lightning_logs/imdb_none/version_0")          # best checkpoint; last=True for last.ckpt
    p.predict(["A wonderful, moving film.", "Dull."])
    # [{"label": 1, "name": "positive", "probability": 0.97, "probs": [0.03, 0.97]}, ...]
    load("lightning_logs/fashion_mnist_none/version_0").predict(["shoe.png"])
    # [{"label": 7, "name": "Sneaker", "probability": 0.91, "probs": [...10]}]
    load("lightning_logs/mnist_none/version_0", invert=True).predict(["digit_on_paper.jpg"])
    load("lightning_logs/csv_churn_none/version_0").predict(["new_customers.csv"])    # one result per row

Every kind gives the same keys: `label` (the class index), `name` (the class name: IMDB negative / positive, the
digits, Fashion-MNIST's classes, an own-data run's labels or class folders), `probability` (of that class) and
`probs` (every class's). What an input may be, and how it is encoded exactly as the training examples were, is the
run's data kind's (lit_regularize.data.kinds): review texts for text kinds (IMDB with the data folder's word index,
or `word_index=`; textdir also .txt files and folders), images, idx files, PIL images and arrays for MNIST-like runs
(`invert=True` for dark-on-light pictures, never guessed), files of the training kind for own data, encoded with what
the run folder saved at training time (classes.json, preprocessing.json, word_index.json, normalization.json), never
with the training data.

`load` and `export` use a run folder's model only after checking it: a k-fold folder (fit --kfold) means its
refit model (said on stderr); the checkpoint must be the run's (input width and number of classes as the run's
settings say) with finite weights; a best checkpoint that summary.json names must exist (no silent fallback to
last.ckpt; a run without any best uses last.ckpt and says so); a run that is not completed (running,
interrupted, failed) is used with one `warning:` line naming its status and the epoch of the weights.
"""
from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from lit_regularize.config import fields, import_plugins
from lit_regularize.data.kinds import DataKind, PredictOptions, data_kind, data_kinds
from lit_regularize.errors import ConfigError, DataError, UserError
from lit_regularize.files import read_json
from lit_regularize.rundir import BEST_PATTERN, CHECKPOINTS, LAST, RunDir
from lit_regularize.summary import SUMMARY

BATCH_SIZE = 1024


# -- the run folder ---------------------------------------------------------------------------------------

def summary_of(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A run folder's summary.json as a plain dict; {} when it is missing or unreadable (old or damaged runs)."""
    try:
        summary = read_json(Path(run_dir) / SUMMARY)
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def model_dir(run_dir: str | os.PathLike) -> tuple[Path, Optional[str]]:
    """(the folder whose model to use, a note to say or None): run_dir itself, or a k-fold folder's refit run
    (fit --kfold prints the k-fold folder, which holds fold_*/ and refit/ but no checkpoint of its own)."""
    d = Path(run_dir).expanduser()
    if not d.is_dir():  # named as the user gave it (RunDir's path is absolute)
        raise UserError(f"run folder {d} not found")
    if (d / CHECKPOINTS).is_dir():
        return d, None
    summary = summary_of(d)
    if summary.get("kind") == "kfold":
        refit = summary.get("refit_dir")
        if isinstance(refit, str) and (d / refit).is_dir():
            return d / refit, (f"{d} is a k-fold folder: using its refit model {d / refit} (trained on the whole "
                               f"training pool for the chosen {summary.get('chosen_epoch')} epochs)")
        raise UserError(f"{d} is a k-fold folder whose refit run ({refit}) is missing")
    if (d / "refit").is_dir() or any(d.glob("fold_*")):
        raise UserError(f"{d} is a k-fold folder whose refit has not finished: use {d / 'refit'}/version_k once it "
                        "has, or one fold's folder fold_k/version_0")
    return d, None


def run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's resolved settings as a plain dict (RunDir.read_settings: config.yaml, else summary.json's), every
    setting the schema knows present (a run records only its own kind's, the others take their defaults); a k-fold
    folder's are its refit run's."""
    d, _ = model_dir(run_dir)
    saved = RunDir(d).read_settings()
    data = saved.get("data")
    plugins = saved.get("plugins")
    import_plugins(plugins if isinstance(plugins, list) else [])  # a plug-in kind or regularizer the run used
    try:
        data_kind(data if isinstance(data, str) else repr(data))
    except ConfigError:
        raise DataError(f"{d}: the run's config names no known dataset (data: {data!r})") from None
    return {**{name: s.default for name, s in fields().items()}, **saved}


def choose_checkpoint(run_dir: str | os.PathLike, last: bool = False) -> tuple[Path, Optional[str]]:
    """(checkpoints/last.ckpt when last, else the best checkpoint; a warning to say, or None).

    The best is the one summary.json names, which must exist: a missing one is refused, never replaced by the
    last weights. Without one recorded (a run still training), the newest best-*.ckpt. Only a run that has no
    best at all (nothing validated, or no finite validation loss) uses last.ckpt, and the warning says so.
    """
    d = Path(run_dir)
    ckpts, summary = d / CHECKPOINTS, summary_of(d)
    last_path = ckpts / LAST
    if not ckpts.is_dir():  # neither best nor last: --last would not help
        raise UserError(f"{d}: no checkpoint ({CHECKPOINTS}/ missing); is it a run folder (…/version_k)?")
    if last:
        if last_path.is_file():
            return last_path, None
        raise UserError(f"{d}: no checkpoint ({CHECKPOINTS}/{LAST} missing; sweep trials keep only their best); "
                        "drop --last to use the best checkpoint")
    recorded = summary.get("best_checkpoint")
    if isinstance(recorded, str) and recorded:  # relative to the run folder (older runs: absolute)
        for candidate in (d / recorded, ckpts / Path(recorded).name):  # the folder may have been moved
            if candidate.is_file():
                return candidate, None
        raise UserError(f"{d}: its best checkpoint {recorded} (named in summary.json) is missing; restore it, or "
                        "use the last weights with --last")
    best = sorted(ckpts.glob("best-*.ckpt"), key=lambda p: (p.stat().st_mtime, p.name))
    if best:
        return best[-1], None
    if summary.get("best_epoch") is not None:
        raise UserError(f"{d}: the best checkpoint (epoch {summary['best_epoch']}) is missing; use the last weights "
                        "with --last")
    if last_path.is_file():
        epoch = checkpoint_epoch(last_path)
        return last_path, (f"{d}: no best checkpoint (nothing was validated, or no validation loss was finite); "
                           f"using {CHECKPOINTS}/{LAST}" + (f", the weights of epoch {epoch}" if epoch else ""))
    raise UserError(f"{d}: no checkpoint ({CHECKPOINTS}/best-*.ckpt or {LAST} missing); is it a finished run folder?")


def find_checkpoint(run_dir: str | os.PathLike, last: bool = False) -> Path:
    """The checkpoint choose_checkpoint picks: last.ckpt when last, else the best one (see there)."""
    return choose_checkpoint(run_dir, last)[0]


def checkpoint_epoch(path: Path) -> Optional[int]:
    """The 1-based epoch whose weights a checkpoint holds (best-epochNNN names it; Lightning stores it 0-based)."""
    m = BEST_PATTERN.match(path.name)
    if m:
        return int(m.group(1))
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True).get("epoch")
    except Exception:  # noqa: BLE001 - only a warning's detail: an unreadable file fails in load_model
        return None
    return int(stored) + 1 if isinstance(stored, int) else None


def load_model(checkpoint_path: str | os.PathLike) -> nn.Module:
    """The RegularizedMLP of a checkpoint, on the CPU, in eval mode (the one place models are loaded).

    Uses RegularizedMLP.load_from_checkpoint(path) alone when the checkpoint's hyperparameters suffice,
    else rebuilds the model from the run folder's config.yaml and loads the state dict into it.
    """
    from lit_regularize.model import RegularizedMLP

    path = Path(checkpoint_path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found")
    try:
        # __func__: Lightning's own load_from_checkpoint without its called-on-an-instance guard, which walks
        # inspect.stack() with source lines for every frame: 0.1-0.2 s a load under pytest or a notebook
        model = RegularizedMLP.load_from_checkpoint.__func__(RegularizedMLP, str(path), map_location="cpu")
    except (TypeError, KeyError) as first:  # hyperparameters missing or of another layout: rebuild
        try:
            model = _model_from_run_config(path)
        except (UserError, OSError, KeyError, RuntimeError) as e:
            raise DataError(f"{path}: cannot rebuild the model "
                            f"({type(first).__name__}: {first}; then {e})") from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:  # truncated / not a checkpoint
        why = " ".join(str(e).split())[:120]
        raise DataError(f"{path}: not a readable checkpoint ({type(e).__name__}: {why})") from None
    return model.eval()


def _model_from_run_config(path: Path) -> nn.Module:
    """Checkpoints written before the model took its own arguments: rebuild from the run's config.yaml."""
    from lit_regularize.config import make_config
    from lit_regularize.run import build_model

    cfg = run_config(path.parent.parent)
    kind = data_kind(cfg["data"])
    if kind.takes_path:
        raise UserError("own-data checkpoints carry their hyperparameters; nothing to rebuild from config.yaml")
    n_features, n_classes, _ = kind.shape(cfg, RunDir(path.parent.parent))
    model = build_model(make_config(cfg), int(n_features or 0), n_classes)
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict(state)
    return model


def check_finite(model: nn.Module, checkpoint: Path) -> None:
    """Refuse a model whose weights (or BatchNorm statistics) hold NaN or inf: it predicts nothing but NaN."""
    tensors = itertools.chain(model.named_parameters(), model.named_buffers())
    bad = [name for name, t in tensors if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if not bad:
        return
    hint = ("; the best checkpoint (without --last) may still be finite"
            if checkpoint.name == LAST and any(checkpoint.parent.glob("best-*.ckpt")) else "")
    raise DataError(f"{checkpoint}: checkpoint weights are not finite (NaN or inf in {bad[0]}): the run diverged; "
                    f"train it again with a lower --lr{hint}")


def run_shape(cfg: dict[str, Any], run_dir: Path) -> tuple[Optional[int], int, str]:
    """(input width or None where the run does not say, number of classes, what says so) by the run's settings
    and the artifacts its folder saved (the run's kind knows which)."""
    return data_kind(cfg["data"]).shape(cfg, RunDir(run_dir))


def check_fits(model: nn.Module, cfg: dict[str, Any], run_dir: Path, checkpoint: Path) -> None:
    """Refuse a checkpoint whose model is not the run's (e.g. a Fashion-MNIST best-*.ckpt copied into an IMDB run):
    its input width and number of classes must be what the run's settings say."""
    width, classes, what = run_shape(cfg, run_dir)
    got_width, got_classes = input_size(model), n_outputs(model)
    if (width is None or got_width == width) and got_classes == classes:
        return
    wanted = (f"{width} inputs and " if width is not None else "") + f"{classes} classes"
    raise DataError(f"{checkpoint}: not this run's checkpoint: its model takes {got_width} inputs and has "
                    f"{got_classes} classes, but the run ({what}) needs {wanted}")


@dataclass
class RunModel:
    """A run folder's model, checked against the run (open_run), with where it came from."""

    run_dir: Path  # the folder the model is from (a k-fold folder's refit run)
    settings: dict[str, Any]
    checkpoint: Path
    model: nn.Module
    notes: list[str] = field(default_factory=list)  # "note: ..." / "warning: ..." lines for stderr

    def say_notes(self) -> None:
        """Print the notes on stderr; callers do it once nothing can fail any more, so an error stays one line."""
        for line in self.notes:
            print(line, file=sys.stderr)


def open_run(run_dir: str | os.PathLike, last: bool = False) -> RunModel:
    """The run's best (or last) model in eval mode, checked: the run's own (check_fits) and finite (check_finite),
    with the notes to say (a k-fold folder's refit used, no best checkpoint, a run not completed: the status and
    the epoch of the weights). predict and export both use it."""
    d, note = model_dir(run_dir)
    cfg = run_config(d)
    ckpt, fallback = choose_checkpoint(d, last)
    model = load_model(ckpt)
    check_finite(model, ckpt)
    check_fits(model, cfg, d, ckpt)
    # a refit never validates, so it has no best: the note already says which weights these are
    notes = [f"note: {note}"] if note else ([f"warning: {fallback}"] if fallback else [])
    status = summary_of(d).get("status")
    if status and status != "completed":
        epoch = checkpoint_epoch(ckpt)
        what = "still running (or was killed)" if status == "running" else status
        notes.append(f"warning: {d}: the run is {what}, not completed; using {ckpt.name}"
                     + (f", the weights of epoch {epoch}" if epoch else ""))
    return RunModel(d, cfg, ckpt, model, notes)


# -- the predictor ----------------------------------------------------------------------------------------

@dataclass
class Predictor:
    """A trained model in eval mode plus what reads its inputs (the run's kind's `inputs`).

    Every input ends up in a Dataset of the kind training used (ImageDataset, MultiHotDataset, TableDataset, ...)
    and goes through `predict_datasets`: one path for every kind, built-in or the user's own.
    """

    model: nn.Module
    kind: DataKind
    checkpoint: Path
    inputs: Any  # read(item) -> (names, Dataset); texts(list) -> Dataset for text kinds
    class_names: tuple[str, ...]
    batch_size: int = BATCH_SIZE

    @property
    def data(self) -> str:
        """The name of the run's data kind (imdb, mnist, csv, ...)."""
        return self.kind.name

    # -- reading ----------------------------------------------------------------------------------------
    def is_text(self, item: Any) -> bool:
        """Whether an input is a review text (text kinds: a string that does not name the kind's files)."""
        return self.kind.takes_text and isinstance(item, str) and not self.kind.is_document_path(item)

    def read(self, item: Any) -> tuple[list[str], Any]:
        """One input as (a name per example, a Dataset of the encoded examples): a text is one example named by
        itself; an idx file, CSV, npz or folder holds many."""
        return self.inputs.read(item)

    def read_all(self, items: Sequence[Any], texts: Optional[Sequence[bool]] = None) -> tuple[list[str], list[Any]]:
        """(a name per example, Datasets) of items in order; runs of consecutive texts (texts[i], else is_text)
        are encoded together, so a thousand reviews are one Dataset, not a thousand."""
        flags = list(texts) if texts is not None else [self.is_text(x) for x in items]
        names: list[str] = []
        datasets: list[Any] = []
        pos = 0
        for is_text, group in itertools.groupby(zip(items, flags), key=lambda pair: pair[1]):
            chunk = [x for x, _ in group]
            if is_text:
                names += chunk
                datasets.append(self._texts(chunk, first=pos))
            elif hasattr(self.inputs, "read_many"):  # e.g. images: one batch, as the images of one idx file
                n, ds = self.inputs.read_many(chunk, first=pos)
                names += n
                datasets.append(ds)
            else:
                for x in chunk:
                    n, ds = self.read(x)
                    names += n
                    datasets.append(ds)
            pos += len(chunk)
        return names, datasets

    def _texts(self, texts: list[str], first: int) -> Any:
        try:
            return self.inputs.texts(texts)
        except UserError as e:  # "review k" counts every input, not this run of texts
            msg = str(e)
            if msg.startswith("review "):
                k, rest = msg[len("review "):].split(":", 1)
                msg = f"review {int(k) + first}:{rest}"
            raise UserError(msg) from None

    # -- prediction -------------------------------------------------------------------------------------
    @property
    def binary(self) -> bool:
        """One logit (sigmoid) for a two-class run, else softmax over n_classes logits."""
        return bool(getattr(self.model, "binary", False))

    @torch.no_grad()
    def logits(self, batch: Any) -> torch.Tensor:
        self.model.eval()
        return self.model(batch)

    def probabilities(self, batch: Any) -> torch.Tensor:
        """Probabilities of an encoded batch: P(class 1) (N,) for two classes, softmax (N, C) otherwise."""
        logits = self.logits(batch)
        return torch.sigmoid(logits) if self.binary else torch.softmax(logits, -1)

    def _results(self, logits: torch.Tensor) -> list[dict[str, Any]]:
        """{"label", "name", "probability", "probs"} per row, the same keys for every kind."""
        if self.binary:
            rows = [[1.0 - p, p] for p in torch.sigmoid(logits).tolist()]
            labels = (logits > 0).long().tolist()  # the training metric's rule (prob > 0.5 can round to 0.5)
        else:
            rows = torch.softmax(logits, -1).tolist()
            labels = logits.argmax(-1).tolist()
        names = self.class_names
        return [{"label": k, "name": names[k], "probability": r[k], "probs": r} for r, k in zip(rows, labels)]

    def predict_datasets(self, datasets: Iterable[Any]) -> list[dict[str, Any]]:
        """One result per example of every Dataset (as `read` gives), in order, in batches of batch_size."""
        out: list[dict[str, Any]] = []
        for ds in datasets:
            for start in range(0, len(ds), self.batch_size):
                x, _ = ds.__getitems__(list(range(start, min(start + self.batch_size, len(ds)))))
                out += self._results(self.logits(x))
        return out

    def predict(self, inputs: Any) -> list[dict[str, Any]]:
        """One dict per example of the inputs (a text, path, image or array, or a list of them; an idx file, CSV,
        npz or folder counts as its examples), in batches of batch_size."""
        if isinstance(inputs, (str, os.PathLike, np.ndarray, torch.Tensor)) or hasattr(inputs, "mode"):
            inputs = [inputs]  # one text / path / image / array (which may hold many images)
        return self.predict_datasets(self.read_all(list(inputs))[1])


def image_kinds() -> list[str]:
    """The kinds whose inputs --invert may invert."""
    return [n for n, k in data_kinds().items() if "image" in k.families()]


def load(run_dir: str | os.PathLike, last: bool = False, word_index: Optional[str | os.PathLike] = None,
         data_dir: Optional[str | os.PathLike] = None, batch_size: int = BATCH_SIZE,
         invert: bool = False) -> Predictor:
    """A Predictor for a run folder's checked best (or last) model (open_run), with the run's kind's input reader
    (word_index / data_dir: IMDB's word index; invert: image runs use 255 - pixel of every input image, for
    dark-on-light pictures; never done unless asked)."""
    settings = run_config(run_dir)
    kind = data_kind(settings["data"])
    if invert and "image" not in kind.families():  # before the model is loaded: a flag mistake fails at once
        raise UserError(f"--invert applies to image runs ({', '.join(image_kinds())}), not to this {kind.name} run")
    run = open_run(run_dir, last)
    options = PredictOptions(word_index=os.fspath(word_index) if word_index else None,
                             data_dir=os.fspath(data_dir) if data_dir else None, invert=invert,
                             n_features=input_size(run.model))
    rundir = RunDir(run.run_dir)
    inputs = kind.inputs(run.settings, rundir, options)
    names = tuple(kind.class_names(run.settings, rundir))
    p = Predictor(run.model, kind, run.checkpoint, inputs, names, batch_size=batch_size)
    run.say_notes()  # every check passed: the notes never precede an error line
    return p


def input_size(model: nn.Module) -> int:
    """The width of the model's input rows (its first Linear layer's in_features)."""
    return int(next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features)


def n_outputs(model: nn.Module) -> int:
    """The number of classes the model tells apart (2 for a one-logit binary model)."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return 2 if getattr(model, "binary", False) else int(last.out_features)


__all__ = ["Predictor", "RunModel", "load", "open_run", "input_size", "n_outputs", "load_model", "find_checkpoint",
           "choose_checkpoint", "checkpoint_epoch", "check_finite", "check_fits", "run_shape", "model_dir",
           "run_config", "summary_of", "image_kinds", "BATCH_SIZE"]
