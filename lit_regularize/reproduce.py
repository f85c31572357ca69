"""`lit-regularize reproduce`: the notebooks' experiments this lab replaces, in one command, with seeds.

Every experiment is a shipped comparison study (or k-fold) run over several seeds; the result is one self-contained
HTML page (figures embedded) and its Markdown twin, with each experiment's figure, its table with intervals and
verdicts (as `compare` writes them) and the notebooks' reference numbers beside ours (configs/reference/results.yaml,
shipped with the package: users do not have the project's REFERENCE_RESULTS.md). `--quick` fits a classroom:
fewer epochs and seeds, a few minutes on 2 CPU cores.
"""
from __future__ import annotations

import base64
import html
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import yaml

from lit_regularize.config import configs_dir
from lit_regularize.errors import UserError
from lit_regularize.files import atomic_write
from lit_regularize.tables import fmt, markdown


@dataclass(frozen=True)
class Experiment:
    """One experiment: a shipped comparison study (or k-fold when `study` is None) with its settings."""

    name: str
    title: str
    question: str  # what the notebooks asked with it
    study: Optional[str]
    settings: dict[str, Any] = field(default_factory=dict)  # applied to every run
    quick: dict[str, Any] = field(default_factory=dict)  # added under --quick
    reference: Optional[str] = None  # key in configs/reference/results.yaml


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("capacity", "IMDB: capacity", "How does the network's size change when and how badly it overfits?",
               "imdb_capacity", quick={"max_epochs": 6}, reference="imdb_capacity"),
    Experiment("penalties", "IMDB: L1, L2 and L1+L2 weight penalties",
               "Do weight penalties slow the overfitting of the 16-unit net?", "imdb_penalty",
               quick={"max_epochs": 6}, reference="imdb_penalty"),
    Experiment("dropout", "IMDB: dropout 0.5 at the slow protocol (RMSprop 1e-4, batch 32)",
               "Does dropout flatten the validation curve?", "imdb_dropout", quick={"max_epochs": 4},
               reference="imdb_dropout"),
    Experiment("batchnorm", "IMDB: BatchNorm", "Does BatchNorm help the 16-unit net?", "imdb_batchnorm",
               quick={"max_epochs": 6}, reference="imdb_batchnorm"),
    Experiment("fashion_mnist", "Fashion-MNIST, 100 images per class: augmentation, dropout, BatchNorm",
               "With 1,000 training images, which regularizer helps most?", "mnist100",
               settings={"data": "fashion_mnist"}, quick={"max_epochs": 12}, reference="mnist100"),
    Experiment("kfold", "IMDB, 2,000 reviews: 4-fold validation picks the epoch count",
               "With little data, which epoch count does k-fold choose, and what does the refit score?", None,
               settings={"train_size": 2000, "kfold": 4, "batch_size": 64, "max_epochs": 20,
                         "early_stopping": False},
               quick={"max_epochs": 8}),
)
SEEDS, QUICK_SEEDS = 3, 2


def reference_results() -> dict[str, Any]:
    """The notebooks' numbers shipped with the package (configs/reference/results.yaml)."""
    return yaml.safe_load((configs_dir() / "reference" / "results.yaml").read_text()) or {}


@dataclass
class Outcome:
    """What one experiment produced: its tables (Markdown), figures and a sentence of what it shows."""

    experiment: Experiment
    table: str
    figures: dict[str, Path]
    summary: str
    seconds: float
    reference: str = ""


def run_experiment(exp: Experiment, out: Path, fixed: dict[str, Any], seeds: int, quick: bool,
                   log: Callable[[str], None]) -> Outcome:
    """Run one experiment into out/<name>: a comparison study over `seeds` seeds, or k-fold."""
    t0 = time.perf_counter()
    settings = {**exp.settings, **(exp.quick if quick else {}), **fixed}
    folder = out / exp.name
    if exp.study is None:
        return _kfold(exp, folder, settings, t0)
    from lit_regularize.comparison import compare_study, load_study

    result = compare_study(load_study(exp.study), folder, settings, seeds, log=log)
    figures = {k: Path(v) for k, v in result["figures"].items()}
    return Outcome(exp, result["markdown"], figures, _verdicts(result), time.perf_counter() - t0,
                   _reference_table(exp.reference))


def _kfold(exp: Experiment, folder: Path, settings: dict[str, Any], t0: float) -> Outcome:
    from lit_regularize.config import make_config
    from lit_regularize.kfold import run_kfold

    cfg = make_config({**settings, "logdir": str(folder / "logs"), "name": exp.name}, source=f"reproduce {exp.name}")
    s = run_kfold(cfg, verbose=False)
    figure = Path(s.run_dir) / "kfold_curves.png"
    test = (s.test or {}).get("last") or {}
    std = (s.std_val_loss or [None] * s.chosen_epoch)[s.chosen_epoch - 1]
    rows = [{"what": "chosen epoch (lowest mean val loss)", "value": fmt(s.chosen_epoch)},
            {"what": f"mean val loss at that epoch (± std over {cfg.kfold} folds)",
             "value": f"{fmt(s.best_val_loss)} ± {fmt(std)}"},
            {"what": f"refit on all {s.n_train} examples: test acc", "value": fmt(test.get("acc"))},
            {"what": "refit: test loss", "value": fmt(test.get("loss"))}]
    table = markdown([("what", "", ""), ("value", "", "")], rows)
    summary = (f"{cfg.kfold}-fold validation over {s.n_train} training reviews chose epoch {s.chosen_epoch} of "
               f"{cfg.max_epochs}; the refit for that many epochs scored test accuracy {fmt(test.get('acc'))}.")
    return Outcome(exp, table, {"kfold": figure} if figure.is_file() else {}, summary, time.perf_counter() - t0)


