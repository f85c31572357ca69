"""The `DataKind` base, its registry (`@register_data_kind("name")`, like the regularizers') and the families whose
settings several kinds share.

A data kind is one module that owns everything about one kind of data: its settings (declared with
`lit_regularize.settings.setting`), its presets, how the run name names it, its DataModule, what a run saves about it
(the DataModule's `artifacts()`), its class names, how `predict` reads new inputs and what `export` writes about its
input. `--data NAME` picks a named dataset (imdb, mnist, fashion_mnist); `--data KIND:PATH` the user's own data.

A setting's `only` names the kinds, or the families, it applies to; a family is a base class below that declares
the settings its kinds share once: "multihot" (--input-format), "text" (--num-words; predict takes review texts),
"image" (--n-per-class, the 784-128-128-10 Adam preset, --invert at predict), "own" (KIND:PATH, --test-size, a
batch size fitted to the data's size).

Kind modules import neither torch, numpy nor Lightning at module level: every kind's settings are declared when the
schema is read (`--help`), so a kind imports its DataModule (which subclasses Lightning's) inside its methods.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Collection, Mapping, Optional, Sequence

from lit_regularize.errors import ConfigError, DataError
from lit_regularize.registry import claim
from lit_regularize.settings import Setting, at_least, declare, setting, undeclare

if TYPE_CHECKING:
    from lit_regularize.config import Config
    from lit_regularize.data.base import SplitDataModule
    from lit_regularize.rundir import RunDir

Shape = tuple[Optional[int], int, str]  # (input width or None where unknown, classes, what says so)
CLASSES_FILE = "classes.json"


@dataclass(frozen=True)
class PredictOptions:
    """What `predict` may be told besides the run folder."""

    word_index: Optional[str] = None  # imdb: keras' imdb_word_index.json (default: the data folder's)
    data_dir: Optional[str] = None  # imdb: the data folder that holds it
    invert: bool = False  # image kinds: 255 - pixel of every input image (dark-on-light pictures)
    n_features: Optional[int] = None  # the model's input width (npz files are checked against it)


class DataKind:
    """Base class of a data kind: subclass one or more families below, declare `settings` / `presets`, override
    what the kind does differently. An instance is one --data value (`self.data`, `self.path` for KIND:PATH)."""

    name: ClassVar[str] = ""
    #: the family a base class stands for (set by the family classes, never by a kind)
    family: ClassVar[str] = ""
    #: --data KIND:PATH (the user's own data) rather than a named dataset
    takes_path: ClassVar[bool] = False
    #: predict takes review texts (arguments, --file lines, stdin)
    takes_text: ClassVar[bool] = False
    settings: ClassVar[Sequence[Setting]] = ()
    #: setting defaults for this kind, under the regularizer presets and the user's settings
    presets: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, data: str) -> None:
        self.data = data
        self.path = Path(data.split(":", 1)[1]).expanduser() if ":" in data else None

    @classmethod
    def families(cls) -> tuple[str, ...]:
        """The families this kind belongs to ("multihot", "text", "image", "own")."""
        return tuple(dict.fromkeys(c.__dict__["family"] for c in cls.__mro__ if c.__dict__.get("family")))

    @classmethod
    def accepts(cls, s: Setting) -> bool:
        """Whether setting s applies to this kind (its `only` names the kind or one of its families, or is empty)."""
        return not s.only or cls.name in s.only or any(f in s.only for f in cls.families())

    # -- the config -----------------------------------------------------------------------------------------
    def run_name(self) -> str:
        """How the run name (the folder under --logdir) starts."""
        return self.name

    def fitted_defaults(self, values: Mapping[str, Any], given: Collection[str]) -> dict[str, Any]:
        """Defaults that depend on the data itself (settings not in `given`, the ones the user set)."""
        return {}

    # -- training -------------------------------------------------------------------------------------------
    def datamodule(self, cfg: "Config", split: dict[str, Any]) -> "SplitDataModule":
        """The DataModule of cfg; split: SplitDataModule's keyword arguments (batch size, sizes, seed, ...)."""
        raise NotImplementedError

    # -- a trained run (settings: the run's saved settings, every one present) --------------------------------
    def class_names(self, settings: Mapping[str, Any], rundir: "RunDir") -> list[str]:
        """The names of the classes, by label."""
        raise NotImplementedError

    def shape(self, settings: Mapping[str, Any], rundir: "RunDir") -> Shape:
        """(input width or None where the run does not say, number of classes, what says so)."""
        raise NotImplementedError

    def inputs(self, settings: Mapping[str, Any], rundir: "RunDir", options: PredictOptions) -> Any:
        """What reads new inputs for predict: `read(item) -> (a name per example, a Dataset of the training kind)`,
        and `texts(list) -> Dataset` for kinds that take review texts."""
        raise NotImplementedError

    def metadata(self, settings: Mapping[str, Any], rundir: "RunDir", options: PredictOptions) -> dict[str, Any]:
        """What export writes about the input in <out>.json: `input` (how a row is built), `normalization`,
        `num_words`, and whatever else building a row needs (a text kind's vocabulary and rules); `notes`: what
        export says on stderr (e.g. what it had to leave out)."""
        raise NotImplementedError


