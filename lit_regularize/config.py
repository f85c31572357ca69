"""The one run schema: the typed `Config`, its presets, its validation and YAML + flag merging.

Everything else (the command-line parser, --help, --print-config, experiment YAMLs, sweep spaces) is derived from
the dataclass below. This module imports neither torch nor Lightning, so `--help` stays fast.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

import yaml

from lit_regularize.errors import ConfigError

DATA_DIR_ENV = "LIT_REGULARIZE_DATA_DIR"

Regularizer = Literal["none", "l1", "l2", "l1_l2", "dropout", "batchnorm"]
OptimizerName = Literal["rmsprop", "adam", "sgd"]
InputFormat = Literal["auto", "dense", "sparse"]
BNPosition = Literal["before", "after"]
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]
Strategy = Literal["auto", "ddp", "ddp_spawn", "ddp_notebook"]

BUILTIN_DATA = ("imdb", "mnist", "fashion_mnist")
IMAGE_DATA = ("mnist", "fashion_mnist")
# --data KIND:PATH loads the user's own data (see lit_regularize/data/custom.py)
CUSTOM_KINDS = ("npz", "csv", "textdir", "imagedir")
SEED_MAX = 2 ** 32 - 1  # numpy's RandomState takes seeds in [0, 2**32)

# A preset switches its regularizer on with the strength the notebooks use; explicit settings override it.
REG_PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "l1": {"l1": 1e-4},
    "l2": {"l2": 1e-3},
    "l1_l2": {"l1": 1e-4, "l2": 1e-3},
    "dropout": {"dropout": 0.5},
    "batchnorm": {"batchnorm": True},
}
_IMAGE_PRESET = {"hidden": 128, "optimizer": "adam", "lr": 1e-3, "batch_size": 32, "max_epochs": 60, "patience": 10}
# MNIST runs use the notebooks' 784-128-128-10 Adam protocol; IMDB keeps the dataclass defaults.
DATA_PRESETS: dict[str, dict[str, Any]] = {"imdb": {}, "mnist": _IMAGE_PRESET, "fashion_mnist": _IMAGE_PRESET,
                                           "imagedir": _IMAGE_PRESET}

GROUPS = ("data", "model", "regularization", "training", "output")


def _f(default: Any, help: str, group: str, **meta: Any) -> Any:
    """A dataclass field carrying its --help text and --help group."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata={"help": help, "group": group, **meta})
    return field(default=default, metadata={"help": help, "group": group, **meta})


