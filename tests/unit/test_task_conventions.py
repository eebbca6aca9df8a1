"""Airflow conventions of the operator and the sensor: the deferrable default and the sensor's first look."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_provider_openai_batch import OpenAIBatchSensor
from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook
from airflow_provider_openai_batch.testing import FakeOpenAIServer
from tests.reliability.conftest import TaskInstanceStandIn, write_requests

REPO = Path(__file__).resolve().parents[2]
SHOW_DEFAULTS = (
    "from airflow_provider_openai_batch import OpenAIBatchOperator, OpenAIBatchSensor; "
    "print(OpenAIBatchOperator(task_id='o', input_file='x.jsonl').deferrable, "
    "OpenAIBatchSensor(task_id='s', batch_id='b').deferrable)"
)


def test_deferrable_follows_airflows_default_deferrable():
    from airflow_provider_openai_batch import OpenAIBatchOperator
    from airflow_provider_openai_batch.compat import conf

    stock = conf.getboolean("operators", "default_deferrable", fallback=True)
    assert OpenAIBatchOperator(task_id="o", input_file="x.jsonl").deferrable is stock
    assert OpenAIBatchSensor(task_id="s", batch_id="b").deferrable is stock
    flipped = {**os.environ, "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": str(not stock)}
    out = subprocess.run([sys.executable, "-c", SHOW_DEFAULTS], cwd=REPO, env=flipped, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == f"{not stock} {not stock}", "the setting, read at import"


@pytest.fixture
def server(monkeypatch):
    with FakeOpenAIServer(validating_seconds=0.05, in_progress_seconds=0.05, finalizing_seconds=0.05) as fake:
        conn = {"conn_type": "openai_batch", "password": "test-key", "host": fake.url}
        monkeypatch.setenv("AIRFLOW_CONN_OPENAI_DEFAULT", json.dumps(conn))
        yield fake


def test_a_deferrable_sensor_on_a_finished_batch_finishes_at_once_without_deferring(server, tmp_path):
    hook = OpenAIBatchHook()
    batch_id = hook.create_batch(
        hook.upload_file(write_requests(tmp_path / "in.jsonl", 3)).id, "/v1/chat/completions"
    ).id
    while not hook.get_batch(batch_id).status.is_terminal:
        time.sleep(0.05)
    ti = TaskInstanceStandIn()
    sensor = OpenAIBatchSensor(task_id="wait", batch_id=batch_id, deferrable=True, poke_interval=60)
    output_file_id = sensor.execute({"ti": ti})  # a deferral would raise TaskDeferred here
    assert output_file_id == ti.xcoms["output_file_id"] and output_file_id.startswith("file-")
    assert ti.xcoms["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
