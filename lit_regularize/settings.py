"""A setting declared once: its type, default, help, --help group, check and roles.

The core settings are declared in `lit_regularize.config`; every regularizer declares its own in its module
(`lit_regularize.regularizers`). The command-line parser, --help, YAML merging, validation and the Python API all
read the one schema `schema()` assembles. Imports neither torch nor Lightning, so `--help` stays fast.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

# Roles a setting can have:
DISPLAY = "display"  # never changes a result (what is shown, how batches are loaded): a run with another value is
#                      the same run (compare reuses it), and a resumed study may change it
RESUMABLE = "resumable"  # `fit --resume` may change it: it changes neither the model, the data nor the split
HARMLESS = "harmless"  # a resumed study may change it: it changes neither the data, the model nor the training
MEMBER = "member"  # may differ between the members of one population (seed, lr, split, epochs, names, ...): runs
#                    that differ only in such settings and their regularizers' strengths train together
ROLES = (DISPLAY, RESUMABLE, HARMLESS, MEMBER)

GROUPS = ("data", "model", "regularization", "training", "output", "hardware")

Check = Callable[[Any], Optional[str]]  # a value -> what is wrong with it (None: fine)


@dataclass(frozen=True)
class Setting:
    """One setting: `kind` is bool, int, float, str or list (of ints); `choices` a tuple or a function giving one
    (the regularizer presets grow with plug-ins); `only` the data kinds it applies to; `check` returns a problem."""

    name: str
    kind: type
    default: Any
    help: Union[str, Callable[[], str]]
    group: str
    choices: Union[tuple, Callable[[], tuple], None] = None
    optional: bool = False  # None is a valid value
    metavar: Optional[str] = None
    only: Optional[tuple[str, ...]] = None
    roles: frozenset = frozenset()
    check: Optional[Check] = None
    internal: bool = False  # set by the program (k-fold, sweeps), not a flag
    owner: str = "core"  # the module that declared it (a regularizer's name for plug-in settings)
    item: type = int  # the type of a list's items
    negation: Any = None  # a non-bool setting with an off value: what --no-NAME sets

    def help_text(self) -> str:
        """The --help text (some are built from the registry, e.g. the --reg presets)."""
        return self.help() if callable(self.help) else self.help

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"setting {self.name}: unknown group {self.group!r}")
        unknown = set(self.roles) - set(ROLES)
        if unknown:
            raise ValueError(f"setting {self.name}: unknown role(s) {sorted(unknown)}")

    @property
    def flag(self) -> str:
        """--flag-name."""
        return "--" + self.name.replace("_", "-")

    def choice_values(self) -> Optional[tuple]:
        """The allowed values, if the setting has a closed set."""
        return self.choices() if callable(self.choices) else self.choices

    def has(self, role: str) -> bool:
        """Whether the setting plays this role (DISPLAY, RESUMABLE, HARMLESS)."""
        return role in self.roles


def setting(name: str, kind: type, default: Any, help: str, group: str, *, roles: typing.Iterable[str] = (),
            **more: Any) -> Setting:
    """A Setting with roles given as any iterable (what declarations write)."""
    return Setting(name, kind, default, help, group, roles=frozenset(roles), **more)


def at_least(low: float) -> Check:
    """A check: value >= low."""
    return lambda v: None if v is None or v >= low else f"must be >= {low:g}, got {v}"


def in_range(low: float, high: float, closed_high: bool = False) -> Check:
    """A check: low <= value < high (or <= high)."""
    def check(v: Any) -> Optional[str]:
        ok = v is None or (low <= v <= high if closed_high else low <= v < high)
        return None if ok else f"must be in [{low:g}, {high:g}{']' if closed_high else ')'}, got {v}"
    return check


_SCHEMA: dict[str, Setting] = {}
_LOADERS: list[Callable[[], None]] = []


def declare(*settings: Setting) -> None:
    """Add settings to the schema; a name declared twice by different owners is an error."""
    for s in settings:
        old = _SCHEMA.get(s.name)
        if old is not None and old.owner != s.owner:
            raise ValueError(f"setting {s.name!r} of {s.owner} is already declared by {old.owner}")
        _SCHEMA[s.name] = s


def undeclare(owner: str) -> None:
    """Remove the settings an owner declared (a plug-in registered again replaces its settings)."""
    for name in [n for n, s in _SCHEMA.items() if s.owner == owner]:
        del _SCHEMA[name]


def on_first_use(load: Callable[[], None]) -> None:
    """Run `load` (which declares settings, e.g. importing the built-in regularizers) before the schema is read."""
    _LOADERS.append(load)


def schema() -> dict[str, Setting]:
    """Every declared setting, by name, in declaration order."""
    while _LOADERS:
        _LOADERS.pop(0)()
    return _SCHEMA


def with_role(role: str) -> tuple[str, ...]:
    """Names of the settings that play `role`."""
    return tuple(n for n, s in schema().items() if s.has(role))


__all__ = ["Setting", "setting", "declare", "undeclare", "on_first_use", "schema", "with_role", "at_least",
           "in_range", "DISPLAY", "RESUMABLE", "HARMLESS", "MEMBER", "ROLES", "GROUPS"]
