"""A full disk and a read-only folder, simulated at the lowest Python level the code under test writes through.

Tests run as root, for whom chmod takes no write access away, and no test may fill a real disk; so the system calls'
failures are raised where the OS would raise them: a full disk fails write(2) with ENOSPC once a file is open (torch
then wraps it in its own RuntimeError, exactly as on a real full disk), a read-only mount fails open(2) for writing
with EROFS.
"""
from __future__ import annotations

import builtins
import errno
import io
import os
from pathlib import Path
from typing import Any


class FullRaw(io.FileIO):
    """A file on a disk that fills up: once `room` bytes are written, every write fails as write(2) does (ENOSPC).

    With some room left a large write fails while the buffer in front of it is empty, so the error surfaces inside
    torch.save as its RuntimeError('[enforce fail at inline_container.cc...]') and closing the file does not raise
    again: what a checkpoint on a nearly full disk does."""

    def __init__(self, file: Any, mode: str, room: int, **kwargs: Any) -> None:
        super().__init__(file, mode, **kwargs)
        self.room, self.written = room, 0

    def write(self, b: Any) -> int:
        if self.written + len(b) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)
        self.written += len(b)
        return super().write(b)


class FullDisk:
    """From the (after + 1)-th file opened for writing whose name contains `pattern` on, the disk fills up while
    the file is written (FullRaw; room=0: the disk is full from the start).

    Covers atomic_write's temp files (os.fdopen of mkstemp's descriptor: checkpoints, summary.json, config.yaml,
    hparams.yaml), TensorBoard's event files (io.open) and any other open() for writing. `failed` lists the files
    that failed."""

    def __init__(self, monkeypatch: Any, pattern: str, after: int = 0, room: int = 4096) -> None:
        self.pattern, self.after, self.room, self.opened, self.failed = pattern, after, room, 0, []
        real_fdopen, real_io_open = os.fdopen, io.open

        def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            name = os.readlink(f"/proc/self/fd/{fd}") if isinstance(fd, int) else ""
            if "w" in mode and self._fails(name):
                return io.BufferedWriter(FullRaw(fd, "wb", self.room, closefd=True))
            return real_fdopen(fd, mode, *args, **kwargs)

        def io_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            name = os.fsdecode(file) if isinstance(file, (str, bytes, os.PathLike)) else ""
            if ("w" in mode or "a" in mode) and self._fails(name):
                binary = io.BufferedWriter(FullRaw(name, "ab" if "a" in mode else "wb", self.room))
                if "b" in mode:
                    return binary
                encoding = kwargs.get("encoding") or (args[1] if len(args) > 1 else None) or "utf-8"
                return io.TextIOWrapper(binary, encoding=encoding, newline=kwargs.get("newline"))
            return real_io_open(file, mode, *args, **kwargs)
        monkeypatch.setattr(os, "fdopen", fdopen)
        monkeypatch.setattr(io, "open", io_open)
        monkeypatch.setattr(builtins, "open", io_open)  # e.g. a library's own (non-atomic) open(path, "w")

    def _fails(self, name: str) -> bool:
        if self.pattern not in Path(name).name:
            return False
        self.opened += 1
        if self.opened <= self.after:
            return False
        self.failed.append(name)
        return True


def read_only(monkeypatch: Any, folder: Path, err: int = errno.EROFS) -> None:
    """folder and everything under it as on a read-only mount: opening a file there for writing (which creating a
    temp file, a lock probe or a checkpoint all do through os.open) fails with `err`."""
    real_open = os.open
    root = str(Path(folder).absolute())
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def fake_open(path: Any, flags: int, mode: int = 0o777, *args: Any, **kwargs: Any) -> int:
        p = os.path.abspath(os.fsdecode(path))
        if flags & writes and (p == root or p.startswith(root + os.sep)):
            raise OSError(err, os.strerror(err), p)
        return real_open(path, flags, mode, *args, **kwargs)
    monkeypatch.setattr(os, "open", fake_open)
