"""Command lines of `predict` and `export` (torch is imported only after the arguments are parsed).

  predict RUN_DIR [INPUT ...] [--file F] [--last] [--invert] [--json] [--word-index PATH] [--data-dir DIR]
  export RUN_DIR [--format torchscript|onnx] --out FILE [--last]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from lit_regularize.cli.args import OneLineParser, guarded
from lit_regularize.errors import UserError

PREVIEW = 60


PREDICT_DOC = """Classify review texts (IMDB runs), images (MNIST / Fashion-MNIST runs) or new data of the kind
an own-data run (--data KIND:PATH) trained on, with a trained run.

Inputs come from the arguments, else --file, else standard input (one review or path per line).
IMDB: one review per argument / line (an argument that names an existing file is refused: read a file of
reviews with --file); a --file ending in .jsonl holds one JSON object per line with a "text" field.
Images: PNG/JPEG/... files (8-bit grayscale by their bit depth, 16-bit and float images scaled, transparent
pixels white; a 28x28 image used as it is, others fitted to 28x28) or idx image files (every image in them),
encoded exactly as the training images: MNIST / Fashion-MNIST are light on dark, so give --invert for
dark-on-light pictures (scans, photos of paper); nothing is inverted otherwise. Own data, encoded with what the
run folder saved at training time: csv: CSV files with the training feature columns (the label column is
ignored); npz: .npz files with x (or x_indptr, x_indices, x_data, x_shape); textdir: .txt files or folders of
them; imagedir: image files or folders of them. Output: one line per example (label, class name, probability,
input; FILE[i] is row i of a file holding many), or one JSON object per line with --json.

Text is UTF-8 everywhere (arguments, --file, .jsonl, stdin, textdir .txt files): bytes that are not UTF-8 are
replaced by U+FFFD, as at training, and one warning line per source says how many. Lists of paths (--file or
stdin on an image or own-data run) are file names, read as the file system spells them.

The model is the run's best checkpoint (--last: last.ckpt), checked to be this run's and finite. A k-fold
folder (fit --kfold) predicts with its refit model. A run that is not completed (running, interrupted,
failed) is used with a warning naming its status and the epoch of its weights; a best checkpoint that
summary.json names but that is missing is refused (use --last).

examples:
  lit-regularize predict lightning_logs/imdb_none/version_0 "A wonderful film." "Two hours I will never get back."
  lit-regularize predict lightning_logs/imdb_none/version_0 --file reviews.jsonl --json
  lit-regularize predict lightning_logs/fashion_mnist_none/version_0 shoe.png t10k-images-idx3-ubyte
  lit-regularize predict lightning_logs/mnist_none/version_0 --invert digit_on_paper.jpg
  lit-regularize predict lightning_logs/csv_churn_none/version_0 new_customers.csv
  lit-regularize predict lightning_logs/textdir_reviews_none/version_0 new_reviews/ --json
"""


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


def _text_lines(args: argparse.Namespace, is_text: bool) -> tuple[list[str], str]:
    """The lines of --file or stdin: texts by textio's UTF-8 rule, paths as the file system spells them."""
    from lit_regularize.textio import decode_text

    raw, where = _raw_lines(args)
    jsonl = bool(args.file) and str(args.file).endswith(".jsonl")
    text = decode_text(raw, where) if is_text or jsonl else os.fsdecode(raw)
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # a trailing newline or blank lines at the end are not inputs
        lines.pop()
    return lines, where


def _refuse_file_paths(texts: list[tuple[str, str]]) -> None:
    """A text run classifies the text it is given: one that names an existing file is almost surely meant as the
    file's contents, so it is refused with the way to read it."""
    for where, t in texts:
        if "\n" not in t and os.path.isfile(t.strip()):  # os.path: never raises on a review's length or bytes
            raise UserError(f"{where}: {t.strip()!r} is a file; IMDB runs classify review texts, not paths "
                            f"(to classify its lines: --file {t.strip()})")


