"""The one run schema: the core settings, the frozen `Config`, presets, validation and YAML + flag merging.

Settings are declared once (`lit_regularize.settings.Setting`: type, default, help, checks, roles): the core ones
here, each regularizer's in its own module, each data kind's in its own (`lit_regularize.data.kinds`). Everything
else (the command-line parser, --help, --print-config, experiment YAMLs, sweep spaces, the Python API) is derived
from that schema. This module imports neither torch nor
Lightning, so `--help` stays fast.
"""
from __future__ import annotations

import copy
import difflib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import yaml

from lit_regularize.data import kinds
from lit_regularize.errors import ConfigError
from lit_regularize.regularizers import plugin_modules, presets, registered
from lit_regularize.settings import DISPLAY as DISPLAY_ROLE, HARMLESS as HARMLESS_ROLE, MEMBER as MEMBER_ROLE
from lit_regularize.settings import RESUMABLE as RESUMABLE_ROLE
from lit_regularize.settings import GROUPS, Setting, at_least, declare, in_range, schema, setting

DATA_DIR_ENV = "LIT_REGULARIZE_DATA_DIR"

SEED_MAX = 2 ** 32 - 1  # numpy's RandomState takes seeds in [0, 2**32)


def _reg_help() -> str:
    def value(v: Any) -> str:
        return "on" if v is True else f"{v:g}" if isinstance(v, float) else str(v)
    shown = ", ".join(f"{name} ({', '.join(f'{k} {value(v)}' for k, v in values.items())})" if values else name
                      for name, values in presets().items())
    return f"regularizer preset: {shown}; explicit settings override it"


