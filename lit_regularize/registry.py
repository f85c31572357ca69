"""What the two plug-in registries (regularizers, data kinds) share: claiming a name for a class."""
from __future__ import annotations

from typing import Any


def claim(registry: dict[str, type], name: str, cls: Any, base: type, what: str, decorator: str) -> None:
    """Check that cls may be registered as `name`: a subclass of base, and the name free or already its own (a module
    imported again, e.g. a notebook cell run twice, registers the same class again)."""
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"@{decorator}({name!r}) needs a {base.__name__} subclass, got {cls!r}")
    old = registry.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"{what} {name!r} is already registered by {old.__module__}.{old.__qualname__}")
