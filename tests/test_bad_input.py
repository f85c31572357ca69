"""Bad input fails early: one `error: ...` line naming the file or flag, exit code 2, no traceback, no run folder.

Most cases call scripts/fit.py's main in-process (fast); a few real subprocesses check the exit code and that
stderr carries no traceback, and that a real bug still shows one. See tests/README.md for the fault table.
"""
from __future__ import annotations

import hashlib
import inspect
import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from conftest import ROOT
from synthetic import idx_bytes, write_imdb, write_mnist
from conftest import flags, no_val_size, quick_settings
from lit_regularize.data import imdb as imdb_mod
from lit_regularize.data.imdb import IMDB_ORIGIN, IMDB_SHA256, fetch_imdb

from lit_regularize.cli import fit  # noqa: E402


@pytest.fixture
def base(tmp_path, quick):
    """fit.py flags for a quick IMDB run; data_dir/logdir are replaced per case."""
    return {**quick, "max_epochs": 1}


def expect_error(argv: list[str], logdir: str | Path, capsys) -> str:
    """fit.main(argv) returns 2 with exactly one 'error:' line on stderr and writes no run folder."""
    rc = fit.main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert not Path(logdir).exists(), "a run folder was written for bad input"
    return lines[0]


# -- IMDB npz files ---------------------------------------------------------------------------------------

def ragged(*rows: list[int]) -> np.ndarray:
    """An object array of word-id lists, as keras stores reviews."""
    out = np.empty(len(rows), dtype=object)
    out[:] = [list(r) for r in rows]
    return out


GOOD_X = ragged([1, 2], [3], [4, 5, 6])
GOOD_Y = np.array([0, 1, 1])


def npz_writer(**arrays: np.ndarray) -> Callable[[Path], None]:
    """Write an npz with these arrays (test arrays fill the keys not given, unless given as None)."""
    full = {"x_train": GOOD_X, "y_train": GOOD_Y, "x_test": GOOD_X, "y_test": GOOD_Y, **arrays}
    return lambda path: np.savez(path, **{k: v for k, v in full.items() if v is not None})


def truncated(path: Path) -> None:
    write_imdb(path.parent)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def bad_member(path: Path) -> None:
    """A proper zip archive whose x_train.npy is garbage."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x_train.npy", b"\x93NUMPY garbage that is not an array header")
        for key in ("y_train", "x_test", "y_test"):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, GOOD_X if key == "x_test" else GOOD_Y)
            z.writestr(f"{key}.npy", buf.getvalue())


class TouchOnUnpickle:
    """Unpickling this creates a file: evidence that a data file was unpickled."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return Path.touch, (self.target,)


def raw_pickle(path: Path) -> None:
    """A pickle, not an npz: must be refused without being unpickled."""
    path.write_bytes(pickle.dumps({"x_train": TouchOnUnpickle(path.parent / "unpickled")}))


IMDB_CASES = {
    "not a zip": (lambda p: p.write_bytes(b"hello, not an archive"), "not an npz (zip) archive"),
    "raw pickle": (raw_pickle, "not an npz (zip) archive"),
    "truncated": (truncated, "truncated"),
    "corrupted member": (bad_member, "not a readable npz file"),
    "missing keys": (npz_writer(x_test=None, y_test=None), "missing key(s) x_test, y_test"),
    "labels not 0/1": (npz_writer(y_train=np.array([0, 1, 2])), "y_train must hold 0/1 labels, found [2]"),
    "ragged x/y": (npz_writer(y_test=np.array([0, 1])), "x_test and y_test must be 1-D of equal length"),
    "2-D labels": (npz_writer(y_train=np.zeros((3, 2), int)), "x_train and y_train must be 1-D"),
    "negative word id": (npz_writer(x_train=ragged([1, 2], [-3], [4])), "x_train: word ids must be >= 0"),
    "non-integer word id": (npz_writer(x_test=ragged([1], ["a"], [2])), "x_test: word ids must be integers"),
    "empty split": (npz_writer(x_test=ragged(), y_test=np.array([], int)), "x_test is empty"),
}


