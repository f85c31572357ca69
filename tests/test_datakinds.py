"""Issues 22 / 25: data kinds are plug-ins (one module each, a registry; nothing above data/ switches on the kind),
predict and export behave the same for every kind, own data gets defaults that fit its size, and a run records only
the settings of its own kind."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from test_custom_data import HEADER, tabular_rows, write_csv, write_imagedir, write_npz, write_textdir
from lit_regularize.config import Config, config_from_file, fields, make_config, to_yaml
from lit_regularize.data.kinds import (DataKind, data_kinds, kinds_accepting, register_data_kind,
                                       unregister_data_kind)
from lit_regularize.data.kinds.base import MIN_BATCH, MIN_STEPS, fitted_batch_size
from lit_regularize.errors import ConfigError
from lit_regularize.settings import setting

KINDS = ["imdb", "mnist", "fashion_mnist", "npz", "csv", "textdir", "imagedir"]
QUICK = {"hidden": 8, "max_epochs": 2, "progress": False, "accelerator": "cpu", "batch_size": 16}


# -- the registry -----------------------------------------------------------------------------------------------

def test_every_kind_is_a_registered_module_that_owns_its_settings():
    assert list(data_kinds()) == KINDS
    assert {k: data_kinds()[k].__module__ for k in KINDS} == {
        "imdb": "lit_regularize.data.kinds.imdb", "mnist": "lit_regularize.data.kinds.mnist",
        "fashion_mnist": "lit_regularize.data.kinds.mnist", "npz": "lit_regularize.data.kinds.npz",
        "csv": "lit_regularize.data.kinds.csv", "textdir": "lit_regularize.data.kinds.textdir",
        "imagedir": "lit_regularize.data.kinds.imagedir"}
    owners = {n: fields()[n].owner for n in ("target", "dropna", "image_size", "num_words", "input_format",
                                             "n_per_class", "test_size")}
    assert owners == {"target": "data:csv", "dropna": "data:csv", "image_size": "data:imagedir",
                      "num_words": "data:text", "input_format": "data:multihot", "n_per_class": "data:image",
                      "test_size": "data:own"}
    # a family's setting is declared once and applies to every kind of the family
    assert kinds_accepting(fields()["num_words"]) == ["imdb", "textdir"]
    assert kinds_accepting(fields()["input_format"]) == ["imdb", "npz", "textdir"]
    assert kinds_accepting(fields()["n_per_class"]) == ["mnist", "fashion_mnist", "imagedir"]
    assert kinds_accepting(fields()["augment"]) == ["mnist", "fashion_mnist", "imagedir"]
    assert kinds_accepting(fields()["test_size"]) == ["npz", "csv", "textdir", "imagedir"]
    assert make_config({"data": "imagedir:x", "batch_size": 16}).hidden == 128  # the image family's preset


SWITCH = re.compile(r"""(==|!=|\bin)\s*\(?\s*["'](imdb|mnist|fashion_mnist|npz|csv|textdir|imagedir)["']""")


def test_nothing_above_data_switches_on_the_kind():
    """run.py, predict.py, export.py, config.py and cli/ hold no `if data == "imdb"` and no kind tuples: the
    registry (lit_regularize.data.kinds) is all they use."""
    files = [ROOT / "lit_regularize" / f for f in ("run.py", "predict.py", "export.py", "config.py")]
    files += sorted((ROOT / "lit_regularize" / "cli").glob("*.py"))
    for path in files:
        text = path.read_text()
        assert not SWITCH.search(text), (path.name, SWITCH.search(text))
        assert not re.search(r"IMAGE_DATA|CUSTOM_KINDS|BUILTIN_DATA|DATA_PRESETS|IMAGE_KINDS", text), path.name
    assert not (ROOT / "lit_regularize" / "data" / "custom.py").exists()
    assert not (ROOT / "lit_regularize" / "data" / "predict_inputs.py").exists()


def test_no_module_imports_another_modules_private_names():
    pattern = re.compile(r"^\s*from lit_regularize\.\S+ import .*\b_[a-z]\w*", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "lit_regularize").rglob("*.py")
                 if pattern.search(p.read_text())]
    assert offenders == []


@pytest.mark.parametrize("data, message", [
    ("imbd", "--data: unknown value 'imbd' (choose from imdb, mnist, fashion_mnist, or KIND:PATH); did you mean "
             "'imdb'?"),
    ("csv", "--data 'csv': own data needs its path, csv:PATH"),
    ("imdb:reviews", "own data is KIND:PATH with KIND one of npz, csv, textdir, imagedir"),
    ("xlsx:sheet.xlsx", "own data is KIND:PATH with KIND one of npz, csv, textdir, imagedir"),
    ("csv:", "own data is KIND:PATH")])
def test_data_values_are_checked_by_the_registry(data, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config({"data": data})


@pytest.fixture
def toy_kind():
    """A plug-in kind registered like a built-in one: its own setting, DataModule, class names and inputs."""
    @register_data_kind("toy")
    class Toy(DataKind):
        """Two Gaussian blobs, generated into the data folder."""

        settings = (setting("toy_rows", int, 80, "toy: rows of generated data", "data"),)

        def datamodule(self, cfg, split):
            from lit_regularize.data.arrays import NpzDataModule

            path = cfg.resolved_data_dir() / "toy.npz"
            rng = np.random.RandomState(0)
            y = rng.randint(0, 2, cfg.toy_rows)
            np.savez(path, x_train=rng.randn(cfg.toy_rows, 4) + 2 * y[:, None], y_train=y)
            return NpzDataModule(path, **split)

        def class_names(self, settings, rundir):
            return ["left", "right"]

        def shape(self, settings, rundir):
            return 4, 2, "toy: 4 features"

        def inputs(self, settings, rundir, options):
            from lit_regularize.data.arrays import NpzInputs

            return NpzInputs(4, dense=False)

        def metadata(self, settings, rundir, options):
            return {"input": "4 numbers", "normalization": None, "num_words": None}
    yield Toy
    unregister_data_kind("toy")
    assert "toy" not in data_kinds() and "toy_rows" not in fields()


def test_a_plugin_kind_works_like_a_built_in_one(toy_kind, tmp_path):
    from lit_regularize.cli.args import command_parser
    from lit_regularize.predict import load
    from lit_regularize.run import quiet_lightning, run

    assert "--toy-rows" in command_parser("fit", "fit", ["--data", "toy"]).format_help()
    with pytest.raises(ConfigError, match="--toy-rows only applies to --data toy, not imdb"):
        make_config({"toy_rows": 50})
    assert "toy_rows" not in make_config({}).to_dict()
    cfg = make_config({"data": "toy", "toy_rows": 60, "data_dir": str(tmp_path), "logdir": str(tmp_path / "logs"),
                       **QUICK})
    assert cfg.run_name == "toy_none" and cfg.to_dict()["toy_rows"] == 60
    quiet_lightning()
    run_dir = run(cfg).run_dir
    np.savez(tmp_path / "new.npz", x=np.array([[-3.0] * 4, [5.0] * 4]))
    got = load(run_dir).predict([tmp_path / "new.npz"])
    assert len(got) == 2 and [g["name"] for g in got] == [["left", "right"][g["label"]] for g in got]


# -- a run records only its kind's settings -----------------------------------------------------------------------

@pytest.mark.parametrize("data, has, lacks", [
    ("imdb", {"num_words", "input_format"}, {"image_size", "target", "dropna", "test_size", "n_per_class", "augment"}),
    ("mnist", {"n_per_class", "augment", "hflip"}, {"num_words", "input_format", "image_size", "target", "test_size"}),
    ("csv:t.csv", {"target", "dropna", "test_size"}, {"num_words", "input_format", "image_size", "n_per_class"}),
    ("npz:a.npz", {"input_format", "test_size"}, {"num_words", "image_size", "target", "n_per_class", "augment"}),
    ("textdir:t", {"num_words", "input_format", "test_size"}, {"image_size", "target", "n_per_class", "augment"}),
    ("imagedir:i", {"image_size", "n_per_class", "augment", "test_size"}, {"num_words", "input_format", "target"})])
def test_config_records_only_its_kinds_settings(data, has, lacks, tmp_path):
    cfg = make_config({"data": data, "batch_size": 16})
    keys = set(cfg.to_dict())
    assert has <= keys and not lacks & keys, (has - keys, lacks & keys)
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(cfg))
    assert config_from_file(path) == cfg  # round trip: left-out settings read back as their defaults
    # a config.yaml written before this change lists every setting (at its default): it reads back the same
    path.write_text(to_yaml(cfg).rstrip() + "".join(f"\n{k}: {json.dumps(s.default)}" for k, s in fields().items()
                                                    if k not in keys and not s.internal) + "\n")
    assert config_from_file(path) == cfg
    assert Config(**cfg.to_dict()) == cfg  # what a spawned worker rebuilds


def test_run_folder_and_hparams_list_only_the_kinds_settings(quick):
    """(Resuming from such a config.yaml: every --resume test reads one.)"""
    import yaml

    from lit_regularize.run import quiet_lightning, run

    quiet_lightning()
    s = run(make_config({**quick, "max_epochs": 1}))
    for name in ("config.yaml", "hparams.yaml"):
        keys = set(yaml.safe_load((s.run_dir / name).read_text()))
        assert {"num_words", "input_format"} <= keys, name
        assert not keys & {"image_size", "target", "dropna", "test_size", "n_per_class", "augment", "hflip"}, name
    assert not set(json.loads((s.run_dir / "summary.json").read_text())["config"]) & {"image_size", "target"}


# -- own data: a batch size that fits the data -------------------------------------------------------------------

@pytest.mark.parametrize("n_train, cap, want", [(246, 512, 16), (6400, 512, 512), (10000, 512, 512),
                                                (5000, 32, 32), (30, 512, MIN_BATCH), (159, 512, 8), (160, 512, 16)])
def test_fitted_batch_size(n_train, cap, want):
    assert fitted_batch_size(n_train, cap) == want


def steps_per_epoch(cfg) -> int:
    from lit_regularize.run import build_datamodule

    dm = build_datamodule(cfg)
    dm.setup("fit")
    return len(dm.train_dataloader())


def test_own_data_batch_size_fits_the_data(tmp_path):
    """A 384-row CSV trained with IMDB's batch of 512: one step an epoch, its best epoch the last, silently."""
    src = write_csv(tmp_path / "c.csv", HEADER, tabular_rows(384))
    cfg = make_config({"data": f"csv:{src}"})
    assert cfg.batch_size == 16 and steps_per_epoch(cfg) >= MIN_STEPS  # 246 training rows
    assert make_config({"data": f"csv:{src}", "batch_size": 512}).batch_size == 512  # given: kept
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(cfg))
    assert config_from_file(path).batch_size == 16  # recorded: a resume or a --config run trains the same
    assert make_config({"data": f"csv:{src}", "train_size": 40}).batch_size == MIN_BATCH
    for data in (f"npz:{write_npz(tmp_path / 'a.npz', n=400)}", f"textdir:{write_textdir(tmp_path / 't', n=150)}",
                 f"imagedir:{write_imagedir(tmp_path / 'i', n=150, size=6)}"):
        cfg = make_config({"data": data, "image_size": 6} if "imagedir" in data else {"data": data})
        assert steps_per_epoch(cfg) >= MIN_STEPS and MIN_BATCH <= cfg.batch_size < 32, (data, cfg.batch_size)
    assert make_config({"data": f"csv:{tmp_path / 'missing.csv'}"}).batch_size == 512  # the load says what's wrong


