"""Two sweep workers on one PostgreSQL study; one is SIGKILLed mid-trial and the study still completes.

Uses $LIT_REGULARIZE_PG_URL when set; otherwise starts (and always stops) a throwaway server with
.ci/postgres.sh when the Debian server binaries are installed (.ci/postgres.sh install); otherwise skips.
"""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from conftest import ROOT
from test_sweep import sigkill_scenario

PG = ROOT / ".ci" / "postgres.sh"
pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def pg_url():
    """A PostgreSQL URL whose server outlives the test; a server started here is stopped afterwards."""
    pytest.importorskip("psycopg2")
    if os.environ.get("LIT_REGULARIZE_PG_URL"):
        yield os.environ["LIT_REGULARIZE_PG_URL"]
        return
    if subprocess.run(["bash", str(PG), "available"]).returncode != 0:
        pytest.skip("no PostgreSQL: set LIT_REGULARIZE_PG_URL or run .ci/postgres.sh install")
    started = subprocess.run(["bash", str(PG), "start"], capture_output=True, text=True, timeout=90)
    assert started.returncode == 0, started.stderr
    env = dict(line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines())
    try:
        yield env["LIT_REGULARIZE_PG_URL"]
    finally:
        subprocess.run(["bash", str(PG), "stop", env["LIT_REGULARIZE_PG_DIR"]], timeout=60)
        assert not os.path.exists(env["LIT_REGULARIZE_PG_DIR"])


def test_two_workers_on_postgres_survive_a_sigkilled_worker(pg_url, quick, tmp_path):
    # A unique study name keeps reruns against a shared server ($LIT_REGULARIZE_PG_URL) apart.
    sigkill_scenario(pg_url, quick, tmp_path, n_trials=6, name=f"kill_{uuid.uuid4().hex[:8]}")
