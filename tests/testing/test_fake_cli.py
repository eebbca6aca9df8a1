"""``python -m airflow_provider_openai_batch.testing``: prints its URL first and stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest
from fake_helpers import fake_cli


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_module_serves_until_interrupted(stop_signal: signal.Signals) -> None:
    with fake_cli("--api-key", "sk-cli") as (process, url):
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/v1")
        with httpx.Client(base_url=url) as client:
            assert client.get("/batches", headers={"Authorization": "Bearer sk-cli"}).status_code == 200
            assert client.get("/batches", headers={"Authorization": "Bearer other"}).status_code == 401
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=30)

    assert process.returncode == 0, stderr
    assert "sk-cli" not in stderr


def test_the_package_does_not_import_airflow() -> None:
    code = (
        "import sys, airflow_provider_openai_batch.testing\n"
        "sys.exit(any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules))"
    )

    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
