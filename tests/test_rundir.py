"""The run folder's one lifecycle (issue 9): resume reads and writes only DIR, reports the true best checkpoint,
refuses overrides that change the model or the data, claims version folders atomically, and every exit path
leaves a summary.json whose status matches the exit code."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import procs
from conftest import InterruptAt, flags, script_val_loss
from lit_regularize.cli import compare as compare_cli
from lit_regularize.cli import fit
from lit_regularize.config import make_config
from lit_regularize.errors import RunInterrupted, UserError
from lit_regularize.model import RegularizedMLP
from lit_regularize.rundir import RunDir
from lit_regularize.run import run

# A scripted validation curve whose minimum is in the middle (epoch 4), so best and last differ.
CURVE = [0.50, 0.30, 0.40, 0.20, 0.60, 0.70]


@pytest.fixture
def scripted_val_loss(monkeypatch):
    """val/loss follows CURVE by epoch."""
    script_val_loss(monkeypatch, CURVE)


def _over(quick: dict, **extra) -> dict:
    return {**quick, "max_epochs": 6, "early_stopping": False, **extra}


def test_resume_after_a_new_best_reports_the_true_best_checkpoint(quick, scripted_val_loss):
    cfg = make_config(_over(quick, name="cut"))
    with pytest.raises(RunInterrupted):
        run(cfg, extra_callbacks=[InterruptAt(2)])  # epoch 2 was a new best and the last saved epoch
    rundir = RunDir.latest(cfg.logdir, "cut")
    cut = json.loads((rundir.path / "summary.json").read_text())
    assert cut["status"] == "interrupted" and cut["exit_code"] == 130 and cut["best_epoch"] == 2
    t0 = time.perf_counter()
    s = run(cfg, resume=rundir)
    assert s.history["val_loss"] == pytest.approx(CURVE) and s.best_epoch == 4
    elapsed = time.perf_counter() - t0  # both sessions count in wall_time
    assert cut["wall_time"] + 0.9 * elapsed <= s.wall_time <= cut["wall_time"] + elapsed
    assert s.best_checkpoint == "checkpoints/best-epoch004.ckpt"
    assert sorted(p.name for p in rundir.checkpoint_dir.glob("best-*")) == ["best-epoch004.ckpt"]
    ckpt = torch.load(s.path(s.best_checkpoint), weights_only=True)
    assert ckpt["epoch"] + 1 == 4
    # test.best was computed on exactly those weights
    model = RegularizedMLP.load_from_checkpoint(s.path(s.best_checkpoint))
    last = RegularizedMLP.load_from_checkpoint(s.path(s.last_checkpoint))
    assert not torch.equal(model.net[0].weight, last.net[0].weight)
    assert s.test["best"] != s.test["last"]
    # resuming the finished run again with the same max_epochs: nothing to train, same answer
    again = run(cfg, resume=RunDir.open(rundir.path))
    assert again.best_epoch == 4 and again.best_checkpoint == s.best_checkpoint and again.status == "completed"


def test_an_old_run_folder_with_0_based_checkpoint_names_still_resumes_with_its_best_weights(quick,
                                                                                            scripted_val_loss):
    cfg = make_config(_over(quick, name="old"))
    with pytest.raises(RunInterrupted):
        run(cfg, extra_callbacks=[InterruptAt(2)])  # 2 epochs done, the best is epoch 2
    rundir = RunDir.latest(cfg.logdir, "old")
    ckpt_dir = rundir.checkpoint_dir
    # what an older version wrote: the best file named by Lightning's 0-based epoch, absolute summary paths
    (ckpt_dir / "best-epoch002.ckpt").rename(ckpt_dir / "best-epoch001.ckpt")
    last = torch.load(ckpt_dir / "last.ckpt", weights_only=True)

    def old_names(v):
        if isinstance(v, dict):
            return {old_names(k): old_names(x) for k, x in v.items()}
        return v.replace("best-epoch002", "best-epoch001") if isinstance(v, str) else v
    last["callbacks"] = old_names(last["callbacks"])
    torch.save(last, ckpt_dir / "last.ckpt")
    saved = json.loads((rundir.path / "summary.json").read_text())
    saved.update(best_checkpoint=str(ckpt_dir / "best-epoch001.ckpt"), last_checkpoint=str(ckpt_dir / "last.ckpt"))
    (rundir.path / "summary.json").write_text(json.dumps(saved))

    assert fit.main(["--resume", str(rundir.path), "--max-epochs", "3", "--no-progress"]) == 0  # epoch 3 is worse
    s = json.loads((rundir.path / "summary.json").read_text())
    assert s["status"] == "completed" and s["best_epoch"] == 2
    assert s["best_checkpoint"] == "checkpoints/best-epoch002.ckpt"  # kept, under its 1-based name
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["best-epoch002.ckpt", "last.ckpt"]
    assert torch.load(ckpt_dir / "best-epoch002.ckpt", weights_only=True)["epoch"] + 1 == 2
    assert s["test"]["best"] != s["test"]["last"]  # the best weights were tested, not the last ones again


def test_resume_of_a_copied_folder_reads_and_writes_only_the_copy(quick, tmp_path, monkeypatch):
    cfg = make_config(_over(quick, name="orig", max_epochs=2))
    s = run(cfg)
    copy = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(s.run_dir, copy)
    before = {p: p.read_bytes() for p in s.run_dir.rglob("*") if p.is_file()}
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert fit.main(["--resume", ".", "--max-epochs", "4"]) != 0  # "." is not the run folder itself here
    monkeypatch.chdir(copy)
    assert fit.main(["--resume", ".", "--max-epochs", "4", "--no-progress"]) == 0
    resumed = json.loads((copy / "summary.json").read_text())
    assert resumed["epochs_run"] == 4 and (copy / resumed["best_checkpoint"]).is_file()
    after = {p: p.read_bytes() for p in s.run_dir.rglob("*") if p.is_file()}
    assert after == before  # the original run was not touched


@pytest.mark.parametrize("override", [["--hidden", "16"], ["--train-size", "50"], ["--seed", "3"], ["--lr", "0.1"]])
def test_resume_refuses_overrides_that_change_model_or_data_before_writing(quick, override, capsys):
    s = run(make_config(_over(quick, name="keep", max_epochs=2)))
    before = {p: p.read_bytes() for p in s.run_dir.rglob("*") if p.is_file()}
    assert fit.main(["--resume", str(s.run_dir), *override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and override[0] in err[0]
    assert {p: p.read_bytes() for p in s.run_dir.rglob("*") if p.is_file()} == before


def test_resume_with_fewer_max_epochs_than_trained_is_one_line_and_writes_nothing(quick, capsys):
    s = run(make_config(_over(quick, name="fewer", max_epochs=3)))
    before = {p: p.read_bytes() for p in s.run_dir.rglob("*") if p.is_file()}
    assert fit.main(["--resume", str(s.run_dir), "--max-epochs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already trained 3 epochs" in err[0] and "--max-epochs 2" in err[0]
    assert {p: p.read_bytes() for p in s.run_dir.rglob("*") if p.is_file()} == before  # config.yaml kept 3


def test_resume_of_a_run_without_last_checkpoint_says_why(quick, capsys):
    s = run(make_config(_over(quick, name="lean", max_epochs=2)), save_last=False)  # as a sweep trial
    assert fit.main(["--resume", str(s.run_dir)]) == 2
    err = capsys.readouterr().err
    assert "finished 2 epoch(s)" in err and "first epoch" not in err


def test_resume_of_a_truncated_checkpoint_is_one_line(quick, capsys):
    s = run(make_config(_over(quick, name="trunc", max_epochs=1)))
    last = s.run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:100])
    assert fit.main(["--resume", str(s.run_dir)]) == 2
    assert "damaged" in capsys.readouterr().err


def test_version_folders_are_claimed_exclusively(tmp_path):
    claimed: list[Path] = []
    barrier = threading.Barrier(8)

    def claim():
        barrier.wait()
        claimed.append(RunDir.claim(tmp_path, "same").path)
    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in claimed) == [f"version_{k}" for k in range(8)]


def test_sigterm_during_the_test_phase_leaves_an_interrupted_summary(quick):
    class TermInTest(pl.Callback):
        def on_test_batch_start(self, *args):
            os.kill(os.getpid(), signal.SIGTERM)

    cfg = make_config(_over(quick, name="term", max_epochs=2))
    with pytest.raises(RunInterrupted):
        run(cfg, extra_callbacks=[TermInTest()])
    s = json.loads((RunDir.latest(cfg.logdir, "term").path / "summary.json").read_text())
    assert s["status"] == "interrupted" and s["stop_reason"] == "SIGTERM" and s["exit_code"] == 130
    assert s["epochs_run"] == 2 and s["test"] is None


def test_written_files_honour_the_umask(quick):
    old = os.umask(0o022)
    try:
        s = run(make_config(_over(quick, name="perm", max_epochs=1)))
    finally:
        os.umask(old)
    for p in (s.run_dir / "summary.json", s.run_dir / "config.yaml", s.run_dir / "checkpoints" / "last.ckpt"):
        assert p.stat().st_mode & 0o777 == 0o644, p


def test_batchnorm_trains_when_the_last_batch_has_one_example(quick):
    s = run(make_config(_over(quick, name="bn1", reg="batchnorm", train_size=161, max_epochs=1)))
    assert s.status == "completed" and s.epochs_run == 1


def _error(argv: list[str], logdir: Path, capsys) -> str:
    rc = fit.main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert not logdir.exists()
    return err


@pytest.mark.parametrize("extra,needle", [
    ({"seed": -1}, "--seed"), ({"seed": 4294967296}, "--seed"), ({"accelerator": "foo"}, "--accelerator"),
    ({"accelerator": "gpu"}, "--accelerator"), ({"strategy": "foo"}, "--strategy"), ({"devices": "0"}, "--devices"),
    ({"l1": "nan"}, "--l1"), ({"l2": "inf"}, "--l2"), ({"weight_decay": "nan"}, "--weight-decay"),
    ({"hflip": True}, "--hflip"), ({"augment": True}, "--augment"), ({"n_per_class": 5}, "--n-per-class"),
    ({"name": "../../escape"}, "--name"), ({"val_size": 240}, "--val-size"),
])
def test_bad_settings_are_one_line_before_any_folder(quick, extra, needle, capsys):
    if extra == {"accelerator": "gpu"} and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    err = _error(flags({**quick, **extra}), Path(quick["logdir"]), capsys)
    assert needle in err


def test_imdb_path_that_is_a_folder_or_a_broken_link_is_reported_and_kept(quick, tmp_path, capsys):
    d = tmp_path / "d1"
    (d / "imdb.npz").mkdir(parents=True)
    assert "not a file" in _error(flags({**quick, "data_dir": str(d)}), Path(quick["logdir"]), capsys)
    d2 = tmp_path / "d2"
    d2.mkdir()
    (d2 / "imdb.npz").symlink_to(d2 / "nowhere.npz")
    assert "broken symbolic link" in _error(flags({**quick, "data_dir": str(d2)}), Path(quick["logdir"]), capsys)
    assert (d2 / "imdb.npz").is_symlink()  # never deleted


def test_compare_out_that_is_a_file_is_one_line(tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("x")
    assert compare_cli.main(["imdb_capacity", "--out", str(out)]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_started_together_get_different_version_folders(quick, tmp_path):
    over = {**quick, "max_epochs": 1, "name": "race"}
    # three processes within milliseconds of each other (forkserver children: no imports to stagger them)
    children = [procs.start(["-m", "lit_regularize", "fit", *flags(over)]) for _ in range(3)]
    for c in children:
        assert c.wait(timeout=180) == 0, c.communicate()[1][-2000:]
    runs = sorted(p.name for p in (Path(quick["logdir"]) / "race").iterdir())
    assert runs == ["version_0", "version_1", "version_2"]
    for r in runs:
        assert json.loads((Path(quick["logdir"]) / "race" / r / "summary.json").read_text())["status"] == "completed"


def test_a_checkpoint_history_from_before_train_acc_resumes_with_the_epochs_it_lacks_unknown():
    from lit_regularize.callbacks import HISTORY_KEYS, History

    old = History()
    state = old.state_dict()
    state["history"] = {"epoch": [1, 2], "epoch_time": [0.1, 0.1], "train_loss": [0.6, 0.5],
                        "train_penalty": [None, None], "val_loss": [0.65, 0.6], "val_acc": [0.6, 0.7]}
    h = History()
    h.load_state_dict(state)
    assert set(HISTORY_KEYS) <= set(h.history) and h.history["train_acc"] == [None, None]
    assert h.history["val_loss"] == [0.65, 0.6]


# -- one process per run folder (issue 21) ------------------------------------------------------------------------

def _files(run_dir: Path) -> dict[Path, bytes]:
    """Every file of a run folder but the event files (which TensorBoard's writer thread may still be flushing)."""
    return {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and "tfevents" not in p.name}


def test_resume_of_a_run_that_is_still_running_is_one_line_and_changes_nothing(quick, capsys):
    over = _over(quick, name="busy", max_epochs=4, reg="dropout", deterministic=True)
    straight = run(make_config({**over, "name": "straight"}))
    seen = {}

    class ResumeFromOutside(pl.Callback):
        """In epoch 3 of the run, `fit --resume` of its own folder (last.ckpt of epoch 2 exists)."""

        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 2:
                run_dir = Path(trainer.logger.log_dir)
                before = _files(run_dir)
                seen["rc"] = fit.main(["--resume", str(run_dir), "--max-epochs", "6", "--no-progress"])
                seen["err"] = capsys.readouterr().err
                seen["unchanged"] = _files(run_dir) == before
    s = run(make_config(over), extra_callbacks=[ResumeFromOutside()])
    err = seen["err"].strip().splitlines()
    assert seen["rc"] == 2 and len(err) == 1 and err[0].startswith("error: "), seen["err"]
    assert str(s.run_dir) in err[0] and "in use" in err[0]
    assert seen["unchanged"]  # not even config.yaml (max_epochs 6) was written
    # the running run went on undisturbed: same curve as a run nobody touched (the refused resume did not even
    # reseed this process's RNG), one point per epoch in TensorBoard, no second best checkpoint
    assert s.status == "completed" and s.epochs_run == 4 and s.config["max_epochs"] == 4
    # a reseeded RNG changes epochs 3-4's dropout masks and shuffles: val/loss moves by far more than 1e-6
    assert s.history["val_loss"] == pytest.approx(straight.history["val_loss"], rel=1e-6)
    from test_faults import assert_epoch_steps_unique

    assert_epoch_steps_unique(s.run_dir, 4)
    assert sorted(p.name for p in s.run_dir.joinpath("checkpoints").iterdir()) == [
        Path(s.best_checkpoint).name, "last.ckpt"]
    # once it has ended, the folder resumes
    assert fit.main(["--resume", str(s.run_dir), "--max-epochs", "5", "--no-progress"]) == 0
    assert json.loads((s.run_dir / "summary.json").read_text())["epochs_run"] == 5


def test_the_run_folder_is_locked_while_the_run_lasts_and_released_on_every_way_out(quick):
    held = {}

    class Probe(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            other = RunDir(Path(trainer.logger.log_dir))
            try:
                other.lock()
                held["locked"] = False
                other.unlock()
            except UserError:
                held["locked"] = True
    cfg = make_config(_over(quick, name="lock", max_epochs=2))
    with pytest.raises(RunInterrupted):
        run(cfg, extra_callbacks=[Probe(), InterruptAt(1)])
    assert held["locked"]  # held by the run ...
    rundir = RunDir.latest(cfg.logdir, "lock")
    rundir.lock().unlock()  # ... and released when it was interrupted
    held.clear()
    run(cfg, resume=rundir, extra_callbacks=[Probe()])  # a resume holds it too
    assert held["locked"]
    rundir.lock().unlock()


@pytest.mark.slow
def test_a_killed_run_leaves_no_lock_behind(quick):
    s = run(make_config(_over(quick, name="crash", max_epochs=2)))
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from lit_regularize.rundir import RunDir; "
                               "RunDir(sys.argv[1]).lock(); print('locked', flush=True); time.sleep(600)",
                               str(s.run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = procs.start(["-m", "lit_regularize", "fit", "--resume", str(s.run_dir), "--max-epochs", "3"])
        _, err = busy.communicate(timeout=120)
        assert busy.returncode == 2 and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1 and str(s.run_dir) in err
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the OS drops the lock with the process
        holder.wait()
    assert fit.main(["--resume", str(s.run_dir), "--max-epochs", "3", "--no-progress"]) == 0


@pytest.mark.slow
def test_two_resumes_of_one_folder_at_once_one_trains_the_other_is_refused(quick):
    s = run(make_config(_over(quick, name="twice", max_epochs=1)))
    # started together (forkserver children, milliseconds apart, no imports to stagger them), both reach the
    # lock after the same few steps; 40 epochs (seconds of training, each writes a checkpoint) outlast that
    # difference by far, so the second always finds the first still training
    children = [procs.start(["-m", "lit_regularize", "fit", "--resume", str(s.run_dir), "--max-epochs", "40",
                             "--no-progress"]) for _ in range(2)]
    outs = [c.communicate(timeout=600) for c in children]
    codes = sorted(c.returncode for c in children)
    assert codes == [0, 2], outs
    refused = outs[[c.returncode for c in children].index(2)][1]
    assert len(refused.strip().splitlines()) == 1 and "in use" in refused and str(s.run_dir) in refused
    saved = json.loads((s.run_dir / "summary.json").read_text())
    assert saved["status"] == "completed" and saved["epochs_run"] == 40
    from test_faults import assert_epoch_steps_unique

    assert_epoch_steps_unique(s.run_dir, 40)
    assert sorted(p.name for p in (s.run_dir / "checkpoints").iterdir()) == [Path(saved["best_checkpoint"]).name,
                                                                             "last.ckpt"]


@pytest.mark.slow
@pytest.mark.xdist_group("ddp_run")  # one DDP launch (conftest.ddp_run) per worker that asks
def test_ddp_ranks_share_rank_0s_locked_folder_on_a_new_run_and_a_resume(ddp_run, tmp_path):
    first, logdir = ddp_run  # the new run: `fit --devices 2 --strategy ddp`, 3 epochs (shared with test_ddp)
    assert first.returncode == 0, first.stderr[-3000:]  # rank 1 used rank 0's locked folder, not refused
    assert sorted(p.name for p in (logdir / "ddp").iterdir()) == ["version_0"]
    shutil.copytree(logdir / "ddp", tmp_path / "logs" / "ddp")  # resumed here: the shared run stays as it was
    run_dir = tmp_path / "logs" / "ddp" / "version_0"
    ddp = ["--devices", "2", "--strategy", "ddp", "--accelerator", "cpu"]
    again = subprocess.run([sys.executable, "-m", "lit_regularize", "fit", "--resume", str(run_dir), "--max-epochs",
                            "4", *ddp], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]  # rank 1 joins rank 0's resume, not refused by its lock
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "completed" and s["epochs_run"] == 4
    assert sorted(p.name for p in (tmp_path / "logs" / "ddp").iterdir()) == ["version_0"]


# -- the best checkpoint gone ---------------------------------------------------------------------------------------

def test_resume_with_the_best_checkpoint_deleted_never_reports_the_last_weights_as_best(quick, scripted_val_loss,
                                                                                        capsys):
    cfg = make_config(_over(quick, name="nobest"))
    with pytest.raises(RunInterrupted):
        run(cfg, extra_callbacks=[InterruptAt(5)])  # 5 epochs done; the best is epoch 4
    rundir = RunDir.latest(cfg.logdir, "nobest")
    (rundir.checkpoint_dir / "best-epoch004.ckpt").unlink()
    capsys.readouterr()
    assert fit.main(["--resume", str(rundir.path), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    s = json.loads((rundir.path / "summary.json").read_text())
    assert s["status"] == "completed" and s["epochs_run"] == 6 and s["best_epoch"] == 4
    assert s["best_checkpoint"] is None and "best" not in s["test"] and "last" in s["test"]
    assert any("best-epoch004.ckpt" in n and "missing" in n for n in s["notes"])
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "best-epoch004.ckpt" in warnings[0]
    assert "test (best weights)" not in out and "test (last weights)" in out


def test_a_resumed_kfold_fold_still_never_looks_at_the_test_set(quick):
    # a new-user trial resumed an interrupted fold: it printed test scores and kept them in the fold's summary
    from conftest import no_val_size

    cfg = make_config({**no_val_size(quick), "kfold": 3, "max_epochs": 2}).replace(
        fold=1, name="kf/fold_1", early_stopping=False)
    first = run(cfg, evaluate_test=False)
    assert first.test is None
    again = run(cfg.replace(max_epochs=3), resume=RunDir.open(first.run_dir))
    assert again.epochs_run == 3 and again.test is None
