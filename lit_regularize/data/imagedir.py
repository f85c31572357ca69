"""--data imagedir:PATH: images in class folders (torchvision ImageFolder layout), PATH/train/<class>/*.png|jpg…
and optionally PATH/test/<class>/*.

Every image is decoded once, converted to 8-bit grayscale (`lit_regularize.data.images.to_gray8`: 16-bit and
float images scaled by their bit depth, transparent pixels white), resized to image_size × image_size and kept
as uint8; batches are normalized with the mean and standard deviation of the training examples' pixels. --augment,
--hflip and --n-per-class work as for MNIST (this is an ImageDataModule). `ImageDirInputs` reads new image files for
predict by the same rule. The kind (settings, predict, export) is lit_regularize.data.kinds.imagedir.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_regularize.data.images import to_gray8
from lit_regularize.data.kinds.imagedir import IMAGE_SUFFIXES
from lit_regularize.data.mnist import ImageDataModule, ImageDataset, balanced_subset
from lit_regularize.data.own import OwnData, check_classes, class_folders, file_names, files_of, stamp
from lit_regularize.errors import DataError


class ImageDir(NamedTuple):
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]  # uint8 N × size × size, int64 labels
    class_names: list[str]


def read_image(path: Path, size: int) -> np.ndarray:
    """One image as a size × size uint8 grayscale array (data.images.to_gray8: every mode scaled by its bit
    depth, as predict reads it); a file PIL cannot decode is a DataError."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = to_gray8(im)
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds (OSError, UnidentifiedImageError, ValueError, …)
        why = " ".join(str(e).split())[:100]
        raise DataError(f"{path}: cannot decode the image ({type(e).__name__}: {why})") from None


@functools.lru_cache(maxsize=4)
def load_imagedir(path: str, key: str, size: int) -> ImageDir:
    """Decoded class folders of path; cached per process (key: every file's name, mtime and size)."""
    folders = class_folders(Path(path), IMAGE_SUFFIXES, "image")
    class_names = list(folders["train"])
    check_classes(class_names, f"{path}/train")
    code = {c: i for i, c in enumerate(class_names)}
    splits = {}
    for split, classes in folders.items():
        n = sum(len(f) for f in classes.values())
        images = np.empty((n, size, size), np.uint8)
        labels = np.empty(n, np.int64)
        k = 0
        for c, files in classes.items():
            for f in files:
                images[k], labels[k] = read_image(f, size), code[c]
                k += 1
        splits[split] = (torch.from_numpy(images), torch.from_numpy(labels))
    return ImageDir(splits, class_names)


class ImageDirDataModule(OwnData, ImageDataModule):
    """Grayscale image_size × image_size images from class folders; normalized with training statistics."""

    def __init__(self, path: str | os.PathLike, *, image_size: int = 28, test_size: float = 0.2,
                 **kwargs: Any) -> None:
        """path: holds train/<class>/* (+ test/<class>/*); image_size: side in pixels after resizing;
        test_size: held-out share without test/; kwargs: ImageDataModule's (n_per_class, augment, hflip) and
        SplitDataModule's arguments."""
        super().__init__(path, test_size=test_size, **kwargs)
        self.image_size = image_size
        self.n_features = image_size * image_size
        self.data: Optional[ImageDir] = None

    def load_source(self) -> tuple[np.ndarray, bool]:
        p = self.path.resolve()
        self.data = load_imagedir(str(p), stamp(p), self.image_size)
        self.class_names = list(self.data.class_names)
        self.n_classes = len(self.class_names)
        return self.data.splits["train"][1].numpy(), "test" in self.data.splits

    def train_labels(self) -> np.ndarray:
        return self.labels

    def train_pool(self) -> np.ndarray:
        """The images not held out for testing, or a balanced subset of them (--n-per-class)."""
        if self.n_per_class is None:
            return self.pool
        subset, rest = balanced_subset(self.labels[self.pool], self.n_per_class, self.seed)
        self._rest = self.pool[rest]
        return self.pool[subset]

    @property
    def default_val_size(self) -> int:  # type: ignore[override]
        val = super().default_val_size
        return min(val, len(self._rest)) if self.n_per_class else val

    def fit(self, train_idx: np.ndarray) -> None:
        assert self.data is not None
        images = self.data.splits["train"][0].numpy()
        n, total, sq = 0, 0.0, 0.0
        for s in range(0, len(train_idx), 4096):  # chunked: no float copy of every training image
            chunk = images[train_idx[s:s + 4096]].astype(np.float64) / 255.0
            n, total, sq = n + chunk.size, total + chunk.sum(), sq + (chunk ** 2).sum()
        mean = total / max(n, 1)
        std = float(np.sqrt(max(sq / max(n, 1) - mean ** 2, 0.0)))
        self.mean, self.std = float(mean), (std if std > 1e-6 else 1.0)

    def source_dataset(self, source: str, idx: Optional[np.ndarray]) -> Dataset:
        assert self.data is not None
        images, labels = self.data.splits[source]
        return ImageDataset(images, labels, idx, self.mean, self.std)

    def artifacts(self) -> dict[str, Any]:
        return {**super().artifacts(), "normalization.json": {"image_size": self.image_size, "grayscale": True,
                                                              "mean": self.mean, "std": self.std}}


class ImageDirInputs:
    """Image files (or folders of them) decoded, resized and normalized as a run's training images; invert:
    255 - pixel (asked for by predict --invert)."""

    takes_text = False

    def __init__(self, spec: dict[str, Any], invert: bool = False) -> None:
        """spec: the run's normalization.json (image_size, mean, std)."""
        self.size, self.mean, self.std = int(spec["image_size"]), float(spec["mean"]), float(spec["std"])
        self.invert = invert

    def read(self, item: Any) -> tuple[list[str], Dataset]:
        """(a name per image, the Dataset of the images) of an image file or a folder of them."""
        from lit_regularize.errors import UserError

        if not isinstance(item, (str, os.PathLike)):
            raise UserError(f"imagedir runs predict from file or folder paths, got {type(item).__name__}")
        files = files_of(item, IMAGE_SUFFIXES, "image")
        images = np.stack([read_image(f, self.size) for f in files])
        if self.invert:
            images = 255 - images
        ds = ImageDataset(torch.from_numpy(images), torch.zeros(len(files), dtype=torch.long), None, self.mean,
                          self.std)
        return file_names(os.fspath(item), files), ds


__all__ = ["ImageDirDataModule", "ImageDirInputs", "load_imagedir", "read_image", "IMAGE_SUFFIXES"]
