"""Use a trained run: load its checkpoint in eval mode and classify review texts or images.

    from lit_regularize.predict import load
    p = load("lightning_logs/imdb_none/version_0")          # best checkpoint; last=True for last.ckpt
    p.predict(["A wonderful, moving film.", "Dull."])        # [{"prob": 0.97, "label": 1, "name": "positive"}, ...]
    load("lightning_logs/fashion_mnist_none/version_0").predict(["shoe.png"])
    # [{"probs": [...10], "label": 7, "name": "Sneaker"}]
    load("lightning_logs/mnist_none/version_0", invert=True).predict(["digit_on_paper.jpg"])

IMDB inputs are review texts, tokenized like keras (`lit_regularize.text`) with the word index found in the
run's data folder (or `word_index=`). Image inputs are encoded exactly as the training images were, never
guessed at:

* a file path (PNG/JPEG/..., any size and mode) or a PIL image: converted to 8-bit grayscale by the bit depth of
  its mode (`lit_regularize.data.images.to_gray8`: 16-bit and float images scaled, transparent pixels white);
  a 28x28 image is then used as it is, so a PNG written from an idx image predicts exactly like that image;
  an image of another size is cropped to its content (pixels above 10% of the maximum), scaled to fit a 20x20
  box (MNIST, as the digits were prepared) or 28x28 (Fashion-MNIST) keeping its aspect ratio, and centered on a
  black 28x28;
* an idx image file (torchvision raw layout): all of its images, used as they are;
* a uint8 array (28x28, Nx28x28 or Nx784, 0..255) or a float array of the same shapes in 0..1
  (a float array whose maximum is above 1 is read as 0..255): used as they are.

MNIST and Fashion-MNIST are light objects on black. A dark-on-light picture (a scan, a photo of paper) must be
inverted, and only on request: `load(..., invert=True)` (predict --invert) uses 255 - pixel of every input image
(before cropping; imagedir runs likewise). Then pixels are normalized as in training, (x / 255 - mean) / std
with the dataset's mean and std.

`load` and `export` use a run folder's model only after checking it: a k-fold folder (fit --kfold) means its
refit model (said on stderr); the checkpoint must be the run's (input width and number of classes as the run's
settings say) with finite weights; a best checkpoint that summary.json names must exist (no silent fallback to
last.ckpt; a run without any best uses last.ckpt and says so); a run that is not completed (running,
interrupted, failed) is used with one `warning:` line naming its status and the epoch of the weights.

Runs on the user's own data (--data KIND:PATH) predict from files of the training kind (CSV, npz, .txt files or
image files, or folders of them), encoded with what the run folder saved at training time (classes.json,
preprocessing.json, word_index.json, normalization.json; see `lit_regularize.data.predict_inputs`), never with the
training data; results name the classes by the user's labels: {"probs", "label", "name"}.

    p = load("lightning_logs/csv_churn_none/version_0")
    p.predict(["new_customers.csv"])                         # [{"probs": [0.2, 0.8], "label": 1, "name": "yes"}, ...]
"""
from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from lit_regularize.config import CUSTOM_KINDS, data_kind
from lit_regularize.data.images import to_gray8
from lit_regularize.errors import DataError, UserError
from lit_regularize.files import read_json
from lit_regularize.rundir import BEST_PATTERN, CHECKPOINTS, LAST, RunDir
from lit_regularize.summary import SUMMARY
from lit_regularize.text import WORD_INDEX_FILE, encode_texts, load_word_index

# The datasets' class names (torchvision's FashionMNIST.classes); MNIST classes are the digits.
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
CLASS_NAMES: dict[str, Optional[tuple[str, ...]]] = {"imdb": ("negative", "positive"), "mnist": None,
                                                     "fashion_mnist": FASHION_CLASSES}
