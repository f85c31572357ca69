"""MNIST / Fashion-MNIST (torchvision's raw idx layout): balanced subsets, optional augmentation; and new images for
predict, encoded exactly as the training images (`ImageInputs`, never guessed at):

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
inverted, and only on request (predict --invert): 255 - pixel of every input image, before cropping. Then pixels are
normalized as in training, (x / 255 - mean) / std with the dataset's mean and std.

The kinds (settings, predict, export) are lit_regularize.data.kinds.mnist.
"""
from __future__ import annotations

import contextlib

import functools
import os
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets

from lit_regularize.data.base import SplitDataModule
from lit_regularize.data.kinds.mnist import FASHION_CLASSES, IMAGE_SIZE
from lit_regularize.errors import DataError, UserError

# name -> (torchvision class, normalization mean, std of the training images)
IMAGE_DATASETS: dict[str, tuple[type, float, float]] = {
    "mnist": (datasets.MNIST, 0.1307, 0.3081),
    "fashion_mnist": (datasets.FashionMNIST, 0.2860, 0.3530),
}
IDX_MAGIC = {"images": (0x0803, 3), "labels": (0x0801, 1)}


def read_idx(path: Path, kind: str) -> np.ndarray:
    """Read one uncompressed idx file, checking magic number, dimensions and size."""
    magic, ndim = IDX_MAGIC[kind]
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    header = 4 * (ndim + 1)
    if len(raw) < header:
        raise DataError(f"{path}: truncated idx file ({len(raw)} bytes, header needs {header})")
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise DataError(f"{path}: wrong magic number 0x{got:08x} for idx {kind} (expected 0x{magic:08x})")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    need = header + int(np.prod(dims))
    if len(raw) != need:
        raise DataError(f"{path}: {'truncated' if len(raw) < need else 'oversized'} idx file "
                        f"({len(raw)} bytes, dimensions {dims} need {need})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _files(raw: Path, split: str) -> tuple[Path, Path]:
    prefix = "train" if split == "train" else "t10k"
    return raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"


CLASS_NAMES: dict[str, list[str]] = {"mnist": [str(i) for i in range(10)], "fashion_mnist": list(FASHION_CLASSES)}
IDX_IMAGES_MAGIC = b"\x00\x00\x08\x03"


def fetch_images(name: str, root: Path) -> Path:
    """root/<MNIST|FashionMNIST>/raw with the four idx files, downloaded (md5-checked by torchvision) if missing."""
    cls = IMAGE_DATASETS[name][0]
    raw = Path(root) / cls.__name__ / "raw"
    files = [p for s in ("train", "test") for p in _files(raw, s)]
    for p in files:
        if p.is_symlink() and not p.exists():  # never replaced by a download, never deleted
            raise DataError(f"{p} is a broken symbolic link; fix or remove it")
    if not all(p.is_file() for p in files):
        created = [d for d in (raw, raw.parent, Path(root)) if not d.exists()]  # innermost first
        try:
            cls(str(root), train=True, download=True)
        except Exception as e:  # noqa: BLE001 - any network/permission failure becomes one line
            for d in created:  # a failed download leaves no empty folders in a mistyped --data-dir
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise DataError(f"{name}: idx files not found in {raw} and downloading failed "
                            f"({type(e).__name__}); put them there or pass --data-dir / "
                            f"set LIT_REGULARIZE_DATA_DIR") from None
    return raw


@functools.lru_cache(maxsize=4)
def load_images(name: str, root: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{'train': (uint8 images N×28×28, int64 labels), 'test': …}, validated; downloaded if missing."""
    raw = fetch_images(name, Path(root))
    out = {}
    for split in ("train", "test"):
        img_path, lab_path = _files(raw, split)
        images, labels = read_idx(img_path, "images"), read_idx(lab_path, "labels")
        if len(images) != len(labels):
            raise DataError(f"{img_path}: {len(images)} images but {lab_path.name} has {len(labels)} labels")
        if images.shape[1:] != (28, 28):  # the model's input width is fixed at 28 * 28
            raise DataError(f"{img_path}: images must be 28x28, got {images.shape[1]}x{images.shape[2]}")
        if labels.size and labels.max() > 9:
            raise DataError(f"{lab_path}: labels must be 0-9, found {labels.max()}")
        out[split] = (torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))
    return out


def balanced_subset(labels: np.ndarray, n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded pick of n_per_class indices of every class; returns (subset, the rest)."""
    rng = np.random.RandomState(seed)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if n_per_class > len(members):
            raise DataError(f"--n-per-class {n_per_class} is larger than class {c}, "
                            f"which has {len(members)} training images")
        picked.append(rng.choice(members, n_per_class, replace=False))
    subset = np.sort(np.concatenate(picked))
    rest = np.setdiff1d(np.arange(len(labels)), subset)
    return subset, rest


class ImageDataset(Dataset):
    """Normalized images at idx, built a whole batch at a time (augmentation happens per batch, on the device)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, idx: Optional[np.ndarray],
                 mean: float, std: float) -> None:
        self.images, self.labels, self.mean, self.std = images, labels, mean, std
        self.idx = torch.arange(len(labels)) if idx is None else torch.as_tensor(idx, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitems__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.idx[torch.as_tensor(positions, dtype=torch.long)]
        x = self.images[rows].unsqueeze(1)
        return (x.float() / 255.0 - self.mean) / self.std, self.labels[rows]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([i])
        return x[0], y[0]


class ImageDataModule(SplitDataModule):
    """Base of image DataModules: 1×H×W normalized images; `augment` transforms training batches on the device."""

    def __init__(self, *, n_per_class: Optional[int] = None, augment: bool = False, hflip: bool = False,
                 **split: Any) -> None:
        super().__init__(**split)
        self.n_per_class, self.augment, self.hflip = n_per_class, augment, hflip
        self.mean, self.std = 0.0, 1.0
        self._rest = np.zeros(0, np.int64)
        # A generator of its own, seeded and checkpointed: augmentation draws are reproducible and resumable.
        self.generator = torch.Generator().manual_seed(self.seed)

    @property
    def default_val_size(self) -> int:  # type: ignore[override]
        return 1000 if self.n_per_class else 10000

    def train_labels(self) -> np.ndarray:
        """Labels of the training arrays."""
        raise NotImplementedError

    def train_pool(self) -> np.ndarray:
        """The balanced subset (--n-per-class) or every training image."""
        labels = self.train_labels()
        if self.n_per_class is None:
            return np.arange(len(labels))
        subset, self._rest = balanced_subset(labels, self.n_per_class, self.seed)
        return subset

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """With --n-per-class all subset images train and validation comes from the remaining images."""
        if self.n_per_class is None or (self.kfold >= 2 and self.fold is not None) or self.val_on_test:
            return super().split()
        train = self.train_pool()
        if self.train_size is not None:
            raise DataError("--train-size does not combine with --n-per-class (the subset is the training set)")
        val_size = self.val_size
        if val_size > len(self._rest):
            raise DataError(f"--val-size {val_size} is larger than the {len(self._rest)} images left")
        val = self._rest[np.random.RandomState(self.seed).permutation(len(self._rest))[:val_size]]
        return train, val

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Training batches only, on the device they train on: one batched random affine per batch.
        if not self.augment or self.trainer is None or not self.trainer.training:
            return batch
        from lit_regularize.data.augment import augment_batch

        x, y = batch
        return augment_batch(x, fill=-self.mean / self.std, hflip=self.hflip, generator=self.generator), y

    def state_dict(self) -> dict[str, Any]:
        return {"augment_rng": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "augment_rng" in state_dict:
            self.generator.set_state(state_dict["augment_rng"])


class MNISTDataModule(ImageDataModule):
    """MNIST or Fashion-MNIST 28×28 images (torchvision's raw idx files) flattened by the model; 10 classes."""

    n_classes = 10
    n_features = 28 * 28

    def __init__(self, data_dir: str | os.PathLike, name: Literal["mnist", "fashion_mnist"] = "mnist",
                 **kwargs: Any) -> None:
        """data_dir holds <MNIST|FashionMNIST>/raw/*-ubyte; kwargs: ImageDataModule's and SplitDataModule's."""
        super().__init__(**kwargs)
        self.data_dir, self.name = Path(data_dir), name
        self.arrays: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.mean, self.std = IMAGE_DATASETS[name][1:]
        self.class_names = CLASS_NAMES[name]

    def prepare_data(self) -> None:
        fetch_images(self.name, self.data_dir)

    def load(self) -> None:
        self.arrays = load_images(self.name, str(self.data_dir))

    def train_labels(self) -> np.ndarray:
        return self.arrays["train"][1].numpy()

    def make_dataset(self, split: str, idx: Optional[np.ndarray]) -> Dataset:
        images, labels = self.arrays["test" if split == "test" else "train"]
        return ImageDataset(images, labels, idx, self.mean, self.std)


# -- new images for predict --------------------------------------------------------------------------------------

def fit_to_box(img: Any, box: int) -> np.ndarray:
    """A light-on-dark grayscale PIL image cropped to its content, fitted into box x box, centered on a black
    28x28."""
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


def box_of(data: str) -> int:
    """The side an input picture of another size is fitted into for a run on data (mnist 20, fashion_mnist 28)."""
    from lit_regularize.data.kinds import data_kinds

    return int(data_kinds()[data].box)  # type: ignore[attr-defined]


def prepare_image(img: Any, data: str = "mnist", invert: bool = False) -> np.ndarray:
    """A PIL image as a 28x28 uint8 array encoded as the training images of data (see the module doc): 8-bit
    grayscale by its mode's bit depth (to_gray8), 255 - pixel when invert, then fitted to 28x28 unless it is 28x28."""
    from PIL import ImageOps

    from lit_regularize.data.images import to_gray8

    gray = to_gray8(img)
    if invert:  # asked for (dark-on-light pictures), never guessed: a bright training image stays as it is
        gray = ImageOps.invert(gray)
    if gray.size == (IMAGE_SIZE, IMAGE_SIZE):
        return np.asarray(gray, dtype=np.uint8)
    return fit_to_box(gray, box_of(data))


def array_images(a: Any, what: str) -> np.ndarray:
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
        images = array_images(read_idx(p, "images"), str(p))
        return 255 - images if invert else images
    try:
        with Image.open(p) as img:
            img.load()
            return prepare_image(img, data, invert)[None]
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as e:
        why = " ".join(str(e).split())[:100]
        raise DataError(f"image {p}: not a readable image ({type(e).__name__}: {why})") from None


class ImageInputs:
    """New images of an MNIST / Fashion-MNIST run (paths, idx files, PIL images, arrays; see the module doc) as the
    training ImageDataset: (x / 255 - mean) / std per batch, with the dataset's mean and std."""

    takes_text = False

    def __init__(self, data: str, invert: bool = False) -> None:
        """data: mnist or fashion_mnist; invert: 255 - pixel of every input image."""
        self.data, self.invert = data, invert
        self.mean, self.std = IMAGE_DATASETS[data][1:]

    def images(self, item: Any, position: int = 1) -> np.ndarray:
        """(N, 28, 28) uint8 of one input: a path, an idx file (all its images), a PIL image or an array
        (position: the input's number, for errors)."""
        if isinstance(item, (str, os.PathLike)):
            return read_image_file(item, self.data, self.invert)
        if hasattr(item, "convert") and hasattr(item, "mode"):  # a PIL image
            return prepare_image(item, self.data, self.invert)[None]
        if isinstance(item, (torch.Tensor, np.ndarray)):
            a = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else item
            images = array_images(a, f"input {position}")
            return 255 - images if self.invert else images
        raise UserError(f"input {position}: expected an image path, PIL image or array, got {type(item).__name__}")

    def read(self, item: Any) -> tuple[list[str], ImageDataset]:
        """(a name per image, the Dataset of the images) of one input: an idx file holds many."""
        return self.read_many([item])

    def read_many(self, items: Sequence[Any], first: int = 0) -> tuple[list[str], ImageDataset]:
        """(a name per image, one Dataset of the images of every input): one batch, as the images of one file."""
        from lit_regularize.data.own import row_names

        names: list[str] = []
        arrays = []
        for i, item in enumerate(items):
            arrays.append(self.images(item, first + i + 1))
            shown = os.fspath(item) if isinstance(item, (str, os.PathLike)) else "input"
            names += row_names(shown, len(arrays[-1]))
        images = np.concatenate(arrays) if arrays else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        t = torch.from_numpy(np.ascontiguousarray(images))
        return names, ImageDataset(t, torch.zeros(len(t), dtype=torch.long), None, self.mean, self.std)