# The core settings; every regularizer declares its own in its module (lit_regularize/regularizers/), every data
# kind its own (lit_regularize/data/kinds/: e.g. --target for csv, --num-words for the text kinds).
declare(
    setting("data", str, "imdb", kinds.data_help, "data", metavar="DATA"),
    setting("data_dir", str, None, f"folder holding imdb.npz / MNIST raw files (else ${DATA_DIR_ENV}, else "
            "~/.cache/lit_regularize)", "data", optional=True, metavar="DIR",
            roles=(RESUMABLE_ROLE, HARMLESS_ROLE)),
    setting("train_size", int, None, "keep only N training examples (after the validation split)", "data",
            optional=True, check=at_least(1), roles=(MEMBER_ROLE,)),
    setting("val_size", int, None, "validation examples split off the training set (default: IMDB 10000, MNIST 1000 "
            "with --n-per-class else 10000, own data 20%%; 0 = none; not with --val-on-test or --kfold)", "data",
            optional=True, check=at_least(0), roles=(MEMBER_ROLE,)),
    setting("val_on_test", bool, False, "validate on the test set, as some notebooks did (no holdout)", "data",
            roles=(MEMBER_ROLE,)),
    setting("shuffle", bool, True, "shuffle training batches every epoch", "data", roles=(MEMBER_ROLE,)),
    setting("kfold", int, 0, "K-fold validation over the training set (0 = off)", "data", metavar="K",
            check=lambda v: None if v == 0 or v >= 2 else f"must be 0 (off) or >= 2, got {v}",
            roles=(MEMBER_ROLE,)),
    setting("kfold_repeats", int, 1, "iterated K-fold: reshuffle and repeat P times", "data", metavar="P",
            check=at_least(1), roles=(MEMBER_ROLE,)),
    setting("kfold_workers", int, 1, "K-fold: folds trained at once in separate processes (0 = one per CPU core)",
            "data", metavar="N", check=at_least(0), roles=(HARMLESS_ROLE, MEMBER_ROLE)),
    setting("fold", int, None, "which fold validates (set by k-fold and sweeps)", "data", optional=True,
            internal=True, roles=(MEMBER_ROLE,)),
    setting("merge_val", bool, False, "train on the training and validation examples together (refits)", "data",
            internal=True, roles=(MEMBER_ROLE,)),
    setting("reg", str, "none", _reg_help, "regularization", choices=lambda: tuple(presets()),
            roles=(MEMBER_ROLE,)),
    setting("optimizer", str, "rmsprop", "optimizer", "training", choices=("rmsprop", "adam", "sgd")),
    setting("lr", float, 1e-3, "learning rate", "training", check=lambda v: None if v > 0 else f"must be > 0, got {v}",
            roles=(MEMBER_ROLE,)),
    setting("batch_size", int, 512, "training batch size", "training", check=at_least(1)),
    setting("max_epochs", int, 20, "maximum number of epochs", "training", check=at_least(1),
            roles=(RESUMABLE_ROLE, MEMBER_ROLE)),
    setting("patience", int, 3, "EarlyStopping patience in epochs on val/loss", "training", check=at_least(0),
            roles=(RESUMABLE_ROLE, MEMBER_ROLE)),
    setting("early_stopping", bool, True, "stop when val/loss stops improving (--no-early-stopping draws full "
            "curves)", "training", roles=(RESUMABLE_ROLE, MEMBER_ROLE)),
    setting("seed", int, 7777, f"seed for weights, splits, subsets and batches (0..{SEED_MAX})", "training",
            check=in_range(0, SEED_MAX, closed_high=True), roles=(MEMBER_ROLE,)),
    setting("deterministic", bool, False, "torch deterministic algorithms (bit-reproducible resume)", "training"),
    setting("histogram_every", int, 1, "log weight histograms every N epochs (0 = never; sweep trials: 0 unless "
            "given)", "output", metavar="N", check=at_least(0),
            roles=(RESUMABLE_ROLE, HARMLESS_ROLE, MEMBER_ROLE)),
    setting("logdir", str, "lightning_logs", "TensorBoard root folder", "output", metavar="DIR",
            roles=(HARMLESS_ROLE, MEMBER_ROLE)),
    setting("name", str, None, "run name under --logdir (default: from the data and what differs)", "output",
            optional=True, roles=(MEMBER_ROLE,)),
    setting("progress", bool, True, "show progress bars", "output",
            roles=(DISPLAY_ROLE, RESUMABLE_ROLE, HARMLESS_ROLE, MEMBER_ROLE)),
    setting("plugins", list, [], "modules to import first: their regularizers (@register_regularizer) become "
            "--reg presets and flags", "output", item=str, metavar="MODULE", roles=(MEMBER_ROLE,)),
    setting("accelerator", str, "auto", "Lightning accelerator", "hardware",
            choices=("auto", "cpu", "gpu", "cuda", "mps"), roles=(RESUMABLE_ROLE, HARMLESS_ROLE)),
    setting("devices", str, "1", "Lightning devices: a count, a list such as 0,1, or auto", "hardware",
            roles=(RESUMABLE_ROLE, HARMLESS_ROLE)),
    setting("strategy", str, "auto", "Lightning strategy", "hardware",
            choices=("auto", "ddp", "ddp_spawn", "ddp_notebook"), roles=(RESUMABLE_ROLE,)),
    setting("population", int, 0, "train the runs of a study that share an architecture (compare, fit --kfold) as one "
            "vectorized model: 0 = all together, K = at most K at once, 1 = one at a time (--no-population); sweep: "
            "trials asked and trained at once (0 counts as 1)", "hardware", metavar="K", check=at_least(0), negation=1,
            roles=(DISPLAY_ROLE, RESUMABLE_ROLE, HARMLESS_ROLE, MEMBER_ROLE)),
    setting("num_workers", int, 0, "DataLoader worker processes (batches are gathered in bulk, 0 is fastest)",
            "hardware", metavar="N", check=at_least(0),
            roles=(DISPLAY_ROLE, RESUMABLE_ROLE, HARMLESS_ROLE, MEMBER_ROLE)),
)


_ORDERED: list = [None, {}]  # (the declared settings it was built from, fields()): a Config's to_dict asks ~100 times