@dataclass(frozen=True)
class Config:
    """Every setting of a run; the single source of truth for defaults (presets, YAML and flags override)."""

    # data
    data: str = _f("imdb", "imdb | mnist | fashion_mnist, or your own data as KIND:PATH with KIND one of "
                           "npz, csv, textdir, imagedir", "data", metavar="DATA")
    data_dir: Optional[str] = _f(None, f"folder holding imdb.npz / MNIST raw files (else ${DATA_DIR_ENV}, "
                                       "else ~/.cache/lit_regularize)", "data", metavar="DIR")
    num_words: int = _f(10000, "IMDB / textdir vocabulary: keep the N most frequent words (keras num_words)",
                        "data", only=("imdb", "textdir"))
    train_size: Optional[int] = _f(None, "keep only N training examples (after the validation split)", "data")
    val_size: Optional[int] = _f(None, "validation examples split off the training set "
                                       "(default: IMDB 10000, MNIST 1000 with --n-per-class else 10000, "
                                       "own data 20%%; 0 = none; not with --val-on-test or --kfold)", "data")
    val_on_test: bool = _f(False, "validate on the test set, as some notebooks did (no holdout)", "data")
    test_size: float = _f(0.2, "own data without a test split: stratified share held out for testing", "data")
    target: Optional[str] = _f(None, "csv: the label column (default: the last column)", "data", metavar="COLUMN",
                               only=("csv",))
    dropna: bool = _f(False, "csv: drop rows with missing values instead of failing", "data", only=("csv",))
    image_size: int = _f(28, "imagedir: images are resized to SIZE x SIZE grayscale", "data", metavar="SIZE",
                         only=("imagedir",))
    n_per_class: Optional[int] = _f(None, "images: balanced, seeded subset of N training images per class",
                                    "data", only=IMAGE_DATA + ("imagedir",))
    augment: bool = _f(False, "images: random rotation (10 deg) + resized crop (0.8-1.0) of training batches",
                       "data", only=IMAGE_DATA + ("imagedir",))
    hflip: bool = _f(False, "images: also random horizontal flips when augmenting (changes digits)", "data",
                     only=IMAGE_DATA + ("imagedir",))
    input_format: InputFormat = _f("auto", "multi-hot first layer input (auto = sparse)", "data")
    shuffle: bool = _f(True, "shuffle training batches every epoch", "data")
    kfold: int = _f(0, "K-fold validation over the training set (0 = off)", "data", metavar="K")
    kfold_repeats: int = _f(1, "iterated K-fold: reshuffle and repeat P times", "data", metavar="P")
    kfold_workers: int = _f(1, "K-fold: folds trained at once in separate processes (0 = one per CPU core)", "data",
                            metavar="N")
    fold: Optional[int] = _f(None, "which fold validates (set by k-fold and sweeps)", "data", internal=True)
    merge_val: bool = _f(False, "train on the training and validation examples together (refits)", "data",
                         internal=True)
    # model
    hidden: int = _f(16, "hidden width (units per layer)", "model")
    layers: int = _f(2, "number of hidden layers", "model")
    # regularization
    reg: Regularizer = _f("none", "regularizer preset (l1 1e-4, l2 1e-3, dropout 0.5, batchnorm on); explicit "
                                  "settings override it", "regularization")
    l1: float = _f(0.0, "L1 penalty strength: lambda * sum|W|", "regularization")
    l2: float = _f(0.0, "L2 penalty strength: lambda * sum W^2", "regularization")
    l1_layers: Optional[list[int]] = _f(None, "Linear layers (0-based, LAYERS = output) the L1 penalty covers "
                                              "(default: all hidden)", "regularization", metavar="I")
    l2_layers: Optional[list[int]] = _f(None, "Linear layers the L2 penalty covers (default: all hidden)",
                                        "regularization", metavar="I")
    dropout: float = _f(0.0, "dropout rate after each hidden activation, in [0, 1)", "regularization")
    batchnorm: bool = _f(False, "BatchNorm1d in every hidden layer", "regularization")
    bn_position: BNPosition = _f("before", "BatchNorm before or after the ReLU", "regularization")
    weight_decay: float = _f(0.0, "decoupled weight decay (AdamW-style), separate from --l2", "regularization")
    # training
    optimizer: OptimizerName = _f("rmsprop", "optimizer", "training")
    lr: float = _f(1e-3, "learning rate", "training")
    batch_size: int = _f(512, "training batch size", "training")
    max_epochs: int = _f(20, "maximum number of epochs", "training")
    patience: int = _f(3, "EarlyStopping patience in epochs on val/loss", "training")
    early_stopping: bool = _f(True, "stop when val/loss stops improving (--no-early-stopping draws full curves)",
                              "training")
    seed: int = _f(7777, f"seed for weights, splits, subsets and batches (0..{SEED_MAX})", "training")
    deterministic: bool = _f(False, "torch deterministic algorithms (bit-reproducible resume)", "training")
    histogram_every: int = _f(1, "log weight histograms every N epochs (0 = never; sweep trials: 0 unless given)",
                              "output", metavar="N")
    # output and hardware
    logdir: str = _f("lightning_logs", "TensorBoard root folder", "output", metavar="DIR")
    name: Optional[str] = _f(None, "run name under --logdir (default: from the data and what differs)", "output")
    accelerator: Accelerator = _f("auto", "Lightning accelerator", "output")
    devices: str = _f("1", "Lightning devices: a count, a list such as 0,1, or auto", "output")
    strategy: Strategy = _f("auto", "Lightning strategy", "output")
    num_workers: int = _f(0, "DataLoader worker processes (batches are gathered in bulk, 0 is fastest)", "output",
                          metavar="N")
    progress: bool = _f(True, "show progress bars", "output")

    def __post_init__(self) -> None:
        validate(self)

    @property
    def data_kind(self) -> str:
        """imdb | mnist | fashion_mnist, or the KIND of --data KIND:PATH."""
        return data_kind(self.data)

    @property
    def data_path(self) -> Optional[Path]:
        """PATH of --data KIND:PATH (None for the built-in datasets)."""
        return Path(self.data.split(":", 1)[1]).expanduser() if ":" in self.data else None

    @property
    def is_image(self) -> bool:
        """Whether the inputs are images (MNIST-like or an image folder)."""
        return self.data_kind in IMAGE_DATA + ("imagedir",)

    @property
    def run_name(self) -> str:
        """Folder name under logdir: the data, then what differs from the defaults (reg, size, augmentation)."""
        if self.name:
            return self.name
        data = self.data_kind if self.data_path is None else f"{self.data_kind}_{self.data_path.stem}"
        parts = [data, self.reg]
        if self.augment:
            parts.append("augment")
        return "_".join(parts)

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
HINTS = typing.get_type_hints(Config)
# Settings that never change a run's result (only what is shown and how batches are loaded): a finished run with
# other values is the same run (compare reuses it), a study may resume with other values.
DISPLAY_ONLY = ("progress", "num_workers")
# Settings a resumed run may change: they cannot change the model, the data or the split.
RESUMABLE = ("max_epochs", "patience", "early_stopping", "progress", "accelerator", "devices", "strategy",
             "num_workers", "data_dir", "histogram_every")


