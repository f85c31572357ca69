"""Atomic file writes: a reader never sees a half-written summary, config or checkpoint."""
from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import yaml
from lightning_fabric.plugins import TorchCheckpointIO


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Write via a temporary file in the same folder, then rename over path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
    return json.loads(Path(path).read_text())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temp file and renamed: a kill mid-save never leaves a truncated .ckpt."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        atomic_write(path, lambda f: f.write(buf.getbuffer()))
