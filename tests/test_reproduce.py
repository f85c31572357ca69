"""`lit-regularize reproduce --quick` end to end on synthetic data: every experiment runs, the page embeds its
figures and shows tables and the notebooks' reference numbers."""
from __future__ import annotations

import base64
import dataclasses
import re

import pytest

from lit_regularize import reproduce as repro
from lit_regularize.cli import reproduce as cli

TINY_IMDB = {"num_words": 40, "val_size": 60, "max_epochs": 2}
TINY = {"capacity": TINY_IMDB, "penalties": TINY_IMDB, "dropout": {**TINY_IMDB, "max_epochs": 1},
        "batchnorm": TINY_IMDB, "fashion_mnist": {"n_per_class": 10, "val_size": 60, "max_epochs": 2},
        "kfold": {"num_words": 40, "train_size": 200, "max_epochs": 2}}


@pytest.fixture
def tiny_plan(monkeypatch):
    """The shipped plan with tiny settings (the synthetic data has 240 reviews and 30 images per class)."""
    plan = tuple(dataclasses.replace(e, quick={**e.quick, **TINY[e.name]}) for e in repro.EXPERIMENTS)
    monkeypatch.setattr(repro, "EXPERIMENTS", plan)
    return plan


@pytest.mark.slow  # every experiment: ~30 tiny runs
def test_reproduce_quick_writes_one_self_contained_page_and_its_markdown_twin(tmp_path, imdb_dir, mnist_dir,
                                                                              tiny_plan, capsys):
    out = tmp_path / "repro"
    assert cli.main(["--quick", "--data-dir", str(imdb_dir), "--out", str(out), "--seeds", "2"]) == 0
    page = (out / "reproduce.html").read_text()
    md = (out / "reproduce.md").read_text()
    for exp in tiny_plan:  # every experiment has its section, figure and table in both
        assert f"<h2>{exp.title}</h2>" in page and f"## {exp.title}" in md
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) >= len(tiny_plan)  # at least one figure per experiment
    for data in images:  # embedded, real PNGs: the page needs no other file
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "src='" not in page.replace("src='data:", "")  # nothing linked from outside the page
    # the notebooks' reference numbers beside ours (shipped as package data)
    assert "Plain PyTorch loops, one seed" in page and "0.287" in page and "0.778" in md
    # the Markdown twin links figures that exist, relative to the page
    for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)", md):
        assert (out / link).is_file(), link
    # 2 seeds per setting: the comparison tables say so
    assert re.search(r"\| none \| 2 \|", md)
    assert "chose epoch" in md and "refit" in md
    assert f"wrote {out / 'reproduce.html'}" in capsys.readouterr().out


@pytest.mark.slow  # several runs end to end (the fast suite keeps a 75 s budget)
def test_reproduce_only_some_experiments(tmp_path, imdb_dir, tiny_plan):
    out = tmp_path / "repro"
    assert cli.main(["--quick", "--only", "penalties", "kfold", "--seeds", "1", "--data-dir", str(imdb_dir),
                     "--out", str(out)]) == 0
    md = (out / "reproduce.md").read_text()
    assert "## IMDB: L1, L2 and L1+L2 weight penalties" in md and "k-fold" in md
    assert "## IMDB: capacity" not in md  # not asked for
    assert not (out / "capacity").exists() and (out / "penalties" / "curves.png").is_file()


def test_reproduce_refuses_bad_input_before_running_anything(tmp_path, capsys):
    assert cli.main(["--only", "capacty", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--only: unknown experiment 'capacty'" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["--quick", "--out", str(blocker)]) == 2
    assert "--out" in capsys.readouterr().err
    assert cli.main(["--seeds", "0"]) == 2
    assert not (tmp_path / "r").exists()


def test_reference_results_are_shipped_as_package_data():
    ref = repro.reference_results()
    assert ref["imdb_capacity"]["runs"]["h16"]["best_val_loss"] == pytest.approx(0.287)
    assert ref["mnist100"]["runs"]["none"]["test_acc_best"] == pytest.approx(0.778)
    assert {e.reference for e in repro.EXPERIMENTS if e.reference} <= set(ref)
