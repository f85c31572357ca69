"""Shared plumbing of the scripts: argument parsing from Config and one-line errors."""
from __future__ import annotations

import argparse
import difflib
import sys
from typing import Callable, NoReturn, Optional, Sequence

from lit_regularize.config import add_config_args
from lit_regularize.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (with 'did you mean' for a mistyped flag), not a 20-line usage block."""

    def error(self, message: str) -> NoReturn:
        hint = ""
        if message.startswith("unrecognized arguments"):
            flags = [s for a in self._actions for s in a.option_strings]
            typos = [a.split("=")[0] for a in message.split(":", 1)[1].split() if a.startswith("-")]
            close = [m[0] for m in (difflib.get_close_matches(t, flags, n=1) for t in typos) if m]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
        self.exit(EXIT_USER_ERROR, f"error: {message}{hint} (see --help)\n")


def config_parser(description: str, skip: Sequence[str] = ()) -> argparse.ArgumentParser:
    """An ArgumentParser with one flag per Config field (plus --config FILE)."""
    parser = OneLineParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_args(parser, skip)
    return parser


def guarded(main: Callable[[Optional[Sequence[str]]], int]) -> Callable[[Optional[Sequence[str]]], int]:
    """Run a script's main: user errors print one line and exit 2, interruptions exit 130."""
    def wrapper(argv: Optional[Sequence[str]] = None) -> int:
        from lit_regularize.run import RunInterrupted

        try:
            return main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USER_ERROR
        except RunInterrupted as e:
            print(f"{e}", file=sys.stderr)
            return EXIT_INTERRUPTED
    return wrapper
