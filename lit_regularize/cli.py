"""Shared plumbing of the scripts: argument parsing from Config and one-line errors."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

from lit_regularize.config import add_config_args
from lit_regularize.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def config_parser(description: str, skip: Sequence[str] = ()) -> argparse.ArgumentParser:
    """An ArgumentParser with one flag per Config field (plus --config FILE)."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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