IMAGE_SIZE = 28
BATCH_SIZE = 1024
IDX_IMAGES_MAGIC = b"\x00\x00\x08\x03"


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
    """The run's resolved settings as a plain dict (RunDir.read_settings: config.yaml, else summary.json's);
    a k-fold folder's are its refit run's."""
    d, _ = model_dir(run_dir)
    cfg = RunDir(d).read_settings()
    data = cfg.get("data")
    if data not in CLASS_NAMES and not (isinstance(data, str) and ":" in data and data_kind(data) in CUSTOM_KINDS):
        raise DataError(f"{d}: the run's config names no known dataset (data: {data!r})")
    return cfg


def is_own_data(cfg: dict[str, Any]) -> bool:
    """Whether a run's settings name the user's own data (--data KIND:PATH)."""
    return cfg["data"] not in CLASS_NAMES


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
        model = RegularizedMLP.load_from_checkpoint(str(path), map_location="cpu")
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
    if is_own_data(cfg):
        raise UserError("own-data checkpoints carry their hyperparameters; nothing to rebuild from config.yaml")
    n_features, n_classes = (cfg["num_words"], 2) if cfg["data"] == "imdb" else (IMAGE_SIZE * IMAGE_SIZE, 10)
    model = build_model(make_config(cfg), n_features, n_classes)
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
    and the artifacts its folder saved."""
    data = cfg["data"]
    if data == "imdb":
        return int(cfg["num_words"]), 2, f"imdb with num_words {cfg['num_words']}"
    if data in CLASS_NAMES:
        return IMAGE_SIZE * IMAGE_SIZE, 10, f"{data}: 28x28 images, 10 classes"
    from lit_regularize.data.predict_inputs import saved_classes, saved_width

    rundir = RunDir(run_dir)
    n = len(saved_classes(rundir))
    width, source = saved_width(rundir, cfg)
    return width, n, f"{data_kind(data)} data: {n} classes in classes.json" + (f", {source}" if source else "")


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


# -- inputs -----------------------------------------------------------------------------------------------

def _fit_to_box(img: Any, box: int) -> np.ndarray:
    """A light-on-dark grayscale PIL image cropped to its content, fitted into box x box, centered."""
    from PIL import Image

    a = np.asarray(img, dtype=np.uint8)
    mask = a > max(int(a.max()) // 10, 0)
    if mask.any():
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        img = img.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))
    w, h = img.size
    scale = box / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = img.resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    canvas.paste(img, ((IMAGE_SIZE - size[0]) // 2, (IMAGE_SIZE - size[1]) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def prepare_image(img: Any, data: str = "mnist", invert: bool = False) -> np.ndarray:
    """A PIL image as a 28x28 uint8 array encoded as the training images (see the module doc): 8-bit grayscale
    by its mode's bit depth (to_gray8), 255 - pixel when invert, then fitted to 28x28 unless it is 28x28."""
    from PIL import ImageOps

    gray = to_gray8(img)
    if invert:  # asked for (dark-on-light pictures), never guessed: a bright training image stays as it is
        gray = ImageOps.invert(gray)
    if gray.size == (IMAGE_SIZE, IMAGE_SIZE):
        return np.asarray(gray, dtype=np.uint8)
    return _fit_to_box(gray, 20 if data == "mnist" else IMAGE_SIZE)