def flag(name: str) -> str:
    """--flag-name of a Config field."""
    return "--" + name.replace("_", "-")


def choices_of(name: str) -> Optional[tuple[str, ...]]:
    """The Literal choices of a field, if it has any."""
    hint = HINTS[name]
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else None


def base_type(name: str) -> type:
    """bool / int / float / str / list of a field, with Optional[...] and Literal[...] unwrapped."""
    hint = HINTS[name]
    if typing.get_origin(hint) is Literal:
        return str
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and args:
        hint = args[0]
    if typing.get_origin(hint) is list:
        return list
    return hint if isinstance(hint, type) else str


def validate(c: Config) -> None:
    """Raise ConfigError (one line naming the flag) for any setting that is unknown or out of range."""
    def bad(msg: str) -> None:
        raise ConfigError(msg)

    for name in FIELDS:
        choices = choices_of(name)
        value = getattr(c, name)
        if choices and value not in choices:
            hint = difflib.get_close_matches(str(value), choices, n=1)
            bad(f"{flag(name)}: unknown value {value!r} (choose from {', '.join(choices)})"
                + (f"; did you mean {hint[0]!r}?" if hint else ""))
        if base_type(name) is float and value is not None and not math.isfinite(value):
            bad(f"{flag(name)} must be a finite number, got {value}")
    if ":" in c.data:
        kind, path = c.data.split(":", 1)
        if kind not in CUSTOM_KINDS or not path:
            bad(f"--data {c.data!r}: own data is KIND:PATH with KIND one of {', '.join(CUSTOM_KINDS)}")
    elif c.data not in BUILTIN_DATA:
        hint = difflib.get_close_matches(c.data, BUILTIN_DATA, n=1)
        bad(f"--data: unknown value {c.data!r} (choose from {', '.join(BUILTIN_DATA)}, or KIND:PATH)"
            + (f"; did you mean {hint[0]!r}?" if hint else ""))
    if not 0.0 <= c.dropout < 1.0:
        bad(f"--dropout must be in [0, 1), got {c.dropout}")
    for name in ("l1", "l2", "weight_decay"):
        if getattr(c, name) < 0:
            bad(f"{flag(name)} must be >= 0, got {getattr(c, name)}")
    if not c.lr > 0:
        bad(f"--lr must be > 0, got {c.lr}")
    if not 0.0 < c.test_size < 1.0:
        bad(f"--test-size must be a fraction in (0, 1), got {c.test_size}")
    for name in ("hidden", "layers", "batch_size", "max_epochs", "kfold_repeats", "image_size"):
        if getattr(c, name) < 1:
            bad(f"{flag(name)} must be >= 1, got {getattr(c, name)}")
    for name in ("patience", "num_workers", "kfold_workers", "histogram_every"):
        if getattr(c, name) < 0:
            bad(f"{flag(name)} must be >= 0, got {getattr(c, name)}")
    if not 0 <= c.seed <= SEED_MAX:
        bad(f"--seed must be in 0..{SEED_MAX}, got {c.seed}")
    if c.num_words < 4:
        bad(f"--num-words must be >= 4 (ids 0-2 are reserved by keras), got {c.num_words}")
    for name in ("train_size", "val_size", "n_per_class"):
        v = getattr(c, name)
        low = 0 if name == "val_size" else 1
        if v is not None and v < low:
            bad(f"{flag(name)} must be >= {low}, got {v}")
    if c.kfold == 1 or c.kfold < 0:
        bad(f"--kfold must be 0 (off) or >= 2, got {c.kfold}")
    if c.val_size is not None and c.val_on_test:
        bad(f"--val-size {c.val_size} does not apply with --val-on-test (validation is the whole test set)")
    if c.val_size is not None and c.kfold >= 2:
        bad(f"--val-size {c.val_size} does not apply with --kfold (each fold validates 1/K of the training set)")
    if c.fold is not None and not (c.kfold >= 2 and 0 <= c.fold < c.kfold * c.kfold_repeats):
        bad(f"--fold {c.fold} needs --kfold K >= 2 and 0 <= fold < K * repeats")
    for name in ("l1_layers", "l2_layers"):
        for i in getattr(c, name) or []:
            if not 0 <= int(i) <= c.layers:
                bad(f"{flag(name)}: layer {i} out of range 0..{c.layers} ({c.layers} = output)")
    if c.hflip and not c.augment:
        bad("--hflip only applies with --augment")
    if c.is_image and c.input_format == "sparse":
        bad("--input-format sparse only applies to multi-hot (text) input")
    _check_devices(c.devices)
    _check_applies(c)
    if c.name is not None:
        parts = Path(c.name).parts
        if not c.name.strip() or Path(c.name).is_absolute() or ".." in parts:
            bad(f"--name {c.name!r} must be a relative folder name inside --logdir (no '..')")


