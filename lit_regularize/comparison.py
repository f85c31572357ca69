"""Comparison studies: run a named set of configs (or read finished runs) and write figures + a table.

A study YAML (configs/studies/<name>.yaml) names its runs; each run is a config file and/or inline settings:

    title: "IMDB: capacity"
    shared: {max_epochs: 20, early_stopping: false, seed: 7777}   # every run gets these
    runs:
      smaller: {config: ../imdb_smaller.yaml}                     # paths relative to the study file
      bigger:  {config: ../imdb_bigger.yaml, lr: 0.001}

Precedence: run's config file < shared < run's inline settings < fixed settings from the command line.
"""
from __future__ import annotations

import difflib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, Sequence

import yaml

from lit_regularize.config import (FIELDS, display_only, Config, available_studies, check_keys, configs_dir,
                                   load_yaml, make_config, preset_defaults)
from lit_regularize.errors import ConfigError, UserError
from lit_regularize.files import write_json
from lit_regularize.stats import (BASELINE, HELPS, HURTS, METRICS, NO_DIFF, Metric, describe, finite_values,
                                  overfitting, paired, paired_by_seed, verdict)
from lit_regularize.summary import RunSummary
from lit_regularize.tables import MISSING, csv_text, fmt, interval, markdown, mean_std, p_value, spread, write_text
from lit_regularize.writable import check_writable

if TYPE_CHECKING:
    from lit_regularize.rundir import RunDir

# Settings that decide which examples train and validate: they must not differ inside a study.
SPLIT_KEYS = ("data", "seed", "train_size", "val_size", "val_on_test", "n_per_class", "kfold", "fold")
STUDY_KEYS = ("population",)  # how the whole study trains: not a run's own setting
FIGURES = {"curves": "curves.png", "weights": "weights.png", "sparsity": "sparsity.png"}

Groups = dict[str, list[RunSummary]]  # label -> summaries (one per seed)


@dataclass(frozen=True)
class Study:
    """A named set of runs that differ only in the settings their members set."""

    name: str
    title: str
    path: Path
    members: dict[str, dict[str, Any]]  # label -> Config overrides (config file + shared + inline)


def _study_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise UserError(f"study file {str(p)!r} not found")
        return p
    p = configs_dir() / "studies" / f"{name_or_path}.yaml"
    if not p.is_file():
        names = available_studies()
        hint = difflib.get_close_matches(name_or_path, names, n=1)
        raise UserError(f"unknown study {name_or_path!r} (available: {', '.join(names)})"
                        + (f"; did you mean {hint[0]!r}?" if hint else ""))
    return p


def load_study(name_or_path: str) -> Study:
    """Read a study YAML (by name from configs/studies or by path) into resolved member overrides."""
    path = _study_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"study {path}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("runs"), dict) or not raw["runs"]:
        raise ConfigError(f"study {path}: needs a 'runs:' mapping of label -> settings")
    unknown = set(raw) - {"title", "shared", "runs", "description"}
    if unknown:
        raise ConfigError(f"study {path}: unknown key(s) {', '.join(sorted(unknown))} "
                          "(expected title, description, shared, runs)")
    shared = _settings(raw.get("shared") or {}, f"study {path}: shared")
    members: dict[str, dict[str, Any]] = {}
    for label, spec in raw["runs"].items():
        spec = dict(spec or {})
        base: dict[str, Any] = {}
        if "config" in spec:
            base = load_yaml(path.parent / str(spec.pop("config")))
            check_keys(base, f"study {path}: run {label!r} config")
            base.pop("name", None)  # the study names its runs
        members[str(label)] = {**base, **shared, **_settings(spec, f"study {path}: run {label!r}")}
    _check_runs(members, f"study {path}")
    return Study(name=path.stem, title=str(raw.get("title") or path.stem), path=path, members=members)


