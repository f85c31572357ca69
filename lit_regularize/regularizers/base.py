"""The `Regularizer` base and its registry (timm-style: `@register_regularizer("name")`, `create`).

A regularizer is one module that owns everything about it: its settings (type, default, help, checks), its
`--reg` presets, how it changes the network (`hidden_block`), what it adds to the loss (`penalty`), what it does
around an optimizer step (`before_step`, `after_step`) or as Lightning callbacks (`callbacks`), the strength a
sweep searches (`search`) and how reports name it (`describe`). Nothing outside the module knows its details.

Modules import torch only inside their hooks: declaring settings must stay cheap, so `--help` answers at once.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable, Mapping, Optional, Sequence

from lit_regularize.registry import claim
from lit_regularize.settings import Setting, declare, undeclare

#: where a regularizer's settings go: the model's regularizers (saved in checkpoints), the DataModule's arguments
#: (augmentation), or the model's own shape arguments (capacity: hidden, layers)
MODEL, DATA, SHAPE = "model", "data", "shape"


class Regularizer:
    """Base class: subclass it, declare `settings` / `presets` / `search`, override the hooks you need.

    An instance holds the values of its own settings as attributes (`self.l2`); `enabled(values)` says whether a
    run's settings switch it on (by default: any of its settings differs from its default)."""

    name: ClassVar[str] = ""
    settings: ClassVar[Sequence[Setting]] = ()
    #: --reg NAME -> the settings that preset switches on (explicit settings override them)
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: setting -> the search-space entry a sweep samples when a preset using it is chosen and the space is silent
    search: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: MODEL: settings are model hyperparameters (saved in checkpoints); DATA: DataModule arguments
    applies_to: ClassVar[str] = MODEL
    #: the metric a replaced training loss (`train_loss`) is logged as, beside the data loss train/loss
    train_loss_name: ClassVar[str] = "train/objective"
    #: whether runs using it can train together as one population (lit_regularize.population): its training hooks
    #: (penalty, train_loss, before_step, after_step) also work on a member view (`linears()` as (out, in) weight
    #: views, `lr`, `binary`), `member_hidden` does what its `hidden_block` modules do, and it has no other hook
    population: ClassVar[bool] = False

    def __init__(self, **values: Any) -> None:
        own = {s.name: s.default for s in self.settings}
        unknown = set(values) - set(own)
        if unknown:
            raise TypeError(f"regularizer {self.name}: unknown setting(s) {sorted(unknown)}")
        own.update(values)
        for k, v in own.items():
            setattr(self, k, v)
        self.values = own

    @classmethod
    def enabled(cls, values: Mapping[str, Any]) -> bool:
        """Whether settings `values` (a run's, or a checkpoint's hyperparameters) switch this regularizer on."""
        return any(values.get(s.name, s.default) != s.default for s in cls.settings)

    @classmethod
    def check(cls, values: Mapping[str, Any]) -> Optional[str]:
        """What is wrong with a run's settings as far as this regularizer is concerned (settings that depend on
        each other, e.g. --hflip without --augment), else None. Single values are checked by their Setting."""
        return None

    @classmethod
    def own(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """This regularizer's settings out of a larger mapping (missing ones at their defaults)."""
        return {s.name: values.get(s.name, s.default) for s in cls.settings}

    def shown(self) -> list[str]:
        """The settings that say how it is configured (a run's HParams record): its searched strengths and every
        one of its settings away from its default."""
        return [s.name for s in self.settings if s.name in self.search or self.values[s.name] != s.default]

    def describe(self) -> str:
        """How tables and figures name it, e.g. 'L2 0.001'."""
        shown = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.values.items()
                          if v not in (None, False))
        return f"{self.name} ({shown})" if shown else self.name

    # -- the network --------------------------------------------------------------------------------------
    def hidden_block(self, block: list, width: int, index: int) -> list:
        """The modules after hidden Linear layer `index` (a ReLU to start with), changed as this regularizer needs."""
        return block

    def member_hidden(self, h: Any, index: int, generator: Any) -> Any:
        """A population member's training activations (rows, width) after hidden layer `index`'s ReLU, changed as the
        modules `hidden_block` adds change them, drawing random numbers from `generator` (the member's stream) as
        those modules draw them from torch's global one."""
        return h

    @classmethod
    def population_penalty(cls, members: Sequence[Optional["Regularizer"]], views: Sequence[Any],
                           stacked: Sequence[Any]) -> Any:
        """The `penalty` of every member of a population at once, a (K,) tensor: members[k] is member k's instance
        of this regularizer (None where it is off), views[k] its member view, stacked the (K, in, out) weights.
        By default each member's own `penalty` on its view; override to compute them together."""
        import torch

        zero = stacked[0].new_zeros(())
        return torch.stack([zero if r is None else r.penalty(v) + zero for r, v in zip(members, views)])

    def hidden_linear(self, linear: Any, index: int) -> Any:
        """Hidden Linear layer `index` as this regularizer needs it (e.g. with a parametrization)."""
        return linear

    # -- training -----------------------------------------------------------------------------------------
    def penalty(self, model: Any) -> Optional[Any]:
        """A term added to the training loss (a scalar tensor), or None; logged as train/penalty."""
        return None

    def train_batch(self, model: Any, x: Any, y: Any) -> tuple[Any, Any]:
        """A training batch as this regularizer changes it before the forward pass."""
        return x, y

    def train_loss(self, model: Any, logits: Any, y: Any) -> Optional[Any]:
        """The loss to optimize instead of the plain data loss (e.g. smoothed targets), or None."""
        return None

    def before_step(self, model: Any, optimizer: Any) -> None:
        """Called before every optimizer step (after the gradients exist)."""

    def after_step(self, model: Any) -> None:
        """Called after every optimizer step."""

    def callbacks(self) -> list:
        """Lightning callbacks this regularizer adds to the Trainer."""
        return []

    @property
    def has_penalty(self) -> bool:
        """Whether this regularizer adds a loss term."""
        return type(self).penalty is not Regularizer.penalty

    @property
    def replaces_loss(self) -> bool:
        """Whether this regularizer optimizes another loss than the data loss (then `train_loss_name` is logged)."""
        return type(self).train_loss is not Regularizer.train_loss


