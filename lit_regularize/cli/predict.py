"""Command lines of `predict` and `export` (torch is imported only after the arguments are parsed).

  predict RUN_DIR [INPUT ...] [--file F] [--last] [--invert] [--json] [--word-index PATH] [--data-dir DIR]
  export RUN_DIR [--format pt2|onnx|torchscript] --out FILE [--last] [--word-index PATH] [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

from lit_regularize.cli.args import OneLineParser, guarded
from lit_regularize.errors import UserError

PREVIEW = 60


PREDICT_DOC = """Classify new inputs of the kind a trained run learned: review texts (imdb, textdir), images
(mnist, fashion_mnist, imagedir) or files of an own-data run's kind (npz, csv, ...).

Inputs come from the arguments, else --file, else standard input (one input per line).
Text runs (imdb, textdir): one review per argument / line; a --file ending in .jsonl holds one JSON object per line
with a "text" field. textdir runs also take .txt files and folders of them (an input that names an existing file or
folder, or one word ending in .txt); an imdb argument that names an existing file is refused (read a file of
reviews, one per line, with --file).
Images: PNG/JPEG/... files (8-bit grayscale by their bit depth, 16-bit and float images scaled, transparent
pixels white; a 28x28 image used as it is, others fitted to 28x28) or idx image files (every image in them),
encoded exactly as the training images: MNIST / Fashion-MNIST are light on dark, so give --invert for
dark-on-light pictures (scans, photos of paper); nothing is inverted otherwise; imagedir: image files or folders.
Own data, encoded with what the run folder saved at training time: csv: CSV files with the training feature columns
(the label column is ignored; a category training never saw is all zeros, and said once per file); npz: .npz files
with x (or x_indptr, x_indices, x_data, x_shape). A .jsonl --file of paths has a "path" field.

