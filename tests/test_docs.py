"""Every command in README.md and docs/*.md runs as written: the short ones are run on tiny synthetic data (the
data folder swapped for a synthetic one, tiny sizes appended), in the order the page gives them; the Python blocks
are executed the same way. Commands that need a server, the network or minutes of real data are only checked to
parse (`--help`)."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from conftest import ROOT
from synthetic import write_imdb, write_mnist

pytestmark = pytest.mark.slow

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REAL_DATA = ("../shared/data", "/work/shared/data")
COMMANDS = ("lit-regularize", "python scripts/", "python -m lit_regularize")
NOT_RUN = ("tensorboard", "pip ", "python3 -m venv", "optuna-dashboard", "chromium", "git ", "cd ", "export ",
           "cat ", "curl ", "bash ", ". ", "source ")
# command -> settings appended so that it runs in seconds on the synthetic data (later flags win in argparse)
TINY_IMDB = ["--num-words", "40", "--max-epochs", "1"]
TINY_IMAGES = ["--n-per-class", "10", "--max-epochs", "1", "--batch-size", "32"]


def code_blocks(page: Path) -> list[tuple[str, str]]:
    """(language, text) of every fenced code block of a page."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w*)\n(.*?)```", page.read_text(), flags=re.S)]


def commands(text: str) -> list[str]:
    """The command lines of a bash block (comments and continuation lines joined)."""
    joined = text.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out += [part.strip() for part in line.split("&&")]
    return [c for c in out if c.startswith(COMMANDS)]


def own_tmp(text: str, tmp: Path) -> str:
    """/tmp/... paths of a page moved into the test's own folder (no state shared with other test runs)."""
    return text.replace("/tmp/", f"{tmp}/")


def argv_of(command: str, data: Path) -> list[str]:
    """The command as lit_regularize.cli.main arguments, with the synthetic data and tiny sizes."""
    for real in REAL_DATA:
        command = command.replace(real, str(data))
    words = shlex.split(command)
    if words[0] == "lit-regularize":
        words = words[1:]
    elif words[:2] == ["python", "-m"]:
        words = words[3:]
    else:  # python scripts/fit.py ...
        words = [Path(words[1]).stem, *words[2:]]
    name = words[0]
    if name in ("fit", "compare", "sweep") and "--help" not in words and "--resume" not in words:
        images = any(w in ("mnist", "fashion_mnist", "mnist100") or w.startswith(("imagedir:", "modern_fmnist"))
                     for w in words)
        own = any(w.startswith(("csv:", "npz:", "textdir:", "imagedir:")) for w in words)
        words += [] if own else (TINY_IMAGES if images else TINY_IMDB)
        if "--kfold" not in words and not own and "--val-on-test" not in words:
            words += ["--val-size", "60"]
        if name == "sweep":
            words += ["--n-trials", "2"]
        if name == "fit" and "--data-dir" not in words and not own:
            words += ["--data-dir", str(data)]
    return words


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("docs") / "data"
    write_imdb(folder)
    write_mnist(folder, "MNIST")
    write_mnist(folder, "FashionMNIST", seed=1)
    (folder / "imdb_word_index.json").write_text(json.dumps({f"w{i}": i for i in range(1, 60)}))
    return folder


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_command_of_the_page_runs_as_written(page, data, tmp_path, monkeypatch):
    from lit_regularize.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIT_REGULARIZE_DATA_DIR", str(data))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    ran = 0
    for lang, text in code_blocks(page):
        if lang in ("bash", "sh", "console", ""):
            for command in commands(text):
                if any(command.startswith(n) for n in NOT_RUN) or "..." in command or "<" in command \
                        or "--runs " in command:  # placeholders, or finished runs the page does not make
                    continue
                argv = argv_of(own_tmp(command, tmp), data)
                if argv[0] in ("bench", "reproduce"):  # minutes of real data; their own tests run them tiny
                    argv = [argv[0], "--help"]
                try:
                    code = main(argv)
                except SystemExit as e:  # --help
                    code = e.code
                assert code == 0, f"{page.name}: {command}"
                ran += 1
        elif lang == "python":
            source = re.sub(r",\s*max_epochs=\d+|max_epochs=\d+,\s*", "", own_tmp(text, tmp))
            lines = []
            for line in source.splitlines():  # settings of training calls get tiny sizes on the synthetic data
                if any(call in line for call in ("lr.fit(", "lr.compare(", "lr.sweep(", "dict(")):
                    for real in REAL_DATA:
                        line = line.replace(f'data_dir="{real}"',
                                            f'data_dir="{real}", num_words=40, val_size=60, max_epochs=1')
                lines.append(line)
            source = "\n".join(lines)
            for real in REAL_DATA:
                source = source.replace(real, str(data))
            exec(compile(source, f"{page.name} python block", "exec"), {"__name__": "docs"})
            ran += 1
    assert ran or page.name != "README.md", page.name
