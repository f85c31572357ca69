"""lit_regularize: a PyTorch Lightning lab for fighting overfitting, with an Optuna sweep harness."""
import os

# Keras 3 picks its backend once, at import; the package only ever uses keras with torch.
os.environ.setdefault("KERAS_BACKEND", "torch")

__version__ = "0.1.0"