# -- families ---------------------------------------------------------------------------------------------------

declare(
    setting("input_format", str, "auto", "multi-hot kinds (imdb, textdir, npz): first layer input (auto = sparse)",
            "data", choices=("auto", "dense", "sparse"), only=("multihot",), owner="data:multihot"),
    setting("num_words", int, 10000, "text kinds (imdb, textdir): vocabulary of the N most frequent words (keras "
            "num_words)", "data", only=("text",), owner="data:text",
            check=lambda v: None if v >= 4 else f"must be >= 4 (ids 0-2 are reserved by keras), got {v}"),
    setting("n_per_class", int, None, "images: balanced, seeded subset of N training images per class", "data",
            optional=True, only=("image",), owner="data:image", check=at_least(1)),
    setting("test_size", float, 0.2, "own data without a test split: stratified share held out for testing", "data",
            only=("own",), owner="data:own",
            check=lambda v: None if 0.0 < v < 1.0 else f"must be a fraction in (0, 1), got {v}"),
)


class MultiHotKind(DataKind):
    """Rows that may be multi-hot CSR word ids, trained through the sparse first layer unless --input-format dense."""

    family = "multihot"

    @staticmethod
    def dense(input_format: str) -> bool:
        """Whether multi-hot rows are expanded to dense float rows (--input-format dense)."""
        return input_format == "dense"


class TextKind(MultiHotKind):
    """Texts as num_words-wide multi-hot rows (keras' tokenizer and IMDB encoding); predict takes review texts."""

    family = "text"
    takes_text = True
    #: suffixes of the kind's example files (textdir: .txt): predict also reads such files and folders of them
    documents: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def is_document_path(cls, s: str) -> bool:
        """Whether a text input means files: it names an existing file or folder, or is one word ending in a
        document suffix (a mistyped file name is then said to be missing, not classified as a review)."""
        if not cls.documents or "\n" in s:
            return False
        s = s.strip()
        return os.path.exists(s) or (len(s.split()) == 1 and s.lower().endswith(cls.documents))


IMAGE_PRESET = {"hidden": 128, "optimizer": "adam", "lr": 1e-3, "batch_size": 32, "max_epochs": 60, "patience": 10}


class ImageKind(DataKind):
    """Grayscale images; runs default to the notebooks' 784-128-128-10 Adam protocol; predict can --invert."""

    family = "image"
    presets = IMAGE_PRESET


MIN_STEPS = 10  # own data: the fitted batch size gives an epoch at least this many steps ...
MIN_BATCH = 8  # ... with batches of at least this many examples