# -- predict: the same columns for every kind; textdir takes review texts -------------------------------------------

def train(tmp_path, data: str, **over) -> Path:
    from lit_regularize.run import quiet_lightning, run

    quiet_lightning()
    return run(make_config({"data": data, "logdir": str(tmp_path / "logs"), "seed": 3, **QUICK, **over})).run_dir


@pytest.fixture(scope="module")
def textdir_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("textdir_kind")
    return train(tmp, f"textdir:{write_textdir(tmp / 'reviews', n=30, seed=1)}", num_words=30), tmp


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("csv_kind")
    return train(tmp, f"csv:{write_csv(tmp / 'churn.csv', HEADER, tabular_rows(90, seed=4))}"), tmp


def cli(argv, capsys, stdin: str | None = None, monkeypatch=None) -> tuple[int, list[str], str]:
    import io
    import sys

    from lit_regularize.cli.predict import main

    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8"))
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out.splitlines(), out.err


REVIEWS = ["An awful, boring plot. Terrible!", "A great and wonderful film", "Music, actors: fine"]


def test_textdir_takes_review_texts_on_every_route(textdir_run, tmp_path, capsys, monkeypatch):
    """A textdir run took only .txt paths: now review strings from the arguments, --file lines, .jsonl and stdin
    too, as an IMDB run does; each predicts as the same text in a .txt file (and .txt files still work)."""
    run_dir, _ = textdir_run
    files = []
    for i, t in enumerate(REVIEWS):
        files.append(tmp_path / "files" / f"{i}.txt")
        files[-1].parent.mkdir(exist_ok=True)
        files[-1].write_text(t)
    rc, out, err = cli([run_dir, *files, "--json"], capsys)
    assert rc == 0, err
    by_file = [json.loads(line) for line in out]
    (tmp_path / "lines.txt").write_text("\n".join(REVIEWS) + "\n")
    (tmp_path / "r.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in REVIEWS))
    routes = {"args": cli([run_dir, *REVIEWS, "--json"], capsys),
              "file": cli([run_dir, "--file", tmp_path / "lines.txt", "--json"], capsys),
              "jsonl": cli([run_dir, "--file", tmp_path / "r.jsonl", "--json"], capsys),
              "stdin": cli([run_dir, "--json"], capsys, "\n".join(REVIEWS) + "\n", monkeypatch)}
    for route, (rc, out, err) in routes.items():
        assert rc == 0, (route, err)
        got = [json.loads(line) for line in out]
        assert [g["input"] for g in got] == REVIEWS, route
        # one encoding for a typed review and a file's text: equal up to float rounding of another batch size
        assert np.allclose([g["probs"] for g in got], [f["probs"] for f in by_file], atol=1e-6, rtol=0), route
    rc, out, _ = cli([run_dir, REVIEWS[0], files[1], "--json"], capsys)  # texts and files mix, in order
    assert [json.loads(line)["input"] for line in out] == [REVIEWS[0], str(files[1])]
    rc, _, err = cli([run_dir, tmp_path / "missing.txt"], capsys)  # a mistyped file name is no review
    assert rc == 2 and "no such file or folder" in err
    rc, _, err = cli([run_dir, ""], capsys)
    assert rc == 2 and "empty review text" in err


LINE = re.compile(r"^(\d+) (.+)  (\d\.\d{4})  (.+)$")


@pytest.mark.parametrize("which", ["textdir", "csv", "imagedir"])
def test_every_kind_prints_the_same_columns_and_keys(which, textdir_run, csv_run, tmp_path, capsys):
    if which == "textdir":
        run_dir, inputs = textdir_run[0], [REVIEWS[0]]
    elif which == "csv":
        run_dir = csv_run[0]
        inputs = [write_csv(tmp_path / "new.csv", HEADER, tabular_rows(3, seed=8))]
    else:
        run_dir = train(tmp_path, f"imagedir:{write_imagedir(tmp_path / 'shapes', n=12, size=6)}", image_size=6,
                        max_epochs=1)
        inputs = [tmp_path / "shapes" / "train" / "dark"]
    rc, out, err = cli([run_dir, *inputs, "--json"], capsys)
    assert rc == 0, err
    rows = [json.loads(line) for line in out]
    assert all(set(r) == {"input", "label", "name", "probability", "probs"} for r in rows)
    assert all(r["probability"] == r["probs"][r["label"]] and isinstance(r["name"], str) for r in rows)
    rc, out, _ = cli([run_dir, *inputs], capsys)
    for line, r in zip(out, rows):
        m = LINE.match(line)
        assert m and (int(m[1]), m[2], float(m[3])) == (r["label"], r["name"], round(r["probability"], 4)), line


def test_csv_category_never_seen_in_training_warns_once_per_file(csv_run, tmp_path, capsys):
    run_dir, _ = csv_run
    new = write_csv(tmp_path / "new.csv", HEADER[:3], [["0.5", "5.0", "purple"], ["0.1", "1.0", "purple"],
                                                       ["0.2", "2.0", "teal"], ["0.3", "3.0", "red"]])
    rc, out, err = cli([run_dir, new], capsys)
    assert rc == 0 and len(out) == 4
    assert err.splitlines() == [f"warning: {new}: categories training never saw (color ['purple', 'teal']); they "
                                "are encoded as all zeros"]
    known = write_csv(tmp_path / "known.csv", HEADER[:3], [["0.5", "5.0", "red"]])
    rc, _, err = cli([run_dir, known], capsys)
    assert rc == 0 and err == ""


def test_text_export_classifies_raw_text_without_lit_regularize(textdir_run, tmp_path, monkeypatch):
    """The docs' lines (docs/predict-export.md) on a textdir run's pt2 export give predict's answer."""
    from test_export import run_snippet

    from lit_regularize.export import export
    from lit_regularize.predict import load

    run_dir, _ = textdir_run
    out = export(run_dir, "pt2", tmp_path / "reviews.pt2")
    for review in REVIEWS[:2]:
        name, p = run_snippet(out, review, monkeypatch)
        want = load(run_dir).predict([review])[0]
        assert name == want["name"] and p == pytest.approx(want["probs"][1], abs=1e-4)  # the snippet rounds to 4
