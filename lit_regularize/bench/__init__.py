"""`lit-regularize bench`: IMDB epochs, Fashion-MNIST augmentation and sweep throughput beside the peers.

cli parses flags and prints; imdb, mnist and sweep time one section each; output renders the tables."""
from lit_regularize.bench.cli import main

__all__ = ["main"]
