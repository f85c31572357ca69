"""Atomic file writes: a reader never sees a half-written summary, config, table or figure."""
from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from lit_regularize.errors import UserError
from lit_regularize.oserrors import DISK_FULL_ERRNOS, errno_of, os_reason


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; written files get the permissions of any other file the user creates.
FILE_MODE = 0o666 & ~_umask()


NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Write via a temporary file in the same folder, then rename over path (a full disk is one line)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(OSError):  # on a read-only folder even the clean-up fails
                Path(tmp).unlink(missing_ok=True)
        interrupt = interrupt_behind(e)
        if interrupt is not None:
            raise interrupt from None
        failure = write_failure(e, path)
        if failure is not None:
            raise failure from None
        raise
    return path


def interrupt_behind(e: BaseException) -> Optional[BaseException]:
    """The Ctrl-C or SIGTERM (a BaseException that is no Exception) that an error was raised while handling, if
    any: torch.save's zip writer, cut by Ctrl-C mid-record, raises 'unexpected pos' from its clean-up, and that
    error would hide the interrupt (a traceback and exit 1 instead of an interrupted, resumable run)."""
    seen = e.__context__ if isinstance(e, Exception) else None
    while seen is not None:
        if not isinstance(seen, Exception):
            return seen
        seen = seen.__context__
    return None


class WriteFailed(UserError, OSError):
    """A file could not be written (full disk, read-only folder); atomic writes leave its previous version intact."""

    reason = "write_failed"  # a run's stop_reason when this ended its training
    why, fix = "cannot be written", "fix that"

    def __init__(self, path: str | os.PathLike, detail: str = "", hint: Optional[str] = None) -> None:
        self.path, self.detail, self.hint = Path(path), detail, hint
        super().__init__(f"{path}: {self.why}" + (f" ({detail})" if detail else "")
                         + f"; {hint or self.fix + ' and try again'}")

    def with_hint(self, hint: str) -> "WriteFailed":
        """The same failure with other advice (a run knows whether it can be resumed)."""
        return type(self)(self.path, self.detail, hint)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # k-fold and sweep workers send errors across processes; OSError's own pickling would call __init__(message)
        return (type(self), (str(self.path), self.detail, self.hint))


class DiskFull(WriteFailed):
    """The disk filled up while a file was written."""

    reason, why, fix = "disk_full", "the disk is full", "free space"


class NotWritable(WriteFailed):
    """The folder is read-only (a read-only mount, or no write permission)."""

    reason, why, fix = "not_writable", "cannot write there", "make the folder writable"


def write_failure(e: BaseException, path: Optional[str | os.PathLike] = None,
                  fallback: str | os.PathLike = "") -> Optional[WriteFailed]:
    """The one-line error for an exception that a full disk or a read-only folder caused, else None; it names path,
    else the file the OSError names, else fallback. torch.save (checkpoints) reports a full disk as
    RuntimeError('[enforce fail at inline_container.cc...]') raised while handling the OSError, so the exception's
    causes and contexts are searched too."""
    seen: set[int] = set()
    err: Optional[BaseException] = e
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, WriteFailed):
            return err
        code = errno_of(err)
        if code in DISK_FULL_ERRNOS + NOT_WRITABLE:
            kind = DiskFull if code in DISK_FULL_ERRNOS else NotWritable
            where = path if path is not None else err.filename or fallback
            return kind(os.fsdecode(where), os_reason(err))  # type: ignore[arg-type]
        err = err.__cause__ or err.__context__
    return None


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


def read_own_yaml(text: str) -> Any:
    """YAML this package wrote (config.yaml, hparams.yaml), parsed by libyaml where PyYAML has it (the pure-Python
    parser took ~8 ms a file); users' YAML goes through yaml.safe_load for its error messages."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by write_json."""
    return json.loads(Path(path).read_text(encoding="utf-8"))  # JSON is UTF-8, whatever the locale