def _read_inputs(args: argparse.Namespace, is_text: bool) -> list[tuple[str, Any]]:
    """(shown label, input) pairs from the arguments, --file or stdin."""
    from lit_regularize.textio import text_argument

    if args.inputs:
        if not is_text:  # paths: the bytes the shell gave (Path handles non-UTF-8 names)
            return [(s, s) for s in args.inputs]
        texts = [text_argument(s, f"argument {n}") for n, s in enumerate(args.inputs, 1)]
        _refuse_file_paths([(f"argument {n}", t) for n, t in enumerate(texts, 1)])
        return [(t, t) for t in texts]
    lines, where = _text_lines(args, is_text)
    if args.file and str(args.file).endswith(".jsonl"):
        out = []
        for n, line in enumerate(lines, 1):
            try:
                obj = json.loads(line)
            except ValueError:
                raise UserError(f"{where} line {n}: not a JSON object") from None
            key = "text" if is_text else "path"
            if not isinstance(obj, dict) or not isinstance(obj.get(key), str):
                raise UserError(f"{where} line {n}: expected a JSON object with a {key!r} string field")
            out.append((obj[key], obj[key]))
        return out
    for n, line in enumerate(lines, 1):
        if not line.strip():
            raise UserError(f"{where} line {n}: empty {'review' if is_text else 'path'}")
    if not is_text:
        return [(line.strip(), line.strip()) for line in lines]
    _refuse_file_paths([(f"{where} line {n}", line) for n, line in enumerate(lines, 1)])
    return [(line, line) for line in lines]


def _printable(s: str) -> str:
    """s as stdout can always encode it: a file name's undecodable bytes (lone surrogates) shown as U+FFFD."""
    try:
        raw = s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte (a JSON escape)
        raw = s.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def _plain(result: dict[str, Any], shown: str) -> str:
    shown = _printable(shown)
    if "prob" in result:
        text = " ".join(shown.split())
        preview = text if len(text) <= PREVIEW else text[:PREVIEW - 3] + "..."
        return f"{result['prob']:.4f} {result['name']}  {preview}"
    k = result["label"]
    name = f" {result['name']}" if "name" in result else ""
    return f"{k}{name}  {result['probs'][k]:.2f}  {shown}"


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

    from lit_regularize.predict import load, run_config

    is_text = run_config(args.run_dir)["data"] == "imdb"
    items = _read_inputs(args, is_text)
    if not items:
        raise UserError("no inputs (give them as arguments, with --file, or on stdin)")
    predictor = load(args.run_dir, last=args.last, word_index=args.word_index, data_dir=args.data_dir,
                     batch_size=args.batch_size, invert=args.invert)
    if is_text:
        shown = [s for s, _ in items]
        results = predictor.predict([x for _, x in items])
    else:  # an idx file, CSV, npz or folder expands to its examples, each named on its own line
        shown, datasets = [], []
        for _, x in items:
            names, ds = predictor.read(x)
            shown += names
            datasets.append(ds)
        results = predictor.predict_datasets(datasets)
    _print_results(shown, results, args.json)
    return 0


@guarded
def export_main(argv: Optional[Sequence[str]] = None) -> int:
    """`export` command line: a self-contained TorchScript / ONNX probability model of a run."""
    parser = OneLineParser(prog="lit-regularize export", formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Export a run's model (dense input -> probabilities) as TorchScript or ONNX,\n"
                           "with <out>.json describing its input (size, normalization, vocabulary) and classes.\n\n"
                           "The model is checked as predict checks it: the run's own and finite; a k-fold folder\n"
                           "exports its refit model; a run that is not completed gets a warning naming its status\n"
                           "and the epoch of the weights. --out is a file name; missing folders are created. The\n"
                           "model and <out>.json are written atomically, both or neither: a full disk or a\n"
                           "read-only folder is one error line and leaves no partial file.",
                           epilog="examples:\n"
                           "  lit-regularize export lightning_logs/imdb_none/version_0 --out imdb.pt\n"
                           "  lit-regularize export lightning_logs/fashion_mnist_none/version_0 --format onnx "
                           "--out fmnist.onnx --last")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder: <logdir>/<name>/version_k (or the "
                        "k-fold folder fit --kfold prints: its refit model)")
    parser.add_argument("--format", default="torchscript", choices=("torchscript", "onnx"),
                        help="torchscript (default) or onnx (needs the onnx package)")
    parser.add_argument("--out", required=True, metavar="FILE", help="the model file to write")
    parser.add_argument("--last", action="store_true",
                        help="export checkpoints/last.ckpt instead of the best one")
    args = parser.parse_args(argv)
    from lit_regularize.export import export

    out = export(args.run_dir, args.format, args.out, last=args.last)
    print(f"wrote {out} and {out}.json")
    return 0


__all__ = ["main", "export_main"]
