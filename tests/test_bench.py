"""`lit-regularize bench` (scripts/bench.py) on tiny data with stand-in peers: every section runs end to end and
reports min/median; sections are selectable; bad input is one line. No timing is asserted (benchmarks are scripts)."""
from __future__ import annotations

import json
import sys

import pytest

from lit_regularize import bench
from lit_regularize.bench import cli, sweep

FAKE_PEERS = '''
import numpy as np
def load(path):
    d = np.load(path, allow_pickle=True)
    return list(d["x_train"]), d["y_train"].astype("float32")
def lean_sparse(seqs, y, h, epochs):
    return [0.5] * epochs, 0.7
def keras_fit(seqs, y, h, epochs):
    return [1.0, 2.0][:epochs] + [1.0] * max(0, epochs - 2), 0.6
VARIANTS = {"lean_sparse": lean_sparse, "keras_fit": keras_fit}
'''

# peers_sweep.py's interface: NPZ --n-trials N --epochs E --jobs J --json, one JSON line at the end
FAKE_PEERS_SWEEP = '''
import argparse, json
ap = argparse.ArgumentParser()
ap.add_argument("npz"); ap.add_argument("--n-trials", type=int); ap.add_argument("--epochs", type=int)
ap.add_argument("--jobs", type=int); ap.add_argument("--json", action="store_true")
a = ap.parse_args()
assert a.json and a.npz.endswith("imdb.npz")
print("some chatter")
print(json.dumps({"variant": "optuna_example", "n_trials": a.n_trials, "epochs_trained": a.n_trials * a.epochs - 1,
                  "complete": a.n_trials - 1, "pruned": 1, "load_s": 0.1, "wall_s": 36.0 / a.jobs,
                  "trials_per_hour": 0, "epochs_per_hour": 0, "best_val_loss": 0.5, "epochs": a.epochs}))
'''

TINY_IMDB = {"val_size": 60, "batch_size": 32, "num_words": 40}


@pytest.fixture
def peers(tmp_path):
    (tmp_path / "peers.py").write_text(FAKE_PEERS)
    (tmp_path / "peers_sweep.py").write_text(FAKE_PEERS_SWEEP)
    return tmp_path


@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_imdb_section_reports_every_variant_with_ratios(imdb_dir, peers, capsys, monkeypatch):
    monkeypatch.setattr("lit_regularize.bench.imdb.BENCH_SPLIT", TINY_IMDB)
    monkeypatch.setattr("lit_regularize.bench.imdb.RSS_FIT_ARGS", ["--val-size", "60", "--num-words", "40"])
    rc = bench.main(["imdb", "--data-dir", str(imdb_dir), "--peers", str(peers / "peers.py"), "--hidden", "4",
                     "--epochs", "2", "--json", "--imdb-variants", "lit_sparse", "lit_dense", "lean_sparse",
                     "keras_fit"])
    assert rc == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert set(out) == {"machine", "imdb"}  # only the section asked for
    assert "imdb: timing lit_sparse h=4" in captured.err  # progress goes to stderr with --json
    rows = {r["variant"]: r for r in out["imdb"]["rows"]}
    assert set(rows) == {"lit_sparse", "lit_dense", "lean_sparse", "keras_fit"}
    assert rows["keras_fit"]["min_epoch_s"] == 1.0 and rows["keras_fit"]["median_epoch_s"] == 1.5
    assert rows["keras_fit"]["vs_lean_sparse"] == 2.0
    lit = rows["lit_sparse"]
    assert len(lit["epoch_s"]) == 2 and 0 < lit["min_epoch_s"] <= lit["median_epoch_s"]
    assert abs(lit["vs_keras_fit"] - lit["min_epoch_s"] / 1.0) < 1e-9
    assert abs(lit["vs_keras_fit_median"] - lit["median_epoch_s"] / 1.5) < 1e-9
    assert out["imdb"]["peak_rss_mb"] > 50


@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_lit_epochs_are_timed_start_to_start_so_checkpoint_writes_count(quick, monkeypatch):
    """history["epoch_time"] ends before Lightning's checkpoint callbacks; the bench's clock must not."""
    import time

    from lit_regularize.bench.clock import EpochClock
    from lit_regularize.config import make_config
    from lit_regularize.run import run
    from lit_regularize.trainer import AtomicCheckpointIO

    write = AtomicCheckpointIO.save_checkpoint

    def slow_write(self, *args, **kwargs):
        time.sleep(0.3)
        write(self, *args, **kwargs)
    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", slow_write)
    clock = EpochClock()
    summary = run(make_config(quick), extra_callbacks=[clock])
    assert len(clock.times) == len(summary.history["epoch_time"]) == quick["max_epochs"]
    # every epoch writes last.ckpt (and best on the first); the final epoch's write counts too
    assert all(t >= 0.3 for t in clock.times)
    assert all(c > h + 0.25 for c, h in zip(clock.times, summary.history["epoch_time"]))


