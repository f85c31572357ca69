"""Atomic file writes: a reader never sees a half-written summary, config, table or figure."""
from __future__ import annotations

import errno
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from lit_regularize.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; written files get the permissions of any other file the user creates.
FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Write via a temporary file in the same folder, then rename over path (a full disk is one line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(path) from None
        raise
    return path


class DiskFull(UserError, OSError):
    """The disk filled up while a file was written; the previous version of the file is intact."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path}: the disk is full, nothing was half-written; free space, then resume with "
                         f"--resume {path.parent.parent if path.parent.name == 'checkpoints' else path.parent}")


def _jsonable(obj: Any) -> Any:
    """NaN/inf become null-safe strings so the file stays strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomic, strict JSON (non-finite floats written as strings)."""
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False)
    return atomic_write(path, lambda f: f.write(text.encode()))


def write_yaml(path: str | os.PathLike, obj: Any) -> Path:
    """Atomic YAML."""
    text = yaml.safe_dump(_jsonable(obj), sort_keys=False)
    return atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by write_json."""
    return json.loads(Path(path).read_text(encoding="utf-8"))  # JSON is UTF-8, whatever the locale
