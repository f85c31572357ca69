"""User-facing errors: commands print these as one line and exit non-zero (real bugs keep their traceback)."""
from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Any, Callable, Iterator, Optional


class UserError(Exception):
    """Bad input from the user (a flag, a config, a data file); shown as one line."""


class ConfigError(UserError):
    """A flag or config value that is unknown or out of range."""


class DataError(UserError):
    """A data file that is missing, unreadable or malformed."""


class Terminated(BaseException):
    """SIGTERM as an exception (like Ctrl-C's KeyboardInterrupt) outside Lightning's own handling: start-up,
    set-up, between fit and test, writing the summary."""


@contextlib.contextmanager
def on_sigterm(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Inside the block SIGTERM calls handler; the previous handler comes back after it. Outside the main thread
    (where signals cannot be set) signals are left alone."""
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class RunInterrupted(Exception):
    """Training was stopped by Ctrl-C or SIGTERM; summary.json was written with status 'interrupted'."""

    def __init__(self, log_dir: Path | str, reason: str, hint: Optional[str] = None) -> None:
        """hint: how to carry on (default: resume the run with --resume log_dir)."""
        super().__init__(f"interrupted ({reason}); {hint or f'resume with --resume {log_dir}'}")
        self.log_dir = Path(log_dir)
        self.reason = reason
        self.hint = hint

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # a custom __init__ does not survive pickling by default; k-fold and sweep workers send these across
        return (RunInterrupted, (str(self.log_dir), self.reason, self.hint))