class OwnKind(DataKind):
    """The user's own data at PATH (--data KIND:PATH): a stratified --test-size share is held out when it has no
    test split, the class names are the user's (classes.json in the run folder), and the batch size fits the data's
    size unless --batch-size is given."""

    family = "own"
    takes_path = True

    def run_name(self) -> str:
        assert self.path is not None
        return f"{self.name}_{self.path.stem}"

    def count(self) -> Optional[tuple[int, bool, int]]:
        """(examples in the training source, whether the data has a test split, classes or 0 when unknown),
        cheaply and without loading the data; None when it cannot be told (the DataModule then says why)."""
        return None

    def fitted_defaults(self, values: Mapping[str, Any], given: Collection[str]) -> dict[str, Any]:
        """batch_size (unless given): the largest power of two that gives an epoch at least MIN_STEPS steps, at
        least MIN_BATCH and at most the kind's default; with the default a 384-row CSV trained one step an epoch."""
        if "batch_size" in given:
            return {}
        try:
            counted = self.count()
        except (OSError, ValueError):
            counted = None
        if counted is None:
            return {}
        n_train = training_examples(*counted, values)
        return {"batch_size": fitted_batch_size(n_train, int(values["batch_size"]))} if n_train else {}

    def datamodule(self, cfg: "Config", split: dict[str, Any]) -> "SplitDataModule":
        raise NotImplementedError

    def class_names(self, settings: Mapping[str, Any], rundir: "RunDir") -> list[str]:
        names = rundir.read_artifact(CLASSES_FILE)
        if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names):
            raise DataError(f"{rundir.path / CLASSES_FILE}: expected a list of two or more class names")
        return names

    def width(self, settings: Mapping[str, Any], rundir: "RunDir") -> tuple[Optional[int], str]:
        """(the input width the run's settings and saved files fix, what fixes it); (None, "") where only the
        training data said."""
        return None, ""

    def shape(self, settings: Mapping[str, Any], rundir: "RunDir") -> Shape:
        n = len(self.class_names(settings, rundir))
        width, source = self.width(settings, rundir)
        return width, n, f"{self.name} data: {n} classes in {CLASSES_FILE}" + (f", {source}" if source else "")


def training_examples(n: int, has_test: bool, n_classes: int, values: Mapping[str, Any]) -> int:
    """About how many examples train, from the training source's size and the split settings (as the DataModule
    splits: test_size held out per class without a test split, then the validation share or fold)."""
    pool = n if has_test else n - max(round(float(values["test_size"]) * n), n_classes or 1)
    if values.get("n_per_class") and n_classes:  # images: the subset trains, validation comes from the rest
        return min(pool, int(values["n_per_class"]) * n_classes)
    if int(values["kfold"]) >= 2:
        train = pool - pool // int(values["kfold"])
    elif values["val_on_test"]:
        train = pool
    else:
        val = values["val_size"] if values["val_size"] is not None else round(0.2 * pool)
        train = pool - int(val)
    if values["train_size"] is not None:
        train = min(train, int(values["train_size"]))
    return max(train, 0)


