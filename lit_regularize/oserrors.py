"""How an OSError reads in one error line: its errno and a reason that is never 'None'."""
from __future__ import annotations

import errno
import os
from typing import Optional

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def errno_of(e: BaseException) -> Optional[int]:
    """e.errno, or the number of an OSError built from a bare errno (OSError(errno.ENOSPC) leaves .errno None)."""
    if not isinstance(e, OSError):
        return None
    if e.errno is not None:
        return e.errno
    return e.args[0] if len(e.args) == 1 and isinstance(e.args[0], int) else None


def is_disk_full(e: BaseException) -> bool:
    """Whether e says the disk (or the user's quota) is full (lit_regularize.files.DiskFull says so by its reason)."""
    return getattr(e, "reason", None) == "disk_full" or errno_of(e) in DISK_FULL_ERRNOS


def os_reason(e: OSError) -> str:
    """Why an OSError happened, in words: strerror, else the errno's text, else the OS's words that a
    lit_regularize.files write failure keeps (.detail), else the message or the type's name."""
    code = errno_of(e)
    return (e.strerror or (os.strerror(code) if code is not None else "") or getattr(e, "detail", "") or str(e)
            or type(e).__name__)


__all__ = ["errno_of", "is_disk_full", "os_reason", "DISK_FULL_ERRNOS"]