_REGISTRY: dict[str, type[Regularizer]] = {}


def register_regularizer(name: str) -> Callable[[type[Regularizer]], type[Regularizer]]:
    """Class decorator: make a Regularizer subclass available as `name` (its settings, presets, search space)."""
    def add(cls: type[Regularizer]) -> type[Regularizer]:
        claim(_REGISTRY, name, cls, Regularizer, "regularizer", "register_regularizer")
        cls.name = name
        undeclare(name)  # a module imported again (a notebook cell run twice) re-declares its settings
        declare(*(_owned(s, name) for s in cls.settings))
        _REGISTRY[name] = cls
        clash = [p for p in cls.presets if p in presets() and presets_owner(p) is not cls]
        if clash:
            del _REGISTRY[name]
            undeclare(name)
            raise ValueError(f"regularizer {name!r}: preset {clash[0]!r} already exists")
        return cls
    return add


def _owned(s: Setting, owner: str) -> Setting:
    from dataclasses import replace

    return replace(s, owner=owner)


def registered() -> dict[str, type[Regularizer]]:
    """Every registered regularizer class, by name, in registration order (the order blocks are built in)."""
    return dict(_REGISTRY)


def presets() -> dict[str, dict[str, Any]]:
    """--reg NAME -> settings, over every registered regularizer ('none' switches nothing on)."""
    out: dict[str, dict[str, Any]] = {"none": {}}
    for cls in _REGISTRY.values():
        out.update({k: dict(v) for k, v in cls.presets.items()})
    return out


def presets_owner(preset: str) -> Optional[type[Regularizer]]:
    """The regularizer class that declares a preset (None for 'none' or an unknown name)."""
    return next((cls for cls in _REGISTRY.values() if preset in cls.presets), None)


def settings_of(applies_to: str) -> tuple[str, ...]:
    """Names of the settings of every regularizer whose settings go to the model (MODEL) or the data (DATA)."""
    return tuple(s.name for cls in _REGISTRY.values() if cls.applies_to == applies_to for s in cls.settings)


def create(values: Mapping[str, Any]) -> list[Regularizer]:
    """The regularizers `values` switch on, in registration order; a setting no regularizer declares is an error
    (a checkpoint of a plug-in regularizer needs its module imported: `--plugins MODULE`)."""
    known = {s.name for cls in _REGISTRY.values() for s in cls.settings}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"no registered regularizer declares {', '.join(map(repr, unknown))} "
                        "(import the module that registers it, e.g. with --plugins MODULE)")
    return [cls(**cls.own(values)) for cls in _REGISTRY.values() if cls.enabled(values)]


def search_entries(preset: str) -> dict[str, dict[str, Any]]:
    """setting -> search-space entry a sweep samples for a preset: the `search` of the regularizers whose settings
    the preset switches on."""
    wanted = set(presets().get(preset, {}))
    out: dict[str, dict[str, Any]] = {}
    for cls in _REGISTRY.values():
        out.update({k: dict(v) for k, v in cls.search.items() if k in wanted})
    return out


def strengths() -> dict[str, tuple[str, ...]]:
    """Each searched strength -> the presets that switch it on (the panels of a study's landscape figure)."""
    out: dict[str, tuple[str, ...]] = {}
    for cls in _REGISTRY.values():
        for name in cls.search:
            out[name] = tuple(p for p, v in presets().items() if name in v)
    return out


def enabled_settings(values: Mapping[str, Any]) -> list[str]:
    """The settings that say how the regularizers `values` switch on are configured (`Regularizer.shown`: what a
    run's HParams record shows beside the usual columns), e.g. ['label_smoothing'] or ['weight_averaging',
    'ema_decay']."""
    return [name for cls in _REGISTRY.values() if cls.enabled(values) for name in cls(**cls.own(values)).shown()]


def describe(values: Mapping[str, Any]) -> str:
    """How a run's regularization reads in tables: 'L2 0.001 + dropout 0.5', or 'none'."""
    regs = [cls(**cls.own(values)) for cls in _REGISTRY.values() if cls.enabled(values)]
    return " + ".join(r.describe() for r in regs) or "none"


def plugin_modules(values: Mapping[str, Any], names: Iterable[str] = ()) -> list[str]:
    """Modules outside lit_regularize whose regularizers `values` use (recorded so that other processes, resumes
    and predict import them); classes defined in __main__ (a notebook) cannot be imported elsewhere."""
    used = [cls for cls in _REGISTRY.values() if cls.enabled(values) or cls.name in names]
    return sorted({cls.__module__ for cls in used
                   if not cls.__module__.startswith("lit_regularize.") and cls.__module__ != "__main__"})


__all__ = ["Regularizer", "register_regularizer", "registered", "presets", "presets_owner", "settings_of", "create",
           "search_entries", "strengths", "describe", "enabled_settings", "plugin_modules", "MODEL", "DATA", "SHAPE"]
