"""One schema (issue 10/12): the parser is generated from Config, --help is fast and tidy, --print-config
round-trips, shipped YAMLs hold only what differs, commands work from an installed wheel."""
from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from lit_regularize.cli import fit
from lit_regularize.cli.args import config_from_args
from lit_regularize.config import FIELDS, Config, configs_dir, flag, load_yaml, make_config, minimal_overrides


def _help(argv: list[str]) -> str:
    return fit.parser(argv).format_help()


def test_every_config_field_has_exactly_one_flag_and_internal_ones_are_hidden():
    text = _help([]).split("Examples:")[0].split("options:", 1)[1]  # the option list only
    for name, f in FIELDS.items():
        count = len(re.findall(rf"^  {re.escape(flag(name))}(?![\w-])", text, flags=re.M))
        assert count == (0 if f.internal else 1), name
    assert "--fold " not in text and "--merge-val" not in text


def test_help_groups_shows_choices_and_prints_each_default_once():
    text = _help([])
    for group in ("data settings", "model settings", "regularization settings", "training settings",
                  "output settings"):
        assert group in text
    assert "{none,l1,l2,l1_l2,dropout,batchnorm" in text  # plug-ins (tests/test_plugins.py) add more and "{rmsprop,adam,sgd}" in text
    assert "Examples:\n  lit-regularize fit --reg dropout\n" in text  # examples keep their line breaks
    flat = " ".join(text.split())
    for opt in re.split(r"\s(?=--[a-z])", flat):
        assert opt.count("(default:") <= 1, opt


def test_help_shows_the_defaults_the_presets_give():
    plain, mnist = " ".join(_help([]).split()), " ".join(_help(["--data", "mnist"]).split())
    assert "--hidden HIDDEN hidden width (units per layer) (default: 16)" in plain
    assert "(default: 128)" in mnist and "(default: adam)" in mnist
    assert "(default: 0.5)" in " ".join(_help(["--reg", "dropout"]).split())


def test_help_imports_neither_torch_nor_lightning():
    code = ("import sys\nfrom lit_regularize.cli import main\n"
            "for cmd in ('fit', 'compare', 'sweep', 'predict', 'export', 'bench'):\n"
            "    try:\n        main([cmd, '--help'])\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pytorch_lightning', 'lightning')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_print_config_round_trips(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        fit.main(["--data", "fashion_mnist", "--reg", "dropout", "--dropout", "0.3", "--print-config"])
    assert e.value.code == 0
    printed = capsys.readouterr().out
    path = tmp_path / "resolved.yaml"
    path.write_text(printed)
    argv = ["--config", str(path)]
    again = config_from_args(fit.parser(argv).parse_args(argv))
    expected = make_config({"data": "fashion_mnist", "reg": "dropout", "dropout": 0.3})
    assert again == expected and again.hidden == 128 and again.dropout == 0.3
    assert yaml.safe_load(printed) == expected.to_dict()


def test_shipped_experiments_hold_only_what_differs_from_defaults_and_presets():
    files = [p for p in configs_dir().glob("*.yaml") if p.name != "search_space.yaml"]
    assert len(files) >= 10
    for p in files:
        raw = load_yaml(p)
        assert set(raw) == set(minimal_overrides(make_config(raw))), p.name


def test_config_flags_types_come_from_the_type_hints():
    argv = ["--l1-layers", "0", "2", "--no-early-stopping", "--train-size", "10", "--lr", "0.01", "--config",
            "imdb_l2"]
    cfg = config_from_args(fit.parser(argv).parse_args(argv))
    assert cfg.l1_layers == [0, 2] and cfg.early_stopping is False and cfg.train_size == 10 and cfg.lr == 0.01
    assert cfg.reg == "l2" and cfg.l2 == 1e-3 and cfg.name == "imdb_l2"  # a shipped experiment by name
    assert isinstance(cfg, Config)


def test_run_name_reflects_what_differs():
    assert make_config({"data": "fashion_mnist", "augment": True}).run_name == "fashion_mnist_none_augment"
    assert make_config({"data": "fashion_mnist"}).run_name == "fashion_mnist_none"


@pytest.mark.slow
def test_the_wheel_works_outside_the_repository(tmp_path):
    """A built wheel carries the configs; its commands run from a folder outside the checkout."""
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                            str(wheels), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheels.glob("lit_regularize-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "lit_regularize/configs/search_space.yaml" in names
    assert "lit_regularize/configs/studies/imdb_capacity.yaml" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    away = tmp_path / "away"
    away.mkdir()
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    code = ("import lit_regularize, sys; from lit_regularize.config import configs_dir; "
            "print(lit_regularize.__file__); print(configs_dir())")
    out = subprocess.run([sys.executable, "-c", code], cwd=away, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and str(site) in out.stdout and str(ROOT) not in out.stdout, out.stdout + out.stderr
    out = subprocess.run([sys.executable, "-m", "lit_regularize", "compare", "imdb_capacity", "--print-config"],
                         cwd=away, env=env, capture_output=True, text=True, timeout=60)
    assert "error: the following arguments are required: --out" in out.stderr