def _verdicts(result: dict[str, Any]) -> str:
    """The plain-words verdicts compare wrote (one line per regularizer against the baseline), if any."""
    lines = [str(v) for v in result.get("verdicts") or []]
    return " ".join(lines)


def _reference_table(key: Optional[str]) -> str:
    """The notebooks' numbers of an experiment as a Markdown table ('' when there are none)."""
    ref = reference_results().get(key or "")
    if not ref:
        return ""
    columns = [("run", "run", ""), ("best_epoch", "best epoch", "{:.0f}"), ("best_val_loss", "best val loss", "{:.3f}"),
               ("last_val_loss", "val loss (last epoch)", "{:.3f}"), ("test_acc_best", "test acc (best)", "{:.3f}"),
               ("test_acc_last", "test acc (last)", "{:.3f}")]
    rows = [{"run": name, **values} for name, values in ref["runs"].items()]
    return f"Plain PyTorch loops, one seed ({ref['protocol']}):\n\n" + markdown(columns, rows)


def reproduce(out: str | Path, quick: bool = False, fixed: Optional[dict[str, Any]] = None,
              only: Sequence[str] = (), seeds: Optional[int] = None,
              log: Callable[[str], None] = print) -> dict[str, Path]:
    """Run the experiments (all, or those named in `only`) and write out/reproduce.html and out/reproduce.md."""
    out = Path(out)
    from lit_regularize.comparison import checked_out

    checked_out(out)
    chosen = [e for e in EXPERIMENTS if not only or e.name in only]
    unknown = sorted(set(only) - {e.name for e in EXPERIMENTS})
    if unknown:
        raise UserError(f"--only: unknown experiment {unknown[0]!r} (choose from "
                        f"{', '.join(e.name for e in EXPERIMENTS)})")
    n_seeds = seeds or (QUICK_SEEDS if quick else SEEDS)
    t0 = time.perf_counter()
    outcomes = []
    for i, exp in enumerate(chosen, 1):
        log(f"== [{i}/{len(chosen)}] {exp.title}")
        outcomes.append(run_experiment(exp, out, dict(fixed or {}), n_seeds, quick, log))
        log(f"   done in {outcomes[-1].seconds:.0f} s")
    minutes = (time.perf_counter() - t0) / 60
    header = (f"{len(chosen)} experiments, {n_seeds} seeds per setting{' (--quick)' if quick else ''}, "
              f"{minutes:.1f} min")
    md = markdown_page(outcomes, header, out)
    page = html_page(outcomes, header)
    written = {"markdown": atomic_write(out / "reproduce.md", lambda f: f.write(md.encode())),
               "html": atomic_write(out / "reproduce.html", lambda f: f.write(page.encode()))}
    return written


def markdown_page(outcomes: Sequence[Outcome], header: str, out: Path) -> str:
    """The Markdown twin: figures linked (relative to the page), tables as compare wrote them."""
    lines = ["# The notebooks' experiments, reproduced with seeds", "", header, ""]
    for o in outcomes:
        lines += [f"## {o.experiment.title}", "", f"*{o.experiment.question}*", ""]
        if o.summary:
            lines += [o.summary, ""]
        lines += [f"![{name}]({p.relative_to(out) if p.is_relative_to(out) else p})" for name, p in o.figures.items()]
        lines += ["", o.table, ""]
        if o.reference:
            lines += [o.reference, ""]
    return "\n".join(lines)


def html_page(outcomes: Sequence[Outcome], header: str) -> str:
    """One self-contained HTML page: figures embedded as data URIs, tables as HTML."""
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>lit_regularize: reproduce</title><style>",
             "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}",
             "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:4px 8px}",
             "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}.q{color:#555;font-style:italic}",
             "</style></head><body>", "<h1>The notebooks' experiments, reproduced with seeds</h1>",
             f"<p>{html.escape(header)}</p>"]
    for o in outcomes:
        parts += [f"<h2>{html.escape(o.experiment.title)}</h2>",
                  f"<p class='q'>{html.escape(o.experiment.question)}</p>"]
        if o.summary:
            parts.append(f"<p>{html.escape(o.summary)}</p>")
        for name, p in o.figures.items():
            data = base64.b64encode(p.read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
        parts.append(markdown_tables_html(o.table))
        if o.reference:
            parts.append(markdown_tables_html(o.reference))
    parts.append("</body></html>")
    return "\n".join(parts)


def markdown_tables_html(text: str) -> str:
    """Pipe tables and plain lines of Markdown as HTML (what compare writes; no Markdown library needed for that)."""
    out, rows = [], []

    def flush() -> None:
        if rows:
            head, *body = rows
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")
            rows.clear()
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            if not all(c and set(c) <= set("-: ") for c in cells):  # the |---|---| line under the header
                rows.append(cells)
            continue
        flush()
        if line.strip():
            out.append(f"<p>{html.escape(line.strip().lstrip('#').strip())}</p>")
    flush()
    return "\n".join(out)


__all__ = ["Experiment", "EXPERIMENTS", "reproduce", "run_experiment", "reference_results", "markdown_page",
           "html_page", "markdown_tables_html"]
