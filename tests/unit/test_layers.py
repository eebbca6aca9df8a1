"""Floor 1 (models, client, files, results, polling, the fake server) must work without Airflow."""

from __future__ import annotations

import subprocess
import sys

FLOOR_ONE = [
    "models",
    "exceptions",
    "sources",
    "retry",
    "client",
    "batchfile",
    "params",
    "splitter",
    "builder",
    "results",
    "landing",
    "retry_file",
    "polling",
    "outcome",
    "submission",
    "testing",
]


def test_floor_one_modules_do_not_import_airflow():
    imports = "; ".join(f"import airflow_provider_openai_batch.{name}" for name in FLOOR_ONE)
    check = "import sys; print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    result = subprocess.run([sys.executable, "-c", f"{imports}; {check}"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
