"""One rule for every text input: predict's arguments, --file lines, .jsonl files and stdin, and the .txt files of
--data textdir at training and at predict time.

Text is UTF-8 (a leading byte-order mark is dropped). Bytes that are not UTF-8 are replaced by U+FFFD, as at
training, and one `warning:` line on stderr names the source and how many bytes were replaced, so a file in
another encoding (Latin-1, UTF-16, ...) is never silently read as something else.
"""
from __future__ import annotations

import codecs
import sys


def undecodable_bytes(raw: bytes) -> int:
    """How many bytes of raw are not part of valid UTF-8."""
    return sum(1 for ch in raw.decode("utf-8", "surrogateescape") if "\udc80" <= ch <= "\udcff")


def decode_text(raw: bytes, source: str) -> str:
    """raw as UTF-8 text; undecodable bytes become U+FFFD and one warning line names source and their count."""
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    n = undecodable_bytes(raw)
    print(f"warning: {source}: {n} byte{'s' if n != 1 else ''} not UTF-8, replaced by U+FFFD (save the text "
          "as UTF-8 to keep them)", file=sys.stderr)
    return raw.decode("utf-8", "replace")


def text_argument(arg: str, source: str) -> str:
    """A command-line argument as text: Python hands non-UTF-8 argv bytes over as lone surrogates
    (surrogateescape); they are decoded by decode_text's rule."""
    try:
        raw = arg.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte: invalid UTF-8 as well
        raw = arg.encode("utf-8", "surrogatepass")
    return decode_text(raw, source)


__all__ = ["decode_text", "text_argument", "undecodable_bytes"]
