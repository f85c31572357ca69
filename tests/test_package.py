"""The package as a user installs it: a wheel built from the checkout, installed in a fresh venv outside the
repository, runs every command (a module left out of the wheel fails here, as `bench` once did)."""
from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT
from synthetic import write_imdb

pytestmark = pytest.mark.slow


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}


def _run(cmd: list, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def test_wheel_installs_outside_the_repository_and_every_command_runs(tmp_path):
    dist = tmp_path / "dist"
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, ROOT],
                 cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    wheel = next(dist.glob("lit_regularize-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    # every package of the checkout, and the shipped configs as package data
    packages = {str(p.parent.relative_to(ROOT)).replace(os.sep, "/") for p in (ROOT / "lit_regularize").rglob("*.py")}
    assert {f"{p}/__init__.py" for p in packages} <= set(names)
    assert "lit_regularize/configs/search_space.yaml" in names
    assert "lit_regularize/configs/studies/imdb_penalty.yaml" in names

    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path).returncode == 0
    py = venv / "bin" / "python"
    # The dependencies come from this environment's site-packages, appended by a .pth line: .pth files inside it
    # (such as the checkout's editable install) are not processed, so only the wheel provides lit_regularize.
    new_site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         cwd=tmp_path).stdout.strip())
    ours = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if Path(p).is_dir()]
    (new_site / "deps.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    installed = _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "-q", wheel], cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr

    where = _run([py, "-c", "import lit_regularize; print(lit_regularize.__file__)"], cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr
    exe = venv / "bin" / "lit-regularize"
    # the tiny fit (seconds of importing torch and Lightning) runs while every command's --help is checked
    data = write_imdb(tmp_path / "data").parent
    fit_cmd = [exe, "fit", "--data-dir", data, "--num-words", 40, "--val-size", 60, "--hidden", 4,
               "--max-epochs", 2, "--logdir", tmp_path / "logs", "--name", "tiny", "--no-progress",
               "--config", "imdb_l2"]
    fit = subprocess.Popen([str(c) for c in fit_cmd], cwd=tmp_path, env=_env(), text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        top = _run([exe, "--help"], cwd=tmp_path)
        assert top.returncode == 0 and "commands:" in top.stdout
        commands = [line.split()[0] for line in top.stdout.split("commands:")[1].splitlines() if line.strip()]
        assert {"fit", "sweep", "compare", "predict", "export", "bench"} <= set(commands)
        for command in commands:
            r = _run([exe, command, "--help"], cwd=tmp_path)
            assert r.returncode == 0 and "usage" in r.stdout.lower(), (command, r.stdout[-500:],
                                                                        r.stderr[-2000:])
    finally:
        _, fit_err = fit.communicate(timeout=300)
    assert fit.returncode == 0, fit_err[-3000:]
    assert (tmp_path / "logs" / "tiny" / "version_0" / "summary.json").is_file()
