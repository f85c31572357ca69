"""`lit-regularize COMMAND ...`: fit, sweep, compare, predict, export, bench."""
from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

# command -> ("module[:function]" taking argv, one line of help)
COMMANDS = {
    "fit": ("lit_regularize.cli.fit", "train one model (or K folds) and test its best and last weights"),
    "sweep": ("lit_regularize.cli.sweep", "an Optuna study over capacity, regularizer and strength"),
    "compare": ("lit_regularize.cli.compare", "run a comparison study, or compare finished runs: figures + tables"),
    "predict": ("lit_regularize.cli.predict:main", "predict new reviews or images with a trained run"),
    "export": ("lit_regularize.cli.predict:export_main", "export a trained run as TorchScript or ONNX"),
    "reproduce": ("lit_regularize.cli.reproduce", "the notebooks' experiments with seeds: one HTML page + Markdown"),
    "bench": ("lit_regularize.bench", "time epochs and sweeps beside the peer loops"),
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Dispatch to a command's main."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        lines = ["usage: lit-regularize COMMAND [--help] ...", "",
                 "A PyTorch Lightning lab for fighting overfitting.", "", "commands:"]
        lines += [f"  {name:<9s} {text}" for name, (_, text) in COMMANDS.items()]
        print("\n".join(lines))
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from lit_regularize import __version__

        print(__version__)
        return 0
    if argv[0] not in COMMANDS:
        import difflib

        hint = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
        print(f"error: unknown command {argv[0]!r} (choose from {', '.join(COMMANDS)})"
              + (f"; did you mean {hint[0]!r}?" if hint else ""), file=sys.stderr)
        return 2
    module, _, function = COMMANDS[argv[0]][0].partition(":")
    return getattr(importlib.import_module(module), function or "main")(argv[1:])


__all__ = ["main", "COMMANDS"]
