"""Use a trained run: load its checkpoint in eval mode and classify review texts or images.

    from lit_regularize.predict import load
    p = load("lightning_logs/imdb_none/version_0")          # best checkpoint; last=True for last.ckpt
    p.predict(["A wonderful, moving film.", "Dull."])        # [{"prob": 0.97, "label": 1, "name": "positive"}, ...]
    load("lightning_logs/fashion_mnist_none/version_0").predict(["shoe.png"])
    # [{"probs": [...10], "label": 7, "name": "Sneaker"}]

IMDB inputs are review texts, tokenized like keras (`lit_regularize.text`) with the word index found in the
run's data folder (or `word_index=`). Image inputs are prepared to look like the training images:

* a file path (PNG/JPEG/..., any size and mode) or a PIL image: converted to grayscale; when its mean
  is above 127 it is taken as dark-on-light (a photo or a scan) and inverted, because MNIST and
  Fashion-MNIST are light objects on a black background; an image that is not 28x28 is cropped to
  its content (pixels above 10% of the maximum), scaled to fit a 20x20 box (MNIST, as the digits
  were prepared) or 28x28 (Fashion-MNIST) keeping its aspect ratio, and centered on a black 28x28;
* an idx image file (torchvision raw layout): all of its images, used as they are;
* a uint8 array (28x28, Nx28x28 or Nx784, 0..255) or a float array of the same shapes in 0..1
  (a float array whose maximum is above 1 is read as 0..255): used as they are (no inversion).

Then pixels are normalized as in training, (x / 255 - mean) / std with the dataset's mean and std.

Runs on the user's own data (--data KIND:PATH) predict from files of the training kind (CSV, npz, .txt files or
image files, or folders of them), encoded with what the run folder saved at training time (classes.json,
preprocessing.json, word_index.json, normalization.json; see `lit_regularize.data.predict_inputs`), never with the
training data; results name the classes by the user's labels: {"probs", "label", "name"}.

    p = load("lightning_logs/csv_churn_none/version_0")
    p.predict(["new_customers.csv"])                         # [{"probs": [0.2, 0.8], "label": 1, "name": "yes"}, ...]
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from lit_regularize.config import CUSTOM_KINDS, data_kind
from lit_regularize.errors import DataError, UserError
from lit_regularize.rundir import RunDir
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

def run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's resolved settings as a plain dict (RunDir.read_settings: config.yaml, else summary.json's)."""
    d = Path(run_dir).expanduser()
    if not d.is_dir():  # named as the user gave it (RunDir's path is absolute)
        raise UserError(f"run folder {d} not found")
    cfg = RunDir(d).read_settings()
    data = cfg.get("data")
    if data not in CLASS_NAMES and not (isinstance(data, str) and ":" in data and data_kind(data) in CUSTOM_KINDS):
        raise DataError(f"{d}: the run's config names no known dataset (data: {data!r})")
    return cfg


def is_own_data(cfg: dict[str, Any]) -> bool:
    """Whether a run's settings name the user's own data (--data KIND:PATH)."""
    return cfg["data"] not in CLASS_NAMES


def find_checkpoint(run_dir: str | os.PathLike, last: bool = False) -> Path:
    """checkpoints/last.ckpt when last, else the best one (summary.json's, else the newest best-*.ckpt).

    A run that kept no best checkpoint (nothing validated) falls back to last.ckpt.
    """
    d = Path(run_dir)
    ckpts = d / "checkpoints"
    last_path = ckpts / "last.ckpt"
    if not last:
        recorded = None
        try:
            recorded = json.loads((d / "summary.json").read_text()).get("best_checkpoint")
        except (OSError, ValueError, AttributeError):
            pass
        if recorded:  # relative to the run folder (older runs: absolute)
            for candidate in (d / recorded, ckpts / Path(recorded).name):  # the folder may have been moved
                if candidate.is_file():
                    return candidate
        best = sorted(ckpts.glob("best-*.ckpt"), key=lambda p: (p.stat().st_mtime, p.name))
        if best:
            return best[-1]
    if last_path.is_file():
        return last_path
    wanted = "checkpoints/last.ckpt" if last else "checkpoints/best-*.ckpt or last.ckpt"
    raise UserError(f"{d}: no checkpoint ({wanted} missing); is it a finished run folder?")


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