def fields() -> dict[str, Setting]:
    """Every setting in --help order: by group, the core settings of a group first, then as declared."""
    declared = tuple(schema().values())  # plug-ins declare (and tests undeclare) settings at any time
    if _ORDERED[0] != declared:
        _ORDERED[:] = [declared, {s.name: s for g in GROUPS for core in (True, False) for s in declared
                                  if s.group == g and (s.owner == "core") == core}]
    return dict(_ORDERED[1])


class Config:
    """Every setting of a run, frozen: `cfg.hidden`, `cfg.replace(hidden=32)`, `cfg.to_dict()`. Values are checked
    against the schema (lit_regularize.settings) when created, so a Config is always valid."""

    __slots__ = ("_values",)

    def __init__(self, **values: Any) -> None:
        known = fields()
        unknown = [k for k in values if k not in known]
        if unknown:
            hint = difflib.get_close_matches(unknown[0], list(known), n=1)
            raise ConfigError(f"unknown setting {unknown[0]!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))
        full = {n: copy.deepcopy(values[n] if n in values else s.default) for n, s in known.items()}
        object.__setattr__(self, "_values", full)
        validate(self)

    def __getattr__(self, name: str) -> Any:
        try:
            return object.__getattribute__(self, "_values")[name]
        except KeyError:
            raise AttributeError(f"Config has no setting {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is frozen: use cfg.replace(...)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self._values == other._values

    def __hash__(self) -> int:
        return hash(json.dumps(self._values, sort_keys=True, default=str))

    def __repr__(self) -> str:
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"

    def __reduce__(self) -> tuple:
        # a spawned worker (k-fold, sweeps) rebuilds it after importing the plug-ins its settings need
        return (config_from_values, (self.to_dict(),))

    @property
    def data_kind(self) -> str:
        """The name of the run's data kind: imdb | mnist | fashion_mnist, or the KIND of --data KIND:PATH."""
        return data_kind(self.data)

    @property
    def kind(self) -> kinds.DataKind:
        """The run's data kind (lit_regularize.data.kinds): its DataModule, class names, predict inputs, ..."""
        return kinds.data_kind(self.data)

    @property
    def data_path(self) -> Optional[Path]:
        """PATH of --data KIND:PATH (None for the built-in datasets)."""
        return Path(self.data.split(":", 1)[1]).expanduser() if ":" in self.data else None

    @property
    def is_image(self) -> bool:
        """Whether the inputs are images (a kind of the image family: MNIST-like or an image folder)."""
        return "image" in self.kind.families()

    @property
    def run_name(self) -> str:
        """Folder name under logdir: the data, then what differs from the defaults (reg, size, augmentation)."""
        if self.name:
            return self.name
        parts = [self.kind.run_name(), self.reg]
        if self.augment:
            parts.append("augment")
        return "_".join(parts)

    def resolved_data_dir(self) -> Path:
        """--data-dir, else $LIT_REGULARIZE_DATA_DIR, else the user cache folder."""
        d = self.data_dir or os.environ.get(DATA_DIR_ENV) or Path.home() / ".cache" / "lit_regularize"
        return Path(d).expanduser()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML safe), in --help order. A plug-in regularizer's settings are left out while they
        are at their defaults and the run does not name its module in `plugins`: a run that does not use it must not
        need it to be read back (in another process, by predict, after the plug-in is gone). Settings of other data
        kinds (`only`: no --image-size in an IMDB run) are left out: read back, they take their defaults."""
        plugins = set(self._values.get("plugins") or ())
        kind = self.kind
        known = fields()
        return {k: copy.deepcopy(v) for k, v in self._values.items()
                if _recorded(known[k], v, plugins) and kind.accepts(known[k])}

    def replace(self, **changes: Any) -> "Config":
        """A copy with some settings changed (validated again)."""
        return Config(**{**self._values, **changes})


def _recorded(s: Setting, value: Any, plugins: set) -> bool:
    cls = registered().get(s.owner)
    if cls is None or cls.__module__.startswith("lit_regularize."):
        return True
    return value != s.default or cls.__module__ in plugins


def config_from_values(values: dict[str, Any]) -> Config:
    """A Config from a plain dict of settings, importing the plug-ins it names first."""
    import_plugins(values.get("plugins") or ())
    return Config(**values)


def import_plugins(modules: Iterable[str]) -> None:
    """Import plug-in modules (their @register_regularizer classes join the schema); the working folder is
    searched as `python -m` would. One ConfigError line when one cannot be imported."""
    import importlib
    import sys

    for name in modules:
        if name in sys.modules:
            continue
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - any error in the user's module becomes one line naming it
            raise ConfigError(f"--plugins {name}: cannot import it ({type(e).__name__}: {e})") from None


def role(name: str) -> tuple[str, ...]:
    """Names of the settings with a role (lit_regularize.settings.DISPLAY, RESUMABLE or HARMLESS)."""
    return tuple(n for n, s in fields().items() if s.has(name))


def display_only() -> tuple[str, ...]:
    """Settings that never change a result (what is shown, how batches are loaded): a finished run with other values
    is the same run (compare reuses it)."""
    return role(DISPLAY_ROLE)


def resumable() -> tuple[str, ...]:
    """Settings a resumed run may change: they cannot change the model, the data or the split."""
    return role(RESUMABLE_ROLE)


def harmless() -> tuple[str, ...]:
    """Fixed settings a resumed study may change: they change neither the data, the model nor the training."""
    return role(HARMLESS_ROLE)


class _Fields(Mapping):
    """FIELDS: a live view of fields() (plug-ins add settings after import)."""

    def __getitem__(self, name: str) -> Setting:
        return fields()[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(fields())

    def __len__(self) -> int:
        return len(fields())


FIELDS: Mapping[str, Setting] = _Fields()


def flag(name: str) -> str:
    """--flag-name of a setting."""
    return "--" + name.replace("_", "-")


def choices_of(name: str) -> Optional[tuple[str, ...]]:
    """The allowed values of a setting, if it has a closed set."""
    return fields()[name].choice_values()


def base_type(name: str) -> type:
    """bool / int / float / str / list of a setting."""
    return fields()[name].kind


def validate(c: Config) -> None:
    """Raise ConfigError (one line naming the flag) for any setting that is unknown or out of range."""
    def bad(msg: str) -> None:
        raise ConfigError(msg)

    values = dict(c._values)  # every setting, also a plug-in's left out of to_dict()
    for name, s in fields().items():
        value = values[name]
        if value is None:
            if not s.optional:
                bad(f"{s.flag} needs a value")
            continue
        choices = s.choice_values()
        if choices and value not in choices:
            hint = difflib.get_close_matches(str(value), choices, n=1)
            bad(f"{s.flag}: unknown value {value!r} (choose from {', '.join(choices)})"
                + (f"; did you mean {hint[0]!r}?" if hint else ""))
        if s.kind is float and not math.isfinite(value):
            bad(f"{s.flag} must be a finite number, got {value}")
        problem = s.check(value) if s.check else None
        if problem:
            bad(f"{s.flag} {problem}")
    kinds.data_kind(c.data)  # --data names a registered kind (one ConfigError line otherwise)
    if c.val_size is not None and c.val_on_test:
        bad(f"--val-size {c.val_size} does not apply with --val-on-test (validation is the whole test set)")
    if c.val_size is not None and c.kfold >= 2:
        bad(f"--val-size {c.val_size} does not apply with --kfold (each fold validates 1/K of the training set)")
    if c.fold is not None and not (c.kfold >= 2 and 0 <= c.fold < c.kfold * c.kfold_repeats):
        bad(f"--fold {c.fold} needs --kfold K >= 2 and 0 <= fold < K * repeats")
    for cls in registered().values():  # settings of one regularizer that depend on each other or on the run's
        problem = cls.check(values)
        if problem:
            bad(problem)
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
    kind = c.kind
    for name, s in fields().items():
        if not kind.accepts(s) and getattr(c, name) != s.default:
            raise ConfigError(f"{s.flag} only applies to --data {' / '.join(kinds.kinds_accepting(s))}, "
                              f"not {c.data_kind}")


# -- merging: dataclass defaults < data preset < reg preset < YAML < flags ----------------------------------

def configs_dir() -> Path:
    """The shipped configs/ folder (package data: presets, experiments, studies, the default search space)."""
    from importlib import resources

    return Path(str(resources.files("lit_regularize.configs")))


def available_studies() -> list[str]:
    """Names of the studies shipped in configs/studies (compare's study argument)."""
    return sorted(p.stem for p in (configs_dir() / "studies").glob("*.yaml"))


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
    known = fields()
    for key in overrides:
        if key not in known:
            hint = difflib.get_close_matches(key, list(known), n=1)
            raise ConfigError(f"{source}: unknown setting {key!r}"
                              + (f"; did you mean {hint[0]!r}?" if hint else ""))


def coerce(name: str, value: Any) -> Any:
    """Cast a YAML/flag value to the setting's type, with a one-line error."""
    if value is None:
        return None
    s = fields()[name]
    kind = s.kind
    try:
        if kind is list:
            items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
            return [_scalar(s.item, i) for i in items]
        return _scalar(kind, value)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag(name)}: cannot read {value!r} as {kind.__name__}") from None


def _scalar(kind: type, value: Any) -> Any:
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
    if kind is int:
        return coerce_int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    return str(value)


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
    """The kind's name of a --data value: imdb | mnist | fashion_mnist, or the KIND of KIND:PATH."""
    return data.split(":", 1)[0] if ":" in data else data


def preset_defaults(data: str, reg: str) -> dict[str, Any]:
    """Setting defaults once the data kind's and the regularizer's presets are applied (what --help shows)."""
    out = {name: copy.deepcopy(s.default) for name, s in fields().items()}
    kind = kinds.data_kinds().get(data_kind(data))
    out.update(copy.deepcopy(dict(kind.presets)) if kind is not None else {})
    out.update(presets().get(reg, {}))
    return out


def _fitted(merged: dict[str, Any], given: Iterable[str]) -> dict[str, Any]:
    """The data kind's defaults that depend on the data (own data: a batch size that fits its size), for the
    settings not given; nothing when --data names no kind (validation says so)."""
    try:
        kind = kinds.data_kind(str(merged["data"]))
    except ConfigError:
        return {}
    return kind.fitted_defaults(merged, set(given))


def make_config(overrides: Mapping[str, Any] | None = None, source: str = "config") -> Config:
    """Resolve a Config from overrides, applying the data and regularizer presets underneath them.

    Plug-in modules named in `plugins` are imported first; modules of plug-in regularizers the run uses are added
    to `plugins`, so that resumes, worker processes and predict import them too."""
    overrides = dict(overrides or {})
    if overrides.get("plugins"):
        try:
            overrides["plugins"] = coerce("plugins", overrides["plugins"])
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        import_plugins(overrides["plugins"])
    check_keys(overrides, source)
    try:
        overrides = {k: coerce(k, v) for k, v in overrides.items()}
    except ConfigError as e:  # name the file or flags the bad value came from
        raise ConfigError(f"{source}: {e}") from None
    merged = preset_defaults(overrides.get("data", FIELDS["data"].default), overrides.get("reg", FIELDS["reg"].default))
    merged.update(overrides)
    merged.update(_fitted(merged, overrides))
    used = plugin_modules(merged, [merged["reg"]]) + [m for m in [kinds.kind_module(str(merged["data"]))] if m]
    if used:
        merged["plugins"] = sorted(set(merged.get("plugins") or []) | set(used))
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


__all__ = ["Config", "FIELDS", "GROUPS", "fields",
           "role", "display_only", "resumable", "harmless", "data_kind", "make_config", "config_from_values",
           "import_plugins", "load_yaml", "check_keys", "coerce", "preset_defaults", "minimal_overrides", "to_yaml",
           "config_from_file", "configs_dir", "available_studies", "resolve_config_path", "flag", "choices_of",
           "base_type", "validate"]
