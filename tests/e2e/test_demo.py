"""``make demo`` as a new user sees it: a short story on the terminal, Airflow's logs in a file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

DEMO = Path(__file__).resolve().parents[2] / "example_dags" / "run_demo.py"
SCREEN = 25


def test_the_demo_fits_on_one_screen_before_its_report(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENAI"))}
    env["AIRFLOW_HOME"] = str(tmp_path / "home")

    done = subprocess.run(
        [sys.executable, str(DEMO)], env=env, capture_output=True, text=True, timeout=240, check=False
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    before_report = lines[: next(i for i, line in enumerate(lines) if line.startswith("=== Report"))]
    assert len(before_report) <= SCREEN, done.stdout
    log_path = Path(next(line.split()[2] for line in lines if line.strip().startswith("Airflow logs")))
    log = log_path.read_text()
    assert "[DAG TEST] starting task_id=build_requests" in log  # Airflow's own logs went to the file ...
    assert "[DAG TEST]" not in done.stdout  # ... and not to the terminal
    states = [line.split()[1:3] for line in before_report if re.match(r"\s+\d\d:\d\d\s", line)]
    for task_id in ("build_requests", "submit", "land_results", "score"):
        assert [task_id, "running"] in states and [task_id, "success"] in states, done.stdout
    assert ["wait", "deferred"] in states and ["wait", "success"] in states, done.stdout
    progress = [line for line in before_report if re.search(r"batch\s+\w+\s+\d+/24 \([\d.]+%\)", line)]
    assert progress and "completed    24/24 (100.0%), 1 failed" in progress[-1], done.stdout
    assert "accuracy   21/24 = 87.5%" in done.stdout
    assert "wrong      geo-ocean" in done.stdout
