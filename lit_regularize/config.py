"""The one typed run configuration: defaults, presets, YAML + flag merging and validation."""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

from lit_regularize.errors import ConfigError

DATA_DIR_ENV = "LIT_REGULARIZE_DATA_DIR"

DATASETS = ("imdb", "mnist", "fashion_mnist")
REGULARIZERS = ("none", "l1", "l2", "l1_l2", "dropout", "batchnorm")
OPTIMIZER_NAMES = ("rmsprop", "adam", "sgd")
INPUT_FORMATS = ("auto", "dense", "sparse")
BN_POSITIONS = ("before", "after")

# A preset switches its regularizer on with the strength the notebooks use; explicit settings override it.
REG_PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "l1": {"l1": 1e-4},
    "l2": {"l2": 1e-3},
    "l1_l2": {"l1": 1e-4, "l2": 1e-3},
    "dropout": {"dropout": 0.5},
    "batchnorm": {"batchnorm": True},
}

# MNIST runs use the notebooks' 784-128-128-10 Adam protocol; IMDB keeps the dataclass defaults.
DATA_PRESETS: dict[str, dict[str, Any]] = {
    "imdb": {},
    "mnist": {"hidden": 128, "optimizer": "adam", "lr": 1e-3, "batch_size": 32, "max_epochs": 60, "patience": 10},
    "fashion_mnist": {"hidden": 128, "optimizer": "adam", "lr": 1e-3, "batch_size": 32, "max_epochs": 60,
                      "patience": 10},
}