Output, the same for every kind: one line per example, `LABEL NAME  PROBABILITY  INPUT` (the class index, its name,
its probability; FILE[i] is row i of a file holding many, a review is shown shortened), or with --json one object per
line with the keys input, label, name, probability and probs (every class's probability).

Text is UTF-8 everywhere (arguments, --file, .jsonl, stdin, .txt files): bytes that are not UTF-8 are replaced by
U+FFFD, as at training, and one warning line per source says how many. Paths are file names, read as the file
system spells them.

The model is the run's best checkpoint (--last: last.ckpt), checked to be this run's and finite. A k-fold
folder (fit --kfold) predicts with its refit model. A run that is not completed (running, interrupted,
failed) is used with a warning naming its status and the epoch of its weights; a best checkpoint that
summary.json names but that is missing is refused (use --last).

examples:
  lit-regularize predict lightning_logs/imdb_none/version_0 "A wonderful film." "Two hours I will never get back."
  lit-regularize predict lightning_logs/imdb_none/version_0 --file reviews.jsonl --json
  lit-regularize predict lightning_logs/textdir_reviews_none/version_0 "A wonderful film." new_reviews/
  lit-regularize predict lightning_logs/fashion_mnist_none/version_0 shoe.png t10k-images-idx3-ubyte
  lit-regularize predict lightning_logs/mnist_none/version_0 --invert digit_on_paper.jpg
  lit-regularize predict lightning_logs/csv_churn_none/version_0 new_customers.csv
"""


class Item(NamedTuple):
    """One input: how the output names it, what is read, and whether it is a review text (else a path)."""

    shown: str
    value: str
    text: bool


def _raw_lines(args: argparse.Namespace) -> tuple[bytes, str]:
    """(the bytes of --file or of stdin, how errors and warnings name them)."""
    if args.file:
        from lit_regularize.oserrors import os_reason

        path = Path(args.file)
        try:
            return path.read_bytes(), f"--file {path}"
        except OSError as e:
            raise UserError(f"--file {path}: cannot read ({os_reason(e)})") from None
    stream = getattr(sys.stdin, "buffer", None)  # bytes, so one decoding rule holds (tests pass a StringIO)
    return (stream.read() if stream is not None else sys.stdin.read().encode("utf-8", "surrogateescape")), "stdin"


def _lines(args: argparse.Namespace, kind: Any) -> tuple[list[str], str]:
    """The lines of --file or stdin: a text kind's by textio's UTF-8 rule (paths among them keep the bytes the file
    system spells), other kinds' as file names."""
    from lit_regularize.textio import decode_text

    raw, where = _raw_lines(args)
    jsonl = bool(args.file) and str(args.file).endswith(".jsonl")
    if not (kind.takes_text or jsonl):
        lines = os.fsdecode(raw).splitlines()
    else:
        as_paths = os.fsdecode(raw).splitlines() if kind.takes_text and not jsonl else None
        lines = decode_text(raw, where).splitlines()
        if as_paths is not None and len(as_paths) == len(lines):  # a line naming files: the name as spelled
            lines = [p if kind.is_document_path(p) else t for p, t in zip(as_paths, lines)]
    while lines and not lines[-1].strip():  # a trailing newline or blank lines at the end are not inputs
        lines.pop()
    return lines, where


def _refuse_file_paths(kind: Any, texts: list[tuple[str, str]]) -> None:
    """A text run whose examples are no files classifies the text it is given: one that names an existing file is
    almost surely meant as the file's contents, so it is refused with the way to read it."""
    if getattr(kind, "documents", ()):
        return
    for where, t in texts:
        if "\n" not in t and os.path.isfile(t.strip()):  # os.path: never raises on a review's length or bytes
            raise UserError(f"{where}: {t.strip()!r} is a file; {kind.name} runs classify review texts, not paths "
                            f"(to classify its lines: --file {t.strip()})")


def _jsonl(lines: list[str], where: str, key: str, text: bool) -> list[Item]:
    """Items of a .jsonl --file: one object per line with a `key` string field."""
    out = []
    for n, line in enumerate(lines, 1):
        try:
            obj = json.loads(line)
        except ValueError:
            raise UserError(f"{where} line {n}: not a JSON object") from None
        if not isinstance(obj, dict) or not isinstance(obj.get(key), str):
            raise UserError(f"{where} line {n}: expected a JSON object with a {key!r} string field")
        out.append(Item(obj[key], obj[key], text))
    return out


def _read_inputs(args: argparse.Namespace, kind: Any) -> list[Item]:
    """The inputs from the arguments, --file or stdin, each marked as a review text or a path."""
    from lit_regularize.textio import text_argument

    if args.inputs:
        if not kind.takes_text:  # paths: the bytes the shell gave (Path handles non-UTF-8 names)
            return [Item(s, s, False) for s in args.inputs]
        items = [Item(s, s, False) if kind.is_document_path(s) else
                 Item(t := text_argument(s, f"argument {n}"), t, True) for n, s in enumerate(args.inputs, 1)]
        _refuse_file_paths(kind, [(f"argument {n}", it.value) for n, it in enumerate(items, 1) if it.text])
        return items
    lines, where = _lines(args, kind)
    if args.file and str(args.file).endswith(".jsonl"):
        return _jsonl(lines, where, "text" if kind.takes_text else "path", kind.takes_text)
    for n, line in enumerate(lines, 1):
        if not line.strip():
            raise UserError(f"{where} line {n}: empty {'review' if kind.takes_text else 'path'}")
    if not kind.takes_text:
        return [Item(line.strip(), line.strip(), False) for line in lines]
    _refuse_file_paths(kind, [(f"{where} line {n}", line) for n, line in enumerate(lines, 1)])
    return [Item(line.strip(), line.strip(), False) if kind.is_document_path(line) else Item(line, line, True)
            for line in lines]


def _printable(s: str) -> str:
    """s as stdout can always encode it: a file name's undecodable bytes (lone surrogates) shown as U+FFFD."""
    try:
        raw = s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte (a JSON escape)
        raw = s.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def _preview(text: str) -> str:
    """A review on one line, shortened to PREVIEW characters."""
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW else text[:PREVIEW - 3] + "..."


def _plain(result: dict[str, Any], shown: str) -> str:
    """LABEL NAME  PROBABILITY  INPUT, for every kind."""
    return f"{result['label']} {result['name']}  {result['probability']:.4f}  {_printable(shown)}"


def _print_results(shown: list[str], results: list[dict[str, Any]], as_json: bool) -> None:
    """One line per result on stdout; a reader that left (`| head`) is no error, a full disk one line."""
    try:
        for s, r in zip(shown, results):
            print(json.dumps({"input": s, **r}) if as_json else _plain(r, s))
        sys.stdout.flush()
    except OSError as e:  # BrokenPipeError: the reader left; anything else (a full disk) is one line
        with contextlib.suppress(OSError, ValueError, AttributeError):  # a stream without a file descriptor
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the interpreter's flush at exit too
        if not isinstance(e, BrokenPipeError):
            from lit_regularize.oserrors import is_disk_full, os_reason

            raise UserError("cannot write the predictions to standard output ("
                            + ("the disk is full" if is_disk_full(e) else os_reason(e)) + ")") from None


@guarded
def main(argv: Optional[Sequence[str]] = None) -> int:
    """`predict` command line; returns the exit code (2 for bad input, with one `error:` line)."""
    parser = OneLineParser(prog="lit-regularize predict", description=PREDICT_DOC,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder: <logdir>/<name>/version_k (or the "
                        "k-fold folder fit --kfold prints: its refit model)")
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="review texts, or image / idx / CSV / npz / text file or folder paths")
    parser.add_argument("--file", metavar="F",
                        help="inputs, one per line (.jsonl: objects with a 'text' field, or 'path')")
    parser.add_argument("--last", action="store_true",
                        help="use checkpoints/last.ckpt instead of the best one")
    parser.add_argument("--invert", action="store_true",
                        help="image runs: use 255 - pixel of every input image, for dark-on-light pictures "
                        "(MNIST / Fashion-MNIST are light on dark; never done unless asked)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--word-index", metavar="PATH",
                        help="keras' imdb_word_index.json (default: the one in the run's data folder)")
    parser.add_argument("--data-dir", metavar="DIR", help="data folder holding imdb_word_index.json")
    parser.add_argument("--batch-size", type=int, default=1024, help="inputs per forward pass")
    args = parser.parse_intermixed_args(argv)  # `predict RUN --json "a review"`: inputs after flags too
    if args.inputs and args.file:
        parser.error("give inputs as arguments or with --file, not both")
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")

    from lit_regularize.data.kinds import data_kind
    from lit_regularize.predict import load, run_config

    kind = data_kind(run_config(args.run_dir)["data"])
    items = _read_inputs(args, kind)  # bad input is one line before the model is loaded
    if not items:
        raise UserError("no inputs (give them as arguments, with --file, or on stdin)")
    predictor = load(args.run_dir, last=args.last, word_index=args.word_index, data_dir=args.data_dir,
                     batch_size=args.batch_size, invert=args.invert)
    # an idx file, CSV, npz or folder expands to its examples, each named on its own line; a review by its text
    names, datasets = predictor.read_all([it.value for it in items], [it.text for it in items])
    results = predictor.predict_datasets(datasets)
    texts = {it.value for it in items if it.text}
    shown = names if args.json else [_preview(n) if n in texts else n for n in names]
    _print_results(shown, results, args.json)
    return 0


@guarded
def export_main(argv: Optional[Sequence[str]] = None) -> int:
    """`export` command line: a self-contained torch.export (pt2) / ONNX / TorchScript probability model of a run."""
    parser = OneLineParser(prog="lit-regularize export", formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Export a run's model (dense input -> probabilities) as a torch.export\n"
                           "program (pt2, the default: torch.export.load(FILE).module()), ONNX or TorchScript,\n"
                           "with <out>.json describing its input (size, normalization; a text run's encoding\n"
                           "recipe and vocabulary, so raw text is classified without lit_regularize) and classes.\n\n"
                           "The model is checked as predict checks it: the run's own and finite; a k-fold folder\n"
                           "exports its refit model; a run that is not completed gets a warning naming its status\n"
                           "and the epoch of the weights. --out is a file name; missing folders are created. The\n"
                           "model and <out>.json are written atomically, both or neither: a full disk or a\n"
                           "read-only folder is one error line and leaves no partial file.",
                           epilog="examples:\n"
                           "  lit-regularize export lightning_logs/imdb_none/version_0 --out imdb.pt2\n"
                           "  lit-regularize export lightning_logs/fashion_mnist_none/version_0 --format onnx "
                           "--out fmnist.onnx --last")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder: <logdir>/<name>/version_k (or the "
                        "k-fold folder fit --kfold prints: its refit model)")
    parser.add_argument("--format", default="pt2", choices=("pt2", "onnx", "torchscript"),
                        help="pt2 (default; torch.export), onnx (pip install '.[export]') or torchscript "
                        "(deprecated by torch)")
    parser.add_argument("--out", required=True, metavar="FILE", help="the model file to write")
    parser.add_argument("--last", action="store_true",
                        help="export checkpoints/last.ckpt instead of the best one")
    parser.add_argument("--word-index", metavar="PATH",
                        help="IMDB runs: keras' imdb_word_index.json (default: the one in the run's data folder)")
    parser.add_argument("--data-dir", metavar="DIR", help="IMDB runs: the data folder holding imdb_word_index.json")
    args = parser.parse_args(argv)
    from lit_regularize.export import export

    out = export(args.run_dir, args.format, args.out, last=args.last, word_index=args.word_index,
                 data_dir=args.data_dir)
    print(f"wrote {out} and {out}.json")
    return 0


__all__ = ["main", "export_main"]