def prepare_image(img: Any, data: str = "mnist") -> np.ndarray:
    """A PIL image as a 28x28 uint8 light-on-dark array like the training images (see the module doc)."""
    from PIL import ImageOps

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        from PIL import Image  # transparent pixels count as white paper, not black

        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    gray = img.convert("L")
    if np.asarray(gray, dtype=np.float64).mean() > 127:  # dark-on-light: invert to MNIST's light-on-dark
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


def read_image_file(path: str | os.PathLike, data: str = "mnist") -> np.ndarray:
    """(N, 28, 28) uint8 from an idx images file (all of them) or one image file."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise DataError(f"image {p}: cannot read ({e.strerror})") from None
    if head == IDX_IMAGES_MAGIC:
        from lit_regularize.data.mnist import read_idx

        images = read_idx(p, "images")
        return _array_images(images, str(p))
    try:
        with Image.open(p) as img:
            img.load()
            return prepare_image(img, data)[None]
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
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
        """(N, 28, 28) uint8 from paths, idx files (all their images), PIL images and arrays."""
        out = []
        for i, item in enumerate(inputs):
            if isinstance(item, (str, os.PathLike)):
                out.append(read_image_file(item, self.data))
            elif hasattr(item, "convert") and hasattr(item, "mode"):  # a PIL image
                out.append(prepare_image(item, self.data)[None])
            elif isinstance(item, torch.Tensor):
                out.append(_array_images(item.detach().cpu().numpy(), f"input {i + 1}"))
            elif isinstance(item, np.ndarray):
                out.append(_array_images(item, f"input {i + 1}"))
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


def load(run_dir: str | os.PathLike, last: bool = False, word_index: Optional[str | os.PathLike] = None,
         data_dir: Optional[str | os.PathLike] = None, batch_size: int = BATCH_SIZE) -> Predictor:
    """A Predictor for a run folder's best (or last) checkpoint; IMDB runs also load their word index, own-data
    runs what their run folder saved to encode new inputs (data.predict_inputs)."""
    cfg = run_config(run_dir)
    ckpt = find_checkpoint(run_dir, last)
    model = load_model(ckpt)
    data = cfg["data"]
    if is_own_data(cfg):
        from lit_regularize.data.predict_inputs import reader

        read, names = reader(RunDir(Path(run_dir).expanduser()), cfg, input_size(model))
        if len(names) != n_outputs(model):
            raise DataError(f"{run_dir}: classes.json names {len(names)} classes but the model has "
                            f"{n_outputs(model)}")
        return Predictor(model, data_kind(data), ckpt, num_words=cfg.get("num_words"), batch_size=batch_size,
                         names=tuple(names), reader=read)
    if data == "imdb":
        path = Path(word_index) if word_index else default_word_index_path(cfg, data_dir)
        p = Predictor(model, data, ckpt, num_words=int(cfg["num_words"]), word_index_path=path,
                      batch_size=batch_size)
        p.word_index  # noqa: B018 - a missing or bad word index fails here, not at the first prediction
        return p
    from lit_regularize.data.mnist import IMAGE_DATASETS  # the training images' mean and std

    mean, std = IMAGE_DATASETS[data][1:]
    return Predictor(model, data, ckpt, mean=mean, std=std, batch_size=batch_size)


def input_size(model: nn.Module) -> int:
    """The width of the model's input rows (its first Linear layer's in_features)."""
    return int(next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features)


def n_outputs(model: nn.Module) -> int:
    """The number of classes the model tells apart (2 for a one-logit binary model)."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return 2 if getattr(model, "binary", False) else int(last.out_features)


__all__ = ["Predictor", "load", "input_size", "n_outputs", "is_own_data", "load_model", "find_checkpoint", "run_config",
           "prepare_image",
           "read_image_file", "CLASS_NAMES", "FASHION_CLASSES"]