def test_mnist_section_times_lit_loop_and_notebook_variants(mnist_dir, capsys):
    rc = bench.main(["mnist", "--data-dir", str(mnist_dir), "--n-per-class", "3", "--mnist-epochs", "2", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["variant"]: r for r in out["mnist"]["rows"]}
    assert set(rows) == {"lit_plain", "lit_augment", "plain", "batched", "batched_chunk", "notebook"}
    for r in rows.values():
        assert r["images"] == 30 and len(r["epoch_s"]) == 2 and 0 < r["min_epoch_s"] <= r["median_epoch_s"]
    assert rows["plain"]["vs_plain"] == 1.0 and rows["lit_plain"]["vs_plain"] == 1.0
    assert rows["lit_augment"]["vs_plain"] == rows["lit_augment"]["median_epoch_s"] / rows["lit_plain"][
        "median_epoch_s"]


@pytest.mark.slow  # sweep and peer subprocesses
def test_sweep_section_runs_lit_sweep_and_the_peer_and_counts_epochs(imdb_dir, peers, capsys, monkeypatch):
    monkeypatch.setattr(sweep, "SWEEP_ARGS", [*sweep.SWEEP_ARGS, "--val-size", "60", "--batch-size", "32",
                                              "--num-words", "40"])
    rc = bench.main(["sweep", "--data-dir", str(imdb_dir), "--peers-sweep", str(peers / "peers_sweep.py"),
                     "--workers", "1", "--n-trials", "3", "--sweep-epochs", "2"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "sweep: lit-regularize sweep, 1 worker(s), 3 trials x 2 epochs" in out
    assert "lit w1: trial    0" in out and "peer j1: {" in out  # the subprocesses' result lines as progress
    assert "some chatter" not in out
    assert "### Sweep throughput" in out and "| lit_sweep | 1 | 3 |" in out
    assert "| optuna_example | 1 | 3 | 1 | 5 | 36.0 | 36.0 | 300 | 500 |" in out


def test_study_stats_count_pruned_epochs_and_the_study_wall(tmp_path):
    import datetime

    import optuna

    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    t0 = datetime.datetime(2026, 1, 1)
    for i, (state, epochs) in enumerate([(optuna.trial.TrialState.COMPLETE, 4),
                                         (optuna.trial.TrialState.PRUNED, 2)]):
        study.add_trial(optuna.trial.FrozenTrial(
            number=i, trial_id=i, state=state, value=0.3 + i if state.name == "COMPLETE" else None,
            values=None, datetime_start=t0 + datetime.timedelta(seconds=10 * i),
            datetime_complete=t0 + datetime.timedelta(seconds=10 * i + 8), params={}, distributions={},
            user_attrs={"epochs_run": epochs}, system_attrs={},
            intermediate_values={e: 0.5 for e in range(1, epochs + 1)}))
    s = sweep.study_stats(storage, "s")
    assert (s["n_trials"], s["pruned"], s["complete"], s["epochs_trained"]) == (2, 1, 1, 6)
    assert s["wall_s"] == 18.0 and s["trial_s"] == [8.0, 8.0] and s["best_val_loss"] == 0.3
    row = sweep.row("lit_sweep", 2, [s, {**s, "wall_s": 36.0}])
    assert (row["min_wall_s"], row["median_wall_s"]) == (18.0, 27.0)
    assert row["trials_per_hour"] == (400 + 200) / 2 and row["epochs_per_hour"] == (1200 + 600) / 2


def test_all_sections_by_default_in_one_json_and_one_markdown_report(tmp_path, capsys, monkeypatch):
    (tmp_path / "imdb.npz").write_bytes(b"")
    (tmp_path / "FashionMNIST" / "raw").mkdir(parents=True)
    (tmp_path / "peers.py").write_text(FAKE_PEERS)
    (tmp_path / "peers_sweep.py").write_text(FAKE_PEERS_SWEEP)
    calls = []

    def fake(section, row):
        def run(*args, **kwargs):
            calls.append(section)
            return {"rows": [row], **({"peak_rss_mb": 123.0} if section == "imdb" else {})}
        return run
    monkeypatch.setattr(cli.imdb, "bench", fake("imdb", {"variant": "lit_sparse", "hidden": 16, "min_epoch_s": 0.1,
                                                          "median_epoch_s": 0.2}))
    monkeypatch.setattr(cli.mnist, "bench", fake("mnist", {"variant": "notebook", "images": 10000,
                                                            "min_epoch_s": 1.0, "median_epoch_s": 1.1}))
    monkeypatch.setattr(cli.sweep, "bench", fake("sweep", {"variant": "lit_sweep", "workers": 2, "n_trials": 24,
                                                            "epochs_per_hour": 1000.0}))
    monkeypatch.setattr(cli.population, "bench", fake("population", {"workload": "fit --kfold 5", "mode": "population",
                                                                      "median_wall_s": 10.0, "speedup": 2.5}))
    common = ["--data-dir", str(tmp_path), "--peers", str(tmp_path / "peers.py"),
              "--peers-sweep", str(tmp_path / "peers_sweep.py")]
    assert bench.main(common + ["--json"]) == 0
    assert calls == ["imdb", "mnist", "sweep", "population"]
    assert set(json.loads(capsys.readouterr().out)) == {"machine", "imdb", "mnist", "sweep", "population"}
    assert bench.main(["sweep", "imdb"] + common) == 0  # in the fixed order, whatever order they are named in
    assert calls[4:] == ["imdb", "sweep"]
    out = capsys.readouterr().out
    assert out.index("### IMDB") < out.index("### Sweep") and "### Fashion-MNIST" not in out
    assert "| lit_sparse | 16 | 0.100 | 0.200 |" in out and "123 MB" in out
    assert "| lit_sweep | 2 | 24 |" in out and "| 1000 |" in out
    assert bench.main(["population"] + common) == 0
    assert "### Populations" in (out := capsys.readouterr().out) and "| fit --kfold 5 | population |" in out
    assert "2.50x" in out


def test_population_section_runs_each_workload_both_ways_and_reports_the_speedup(tmp_path, monkeypatch):
    from lit_regularize.bench import population

    (tmp_path / "imdb.npz").write_bytes(b"")
    commands = []

    def timed(cmd):
        commands.append(cmd)
        return 10.0 if "--no-population" in cmd or "1" == cmd[cmd.index("--population") + 1 if "--population" in cmd
                                                                 else 0] else 4.0
    monkeypatch.setattr(population, "_timed", timed)
    monkeypatch.setattr(population, "study_stats", lambda storage, name: {
        "n_trials": 8, "wall_s": 40.0 if name.startswith("pop1_") else 16.0})
    rows = population.bench(str(tmp_path), seeds=2, epochs=3, kfold=3, n_trials=8, size=4, sweep_epochs=2,
                            progress=lambda s: None)["rows"]
    assert [r["mode"] for r in rows] == ["population", "one at a time"] * 3
    assert [r["speedup"] for r in rows[::2]] == [2.5, 2.5, 2.5]
    assert sum("--no-population" in c for c in commands) == 2  # compare and k-fold, once each way
    sweeps = [c for c in commands if "sweep" in c]
    assert [c[c.index("--population") + 1] for c in sweeps] == ["4", "1"]
    assert all("--hidden" in c and c[c.index("--hidden") + 1] == "16" for c in commands)


@pytest.mark.parametrize("args, message", [
    (["nope"], "unknown section 'nope'"),
    (["imdb", "--imdb-variants", "nope"], "unknown IMDB variant 'nope'"),
    (["mnist", "--mnist-variants", "nope"], "unknown MNIST variant 'nope'"),
    (["sweep", "--n-trials", "0"], "--n-trials must be >= 1"),
    (["sweep", "--peers-sweep", "/no/such.py"], "--peers-sweep: no such file"),
])
def test_bad_input_is_one_line_before_anything_runs(imdb_dir, mnist_dir, peers, capsys, args, message):
    # imdb_dir and mnist_dir share one folder: imdb.npz and FashionMNIST/raw are both there
    rc = bench.main(args + ["--data-dir", str(imdb_dir), "--peers", str(peers / "peers.py"),
                            *([] if "--peers-sweep" in args else ["--peers-sweep", str(peers / "peers_sweep.py")])])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_scripts_bench_is_the_bench_command():
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]  # this checkout's package, not another installed copy
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, str(root / "scripts" / "bench.py"), "--help"], capture_output=True,
                         text=True, check=True, env=env)
    assert "imdb | mnist | sweep" in out.stdout and "Examples:" in out.stdout