def _check_devices(devices: str) -> None:
    d = str(devices).strip()
    ok = d == "auto" or (d.isdigit() and int(d) >= 1) or d == "-1" or (
        "," in d and all(p.strip().isdigit() for p in d.split(",") if p.strip()) and d.strip(","))
    if not ok:
        raise ConfigError(f"--devices: {devices!r} is not a count >= 1, a list such as 0,1, -1 or auto")


def _check_applies(c: Config) -> None:
    """A dataset-specific setting given for another dataset is an error, not silently ignored."""
    for name, f in FIELDS.items():
        only = f.metadata.get("only")
        if only and c.data_kind not in only and getattr(c, name) != f.default:
            raise ConfigError(f"{flag(name)} only applies to --data {' / '.join(only)}, not {c.data_kind}")


# -- merging: dataclass defaults < data preset < reg preset < YAML < flags ----------------------------------

def configs_dir() -> Path:
    """The shipped configs/ folder (package data: presets, experiments, studies, the default search space)."""
    from importlib import resources

    return Path(str(resources.files("lit_regularize.configs")))


def resolve_config_path(path: str | os.PathLike, subdir: str = "") -> Path:
    """A YAML path as given, else a shipped config of that name (`imdb_l2` -> configs/imdb_l2.yaml)."""
    p = Path(path).expanduser()
    if p.is_file() or p.suffix in (".yaml", ".yml") and p.exists():
        return p
    shipped = configs_dir() / subdir / f"{Path(path).stem}.yaml"
    return shipped if shipped.is_file() and p.parent == Path(".") else p