def _array_images(a: Any, what: str) -> np.ndarray:
    """uint8 0..255 (N, 28, 28) from an array input (see the module doc)."""
    a = np.asarray(a)
    if a.ndim == 2 and a.shape == (IMAGE_SIZE, IMAGE_SIZE):
        a = a[None]
    elif a.ndim == 2 and a.shape[1] == IMAGE_SIZE * IMAGE_SIZE:
        a = a.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    elif a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3 or a.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise UserError(f"{what}: image arrays must be 28x28, Nx28x28 or Nx784, got shape {tuple(a.shape)}")
    if a.dtype == np.uint8:
        return a
    if not np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_:
        raise UserError(f"{what}: image arrays must hold numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise UserError(f"{what}: image array holds NaN or inf")
    if a.size and a.max() <= 1.0:
        a = a * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def read_image_file(path: str | os.PathLike, data: str = "mnist", invert: bool = False) -> np.ndarray:
    """(N, 28, 28) uint8 from an idx images file (all of them) or one image file; invert: 255 - pixel."""
    from PIL import Image, UnidentifiedImageError

    from lit_regularize.oserrors import os_reason

    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise DataError(f"image {p}: cannot read ({os_reason(e)})") from None
    if head == IDX_IMAGES_MAGIC:
        from lit_regularize.data.mnist import read_idx

        images = _array_images(read_idx(p, "images"), str(p))
        return 255 - images if invert else images
    try:
        with Image.open(p) as img:
            img.load()
            return prepare_image(img, data, invert)[None]
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as e:
        why = " ".join(str(e).split())[:100]
        raise DataError(f"image {p}: not a readable image ({type(e).__name__}: {why})") from None


# -- the predictor ----------------------------------------------------------------------------------------

@dataclass
class Predictor:
    """A trained model in eval mode plus what it needs to encode raw inputs.

    Every input ends up in a Dataset of the kind training used (ImageDataset, MultiHotDataset, TableDataset, ...)
    and goes through `predict_datasets`: one path for every dataset, built-in or the user's own.
    """

    model: nn.Module
    data: str  # imdb | mnist | fashion_mnist, or an own-data kind: npz | csv | textdir | imagedir
    checkpoint: Path
    num_words: Optional[int] = None
    word_index_path: Optional[Path] = None
    mean: Optional[float] = None
    std: Optional[float] = None
    batch_size: int = BATCH_SIZE
    names: Optional[tuple[str, ...]] = None  # own data: the class names saved with the run (classes.json)
    reader: Optional[Callable[[str], tuple[list[str], Any]]] = field(default=None, repr=False)  # own data
    invert: bool = False  # image runs: 255 - pixel of every input image (dark-on-light pictures), as asked
    _word_index: Optional[dict[str, int]] = field(default=None, repr=False)

    @property
    def class_names(self) -> Optional[tuple[str, ...]]:
        return CLASS_NAMES[self.data] if self.data in CLASS_NAMES else self.names

    @property
    def word_index(self) -> dict[str, int]:
        if self._word_index is None:
            if self.word_index_path is None:
                raise UserError("this predictor has no word index; pass word_index=PATH")
            self._word_index = load_word_index(self.word_index_path)
        return self._word_index

    # -- encoding ---------------------------------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str]) -> Any:
        """The MultiHot CSR batch of texts (what the IMDB model was trained on)."""
        from lit_regularize.data.imdb import MultiHot

        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise UserError(f"review {i + 1}: expected text, got {type(t).__name__}")
            if not t.strip():
                raise UserError(f"review {i + 1}: empty review text")
        crow, cols = encode_texts(list(texts), self.word_index, self.num_words)
        return MultiHot(torch.from_numpy(crow), torch.from_numpy(cols), self.num_words)

    def images(self, inputs: Iterable[Any]) -> np.ndarray:
        """(N, 28, 28) uint8 from paths, idx files (all their images), PIL images and arrays (255 - pixel when
        self.invert)."""
        out = []
        for i, item in enumerate(inputs):
            if isinstance(item, (str, os.PathLike)):
                out.append(read_image_file(item, self.data, self.invert))
            elif hasattr(item, "convert") and hasattr(item, "mode"):  # a PIL image
                out.append(prepare_image(item, self.data, self.invert)[None])
            elif isinstance(item, (torch.Tensor, np.ndarray)):
                a = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else item
                images = _array_images(a, f"input {i + 1}")
                out.append(255 - images if self.invert else images)
            else:
                raise UserError(f"input {i + 1}: expected an image path, PIL image or array, "
                                f"got {type(item).__name__}")
        if not out:
            return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        return np.concatenate(out)

    def image_dataset(self, images: np.ndarray) -> Any:
        """The training ImageDataset over (N, H, W) uint8 images: (x / 255 - mean) / std per batch."""
        from lit_regularize.data.mnist import ImageDataset

        images = torch.from_numpy(np.ascontiguousarray(images))
        return ImageDataset(images, torch.zeros(len(images), dtype=torch.long), None, self.mean, self.std)

    def normalize(self, images: np.ndarray) -> torch.Tensor:
        """(N, 784) float32 (x / 255 - mean) / std, as the training batches (flattened)."""
        ds = self.image_dataset(images)
        return ds.__getitems__(list(range(len(ds))))[0].reshape(len(ds), -1) if len(ds) else torch.zeros(0, 784)

    def read(self, item: Any) -> tuple[list[str], Any]:
        """One input (a path; for MNIST runs also an idx file, a PIL image or an array) as (a name per example,
        a Dataset of the encoded examples). An idx file, CSV, npz or folder holds many examples."""
        if self.reader is not None:
            if not isinstance(item, (str, os.PathLike)):
                raise UserError(f"{self.data} runs predict from file or folder paths, got {type(item).__name__}")
            return self.reader(str(item))
        if self.data == "imdb":
            raise UserError("IMDB runs predict from review texts, not files (see predict --help)")
        from lit_regularize.data.predict_inputs import row_names

        images = self.images([item])
        shown = str(item) if isinstance(item, (str, os.PathLike)) else "input"
        return row_names(shown, len(images)), self.image_dataset(images)

    # -- prediction -------------------------------------------------------------------------------------
    @property
    def binary(self) -> bool:
        """One logit (sigmoid) for a two-class run, else softmax over n_classes logits."""
        return bool(getattr(self.model, "binary", self.data == "imdb"))

    @torch.no_grad()
    def logits(self, batch: Any) -> torch.Tensor:
        self.model.eval()
        return self.model(batch)

    def probabilities(self, batch: Any) -> torch.Tensor:
        """Probabilities of an encoded batch: P(class 1) (N,) for two classes, softmax (N, C) otherwise."""
        logits = self.logits(batch)
        return torch.sigmoid(logits) if self.binary else torch.softmax(logits, -1)

    def _results(self, logits: torch.Tensor) -> list[dict[str, Any]]:
        """IMDB: {"prob", "label", "name"}; other runs: {"probs", "label", "name"} (name: the class name, if any)."""
        if self.binary:
            probs = torch.sigmoid(logits).tolist()
            labels = (logits > 0).long().tolist()  # the training metric's rule (prob > 0.5 can round to 0.5)
            if self.data == "imdb":
                names = CLASS_NAMES["imdb"]
                return [{"prob": float(p), "label": k, "name": names[k]} for p, k in zip(probs, labels)]
            rows = [[1.0 - p, p] for p in probs]
        else:
            rows = torch.softmax(logits, -1).tolist()
            labels = logits.argmax(-1).tolist()
        names = self.class_names
        return [{"probs": r, "label": k, **({"name": names[k]} if names else {})} for r, k in zip(rows, labels)]

    def predict_datasets(self, datasets: Iterable[Any]) -> list[dict[str, Any]]:
        """One result per example of every Dataset (as `read` gives), in order, in batches of batch_size."""
        out: list[dict[str, Any]] = []
        for ds in datasets:
            for start in range(0, len(ds), self.batch_size):
                x, _ = ds.__getitems__(list(range(start, min(start + self.batch_size, len(ds)))))
                out += self._results(self.logits(x))
        return out

    def predict(self, inputs: Any) -> list[dict[str, Any]]:
        """One dict per input (an idx file, CSV, npz or folder counts as its examples), in batches of batch_size."""
        if isinstance(inputs, (str, os.PathLike, np.ndarray, torch.Tensor)) or hasattr(inputs, "mode"):
            inputs = [inputs]  # one text / path / image / array (which may hold many images)
        inputs = list(inputs)
        if self.data == "imdb":
            return self._predict_texts(inputs)
        if self.reader is not None:
            return self.predict_datasets([self.read(x)[1] for x in inputs])
        return self.predict_datasets([self.image_dataset(self.images(inputs))])

    def _predict_texts(self, texts: list) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for start in range(0, len(texts), self.batch_size):
            out += self._results(self.logits(self.encode_texts(texts[start:start + self.batch_size])))
        return out


def default_word_index_path(cfg: dict[str, Any], data_dir: Optional[str | os.PathLike] = None) -> Path:
    """<data folder>/imdb_word_index.json: data_dir, else the run's, $LIT_REGULARIZE_DATA_DIR or cache."""
    d = data_dir or cfg.get("data_dir") or os.environ.get("LIT_REGULARIZE_DATA_DIR") \
        or Path.home() / ".cache" / "lit_regularize"
    return Path(d).expanduser() / WORD_INDEX_FILE


IMAGE_KINDS = ("mnist", "fashion_mnist", "imagedir")  # the runs whose inputs --invert may invert


def load(run_dir: str | os.PathLike, last: bool = False, word_index: Optional[str | os.PathLike] = None,
         data_dir: Optional[str | os.PathLike] = None, batch_size: int = BATCH_SIZE,
         invert: bool = False) -> Predictor:
    """A Predictor for a run folder's checked best (or last) model (open_run); IMDB runs also load their word
    index, own-data runs what their run folder saved to encode new inputs (data.predict_inputs). invert: image
    runs use 255 - pixel of every input image (dark-on-light pictures); never done unless asked."""
    cfg = run_config(run_dir)
    data = cfg["data"]
    kind = data_kind(data) if is_own_data(cfg) else data
    if invert and kind not in IMAGE_KINDS:  # before the model is loaded: a flag mistake fails at once
        raise UserError(f"--invert applies to image runs ({', '.join(IMAGE_KINDS)}), not to this {kind} run")
    run = open_run(run_dir, last)
    ckpt, model = run.checkpoint, run.model
    if is_own_data(cfg):
        from lit_regularize.data.predict_inputs import reader

        read, names = reader(RunDir(run.run_dir), cfg, input_size(model), invert=invert)
        p = Predictor(model, kind, ckpt, num_words=cfg.get("num_words"), batch_size=batch_size,
                      names=tuple(names), reader=read, invert=invert)
    elif data == "imdb":
        path = Path(word_index) if word_index else default_word_index_path(cfg, data_dir)
        p = Predictor(model, data, ckpt, num_words=int(cfg["num_words"]), word_index_path=path,
                      batch_size=batch_size)
        p.word_index  # noqa: B018 - a missing or bad word index fails here, not at the first prediction
    else:
        from lit_regularize.data.mnist import IMAGE_DATASETS  # the training images' mean and std

        mean, std = IMAGE_DATASETS[data][1:]
        p = Predictor(model, data, ckpt, mean=mean, std=std, batch_size=batch_size, invert=invert)
    run.say_notes()  # every check passed: the notes never precede an error line
    return p


def input_size(model: nn.Module) -> int:
    """The width of the model's input rows (its first Linear layer's in_features)."""
    return int(next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features)


def n_outputs(model: nn.Module) -> int:
    """The number of classes the model tells apart (2 for a one-logit binary model)."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return 2 if getattr(model, "binary", False) else int(last.out_features)


__all__ = ["Predictor", "RunModel", "load", "open_run", "input_size", "n_outputs", "is_own_data", "load_model",
           "find_checkpoint", "choose_checkpoint", "checkpoint_epoch", "check_finite", "check_fits", "run_shape",
           "model_dir", "run_config", "summary_of", "prepare_image", "read_image_file", "CLASS_NAMES",
           "FASHION_CLASSES", "IMAGE_KINDS"]
