"""Test-wide set-up that must happen before anything imports Airflow.

Airflow reads AIRFLOW_HOME and its config when first imported, so the throwaway home,
the DAGs folder and the SQLite DB are chosen here, at the top of the root conftest,
which pytest imports before any test module. Nothing a test does touches ~/airflow.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="openai-batch-tests-"))
DAGS_FOLDER = AIRFLOW_HOME / "dags"
DAGS_FOLDER.mkdir()

os.environ["AIRFLOW_HOME"] = str(AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_FOLDER)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
os.environ.pop("AIRFLOW_CONN_OPENAI_DEFAULT", None)
# The example DAGs read these at parse time: poll fast, keep artifacts in the throwaway home.
os.environ["OPENAI_BATCH_POLL_INTERVAL"] = "0.2"
os.environ["OPENAI_BATCH_EXAMPLES_BASE"] = f"file://{AIRFLOW_HOME / 'artifacts'}"

# The DAGs that e2e tests run live in the configured DAGs folder, as dag.test() requires.
for source in [*(REPO / "tests" / "e2e" / "dags").glob("*.py"), *(REPO / "example_dags").glob("*.py")]:
    if not source.name.startswith(("_", "run_")):
        shutil.copy(source, DAGS_FOLDER / source.name)
if (REPO / "example_dags" / "data").is_dir():
    shutil.copytree(REPO / "example_dags" / "data", DAGS_FOLDER / "data")


@pytest.fixture
def output(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture):
    """Everything the run printed or logged so far: stdout, stderr and the log records pytest captured."""
    seen: list[str] = []

    def _read() -> str:
        captured = capfd.readouterr()
        seen.append(captured.out + captured.err)
        return "".join(seen) + caplog.text

    return _read


@pytest.fixture(autouse=True)
def _fresh_connection_lookups():
    """Tests point one connection id at a new fake server each time: no lookup carries over.

    Only once the hook module is loaded, so tests of Airflow-free code do not import Airflow.
    """
    yield
    hooks = sys.modules.get("airflow_provider_openai_batch.hooks.batch")
    if hooks is not None:
        hooks.forget_recent_connections()


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)