def load_yaml(path: str | os.PathLike, flag_name: str = "--config") -> dict[str, Any]:
    """Read a YAML file (named in errors by the flag that gave it) as a flat mapping of settings."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{flag_name}: {str(p)!r} is a folder, not a YAML file" if p.is_dir()
                          else f"{flag_name}: no such file {str(p)!r}")
    try:
        loaded = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"{flag_name} {p}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{flag_name} {p}: cannot read ({e})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{flag_name} {p}: expected a mapping of settings, got {type(loaded).__name__}")
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


def check_keys(overrides: Mapping[str, Any], source: str) -> None:
    """Unknown keys are an error with a 'did you mean' hint."""
    for key in overrides:
        if key not in FIELDS:
            hint = difflib.get_close_matches(key, list(FIELDS), n=1)
            raise ConfigError(f"{source}: unknown setting {key!r}"
                              + (f"; did you mean {hint[0]!r}?" if hint else ""))


def coerce(name: str, value: Any) -> Any:
    """Cast a YAML/flag value to the field's type, with a one-line error."""
    if value is None:
        return None
    kind = base_type(name)
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if not isinstance(value, (bool, int)):
                raise ValueError(value)
            return bool(value)
        if kind is list:
            items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
            return [coerce_int(i) for i in items]
        if kind is int:
            return coerce_int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag(name)}: cannot read {value!r} as {kind.__name__}") from None


def coerce_int(value: Any) -> int:
    """An int from an int, an integral float or a string; never truncates."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    return int(value)


def data_kind(data: str) -> str:
    """imdb | mnist | fashion_mnist, or the KIND of a --data KIND:PATH value."""
    return data.split(":", 1)[0] if ":" in data else data


def preset_defaults(data: str, reg: str) -> dict[str, Any]:
    """Field defaults once the data and regularizer presets are applied (what --help shows)."""
    kind = data_kind(data)
    out = {name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
           for name, f in FIELDS.items()}
    out.update(DATA_PRESETS.get(kind, {}))
    out.update(REG_PRESETS.get(reg, {}))
    return out


def make_config(overrides: Mapping[str, Any] | None = None, source: str = "config") -> Config:
    """Resolve a Config from overrides, applying the data and regularizer presets underneath them."""
    overrides = dict(overrides or {})
    check_keys(overrides, source)
    try:
        overrides = {k: coerce(k, v) for k, v in overrides.items()}
    except ConfigError as e:  # name the file or flags the bad value came from
        raise ConfigError(f"{source}: {e}") from None
    merged = preset_defaults(overrides.get("data", FIELDS["data"].default), overrides.get("reg", FIELDS["reg"].default))
    merged.update(overrides)
    return Config(**merged)


def minimal_overrides(cfg: Config) -> dict[str, Any]:
    """The settings of cfg that differ from the defaults its data and reg presets give (what a YAML needs)."""
    base = preset_defaults(cfg.data, cfg.reg)
    out = {"data": cfg.data} if cfg.data != FIELDS["data"].default else {}
    if cfg.reg != FIELDS["reg"].default:
        out["reg"] = cfg.reg
    out.update({k: v for k, v in cfg.to_dict().items() if k not in ("data", "reg") and v != base[k]})
    return out


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML: fed back through --config it gives the same Config."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def config_from_file(path: str | os.PathLike) -> Config:
    """A Config saved with a run (config.yaml) or written by --print-config."""
    return make_config(load_yaml(path, "config"), source=str(path))


__all__ = ["Config", "FIELDS", "HINTS", "GROUPS", "DISPLAY_ONLY", "RESUMABLE", "REG_PRESETS", "DATA_PRESETS",
           "BUILTIN_DATA",
           "IMAGE_DATA", "CUSTOM_KINDS", "data_kind", "make_config", "load_yaml", "check_keys", "coerce", "preset_defaults",
           "minimal_overrides", "to_yaml", "config_from_file", "configs_dir", "resolve_config_path", "flag",
           "choices_of", "base_type", "validate"]
