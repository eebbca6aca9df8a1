"""Small builders for e2e tests: batch input files, and a DagBag on every Airflow 3 minor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def dag_bag(folder: str) -> Any:
    """Parse the DAGs of ``folder``; DagBag moved from ``airflow.models`` to ``airflow.dag_processing`` in 3.1."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.0
        from airflow.models.dagbag import DagBag
    return DagBag(dag_folder=folder)


def write_chat_requests(path: Path, count: int = 5, *, model: str = "gpt-4o-mini", prefix: str = "req") -> Path:
    with path.open("w") as handle:
        for n in range(count):
            body = {"model": model, "messages": [{"role": "user", "content": f"Question {n}?"}]}
            line = {"custom_id": f"{prefix}-{n}", "method": "POST", "url": "/v1/chat/completions", "body": body}
            handle.write(json.dumps(line) + "\n")
    return path