@pytest.mark.parametrize("case", list(IMDB_CASES))
def test_bad_imdb_file_is_one_line_naming_the_file(tmp_path, base, capsys, case):
    make, problem = IMDB_CASES[case]
    data = tmp_path / f"bad_{case.replace(' ', '_').replace('/', '')}"
    data.mkdir()
    make(data / "imdb.npz")
    line = expect_error(flags({**base, "data_dir": str(data)}), base["logdir"], capsys)
    assert str(data / "imdb.npz") in line and problem in line, line
    assert not (data / "unpickled").exists()


# -- MNIST idx files --------------------------------------------------------------------------------------

def corrupt_idx(raw: Path, case: str) -> str:
    """Damage the tiny MNIST files one way; returns the file name the error must name."""
    images, labels = raw / "train-images-idx3-ubyte", raw / "train-labels-idx1-ubyte"
    if case == "truncated images":
        images.write_bytes(images.read_bytes()[:-100])
        return images.name
    if case == "wrong magic":
        labels.write_bytes(b"\x00\x00\x08\x03" + labels.read_bytes()[4:])
        return labels.name
    if case == "count mismatch":
        labels.write_bytes(idx_bytes(np.arange(299) % 10))
        return images.name
    if case == "not 28x28":
        images.write_bytes(idx_bytes(np.zeros((300, 32, 32))))
        return images.name
    if case == "label 10":
        labels.write_bytes(idx_bytes(np.full(300, 10)))
        return labels.name
    raise AssertionError(case)


MNIST_PROBLEMS = {"truncated images": "truncated idx file", "wrong magic": "wrong magic number 0x00000803",
                  "count mismatch": "300 images but", "not 28x28": "images must be 28x28, got 32x32",
                  "label 10": "labels must be 0-9"}


@pytest.mark.parametrize("case", list(MNIST_PROBLEMS))
def test_bad_idx_file_is_one_line_naming_the_file(tmp_path, capsys, case):
    root = tmp_path / case.replace(" ", "_")
    name = corrupt_idx(write_mnist(root, "MNIST"), case)
    logdir = tmp_path / "logs"
    line = expect_error(["--data", "mnist", "--data-dir", str(root), "--logdir", str(logdir)], logdir, capsys)
    assert name in line and MNIST_PROBLEMS[case] in line, line


# -- data folders -----------------------------------------------------------------------------------------

def test_missing_imdb_download_failure_is_one_line_and_leaves_no_file(tmp_path, base, capsys, monkeypatch):
    """Offline: keras' download fails; a file keras left behind (e.g. sha256 mismatch) is removed."""
    import keras

    def failing_download(fname, origin, file_hash, cache_dir, cache_subdir):
        (Path(cache_dir) / fname).write_bytes(b"half a download")
        raise ValueError("Incomplete or corrupted file detected.\nThe sha256 file hash does not match")
    monkeypatch.setattr(keras.utils, "get_file", failing_download)
    data = tmp_path / "fresh"
    line = expect_error(flags({**base, "data_dir": str(data)}), base["logdir"], capsys)
    assert "imdb.npz not found and downloading it failed (ValueError: Incomplete" in line, line
    assert "--data-dir" in line and not (data / "imdb.npz").exists()


def test_missing_mnist_download_failure_is_one_line(tmp_path, capsys):
    """torchvision's download goes through urllib, which conftest blocks (as being offline would)."""
    logdir = tmp_path / "logs"
    line = expect_error(["--data", "fashion_mnist", "--data-dir", str(tmp_path / "none"), "--logdir", str(logdir)],
                        logdir, capsys)
    assert "FashionMNIST/raw" in line and "downloading failed" in line and "--data-dir" in line, line
    assert not (tmp_path / "none" / "FashionMNIST").exists()  # no empty folder tree left by the failed download


