"""Deployment test DAG: one deferrable ``OpenAIBatchOperator`` against a misbehaving API.

``tests/deployment/run_deployment.py`` copies this file into the DAGs folder of a real Airflow
deployment and points the connection ``openai_faults`` at a fake server of its own that answers
20% of requests with 429 and 5% with 503, and fails the first batch with
``token_limit_exceeded``. The operator must wait the faults out, wait deferred (in the
triggerer) for the token queue, resubmit the same uploaded file and succeed; ``check`` asserts
what the task pushed. The runner asserts the server side (one upload, two batches) through
``/_fake/stats``.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from typing import Any

from airflow.sdk import ObjectStoragePath, dag, task

from airflow_provider_openai_batch import OpenAIBatchOperator

BASE = os.environ.get("OPENAI_BATCH_EXAMPLES_BASE", "file:///tmp/openai-batch-examples")
POLL = float(os.environ.get("OPENAI_BATCH_POLL_INTERVAL", "60"))
CONN_ID = os.environ.get("OPENAI_BATCH_FAULTS_CONN_ID", "openai_faults")
REQUESTS = 30
TOKEN_LIMIT_RETRY_DELAY = 8.0
"""Short, but not under ~5 s: see TRIGGER_MIN_DELAY in run_deployment.py."""


@dag(
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["openai", "batch", "deployment-test"],
    default_args={"retries": 0},
)
def openai_batch_faults():
    @task
    def build_requests(run_id: str | None = None) -> str:
        folder = ObjectStoragePath(BASE) / "faults" / re.sub(r"[^A-Za-z0-9_.-]", "_", run_id or "manual")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "requests.jsonl"
        with path.open("w") as handle:
            for n in range(REQUESTS):
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Question {n}?"}]}
                line = {"custom_id": f"q-{n}", "method": "POST", "url": "/v1/chat/completions", "body": body}
                handle.write(json.dumps(line) + "\n")
        return str(path)

    batch = OpenAIBatchOperator(
        task_id="batch",
        input_file=build_requests(),
        endpoint="/v1/chat/completions",
        conn_id=CONN_ID,
        metadata={"pipeline": "deployment-faults"},
        poll_interval=POLL,
        deferrable=True,
        token_limit_retry_delay=TOKEN_LIMIT_RETRY_DELAY,
        token_limit_max_wait=60.0,
        timeout=600.0,
    )

    @task
    def check(batch_id: str, ti: Any = None) -> dict[str, Any]:
        """The operator's XComs after a fault-ridden wait and one resubmission."""
        counts = ti.xcom_pull(task_ids="batch", key="request_counts")
        pushed_id = ti.xcom_pull(task_ids="batch", key="batch_id")
        output_file_id = ti.xcom_pull(task_ids="batch", key="output_file_id")
        assert batch_id.startswith("batch_"), batch_id
        assert pushed_id == batch_id, (pushed_id, batch_id)
        assert counts == {"total": REQUESTS, "completed": REQUESTS, "failed": 0}, counts
        assert output_file_id and output_file_id.startswith("file-"), output_file_id
        print(f"Batch {batch_id} completed {counts['completed']}/{counts['total']}; output {output_file_id}")
        return {"batch_id": batch_id, "request_counts": counts, "output_file_id": output_file_id}

    check(batch.output)


openai_batch_faults()
