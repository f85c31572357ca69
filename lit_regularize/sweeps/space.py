"""The search-space YAML language: parse, check against the fixed settings, suggest a trial's settings.

A space maps Config field names to `{type: int|float, low, high, log}`, `{type: categorical, choices}` or a plain
value (fixed for every trial); `when: {reg: [l1, l1_l2]}` samples a field only when an earlier categorical took
one of those values. Imports neither torch nor Optuna at module level.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, Optional, Sequence

from lit_regularize.config import check_keys, configs_dir, flag, load_yaml, make_config
from lit_regularize.errors import ConfigError

if TYPE_CHECKING:
    import optuna

SPACE_KEYS = {"type", "low", "high", "log", "choices", "when"}


def default_space() -> Path:
    """The shipped search space (package data configs/search_space.yaml)."""
    return configs_dir() / "search_space.yaml"


class Param(NamedTuple):
    """One searched (or fixed) Config field."""

    name: str
    kind: str  # int | float | categorical | fixed
    low: Any = None
    high: Any = None
    log: bool = False
    choices: tuple = ()
    value: Any = None
    when: tuple = ()  # ((earlier categorical, allowed values), ...)

    @property
    def searched(self) -> bool:
        """Whether trials sample this field (not a fixed value)."""
        return self.kind != "fixed"

    def active(self, chosen: Mapping[str, Any]) -> bool:
        """Whether this parameter applies given the values chosen so far."""
        return all(chosen.get(name) in values for name, values in self.when)


def load_space(path: str | os.PathLike) -> dict[str, Any]:
    """The raw search-space mapping of a YAML file, validated by parse_space."""
    raw = load_yaml(path, "--space")
    parse_space(raw, f"--space {path}")
    return raw


def parse_space(raw: Mapping[str, Any], source: str = "--space") -> list[Param]:
    """Params in file order; conditions may only refer to earlier categorical params and their choices.

    A regularizer's strength the space does not mention is sampled from the regularizer's own `search` entry
    whenever `reg` picks a preset that switches it on: adding a regularizer to a sweep is one more `reg` choice."""
    check_keys(raw, source)
    params: dict[str, Param] = {}
    for name, spec in raw.items():
        params[name] = _param(name, spec, params, f"{source}: {name}")
    reg = params.get("reg")
    if reg is not None and reg.kind == "categorical":
        from lit_regularize.regularizers import search_entries

        for choice in reg.choices:
            for name, spec in search_entries(str(choice)).items():
                if name in raw:
                    continue
                users = tuple(c for c in reg.choices if name in search_entries(str(c)))
                params.setdefault(name, _param(name, {**spec, "when": {"reg": list(users)}}, params,
                                               f"{source}: {name} (the {choice} regularizer's search entry)"))
    if not any(p.searched for p in params.values()):
        raise ConfigError(f"{source}: the search space is empty (no parameter has a type); nothing to search")
    return list(params.values())


def _param(name: str, spec: Any, earlier: Mapping[str, Param], where: str) -> Param:
    """One parameter of a space (a plain value is fixed)."""
    def bad(msg: str) -> None:
        raise ConfigError(f"{where}: {msg}")
    if not isinstance(spec, dict):
        return Param(name, "fixed", value=spec)
    unknown = set(spec) - SPACE_KEYS
    if unknown:
        bad(f"unknown key(s) {', '.join(sorted(unknown))}")
    kind = spec.get("type")
    if kind not in ("int", "float", "categorical"):
        bad(f"type must be int, float or categorical, got {kind!r}")
    when = []
    for other, values in (spec.get("when") or {}).items():
        values = values if isinstance(values, list) else [values]
        if other not in earlier or earlier[other].kind != "categorical":
            bad(f"when: {other!r} must be a categorical parameter listed above it")
        if not set(values) <= set(earlier[other].choices):
            bad(f"when: {values} are not all choices of {other!r}")
        when.append((other, tuple(values)))
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            bad("categorical needs a non-empty list of choices")
        return Param(name, kind, choices=tuple(choices), when=tuple(when))
    low, high, log = spec.get("low"), spec.get("high"), bool(spec.get("log", False))
    number = int if kind == "int" else (int, float)
    if not (isinstance(low, number) and isinstance(high, number)) or isinstance(low, bool) or low >= high:
        what = "integers" if kind == "int" else "numbers"
        bad(f"needs numeric low < high ({what}), got {low!r}, {high!r}")
    if log and low <= 0:
        bad(f"log scale needs low > 0, got {low}")
    return Param(name, kind, float(low) if kind == "float" else low, float(high) if kind == "float" else high, log,
                 when=tuple(when))


def check_space(space: Sequence[Param], fixed: Mapping[str, Any], source: str = "--space") -> None:
    """Every bound and choice must make a valid Config together with the fixed settings."""
    for p in space:
        if p.name in fixed:
            raise ConfigError(f"{source}: {p.name} is searched, so it cannot also be fixed by {flag(p.name)} "
                              "or --config; drop one of them")
        # a conditional parameter is checked where it is sampled: with the first value its condition allows
        condition = {name: values[0] for name, values in p.when}
        for value in (p.value,) if p.kind == "fixed" else p.choices or (p.low, p.high):
            try:
                make_config({**fixed, **condition, p.name: value})
            except ConfigError as e:
                raise ConfigError(f"{source}: {p.name} = {value!r} is not a valid setting ({e})") from None


def suggest(trial: "optuna.Trial", space: Sequence[Param]) -> dict[str, Any]:
    """Config overrides for one trial; inactive conditional params are left to the presets."""
    chosen: dict[str, Any] = {}
    for p in space:
        if not p.active(chosen):
            continue
        if p.kind == "int":
            chosen[p.name] = trial.suggest_int(p.name, p.low, p.high, log=p.log)
        elif p.kind == "float":
            chosen[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
        elif p.kind == "categorical":
            chosen[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        else:
            chosen[p.name] = p.value
    return chosen


def space_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> Optional[str]:
    """The first parameter whose definition differs between two raw spaces ('name: old -> new'), else None."""
    for name in list(dict.fromkeys([*old, *new])):
        if old.get(name) != new.get(name):
            return f"{name}: {_shown(old.get(name))} -> {_shown(new.get(name))}"
    return None


def _shown(spec: Any) -> str:
    if spec is None:
        return "(absent)"
    if isinstance(spec, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in spec.items()) + "}"
    return str(spec)


def edge_of_range(p: Param, value: Any, share: float = 0.05) -> Optional[str]:
    """'low'/'high' when a numeric value lies within `share` of its range's end (log-scaled if log), else None."""
    import math

    if p.kind not in ("int", "float") or value is None:
        return None
    lo, hi, v = (math.log(p.low), math.log(p.high), math.log(value)) if p.log else (p.low, p.high, value)
    if p.kind == "int" and value in (p.low, p.high):
        return "low" if value == p.low else "high"
    width = hi - lo
    if v <= lo + share * width:
        return "low"
    if v >= hi - share * width:
        return "high"
    return None


__all__ = ["Param", "default_space", "load_space", "parse_space", "check_space", "suggest", "space_difference",
           "edge_of_range"]