def test_data_dir_that_is_a_file_or_cannot_be_created(tmp_path, base, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    line = expect_error(flags({**base, "data_dir": str(afile)}), base["logdir"], capsys)
    assert f"--data-dir {afile} is not a folder" in line
    line = expect_error(flags({**base, "data_dir": str(afile / "sub")}), base["logdir"], capsys)
    assert f"--data-dir {afile / 'sub'}: cannot create it" in line


def test_data_dir_not_writable_for_the_download(tmp_path, base, capsys, monkeypatch):
    # Tests may run as root, for whom chmod does not take write access away: the check itself is stubbed.
    monkeypatch.setattr(imdb_mod.os, "access", lambda path, mode: False)
    data = tmp_path / "readonly"
    data.mkdir()
    line = expect_error(flags({**base, "data_dir": str(data)}), base["logdir"], capsys)
    assert f"--data-dir {data} is not writable" in line and "imdb.npz is missing" in line


# -- known release vs user files --------------------------------------------------------------------------

def test_download_is_checked_against_keras_published_sha256(tmp_path, monkeypatch):
    """The download asks keras for its own release and hash; a file already there is a user file,
    accepted when its format is valid (the synthetic one's hash differs from the release's)."""
    import keras
    import keras.src.datasets.imdb as keras_imdb

    assert IMDB_SHA256 in inspect.getsource(keras_imdb) and IMDB_ORIGIN.split("/")[-1] == "imdb.npz"
    asked = {}

    def fake_download(fname, origin, file_hash, cache_dir, cache_subdir):
        asked.update(origin=origin, file_hash=file_hash)
        return str(write_imdb(Path(cache_dir)))
    monkeypatch.setattr(keras.utils, "get_file", fake_download)
    path = fetch_imdb(tmp_path / "d")
    assert asked == {"origin": IMDB_ORIGIN, "file_hash": IMDB_SHA256} and path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() != IMDB_SHA256
    assert fetch_imdb(tmp_path / "d") == path and len(asked) == 2  # found: no second download
    imdb_mod.load_imdb.cache_clear()
    assert len(imdb_mod.load_imdb(str(path), 40)["train"].labels) == 240


# -- sizes --------------------------------------------------------------------------------------------------

def test_n_per_class_larger_than_a_class(mnist_dir, tmp_path, capsys):
    logdir = tmp_path / "logs"
    line = expect_error(["--data", "mnist", "--data-dir", str(mnist_dir), "--n-per-class", "31", "--logdir",
                         str(logdir)], logdir, capsys)
    assert "--n-per-class 31 is larger than class" in line and "30 training images" in line, line


@pytest.mark.parametrize("data", ["imdb", "mnist"])
def test_train_size_larger_than_the_data(mnist_dir, imdb_dir, base, capsys, data):
    over = {**base, "train_size": 5000} if data == "imdb" else \
        {"data": "mnist", "data_dir": str(mnist_dir), "val_size": 50, "train_size": 5000, "logdir": base["logdir"]}
    line = expect_error(flags(over), base["logdir"], capsys)
    assert "--train-size 5000 is larger than the" in line, line


def test_kfold_with_more_folds_than_examples_leaves_no_run_folder(base, capsys):
    # the k-fold parent folder is claimed before the first fold meets the data; bad input must remove it again
    line = expect_error(flags({**no_val_size(base), "train_size": 10, "kfold": 20}), base["logdir"], capsys)
    assert "--kfold 20 needs at least 20 training examples, got 10" in line, line


# -- flags --------------------------------------------------------------------------------------------------

FLAG_CASES = {
    "reg": (["--reg", "dropot"], ["--reg: unknown value 'dropot'", "did you mean 'dropout'?"]),
    "optimizer": (["--optimizer", "adamw"], ["--optimizer: unknown value 'adamw'", "did you mean 'adam'?"]),
    "data": (["--data", "mnst"], ["--data: unknown value 'mnst'", "did you mean 'mnist'?"]),
    "dropout 1": (["--dropout", "1"], ["--dropout must be in [0, 1), got 1.0"]),
    "dropout < 0": (["--dropout", "-0.1"], ["--dropout must be in [0, 1)"]),
    "l1 < 0": (["--l1=-1e-4"], ["--l1 must be >= 0"]),
    "l2 < 0": (["--l2=-1e-3"], ["--l2 must be >= 0"]),
    "lr < 0": (["--lr", "-0.1"], ["--lr must be > 0"]),
    "lr 0": (["--lr", "0"], ["--lr must be > 0"]),
    "hidden 0": (["--hidden", "0"], ["--hidden must be >= 1"]),
    "layers 0": (["--layers", "0"], ["--layers must be >= 1"]),
    "num_words 3": (["--num-words", "3"], ["--num-words must be >= 4"]),
    # the base flags hold --val-size 60: a split size that would be silently ignored is refused
    "val_size + val_on_test": (["--val-on-test"], ["--val-size 60 does not apply with --val-on-test"]),
    "val_size + kfold": (["--kfold", "3"], ["--val-size 60 does not apply with --kfold"]),
}


@pytest.mark.parametrize("case", list(FLAG_CASES))
def test_bad_flag_value_is_one_line_naming_the_flag(base, capsys, case):
    argv, expected = FLAG_CASES[case]
    line = expect_error(flags(base) + argv, base["logdir"], capsys)
    for part in expected:
        assert part in line, line


@pytest.mark.parametrize("argv, expected", [
    (["--hiden", "3"], "unrecognized arguments: --hiden 3; did you mean --hidden?"),
    (["--hidden", "abc"], "argument --hidden: invalid int value: 'abc'"),
], ids=["mistyped flag", "not an int"])
def test_argparse_errors_are_one_line(tmp_path, capsys, argv, expected):
    with pytest.raises(SystemExit) as e:
        fit.main(argv + ["--logdir", str(tmp_path / "logs")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "logs").exists()


# -- YAML configs -----------------------------------------------------------------------------------------

YAML_CASES = {
    "unknown key": ("hiden: 3\n", "unknown setting 'hiden'; did you mean 'hidden'?"),
    "does not parse": ("reg: dropout\nhidden: [16\n", "not valid YAML (line 3)"),
    "not a mapping": ("- reg\n- dropout\n", "expected a mapping of settings, got list"),
    "wrong type": ("layers: two\n", "layers: cannot read 'two'"),
    "out of range": ("dropout: 1.5\n", "--dropout must be in [0, 1)"),
}


@pytest.mark.parametrize("case", list(YAML_CASES))
def test_bad_yaml_config_is_one_line(tmp_path, base, capsys, case):
    text, expected = YAML_CASES[case]
    cfg = tmp_path / "my.yaml"
    cfg.write_text(text)
    line = expect_error(["--config", str(cfg), "--logdir", base["logdir"], "--data-dir", base["data_dir"]],
                        base["logdir"], capsys)
    assert expected in line, line
    if case != "out of range":  # range checks name the setting; the others name the file
        assert str(cfg) in line, line


def test_missing_yaml_config_file(tmp_path, base, capsys):
    line = expect_error(["--config", str(tmp_path / "nope.yaml"), "--logdir", base["logdir"]], base["logdir"], capsys)
    assert f"--config: no such file '{tmp_path / 'nope.yaml'}'" in line
    line = expect_error(["--config", str(tmp_path), "--logdir", base["logdir"]], base["logdir"], capsys)
    assert f"--config: '{tmp_path}' is a folder, not a YAML file" in line


# -- whole process: exit code and no traceback; a real bug keeps its traceback ----------------------------

def fit_process(args: list[str], tmp_path: Path, prelude: str = "") -> subprocess.Popen:
    """Start scripts/fit.py's main in a fresh interpreter (prelude may patch something first)."""
    code = (f"import sys; from lit_regularize.cli import fit; {prelude}"
            "sys.exit(fit.main(sys.argv[1:]))")
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})


