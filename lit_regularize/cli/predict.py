"""Command lines of `predict` and `export` (torch is imported only after the arguments are parsed).

  predict RUN_DIR [INPUT ...] [--file F] [--last] [--json] [--word-index PATH] [--data-dir DIR]
  export RUN_DIR [--format torchscript|onnx] --out FILE [--last]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from lit_regularize.cli.args import OneLineParser, guarded
from lit_regularize.errors import UserError

PREVIEW = 60


PREDICT_DOC = """Classify review texts (IMDB runs), images (MNIST / Fashion-MNIST runs) or new data of the kind
an own-data run (--data KIND:PATH) trained on, with a trained run.

Inputs come from the arguments, else --file, else standard input (one review or path per line).
IMDB: one review per argument / line; a --file ending in .jsonl holds one JSON object per line with a
"text" field. Images: PNG/JPEG/... files (grayscale, dark-on-light ones inverted, fitted to 28x28) or idx
image files (every image in them). Own data, encoded with what the run folder saved at training time:
csv: CSV files with the training feature columns (the label column is ignored); npz: .npz files with x (or
x_indptr, x_indices, x_data, x_shape); textdir: .txt files or folders of them; imagedir: image files or folders
of them. Output: one line per example (label, class name, probability, input; FILE[i] is row i of a file
holding many), or one JSON object per line with --json.

examples:
  lit-regularize predict lightning_logs/imdb_none/version_0 "A wonderful film." "Two hours I will never get back."
  lit-regularize predict lightning_logs/imdb_none/version_0 --file reviews.jsonl --json
  lit-regularize predict lightning_logs/fashion_mnist_none/version_0 shoe.png t10k-images-idx3-ubyte
  lit-regularize predict lightning_logs/csv_churn_none/version_0 new_customers.csv
  lit-regularize predict lightning_logs/textdir_reviews_none/version_0 new_reviews/ --json
"""


def _read_inputs(args: argparse.Namespace, is_text: bool) -> list[tuple[str, Any]]:
    """(shown label, input) pairs from the arguments, --file or stdin."""
    if args.inputs:
        return [(s, s) for s in args.inputs]
    if args.file:
        path = Path(args.file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or type(e).__name__
            raise UserError(f"--file {path}: cannot read ({why})") from None
        where = f"--file {path}"
    else:
        lines = sys.stdin.read().splitlines()
        where = "stdin"
    while lines and not lines[-1].strip():  # a trailing newline or blank lines at the end are not inputs
        lines.pop()
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
        lines = [line.strip() for line in lines]
    return [(line, line) for line in lines]


def _plain(result: dict[str, Any], shown: str) -> str:
    if "prob" in result:
        text = " ".join(shown.split())
        preview = text if len(text) <= PREVIEW else text[:PREVIEW - 3] + "..."
        return f"{result['prob']:.4f} {result['name']}  {preview}"
    k = result["label"]
    name = f" {result['name']}" if "name" in result else ""
    return f"{k}{name}  {result['probs'][k]:.2f}  {shown}"


@guarded
def main(argv: Optional[Sequence[str]] = None) -> int:
    """`predict` command line; returns the exit code (2 for bad input, with one `error:` line)."""
    parser = OneLineParser(prog="lit-regularize predict", description=PREDICT_DOC,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder: <logdir>/<name>/version_k")
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="review texts, or image / idx / CSV / npz / text file or folder paths")
    parser.add_argument("--file", metavar="F",
                        help="inputs, one per line (.jsonl: objects with a 'text' field, or 'path')")
    parser.add_argument("--last", action="store_true",
                        help="use checkpoints/last.ckpt instead of the best one")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--word-index", metavar="PATH",
                        help="keras' imdb_word_index.json (default: the one in the run's data folder)")
    parser.add_argument("--data-dir", metavar="DIR", help="data folder holding imdb_word_index.json")
    parser.add_argument("--batch-size", type=int, default=1024, help="inputs per forward pass")
    args = parser.parse_args(argv)
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
                     batch_size=args.batch_size)
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
    try:
        for s, r in zip(shown, results):
            print(json.dumps({"input": s, **r}) if args.json else _plain(r, s))
        sys.stdout.flush()
    except BrokenPipeError:  # `predict RUN big.csv | head`: the reader left; no traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the interpreter's own flush at exit too
    return 0



@guarded
def export_main(argv: Optional[Sequence[str]] = None) -> int:
    """`export` command line: a self-contained TorchScript / ONNX probability model of a run."""
    parser = OneLineParser(prog="lit-regularize export", formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Export a run's model (dense input -> probabilities) as TorchScript or ONNX,\n"
                           "with <out>.json describing its input (size, normalization, vocabulary) and classes.",
                           epilog="examples:\n"
                           "  lit-regularize export lightning_logs/imdb_none/version_0 --out imdb.pt\n"
                           "  lit-regularize export lightning_logs/fashion_mnist_none/version_0 --format onnx "
                           "--out fmnist.onnx --last")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder: <logdir>/<name>/version_k")
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
