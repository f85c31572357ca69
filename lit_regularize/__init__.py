"""lit_regularize: a PyTorch Lightning lab for fighting overfitting, with an Optuna sweep harness.

    import lit_regularize as lr
    a = lr.fit(reg="dropout", data_dir="../shared/data", max_epochs=5)   # settings named as the flags
    table = lr.compare("imdb_penalty", seeds=3, max_epochs=10)            # the comparison table as data
    study = lr.sweep(n_trials=12, max_epochs=6)                           # an optuna.Study, report written
    lr.load(a.run_dir).predict(["A moving, wonderful film."])

`lr.Regularizer` + `@lr.register_regularizer("name")` add a regularizer of your own (see `lr.Regularizer`).
The API is loaded on first use: `import lit_regularize` itself imports neither torch nor Lightning.
"""
import os

# Keras 3 picks its backend once, at import; the package only ever uses keras with torch.
os.environ.setdefault("KERAS_BACKEND", "torch")

__version__ = "0.1.0"

_API = ("fit", "compare", "sweep", "load", "Comparison")
_REGISTRY = ("Regularizer", "register_regularizer")
__all__ = [*_API, *_REGISTRY, "setting", "__version__"]


def __getattr__(name: str):  # noqa: ANN202 - PEP 562: the API's torch imports happen on first use only
    if name in _API:
        from lit_regularize import api

        return getattr(api, name)
    if name in _REGISTRY:
        from lit_regularize import regularizers

        return getattr(regularizers, name)
    if name == "setting":  # declares a plug-in regularizer's settings
        from lit_regularize.settings import setting

        return setting
    raise AttributeError(f"module 'lit_regularize' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