@pytest.fixture(scope="module")
def fit_processes(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path, dict]]:
    """The whole-process cases below, started side by side (each spends seconds importing torch and Lightning
    before it gets to its point): case -> (the finished process, its folder, its fit flags as a dict)."""
    preludes = {"bad data": "", "real bug": ("from lit_regularize.model import RegularizedMLP; "
                                             "RegularizedMLP.training_step = lambda self, b, i: 1 / 0; ")}
    started = {}
    for case, prelude in preludes.items():
        folder = tmp_path_factory.mktemp(case.replace(" ", "_"))
        base = {**quick_settings(write_imdb(folder / "data").parent, folder / "logs"), "max_epochs": 1}
        if case == "bad data":
            (folder / "bad").mkdir()
            npz_writer(y_train=np.array([0, 1, 5]))(folder / "bad" / "imdb.npz")
            base["data_dir"] = str(folder / "bad")
        else:
            base["name"] = "bug"
        started[case] = (fit_process(flags(base), folder, prelude), folder, base)
    done = {}
    for case, (proc, folder, base) in started.items():
        out, err = proc.communicate(timeout=120)
        done[case] = (subprocess.CompletedProcess(proc.args, proc.returncode, out, err), folder, base)
    return done


@pytest.mark.slow  # a real python process
def test_bad_data_file_process_exits_2_without_traceback(fit_processes):
    out, folder, base = fit_processes["bad data"]  # y_train holds a 5
    data = folder / "bad"
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [f"error: {data / 'imdb.npz'}: y_train must hold 0/1 labels, found [5]"]
    assert not Path(base["logdir"]).exists()