def _f(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field carrying its --help text."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class Config:
    """Every setting of a run; the single source of truth for defaults (YAML and flags only override)."""

    # data
    data: str = _f("imdb", "dataset: " + " | ".join(DATASETS), choices=DATASETS)
    data_dir: Optional[str] = _f(None, f"folder holding imdb.npz / MNIST raw files (else ${DATA_DIR_ENV}, "
                                       "else ~/.cache/lit_regularize)")
    num_words: int = _f(10000, "IMDB vocabulary: keep the N most frequent words (keras num_words)")
    train_size: Optional[int] = _f(None, "keep only N training examples (after the validation split)")
    val_size: Optional[int] = _f(None, "validation examples split off the training set "
                                       "(default: IMDB 10000, MNIST 1000 with --n-per-class else 10000; 0 = none)")
    val_on_test: bool = _f(False, "validate on the test set, as some notebooks did (no holdout)")
    n_per_class: Optional[int] = _f(None, "MNIST: balanced, seeded subset of N training images per class")
    augment: bool = _f(False, "MNIST: RandomRotation(10) + RandomResizedCrop(28, 0.8-1.0) on the training split")
    hflip: bool = _f(False, "MNIST: also random horizontal flips when augmenting (changes digits)")
    input_format: str = _f("auto", "IMDB first layer input: " + " | ".join(INPUT_FORMATS) + " (auto = sparse)",
                           choices=INPUT_FORMATS)
    shuffle: bool = _f(True, "shuffle training batches every epoch")
    kfold: int = _f(0, "K-fold validation over the training set (0 = off)")
    kfold_repeats: int = _f(1, "iterated K-fold: reshuffle and repeat P times")
    kfold_workers: int = _f(1, "K-fold: folds trained at once in separate processes (0 = one per CPU core)")
    fold: Optional[int] = _f(None, "which fold validates (set by k-fold / sweeps; 0-based)")
    # model
    reg: str = _f("none", "regularizer preset: " + " | ".join(REGULARIZERS), choices=REGULARIZERS)
    hidden: int = _f(16, "hidden width (units per layer)")
    layers: int = _f(2, "number of hidden layers")
    l1: float = _f(0.0, "L1 penalty strength: lambda * sum|W|")
    l2: float = _f(0.0, "L2 penalty strength: lambda * sum W^2")
    l1_layers: Optional[list] = _f(None, "Linear layers (0-based, 'layers' = output) the L1 penalty covers "
                                         "(default: all hidden)", nargs="+", item_type=int)
    l2_layers: Optional[list] = _f(None, "Linear layers the L2 penalty covers (default: all hidden)",
                                   nargs="+", item_type=int)
    dropout: float = _f(0.0, "dropout rate after each hidden activation, in [0, 1)")
    batchnorm: bool = _f(False, "BatchNorm1d in every hidden layer")
    bn_position: str = _f("before", "BatchNorm before or after the ReLU", choices=BN_POSITIONS)
    # optimization
    optimizer: str = _f("rmsprop", "optimizer: " + " | ".join(OPTIMIZER_NAMES), choices=OPTIMIZER_NAMES)
    lr: float = _f(1e-3, "learning rate")
    weight_decay: float = _f(0.0, "decoupled weight decay (AdamW-style), separate from --l2")
    batch_size: int = _f(512, "training batch size")
    max_epochs: int = _f(20, "maximum number of epochs")
    patience: int = _f(3, "EarlyStopping patience in epochs on val/loss")
    early_stopping: bool = _f(True, "stop when val/loss stops improving (--no-early-stopping to draw full curves)")
    seed: int = _f(7777, "seed for weights, splits, subsets and batches")
    deterministic: bool = _f(False, "torch deterministic algorithms (bit-reproducible resume)")
    # output and hardware
    logdir: str = _f("lightning_logs", "TensorBoard root folder")
    name: Optional[str] = _f(None, "run name under --logdir (default: <data>_<reg>)")
    accelerator: str = _f("auto", "Lightning accelerator: auto | cpu | gpu")
    devices: str = _f("1", "Lightning devices: a count, a list such as 0,1, or auto")
    strategy: str = _f("auto", "Lightning strategy: auto | ddp | ddp_spawn ...")
    num_workers: int = _f(0, "DataLoader worker processes (batches are gathered in bulk, 0 is fastest)")
    progress: bool = _f(True, "show progress bars")

    def __post_init__(self) -> None:
        validate(self)

    # -- derived values ---------------------------------------------------------------------------------
    @property
    def run_name(self) -> str:
        """Folder name under logdir."""
        return self.name or f"{self.data}_{self.reg}"

    def resolved_data_dir(self) -> Path:
        """--data-dir, else $LIT_REGULARIZE_DATA_DIR, else the user cache folder."""
        d = self.data_dir or os.environ.get(DATA_DIR_ENV) or Path.home() / ".cache" / "lit_regularize"
        return Path(d).expanduser()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML safe)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Config":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def validate(c: Config) -> None:
    """Raise ConfigError (one line) for any setting out of range."""
    def bad(msg: str) -> None:
        raise ConfigError(msg)

    for name in ("data", "reg", "optimizer", "input_format", "bn_position"):
        choices = FIELDS[name].metadata["choices"]
        value = getattr(c, name)
        if value not in choices:
            hint = difflib.get_close_matches(str(value), choices, n=1)
            bad(f"--{name.replace('_', '-')}: unknown value {value!r} (choose from {', '.join(choices)})"
                + (f"; did you mean {hint[0]!r}?" if hint else ""))
    if not 0.0 <= c.dropout < 1.0:
        bad(f"--dropout must be in [0, 1), got {c.dropout}")
    for name in ("l1", "l2", "weight_decay"):
        if getattr(c, name) < 0:
            bad(f"--{name.replace('_', '-')} must be >= 0, got {getattr(c, name)}")
    if not c.lr > 0:
        bad(f"--lr must be > 0, got {c.lr}")
    for name in ("hidden", "layers", "batch_size", "max_epochs", "kfold_repeats"):
        if getattr(c, name) < 1:
            bad(f"--{name.replace('_', '-')} must be >= 1, got {getattr(c, name)}")
    if c.patience < 0 or c.num_workers < 0:
        bad("--patience and --num-workers must be >= 0")
    if c.num_words < 4:
        bad(f"--num-words must be >= 4 (ids 0-2 are reserved by keras), got {c.num_words}")
    for name in ("train_size", "val_size", "n_per_class"):
        v = getattr(c, name)
        if v is not None and v < (0 if name == "val_size" else 1):
            bad(f"--{name.replace('_', '-')} must be >= {0 if name == 'val_size' else 1}, got {v}")
    if c.kfold == 1 or c.kfold < 0:
        bad(f"--kfold must be 0 (off) or >= 2, got {c.kfold}")
    if c.fold is not None and not (c.kfold >= 2 and 0 <= c.fold < c.kfold * c.kfold_repeats):
        bad(f"--fold {c.fold} needs --kfold K >= 2 and 0 <= fold < K * repeats")
    for name in ("l1_layers", "l2_layers"):
        for i in getattr(c, name) or []:
            if not 0 <= int(i) <= c.layers:
                bad(f"--{name.replace('_', '-')}: layer {i} out of range 0..{c.layers} ({c.layers} = output)")
    if c.data != "imdb" and c.input_format == "sparse":
        bad("--input-format sparse only applies to IMDB multi-hot input")


