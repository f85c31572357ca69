"""--data imagedir:PATH: images in class folders (torchvision's ImageFolder layout), PATH/train/<class>/*.png|jpg…
and optionally PATH/test/<class>/; --image-size SIZE: grayscale SIZE x SIZE.

An image kind (--n-per-class, --augment, the 784-128-128-10 Adam preset, predict --invert) and an own-data kind
(--test-size, classes by folder name); pixels are normalized with the training images' mean and std, saved in the run
folder (normalization.json). The DataModule and the reader (lit_regularize.data.imagedir) are imported inside the
methods: they need torch and Lightning, and this module is imported whenever the settings schema is read (--help).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

from lit_regularize.data.kinds.base import (ImageKind, OwnKind, PredictOptions, count_class_files,
                                            register_data_kind)
from lit_regularize.errors import DataError
from lit_regularize.settings import at_least, setting

if TYPE_CHECKING:
    from lit_regularize.config import Config
    from lit_regularize.data.base import SplitDataModule
    from lit_regularize.rundir import RunDir

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
NORMALIZATION = "normalization.json"


@register_data_kind("imagedir")
class ImageDir(ImageKind, OwnKind):
    """Image files sorted into one folder per class."""

    settings = (setting("image_size", int, 28, "imagedir: images are resized to SIZE x SIZE grayscale", "data",
                        metavar="SIZE", check=at_least(1)),)

    def datamodule(self, cfg: "Config", split: dict[str, Any]) -> "SplitDataModule":
        from lit_regularize.data.imagedir import ImageDirDataModule

        return ImageDirDataModule(self.path, image_size=cfg.image_size, n_per_class=cfg.n_per_class,
                                  augment=cfg.augment, hflip=cfg.hflip, test_size=cfg.test_size, **split)

    def count(self) -> Optional[tuple[int, bool, int]]:
        assert self.path is not None
        return count_class_files(self.path, IMAGE_SUFFIXES)

    def width(self, settings: Mapping[str, Any], rundir: "RunDir") -> tuple[Optional[int], str]:
        size = int(normalization(rundir)["image_size"])
        return size * size, f"{size}x{size} images in {NORMALIZATION}"

    def inputs(self, settings: Mapping[str, Any], rundir: "RunDir", options: PredictOptions) -> Any:
        from lit_regularize.data.imagedir import ImageDirInputs

        return ImageDirInputs(normalization(rundir), options.invert)

    def metadata(self, settings: Mapping[str, Any], rundir: "RunDir", options: PredictOptions) -> dict[str, Any]:
        return {"input": "image_size x image_size grayscale images (resized bilinearly), flattened row-major, "
                         "normalized as (x / 255 - mean) / std", "normalization": normalization(rundir),
                "num_words": None}


def normalization(rundir: "RunDir") -> dict[str, Any]:
    """The run folder's normalization.json, checked to be what an image-folder run saves."""
    spec = rundir.read_artifact(NORMALIZATION)
    try:
        int(spec["image_size"]), float(spec["mean"]), float(spec["std"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{rundir.path / NORMALIZATION}: not the normalization an image run saves") from None
    return spec


__all__ = ["ImageDir", "normalization", "IMAGE_SUFFIXES", "NORMALIZATION"]
