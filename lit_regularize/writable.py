"""Output folders checked before any work starts: a sweep's or comparison's report folder that cannot be written
fails as one error line before the first trial or run, not after all of them.

Nothing is created: the check walks up to the nearest folder that exists and writes (then removes) one probe file
there, so what it answers is what a write would do (read-only mounts, ACLs, root's disregard of chmod alike).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lit_regularize.errors import UserError

PROBE_PREFIX = ".write_probe."


def nearest_existing(path: Path) -> Path:
    """path itself, or its closest ancestor that exists (a file or a folder)."""
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                return candidate
        except OSError:  # e.g. a parent that cannot be searched: the probe below reports it
            return candidate
    return Path(path.anchor or ".")


def check_writable(path: str | os.PathLike, what: str) -> Path:
    """One UserError line unless path is a folder (or can become one) this process can write in; creates nothing.

    what names the flag or setting the path came from, e.g. '--report'. Returns the folder that was probed."""
    target = Path(path).expanduser().absolute()
    folder = nearest_existing(target)
    if not folder.is_dir():
        why = "is a file, not a folder" if folder == target else f"cannot be created, {folder} is a file"
        raise UserError(f"{what} {path}: {why}")
    try:
        fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{what} {path}: cannot write in {folder} ({e.strerror or type(e).__name__})") from None
    return folder


__all__ = ["check_writable", "nearest_existing", "PROBE_PREFIX"]
