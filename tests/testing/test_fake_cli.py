"""``python -m airflow_provider_openai_batch.testing``: prints its URL first and stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_module_serves_until_interrupted(stop_signal: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_openai_batch.testing", "--port", "0", "--api-key", "sk-cli"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/v1")
        with httpx.Client(base_url=url) as client:
            assert client.get("/batches", headers={"Authorization": "Bearer sk-cli"}).status_code == 200
            assert client.get("/batches", headers={"Authorization": "Bearer other"}).status_code == 401
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, stderr
    assert "sk-cli" not in stderr


def test_the_package_does_not_import_airflow() -> None:
    code = (
        "import sys, airflow_provider_openai_batch.testing\n"
        "sys.exit(any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules))"
    )

    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
