"""Fault-injection set-up: a fake server with a recognisable key, and a task-instance stand-in.

The stand-in is the narrow piece a server cannot provide: the identity of a task instance
(dag, task, run, map index) that a retry shares, and an ``xcom_push`` that records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_openai_batch.testing import FakeOpenAIServer

SECRET = "reliability-secret-key-never-logged-5d1e"


@dataclass
class TaskInstanceStandIn:
    dag_id: str = "reliability"
    task_id: str = "batch"
    run_id: str = "manual__1"
    map_index: int = -1
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=SECRET, validating_seconds=0.2, in_progress_seconds=1.0) as fake:
        conn = {"conn_type": "openai_batch", "password": SECRET, "host": fake.url}
        monkeypatch.setenv("AIRFLOW_CONN_OPENAI_DEFAULT", json.dumps(conn))
        yield fake


def write_requests(path: Path, count: int = 4, prefix: str = "r") -> Path:
    with path.open("w") as handle:
        for n in range(count):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{n}"}]}
            handle.write(
                json.dumps({"custom_id": f"{prefix}{n}", "method": "POST", "url": "/v1/chat/completions", "body": body})
                + "\n"
            )
    return path