def fitted_batch_size(n_train: int, cap: int) -> int:
    """The largest power of two b with n_train / b >= MIN_STEPS, within [MIN_BATCH, cap]."""
    b = 1 << max((n_train // MIN_STEPS).bit_length() - 1, 0)
    return max(min(b, cap), min(MIN_BATCH, cap))


def count_lines(path: Path) -> int:
    """Newline-terminated lines of a file, counted in chunks (GB/s: no parsing)."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def count_class_files(root: Path, suffixes: tuple[str, ...]) -> Optional[tuple[int, bool, int]]:
    """(files in root/train/<class>/ with one of suffixes, whether root/test/ exists, classes) of a class-folder
    tree, or None when root/train is missing."""
    train = root / "train"
    if not train.is_dir():
        return None
    classes = [d for d in train.iterdir() if d.is_dir() and not d.name.startswith(".")]
    n = sum(1 for d in classes for f in os.scandir(d)
            if f.is_file() and not f.name.startswith(".") and os.path.splitext(f.name)[1].lower() in suffixes)
    return n, (root / "test").is_dir(), len(classes)


# -- the registry -------------------------------------------------------------------------------------------

_KINDS: dict[str, type[DataKind]] = {}


def register_data_kind(name: str) -> Callable[[type[DataKind]], type[DataKind]]:
    """Class decorator: make a DataKind subclass available as --data NAME (or NAME:PATH when it takes a path);
    its settings join the schema (`only` defaults to the kind itself)."""
    def add(cls: type[DataKind]) -> type[DataKind]:
        claim(_KINDS, name, cls, DataKind, "data kind", "register_data_kind")
        cls.name = name
        owner = f"data:{name}"
        undeclare(owner)  # a module imported again (a notebook cell run twice) re-declares its settings
        declare(*(replace(s, owner=owner, only=s.only or (name,)) for s in cls.settings))
        _KINDS[name] = cls
        return cls
    return add


def unregister_data_kind(name: str) -> None:
    """Remove a registered kind and its settings (a notebook replacing its plug-in, a test cleaning up)."""
    _KINDS.pop(name, None)
    undeclare(f"data:{name}")


def data_kinds() -> dict[str, type[DataKind]]:
    """Every registered kind, by name, in registration order."""
    return dict(_KINDS)


def named_datasets() -> tuple[str, ...]:
    """The kinds given as --data NAME."""
    return tuple(n for n, k in _KINDS.items() if not k.takes_path)


def own_kinds() -> tuple[str, ...]:
    """The kinds given as --data KIND:PATH."""
    return tuple(n for n, k in _KINDS.items() if k.takes_path)


def kinds_accepting(s: Setting) -> list[str]:
    """The kinds a setting applies to, by name."""
    return [n for n, k in _KINDS.items() if k.accepts(s)]


def data_help() -> str:
    """The --data help, from the registry."""
    return (f"{' | '.join(named_datasets())}, or your own data as KIND:PATH with KIND one of "
            f"{', '.join(own_kinds())}")


def data_kind(data: str) -> DataKind:
    """The kind of a --data value (NAME or KIND:PATH); one ConfigError line when there is none."""
    if ":" in data:
        name, path = data.split(":", 1)
        cls = _KINDS.get(name)
        if cls is None or not cls.takes_path or not path:
            raise ConfigError(f"--data {data!r}: own data is KIND:PATH with KIND one of {', '.join(own_kinds())}")
        return cls(data)
    cls = _KINDS.get(data)
    if cls is not None and cls.takes_path:
        raise ConfigError(f"--data {data!r}: own data needs its path, {data}:PATH")
    if cls is None:
        hint = difflib.get_close_matches(data, named_datasets(), n=1)
        raise ConfigError(f"--data: unknown value {data!r} (choose from {', '.join(named_datasets())}, or KIND:PATH)"
                          + (f"; did you mean {hint[0]!r}?" if hint else ""))
    return cls(data)


def kind_module(data: str) -> Optional[str]:
    """The module of a plug-in kind (outside lit_regularize), which other processes must import; else None."""
    cls = _KINDS.get(data.split(":", 1)[0])
    module = cls.__module__ if cls is not None else None
    return module if module and not module.startswith("lit_regularize.") and module != "__main__" else None


__all__ = ["DataKind", "MultiHotKind", "TextKind", "ImageKind", "OwnKind", "PredictOptions",
           "register_data_kind", "unregister_data_kind", "data_kinds", "data_kind", "named_datasets",
           "own_kinds", "kinds_accepting", "data_help", "kind_module", "training_examples",
           "fitted_batch_size", "count_lines", "count_class_files", "IMAGE_PRESET", "CLASSES_FILE",
           "MIN_STEPS", "MIN_BATCH"]