def test_a_real_bug_keeps_its_traceback(tmp_path, base, monkeypatch):
    # in-process: the exception propagates through the guarded main untouched
    from lit_regularize.model import RegularizedMLP

    def broken_step(self, batch, batch_idx):
        raise RuntimeError("a bug in training_step")
    monkeypatch.setattr(RegularizedMLP, "training_step", broken_step)
    with pytest.raises(RuntimeError, match="a bug in training_step"):
        fit.main(flags(base))


@pytest.mark.slow  # a real python process
def test_a_real_bug_keeps_its_traceback_in_a_real_process(fit_processes):
    # whole process: exit 1 and the full traceback on stderr
    out, _, _ = fit_processes["real bug"]  # RegularizedMLP.training_step = lambda self, b, i: 1 / 0
    assert out.returncode == 1
    assert "Traceback (most recent call last)" in out.stderr and "ZeroDivisionError" in out.stderr
    assert "training_step" in out.stderr


def test_unusable_logdir_is_one_line(base, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rc = fit.main(flags({**base, "logdir": str(blocker / "logs")}))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--logdir" in err and "Traceback" not in err, err


# -- BatchNorm on one-example batches ------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [{"batch_size": 1, "reg": "batchnorm"}, {"batch_size": 1, "batchnorm": True},
                                   {"train_size": 1, "reg": "batchnorm"}],
                         ids=["batch-size-1-reg", "batch-size-1-flag", "one-training-example"])
def test_batchnorm_on_one_example_batches_is_one_line_before_any_folder(base, capsys, extra):
    """BatchNorm has no batch statistics for one example: a batch size of 1 (a setting) or a training set of one
    example (known once the data is split) is refused before anything is written, not a BatchNorm traceback."""
    line = expect_error(flags({**base, **extra}), base["logdir"], capsys)
    assert "BatchNorm" in line and ("--batch-size" in line if "batch_size" in extra else "1 example" in line), line
