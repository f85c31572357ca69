"""--data mnist | fashion_mnist: torchvision's idx files (<data folder>/MNIST/raw, FashionMNIST/raw), 28x28
grayscale images, 10 classes, the notebooks' 784-128-128-10 Adam protocol (the image family's preset).

Predict takes image files (any size and mode), idx image files, PIL images and arrays, encoded as the training images
(lit_regularize.data.mnist.ImageInputs). The DataModule and the readers are imported inside the methods: they need
torch (and Lightning), and this module is imported whenever the settings schema is read (--help).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from lit_regularize.data.kinds.base import ImageKind, PredictOptions, Shape, register_data_kind

if TYPE_CHECKING:
    from lit_regularize.config import Config
    from lit_regularize.data.base import SplitDataModule
    from lit_regularize.rundir import RunDir

IMAGE_SIZE = 28
# torchvision's FashionMNIST.classes; MNIST's classes are the digits
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


@register_data_kind("mnist")
class MNIST(ImageKind):
    """MNIST handwritten digits: 60,000 training and 10,000 test images."""

    names: ClassVar[tuple[str, ...]] = tuple(str(d) for d in range(10))
    #: an input picture of another size is fitted into a box of this side (MNIST's digits fill 20x20 of 28x28)
    box: ClassVar[int] = 20

    def datamodule(self, cfg: "Config", split: dict[str, Any]) -> "SplitDataModule":
        from lit_regularize.data.mnist import MNISTDataModule

        return MNISTDataModule(cfg.resolved_data_dir(), name=self.name, n_per_class=cfg.n_per_class,  # type: ignore
                               augment=cfg.augment, hflip=cfg.hflip, **split)

    def class_names(self, settings: Mapping[str, Any], rundir: "RunDir") -> list[str]:
        return list(self.names)

    def shape(self, settings: Mapping[str, Any], rundir: "RunDir") -> Shape:
        return IMAGE_SIZE * IMAGE_SIZE, 10, f"{self.name}: {IMAGE_SIZE}x{IMAGE_SIZE} images, 10 classes"

    def inputs(self, settings: Mapping[str, Any], rundir: "RunDir", options: PredictOptions) -> Any:
        from lit_regularize.data.mnist import ImageInputs

        return ImageInputs(self.name, options.invert)

    def metadata(self, settings: Mapping[str, Any], rundir: "RunDir", options: PredictOptions) -> dict[str, Any]:
        from lit_regularize.data.mnist import IMAGE_DATASETS

        mean, std = IMAGE_DATASETS[self.name][1:]
        return {"input": f"{IMAGE_SIZE}x{IMAGE_SIZE} 8-bit grayscale images as the idx files hold them (light on "
                         "dark; invert dark-on-light pictures, 255 - x, first), flattened row-major, normalized as "
                         "(x / 255 - mean) / std",
                "normalization": {"mean": mean, "std": std}, "num_words": None}


@register_data_kind("fashion_mnist")
class FashionMNIST(MNIST):
    """Fashion-MNIST clothing images: 60,000 training and 10,000 test images."""

    names = FASHION_CLASSES
    box = IMAGE_SIZE  # the clothes fill the whole image


__all__ = ["MNIST", "FashionMNIST", "FASHION_CLASSES", "IMAGE_SIZE"]
