"""DataModules: IMDB multi-hot reviews, MNIST / Fashion-MNIST images, and the user's own data."""
from lit_regularize.data.base import SplitDataModule
from lit_regularize.data.imdb import IMDBDataModule, MultiHot
from lit_regularize.data.mnist import ImageDataModule, MNISTDataModule

__all__ = ["IMDBDataModule", "ImageDataModule", "MNISTDataModule", "MultiHot", "SplitDataModule"]
