"""Deployment test DAG: 200 batches waiting together in one real triggerer.

``tests/deployment/run_deployment.py`` creates the batches on a fake server of their own
(connection ``openai_fleet``; they stay ``in_progress`` for the whole test) and writes their
ids to the file named by ``OPENAI_BATCH_FLEET_IDS`` before Airflow starts. Each task starts
straight in the triggerer (``start_from_trigger``: the scheduler defers it, no worker runs
it), so 200 ``OpenAIBatchTrigger`` instances wait in one triggerer within seconds, and the
runner counts, from that fake server's request log, how many requests one poll interval of
all of them costs (the shared paged poller: ``ceil(200 / 100) + 5`` at most).

Airflow 3.3 hands the triggerer the whole serialized DAG with each start-from-trigger task (to
render its templates): while these 200 start, the triggerer's loop deserializes a 200-task DAG
200 times and reports itself blocked. The runner therefore starts this DAG after the other
runs and judges the loop only once the fleet is polling.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, dag
from airflow.triggers.base import StartTriggerArgs

IDS_FILE = os.environ.get("OPENAI_BATCH_FLEET_IDS", "")
BATCH_IDS: list[str] = json.loads(Path(IDS_FILE).read_text()) if IDS_FILE and Path(IDS_FILE).exists() else []
POLL = float(os.environ.get("OPENAI_BATCH_FLEET_POLL_INTERVAL", "6"))


class WaitInTriggerer(BaseOperator):
    """Waits for one batch with ``OpenAIBatchTrigger`` from the start, without a worker run."""

    start_from_trigger = True

    def __init__(self, *, batch_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_trigger_args = StartTriggerArgs(
            trigger_cls="airflow_provider_openai_batch.triggers.batch.OpenAIBatchTrigger",
            trigger_kwargs={"batch_id": batch_id, "conn_id": "openai_fleet", "poll_interval": POLL, "end_time": None},
            next_method="execute_complete",
        )

    def execute(self, context: Any) -> None:
        raise RuntimeError("this task starts in the triggerer")

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        return (event or {}).get("status")


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["openai", "batch", "deployment-test"])
def openai_batch_fleet():
    for index, batch_id in enumerate(BATCH_IDS):
        WaitInTriggerer(task_id=f"wait_{index:03d}", batch_id=batch_id)


openai_batch_fleet()
