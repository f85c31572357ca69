"""A regularizer defined only in this file works everywhere the built-in ones do: the Python API (fit, sweep,
compare), the command line with --plugins, checkpoints, resume and predict."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

import lit_regularize as lr
from conftest import ROOT
from lit_regularize.cli import fit as fit_cli
from lit_regularize.errors import ConfigError
from lit_regularize.model import RegularizedMLP
from lit_regularize.settings import at_least, setting


@lr.register_regularizer("unit_norm")
class UnitNormPenalty(lr.Regularizer):
    """lambda * sum over hidden units of max(0, |w_unit| - 0.3)^2: a soft max-norm, as a user would write one."""

    settings = (setting("unit_norm", float, 0.0, "strength of the soft unit-norm penalty", "regularization",
                        check=at_least(0)),)
    presets = {"unit_norm": {"unit_norm": 0.5}}
    search = {"unit_norm": {"type": "float", "low": 0.01, "high": 1.0, "log": True}}

    def penalty(self, model):
        return self.unit_norm * sum((lin.weight.norm(dim=1) - 0.3).clamp_min(0).square().sum()
                                    for lin in model.linears()[:-1])


def expected_penalty(model: RegularizedMLP, strength: float) -> float:
    return strength * float(sum((lin.weight.norm(dim=1) - 0.3).clamp_min(0).square().sum()
                                for lin in model.linears()[:-1]))


def mean_unit_norm(model: RegularizedMLP) -> float:
    return float(torch.cat([lin.weight.norm(dim=1) for lin in model.linears()[:-1]]).mean())


def test_the_api_exports_what_a_notebook_needs_without_loading_torch():
    out = subprocess.run([sys.executable, "-c", "import sys, lit_regularize as lr; "
                          "print(sorted(n for n in dir(lr) if not n.startswith('_'))); print('torch' in sys.modules)"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    names, torch_loaded = out.stdout.splitlines()
    for name in ("fit", "compare", "sweep", "load", "Regularizer", "register_regularizer"):
        assert f"'{name}'" in names
    assert torch_loaded == "False"


def test_a_plugin_regularizer_trains_through_lr_fit_and_its_checkpoint_predicts(quick):
    s = lr.fit(**{**quick, "hidden": 12}, reg="unit_norm", name="plug")
    assert s.status == "completed" and s.config["unit_norm"] == 0.5
    assert s.config["plugins"] == [__name__]  # recorded, so other processes, resumes and predict import it
    saved = yaml.safe_load((s.run_dir / "config.yaml").read_text())
    assert saved["plugins"] == [__name__] and saved["reg"] == "unit_norm"
    # the penalty is logged (Kaiming-uniform rows of 40 or 12 inputs have norms ~0.58 > 0.3: positive from epoch 1)
    assert all(p is not None and p > 0 for p in s.history["train_penalty"])
    last = RegularizedMLP.load_from_checkpoint(s.path(s.last_checkpoint), map_location="cpu")
    assert last.hparams["unit_norm"] == 0.5 and [type(r).__name__ for r in last.regularizers] == ["UnitNormPenalty"]
    assert last.has_penalty and float(last.penalty()) == pytest.approx(expected_penalty(last, 0.5), rel=1e-6)
    # and optimized: the same run without it ends with longer unit weight vectors
    plain = lr.fit(**{**quick, "hidden": 12}, name="plain")
    unpenalized = RegularizedMLP.load_from_checkpoint(plain.path(plain.last_checkpoint), map_location="cpu")
    assert mean_unit_norm(last) < mean_unit_norm(unpenalized) - 0.05
    assert plain.config["plugins"] == [] and "unit_norm" not in unpenalized.hparams or \
        unpenalized.hparams["unit_norm"] == 0.0
    # predict and export load the checkpoint through the registry
    from lit_regularize.predict import find_checkpoint, load_model

    assert type(load_model(find_checkpoint(s.run_dir)).regularizers[0]) is UnitNormPenalty


def test_plugin_flags_come_with_plugins_on_the_command_line(quick, capsys):
    with pytest.raises(SystemExit):
        fit_cli.main(["--plugins", __name__, "--help"])
    text = capsys.readouterr().out
    assert "--unit-norm UNIT_NORM" in text and "unit_norm (unit_norm 0.5)" in " ".join(text.split())
    from conftest import flags

    assert fit_cli.main(["--plugins", __name__, "--reg", "unit_norm", "--unit-norm", "0.25",
                         *flags({**quick, "name": "cli"})]) == 0
    from pathlib import Path

    folder = Path(quick["logdir"]) / "cli" / "version_0"
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    assert saved["unit_norm"] == 0.25 and saved["plugins"] == [__name__]
    # a resume imports the plug-in from config.yaml
    assert fit_cli.main(["--resume", str(folder), "--max-epochs", "4"]) == 0
    assert yaml.safe_load((folder / "summary.json").read_text())["epochs_run"] == 4


def test_bad_plugin_settings_are_one_line_errors(quick, capsys):
    with pytest.raises(ConfigError, match=r"--unit-norm must be >= 0"):
        lr.fit(**quick, reg="unit_norm", unit_norm=-1.0)
    with pytest.raises(ConfigError, match=r"--plugins no_such_module_xyz: cannot import it"):
        lr.fit(**quick, plugins=["no_such_module_xyz"])
    assert fit_cli.main(["--plugins", "no_such_module_xyz", "--max-epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --plugins no_such_module_xyz")


@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_a_plugin_regularizer_is_swept_with_its_declared_strength(quick, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("reg: {type: categorical, choices: [unit_norm]}\n")
    study = lr.sweep(n_trials=2, space=space, study_name="plug", storage=str(tmp_path / "s.db"),
                     **{k: v for k, v in quick.items() if k != "progress"})
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(trials) == 2
    for t in trials:  # the strength comes from the regularizer's own search entry, only when its preset is chosen
        assert t.params["reg"] == "unit_norm" and 0.01 <= t.params["unit_norm"] <= 1.0
        assert t.user_attrs["config"]["unit_norm"] == t.params["unit_norm"]
    assert (tmp_path / "logs" / "plug" / "report" / "report.md").is_file()


@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_a_plugin_regularizer_is_compared_beside_a_built_in_one(quick, tmp_path):
    table = lr.compare({"none": {}, "unit_norm": {"reg": "unit_norm"}}, seeds=2, out=tmp_path / "cmp",
                       **{k: v for k, v in quick.items() if k not in ("logdir",)})
    assert [row["run"] for row in table.table] == ["none", "unit_norm"]
    assert table["unit_norm"]["n"] == 2 and table["none"]["best_val_loss_mean"] > 0
    assert (tmp_path / "cmp" / "table.md").is_file() and "unit_norm" in table.markdown


@pytest.mark.slow
def test_plugins_flag_imports_a_module_from_the_working_folder_in_a_real_process(tmp_path, imdb_dir):
    (tmp_path / "myreg.py").write_text(textwrap.dedent('''
        import lit_regularize as lr
        from lit_regularize.settings import setting

        @lr.register_regularizer("shrink")
        class Shrink(lr.Regularizer):
            settings = (setting("shrink", float, 0.0, "multiply hidden weights by 1 - shrink after every step",
                                "regularization"),)
            presets = {"shrink": {"shrink": 0.01}}

            def after_step(self, model):
                import torch
                with torch.no_grad():
                    for lin in model.linears()[:-1]:
                        lin.weight.mul_(1 - self.shrink)
        '''))
    out = subprocess.run([sys.executable, "-m", "lit_regularize", "fit", "--plugins", "myreg", "--reg", "shrink",
                          "--data-dir", str(imdb_dir), "--num-words", "40", "--val-size", "60", "--hidden", "4",
                          "--max-epochs", "2", "--logdir", "logs", "--no-progress"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    saved = yaml.safe_load(next(tmp_path.glob("logs/*/version_0/config.yaml")).read_text())
    assert saved["plugins"] == ["myreg"] and saved["shrink"] == 0.01