# -- merging: dataclass defaults < data preset < reg preset < YAML < flags ----------------------------------

def load_yaml(path: str | os.PathLike, flag: str = "--config") -> dict[str, Any]:
    """Read a YAML file (named in errors by the flag that gave it) as a flat mapping of Config fields."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{flag}: no such file {str(p)!r}")
    try:
        loaded = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"{flag} {p}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{flag} {p}: expected a mapping of settings, got {type(loaded).__name__}")
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


def check_keys(overrides: Mapping[str, Any], source: str) -> None:
    """Unknown keys are an error with a 'did you mean' hint."""
    for key in overrides:
        if key not in FIELDS:
            hint = difflib.get_close_matches(key, list(FIELDS), n=1)
            raise ConfigError(f"{source}: unknown setting {key!r}"
                              + (f"; did you mean {hint[0]!r}?" if hint else ""))


def _coerce(name: str, value: Any) -> Any:
    """Cast a YAML/flag value to the field's type, with a one-line error."""
    default = FIELDS[name].default
    kind = FIELDS[name].type
    if value is None:
        return None
    try:
        if "bool" in kind:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if "list" in kind:
            items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
            return [int(i) for i in items]
        if "int" in kind:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if "float" in kind:
            return float(value)
        if name == "devices" or isinstance(default, str) or "str" in kind:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: cannot read {value!r} as {kind}") from None
    return value


def make_config(overrides: Mapping[str, Any] | None = None, source: str = "config") -> Config:
    """Resolve a Config from overrides, applying the data and regularizer presets underneath them."""
    overrides = dict(overrides or {})
    check_keys(overrides, source)
    try:
        overrides = {k: _coerce(k, v) for k, v in overrides.items()}
    except ConfigError as e:  # name the file or flags the bad value came from
        raise ConfigError(f"{source}: {e}") from None
    data = overrides.get("data", FIELDS["data"].default)
    reg = overrides.get("reg", FIELDS["reg"].default)
    merged: dict[str, Any] = {}
    merged.update(DATA_PRESETS.get(data, {}))
    merged.update(REG_PRESETS.get(reg, {}))
    merged.update(overrides)
    return Config(**merged)


def add_config_args(parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """Add one flag per Config field; defaults are SUPPRESSed so only given flags override YAML."""
    parser.add_argument("--config", metavar="FILE", help="YAML file of settings (flags override it)")
    for f in dataclasses.fields(Config):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f"{meta.get('help', '')} (default: {default})"
        if "bool" in f.type:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        elif "list" in f.type:
            parser.add_argument(flag, dest=f.name, nargs="+", type=int, default=argparse.SUPPRESS,
                                metavar="I", help=help_text)
        else:
            kind = int if "int" in f.type else float if "float" in f.type else str
            parser.add_argument(flag, dest=f.name, type=kind, default=argparse.SUPPRESS,
                                metavar=f.name.upper(), help=help_text)


def config_from_args(args: argparse.Namespace) -> Config:
    """YAML file (if --config) overridden by the flags that were given."""
    given = {k: v for k, v in vars(args).items() if k in FIELDS}
    overrides: dict[str, Any] = {}
    source = "flags"
    if getattr(args, "config", None):
        overrides.update(load_yaml(args.config))
        check_keys(overrides, f"--config {args.config}")
        source = f"--config {args.config} / flags"
    overrides.update(given)
    return make_config(overrides, source)


def config_from_run_dir(run_dir: str | os.PathLike) -> Config:
    """The resolved Config saved with a run (summary.json or config.yaml)."""
    d = Path(run_dir)
    if (d / "config.yaml").is_file():
        return Config(**load_yaml(d / "config.yaml"))
    if (d / "summary.json").is_file():
        return Config(**json.loads((d / "summary.json").read_text())["config"])
    raise ConfigError(f"{d}: no config.yaml or summary.json in this run folder")