def _settings(mapping: Any, source: str) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: expected a mapping of settings")
    out = {str(k).replace("-", "_"): v for k, v in mapping.items()}
    check_keys(out, source)
    return out


def _check_runs(members: Mapping[str, Mapping[str, Any]], source: str) -> None:
    """A study's runs share the data split and leave the study's own settings (STUDY_KEYS) to the study."""
    for label, member in members.items():
        for key in STUDY_KEYS:
            if key in member:  # a run's own value would be ignored: the study trains its runs one way
                raise ConfigError(f"{source}: run {label!r} sets {key!r}, a setting of the whole study "
                                  f"(--{key.replace('_', '-')} on the command line, {key}= in compare())")
    for key in SPLIT_KEYS:
        values = {json.dumps(m.get(key)) for m in members.values()}
        if len(values) > 1:
            raise ConfigError(f"{source}: runs must share the data split, but {key!r} differs between them")


def varying_keys(members: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Settings whose value differs between a study's runs (what the study compares), with the presets applied:
    runs that differ in `reg` differ in the strengths their presets set (imdb_penalty's l1 / l2), too."""
    default_data, default_reg = FIELDS["data"].default, FIELDS["reg"].default
    resolved = [{**preset_defaults(str(m.get("data", default_data)), str(m.get("reg", default_reg))), **m}
                for m in members.values()]
    keys = set().union(*resolved) if resolved else set()
    return {k for k in keys if len({json.dumps(m.get(k), default=str) for m in resolved}) > 1}


def study_configs(study: Study, fixed: Mapping[str, Any], seeds: int,
                  logdir: str | Path) -> dict[str, list[Config]]:
    """label -> one Config per seed; runs of one seed share seed and split, logs go under logdir/<study>/."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    clash = sorted(varying_keys(study.members) & set(fixed))
    if clash:
        raise ConfigError(f"--{clash[0].replace('_', '-')}: study {study.name} compares runs that differ in "
                          f"this setting; a fixed value would make them identical")
    out: dict[str, list[Config]] = {}
    for label, member in study.members.items():
        merged = {**member, **fixed, "logdir": str(logdir)}
        base_seed = int(merged.get("seed", FIELDS["seed"].default))
        name = f"{study.name}/{label}"
        out[label] = [make_config({**merged, "seed": base_seed + i,
                                   "name": name + (f"/seed_{base_seed + i}" if seeds > 1 else "")},
                                  source=f"study {study.path} run {label!r}")
                      for i in range(seeds)]
    return out


# -- running and reading runs --------------------------------------------------------------------------------

def finished_run(cfg: Config) -> Optional[RunSummary]:
    """The summary of the newest completed earlier run with exactly this config (progress bars and DataLoader
    workers aside: they never change a result), if there is one."""
    return next((s for _, s in _earlier_runs(cfg, "completed")), None)


def interrupted_run(cfg: Config) -> Optional[tuple[RunDir, int]]:
    """The newest interrupted earlier run with exactly this config that can resume, and the epochs its last.ckpt
    holds (at least one), if there is one: a study run again trains on from there instead of from epoch 1."""
    from lit_regularize.rundir import RunDir

    for path, _ in _earlier_runs(cfg, "interrupted"):
        try:
            rundir = RunDir.open(path.parent)
        except (OSError, ValueError, TypeError, UserError):  # without a readable checkpoint: not resumable
            continue
        epochs = rundir.checkpointed_epochs()
        if epochs > 0:
            return rundir, epochs
    return None


def _earlier_runs(cfg: Config, status: str) -> Iterator[tuple[Path, RunSummary]]:
    """(summary.json, summary) of cfg's earlier runs with this status and exactly its config, newest first
    (version_10 before version_9 before version_2); unreadable summaries are passed over."""
    root = Path(cfg.logdir) / cfg.run_name
    want = _identity(json.loads(json.dumps(cfg.to_dict())))
    found = [p for p in root.glob("version_*/summary.json") if p.parent.name[len("version_"):].isdigit()]
    for path in sorted(found, key=lambda p: -int(p.parent.name[len("version_"):])):
        try:
            s = RunSummary.read(path)
        except (OSError, ValueError, TypeError):  # unreadable: neither reused nor resumed, the run is trained again
            continue
        if s.status == status and isinstance(s.config, dict) and _identity(s.config) == want:
            yield path, s


def _numbers(ks: Sequence[int]) -> str:
    """1-based run numbers for a log line, consecutive ones as a range: '1-8', '1-4, 9-12'."""
    parts: list[list[int]] = []
    for k in sorted(ks):
        if parts and k == parts[-1][-1] + 1:
            parts[-1].append(k)
        else:
            parts.append([k])
    return ", ".join(f"{p[0] + 1}-{p[-1] + 1}" if len(p) > 1 else str(p[0] + 1) for p in parts)


def _identity(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in display_only()}


def run_study(configs: Mapping[str, Sequence[Config]], rerun: bool = False,
              log: Callable[[str], None] = print) -> Groups:
    """run() every config (reusing completed runs with identical configs unless rerun, resuming interrupted ones
    from their last epoch); label -> summaries.

    Runs that share an architecture train together as populations (lit_regularize.population), at most
    `population` at once (the configs' setting; 1 = one at a time)."""
    from lit_regularize.errors import RunInterrupted

    try:
        return _run_study(configs, rerun, log)
    except RunInterrupted as e:  # the whole study carries on (a run's own --resume finishes that run only)
        again = "the same command without --rerun" if rerun else "the same command again"
        raise RunInterrupted(e.log_dir, e.reason, hint=f"run {again} to finish the study (finished runs are "
                             "reused, interrupted ones resume from their last epoch)") from None


def _run_study(configs: Mapping[str, Sequence[Config]], rerun: bool, log: Callable[[str], None]) -> Groups:
    from lit_regularize.callbacks import epoch_lines
    from lit_regularize.population import groups as populations, train_population
    from lit_regularize.population.train import is_member_checkpoint
    from lit_regularize.run import run

    flat = [(label, cfg) for label, cfgs in configs.items() for cfg in cfgs]
    total = len(flat)
    done: dict[int, RunSummary] = {}
    shown_models: set[str] = set()  # each distinct model's layer table is printed once, not once per run
    todo = []
    for k, (label, cfg) in enumerate(flat):
        s = None if rerun else finished_run(cfg)
        if s is not None:
            log(f"[{k + 1}/{total}] {cfg.run_name}: reusing {s.run_dir}")
            done[k] = s
        else:
            todo.append(k)
    resumes = {}
    for k in todo:
        found = None if rerun else interrupted_run(flat[k][1])
        if found is not None:
            resumes[k], epochs = found
            log(f"[{k + 1}/{total}] {flat[k][1].run_name}: resuming {resumes[k].path} after epoch {epochs}")
    # a single run's (Lightning's) last.ckpt resumes as a single run; a population member's joins a population
    alone = [k for k in todo if k in resumes and not is_member_checkpoint(resumes[k])]
    together = [k for k in todo if k not in alone]
    size = flat[0][1].population if flat else 0
    for ks in [[k] for k in alone] + [[together[i] for i in g]
                                      for g in populations([flat[k][1] for k in together], size)]:
        cfgs = [flat[k][1] for k in ks]
        if len(ks) == 1:
            log(f"[{ks[0] + 1}/{total}] {cfgs[0].run_name} (seed {cfgs[0].seed}): training up to "
                f"{cfgs[0].max_epochs} epochs ...")
        else:
            log(f"[{_numbers(ks)}/{total}] training {len(ks)} runs as one population, up to "
                f"{max(c.max_epochs for c in cfgs)} epochs ...")
        with epoch_lines(unless_silenced=True):  # fit's epoch lines (not sweeps, k-fold workers, bench)
            if len(ks) == 1:
                summaries = [run(cfgs[0], resume=resumes.get(ks[0]), shown_models=shown_models)]
            else:
                summaries = train_population(cfgs, [resumes.get(k) for k in ks], shown_models=shown_models)
        for k, cfg, s in zip(ks, cfgs, summaries):
            done[k] = s
            log(f"[{k + 1}/{total}] {cfg.run_name}: best epoch {s.best_epoch}, val/loss {fmt(s.best_val_loss)}, "
                f"{s.epochs_run} epochs, {s.wall_time:.1f} s")
    groups: Groups = {}
    for k, (label, _) in enumerate(flat):
        groups.setdefault(label, []).append(done[k])
    return groups


def _read_summary(path: Path) -> RunSummary:
    try:
        return RunSummary.read(path)
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"{path}: not a readable run summary.json ({type(e).__name__})") from None


def _label(summary: RunSummary) -> str:
    cfg = summary.config
    name = str(cfg.get("name") or make_config(cfg).run_name)
    parts = name.split("/")
    return "/".join(parts[:-1]) if len(parts) > 1 and parts[-1].startswith("seed_") else name


def read_runs(dirs: Sequence[str | Path]) -> Groups:
    """Summaries of finished runs under the given folders (a run, a k-fold folder or a tree of runs)."""
    groups: Groups = {}
    for d in map(Path, dirs):
        if not d.is_dir():
            raise UserError(f"--runs {d}: not a folder")
        found = [d / "summary.json"] if (d / "summary.json").is_file() else \
            sorted(d.rglob("summary.json"), key=lambda p: (len(p.parts), p))  # shallow first
        picked: list[Path] = []
        for p in found:  # a k-fold folder's summary stands for the fold runs beneath it
            if not any(q.parent in p.parents for q in picked):
                picked.append(p)
        summaries = [_read_summary(p) for p in sorted(picked)]
        summaries = [s for s in summaries if s.status == "completed"]
        if not summaries:
            raise UserError(f"--runs {d}: no completed run (summary.json) found there")
        for s in summaries:
            label = _label(s)
            if any(o.seed == s.seed for o in groups.get(label, [])):
                label = f"{label} ({s.run_dir.name})"  # a rerun of the same config and seed: keep it apart
            groups.setdefault(label, []).append(s)
    return groups


# -- the table -----------------------------------------------------------------------------------------------

def _last(values: Sequence[Any]) -> Optional[float]:
    return float(values[-1]) if values and isinstance(values[-1], (int, float)) else None


def run_row(label: str, s: RunSummary, weights: Optional[Mapping[str, float]] = None) -> dict[str, Any]:
    """One table row from a run's summary (and its weight statistics, when known); the overfitting numbers are the
    summary's own, or computed from its history by the same function (summaries written before they existed)."""
    h = s.history or {}
    test = s.test or {}
    best, last = test.get("best") or test.get("last") or {}, test.get("last") or {}
    numbers = s.overfitting if s.overfitting is not None else overfitting(h, s.best_epoch)
    row = {"run": label, "seed": s.seed, "epochs_run": s.epochs_run, "best_epoch": s.best_epoch,
           "best_val_loss": s.best_val_loss, "last_val_loss": _last(h.get("val_loss") or []),
           **{k: numbers.get(k) for k in ("gap_at_best", "gap_last", "onset_epoch", "gap_slope")},
           "test_acc_best": best.get("acc"), "test_acc_last": last.get("acc"),
           "test_loss_best": best.get("loss"), "test_loss_last": last.get("loss"),
           "n_params": s.n_params, "wall_time_s": s.wall_time, "log_dir": s.log_dir}
    row.update(weights or {})
    return row


# The best epoch is each seed's own (the epoch of its lowest val loss, whose weights are tested), averaged over
# seeds: the same number in this table, results.csv and the curves' stars.
MD_COLUMNS = [("epochs_run", "epochs run", "{:.1f}"),
              ("best_epoch", "best epoch (each seed's)", "{:.1f}"),
              ("best_val_loss", "best val loss", "{:.4f}"),
              ("last_val_loss", "val loss (last epoch)", "{:.4f}"),
              ("gap_at_best", "gap at best (val − train)", "{:+.4f}"),
              ("gap_last", "gap at last", "{:+.4f}"),
              ("onset_epoch", "overfitting onset (epoch)", "{:.1f}"),
              ("gap_slope", "gap growth / epoch", "{:+.4f}"),
              ("test_acc_best", "test acc (best ckpt)", "{:.4f}"),
              ("test_acc_last", "test acc (last)", "{:.4f}"),
              ("n_params", "params", "{:,.0f}"), ("wall_time_s", "wall time (s)", "{:.1f}"),
              ("mean_abs_w_first", "mean abs w (1st layer)", "{:.4f}"),
              ("near_zero_first", "abs w < 1e-3 (1st layer)", "{:.1%}")]


def _by_label(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["run"], []).append(r)
    return out


def _cell(values: Sequence[Any], spec: str) -> str:
    """mean ± std (the value alone when the seeds agree), and how many seeds had a value when not all did."""
    text = mean_std(values, spec)
    have = len(finite_values(values))
    return text + (f" ({have} of {len(values)})" if 0 < have < len(values) else "")


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per run label: the value, or mean ± std over seeds."""
    cells = [{"run": label, "seeds": str(len(mine)), **{k: _cell([r.get(k) for r in mine], spec)
                                                         for k, _, spec in MD_COLUMNS}}
             for label, mine in _by_label(rows).items()]
    columns = [("run", "run", ""), ("seeds", "seeds", "")] + [(k, title, "") for k, title, _ in MD_COLUMNS]
    return markdown(columns, cells)


def csv_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Every run (label × seed) as one CSV row, full precision."""
    return csv_text(rows)


# -- intervals, paired tests, verdicts (results.csv) ---------------------------------------------------------

RESULT_FIELDS = ["setting", "metric", "better", "n", "mean", "std", "ci95_low", "ci95_high", "baseline", "n_paired",
                 "diff_vs_baseline", "diff_ci95_low", "diff_ci95_high", "p_value", "p_wilcoxon", "verdict",
                 "verdict_text"]


def choose_baseline(labels: Sequence[str], baseline: Optional[str] = None) -> str:
    """The run every other is compared with: `baseline` (checked), else the one named `none` (a label ending in
    '/none' or '_none' for --runs), else the first."""
    labels = list(labels)
    if baseline is not None:
        if baseline not in labels:
            lower = {label.lower(): label for label in labels}
            hint = [lower[h] for h in difflib.get_close_matches(baseline.lower(), list(lower), n=1)]
            raise UserError(f"--baseline {baseline}: not a run of this comparison (runs: {', '.join(labels)})"
                            + (f"; did you mean {hint[0]!r}?" if hint else ""))
        return baseline
    for label in labels:
        if label == "none" or label.endswith(("/none", "_none")):
            return label
    return labels[0]


def _seed_map(rows: Sequence[Mapping[str, Any]], key: str) -> dict[Any, Any]:
    """seed -> value of key (runs without a seed keyed by their position)."""
    return {(r.get("seed") if r.get("seed") is not None else f"#{i}"): r.get(key) for i, r in enumerate(rows)}


def result_row(metric: Metric, label: str, mine: Sequence[Mapping[str, Any]], baseline: str,
               base: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One setting × metric: spread over seeds and, unless it is the baseline, the paired comparison with it."""
    spread = describe([r.get(metric.key) for r in mine])
    row: dict[str, Any] = {"setting": label, "metric": metric.key, "better": metric.better or "", "n": spread.n,
                           "mean": spread.mean, "std": spread.std, "ci95_low": spread.low, "ci95_high": spread.high,
                           "baseline": baseline}
    if label == baseline:
        return {**row, "verdict": BASELINE, "verdict_text": "the baseline the others are compared with"}
    values, base_values = paired_by_seed(_seed_map(mine, metric.key), _seed_map(base, metric.key))
    p = paired(values, base_values)
    word, text = verdict(metric, p)
    return {**row, "n_paired": p.n, "diff_vs_baseline": p.diff, "diff_ci95_low": p.low, "diff_ci95_high": p.high,
            "p_value": p.p_t, "p_wilcoxon": p.p_wilcoxon, "verdict": word, "verdict_text": text}


def results(rows: Sequence[Mapping[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """Per metric (stats.METRICS) and setting: n, mean, std, 95 % CI, and the paired comparison with the baseline
    over the seeds both ran (difference, its 95 % CI, paired t p, Wilcoxon p from 6 pairs, verdict)."""
    groups = _by_label(rows)
    base = groups.get(baseline, [])
    return [result_row(metric, label, mine, baseline, base) for metric in METRICS for label, mine in groups.items()]


DIRECTION = {"lower": "lower is better", "higher": "higher is better", "": "neither direction is better"}
GLANCE = {HELPS: "helps", HURTS: "hurts", NO_DIFF: "≈", BASELINE: "baseline"}


def results_markdown(res: Sequence[Mapping[str, Any]], baseline: str) -> str:
    """The verdicts at a glance, then one table per metric: mean ± std, 95 % CI, Δ vs the baseline with its 95 %
    CI, p-values and the verdict; a note instead when no setting has two seeds."""
    if max((r.get("n") or 0 for r in res), default=0) < 2:
        return ("One seed per setting: no intervals or paired tests (run with --seeds 2 or more; "
                "5 or more for verdicts worth reading).\n")
    parts = [f"### Against the baseline `{baseline}`\n",
             f"Mean over seeds with its 95 % confidence interval (t); Δ = setting − {baseline} on the same seeds, "
             "with its 95 % CI and the paired t test's p (Wilcoxon signed-rank p from 6 pairs); verdict from Δ's "
             "interval: it excludes 0 in the better direction (helps), the worse one (hurts), or includes 0 "
             "(≈ no detectable difference). Each metric is tested on its own (no correction for testing many).\n",
             _glance(res, baseline)]
    wilcoxon = any(r.get("p_wilcoxon") is not None for r in res)
    for metric in METRICS:
        mine = [r for r in res if r["metric"] == metric.key]
        if all(not r["n"] for r in mine):  # e.g. no test set, or no validation
            continue
        parts.append(f"#### {metric.title} ({DIRECTION[metric.better or '']}; {metric.note or metric.title})\n")
        parts.append(markdown(_metric_columns(baseline, wilcoxon), [_metric_cells(r, metric.spec) for r in mine]))
    return "\n".join(parts)


def _glance(res: Sequence[Mapping[str, Any]], baseline: str) -> str:
    """Settings × metrics, each cell the verdict word."""
    settings = list(dict.fromkeys(r["setting"] for r in res if r["setting"] != baseline))
    word = {(r["setting"], r["metric"]): GLANCE.get(r["verdict"], r["verdict"]) for r in res}
    columns = [("setting", f"vs {baseline}", "")] + [(m.key, m.title, "") for m in METRICS]
    cells = [{"setting": s, **{m.key: word.get((s, m.key), MISSING) for m in METRICS}} for s in settings]
    return "#### Verdicts at a glance (≈: no detectable difference)\n\n" + markdown(columns, cells)


def _metric_columns(baseline: str, wilcoxon: bool) -> list[tuple[str, str, str]]:
    cols = [("setting", "setting", ""), ("n", "n", ""), ("mean", "mean ± std", ""), ("ci", "95 % CI", ""),
            ("diff", f"Δ vs {baseline}", ""), ("diff_ci", "Δ 95 % CI", ""), ("p", "p (paired t)", "")]
    return cols + ([("pw", "p (Wilcoxon)", "")] if wilcoxon else []) + [("verdict", "verdict", "")]


def _metric_cells(r: Mapping[str, Any], spec: str) -> dict[str, str]:
    signed = spec.replace("{:", "{:+", 1)
    mean = fmt(r["mean"], spec)
    if r.get("std") not in (None, 0.0):
        mean += f" ± {spread(r['std'], spec)}"
    return {"setting": r["setting"], "n": str(r["n"]), "mean": mean,
            "ci": interval(r.get("ci95_low"), r.get("ci95_high"), spec),
            "diff": fmt(r.get("diff_vs_baseline"), signed),
            "diff_ci": interval(r.get("diff_ci95_low"), r.get("diff_ci95_high"), signed),
            "p": p_value(r.get("p_value")), "pw": p_value(r.get("p_wilcoxon")), "verdict": r["verdict"]}


# -- the whole comparison ------------------------------------------------------------------------------------

def _run_weights(groups: Groups) -> dict[int, list]:
    """id(summary) -> that run's Linear weights (best checkpoint, else last), for the runs that have either."""
    from lit_regularize.plots import checkpoint_weights

    out = {}
    for summaries in groups.values():
        for s in summaries:
            ckpt = s.path(s.best_checkpoint or s.last_checkpoint)
            if ckpt is not None and ckpt.is_file():
                out[id(s)] = checkpoint_weights(ckpt)
    return out


def _figures(groups: Groups, run_weights: Mapping[int, list], title: str) -> dict[str, Any]:
    """Curves of every run and seed; weights and sparsity of every seed that has weights (all named in titles)."""
    from lit_regularize.plots import curves_figure, sparsity_figure, weight_stats, weights_figure

    seeds = {k: [s.seed for s in v] for k, v in groups.items()}
    figures = {"curves": curves_figure({k: [s.history for s in v] for k, v in groups.items()}, title,
                                       seeds=seeds)}
    with_weights = {k: [s for s in v if id(s) in run_weights] for k, v in groups.items()}
    with_weights = {k: v for k, v in with_weights.items() if v}
    if with_weights:
        which = "best checkpoints (last weights where a run has none)"
        weights = {k: [run_weights[id(s)] for s in v] for k, v in with_weights.items()}
        shown = {k: [s.seed for s in v] for k, v in with_weights.items()}
        figures["weights"] = weights_figure(weights, which=which, seeds=shown)
        figures["sparsity"] = sparsity_figure({k: [weight_stats(w) for w in v] for k, v in weights.items()},
                                              which=which, seeds=shown)
    return figures


def report(groups: Groups, out: str | Path, title: str = "", baseline: Optional[str] = None) -> dict[str, Any]:
    """Write curves/weights/sparsity PNGs, table.csv/.md, results.csv and comparison.json into out; log figures
    to TB. The table is one row per run and seed; results.csv one row per setting and metric, against the
    baseline (choose_baseline)."""
    from lit_regularize.plots import log_figures, render, save_figure, weight_stats

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    base = choose_baseline(list(groups), baseline)
    run_weights = _run_weights(groups)
    rows = [run_row(label, s, weight_stats(run_weights[id(s)]) if id(s) in run_weights else None)
            for label, summaries in groups.items() for s in summaries]
    res = results(rows, base)
    figures = _figures(groups, run_weights, title)
    images = {k: render(fig) for k, fig in figures.items()}  # each figure drawn once, for the PNG and TensorBoard
    paths = {k: str(save_figure(image, out / FIGURES[k])) for k, image in images.items()}
    md = markdown_table(rows) + "\n" + results_markdown(res, base)
    write_text(out / "table.csv", csv_table(rows))
    write_text(out / "results.csv", csv_text(res, RESULT_FIELDS))
    write_text(out / "table.md", (f"## {title}\n\n" if title else "") + md)
    # a compare into the same --out redraws its figures: one set of images, not one per call
    log_figures(out / "logs" / "figures", {f"compare/{k}": image for k, image in images.items()}, replace=True)
    result = {"title": title, "figures": paths, "table_csv": str(out / "table.csv"),
              "table_md": str(out / "table.md"), "results_csv": str(out / "results.csv"), "baseline": base,
              "rows": rows, "results": res, "markdown": md,
              "runs": {k: [s.log_dir for s in v] for k, v in groups.items()}}
    write_json(out / "comparison.json", result)
    return result


def compare(study: Optional[str] = None, runs: Sequence[str | Path] = (), out: str | Path = "compare",
            fixed: Optional[Mapping[str, Any]] = None, seeds: int = 1, rerun: bool = False,
            log: Callable[[str], None] = print, baseline: Optional[str] = None) -> dict[str, Any]:
    """Run a study (runs logged under out/logs) or read finished runs, then write the report into out."""
    if bool(study) == bool(runs):
        raise UserError("give a study name or --runs DIR..., not both")
    if runs and fixed:
        flag = "--" + next(iter(fixed)).replace("_", "-")
        raise UserError(f"{flag}: settings apply to a study's runs, not to --runs")
    if study:
        return compare_study(load_study(study), out, fixed, seeds, rerun, log, baseline)
    out = checked_out(out)
    groups = read_runs(runs)
    choose_baseline(list(groups), baseline)  # a wrong --baseline before anything is drawn
    title = "comparison of " + ", ".join(groups)
    data = datasets(groups)
    if len(data) > 1:  # one table and one figure of losses on different data: say so, and in the title
        print(f"warning: --runs mix datasets ({', '.join(data)}): their losses and accuracies are not "
              "comparable across datasets", file=sys.stderr)
        title += f" [data: {', '.join(data)}]"
    return report(groups, out, title, baseline)


def compare_study(study: Study, out: str | Path = "compare", fixed: Optional[Mapping[str, Any]] = None,
                  seeds: int = 1, rerun: bool = False, log: Callable[[str], None] = print,
                  baseline: Optional[str] = None) -> dict[str, Any]:
    """Run every member of a study over `seeds` seeds (logged under out/logs) and write the report into out."""
    choose_baseline(list(study.members), baseline)  # checked before any run trains
    out = checked_out(out)
    groups = run_study(study_configs(study, dict(fixed or {}), seeds, out / "logs"), rerun, log)
    title = study.title
    data = datasets(groups)
    if any(m.get("data", FIELDS["data"].default) not in data for m in study.members.values()):  # --data fashion_mnist
        title += f" [data: {', '.join(data)}]"
    return report(groups, out, title, baseline)


def checked_out(out: str | Path) -> Path:
    """--out as a folder that can be written, checked before any run trains (the report goes there at the end)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    check_writable(out, "--out")
    return out


def study_from_members(name: str, members: Mapping[str, Mapping[str, Any]], title: str = "") -> Study:
    """A study given as label -> settings (the Python API's `compare({...})`), checked like a study YAML."""
    if not members:
        raise ConfigError("a comparison needs at least one run (label -> settings)")
    resolved = {str(label): _settings(dict(spec or {}), f"compare(): run {label!r}") for label, spec in members.items()}
    _check_runs(resolved, "compare()")
    return Study(name=name, title=title or f"{name}: {' / '.join(resolved)}", path=Path("compare()"),
                 members=resolved)


def datasets(groups: Groups) -> list[str]:
    """The --data of every run compared, sorted, each once."""
    return sorted({str((s.config or {}).get("data")) for runs in groups.values() for s in runs})


__all__ = ["compare_study", "study_from_members", "checked_out", "Study", "load_study",
           "study_configs", "varying_keys", "run_study", "read_runs", "run_row", "markdown_table", "csv_table",
           "choose_baseline", "result_row", "results", "results_markdown", "RESULT_FIELDS", "report", "compare",
           "datasets"]
