"""Nightly eval, event-driven: one DAG submits and finishes; another runs for each batch that ends.

No task waits for a batch here. ``OpenAIBatchEventTrigger`` watches the connection's whole fleet
(one poll for every watcher of the connection on Airflow 3.3) and each batch of the pipeline that
ends becomes an asset event; ``nightly_eval_events_score`` is scheduled on that asset. With OpenAI
webhooks pointed at ``/openai-batch/webhooks/openai_default`` the event comes within seconds of the
batch ending, and the watcher's poll is only a safety net.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, AssetWatcher, ObjectStoragePath, dag, task

from airflow_provider_openai_batch import OpenAIBatchEventTrigger, OpenAIBatchOperator, OpenAIBatchResultsOperator
from airflow_provider_openai_batch.inputs.builder import requests_from_template, write_batch_requests

EVAL_SET = Path(__file__).parent / "data" / "nightly_eval_set.jsonl"
BASE = os.environ.get("OPENAI_BATCH_EXAMPLES_BASE", "file:///tmp/openai-batch-examples")
MODEL = os.environ.get("OPENAI_BATCH_EVAL_MODEL", "gpt-4o-mini")
WATCH_POLL = float(os.environ.get("OPENAI_BATCH_WATCH_INTERVAL", "300"))
PIPELINE = "nightly_eval_events"

BATCHES_ENDED = Asset(
    name="openai_batches_nightly_eval",
    uri="openai-batch://openai_default/nightly_eval_events",
    watchers=[
        AssetWatcher(
            name="nightly_eval_batches",
            trigger=OpenAIBatchEventTrigger(
                conn_id="openai_default", metadata_filter={"pipeline": PIPELINE}, poll_interval=WATCH_POLL
            ),
        )
    ],
)

SUBMIT_DOC = """
### Nightly eval, event-driven: submit

Builds tonight's requests and submits the batch with metadata `pipeline=nightly_eval_events` and the
run's folder, then finishes: no task holds a worker or a triggerer slot while OpenAI works.
`nightly_eval_events_score` runs when the batch ends.
"""

SCORE_DOC = """
### Nightly eval, event-driven: land and score

Scheduled on the asset `openai_batches_nightly_eval`, which an `OpenAIBatchEventTrigger` (and the
webhook receiver, when OpenAI webhooks are set up) updates once per batch of the pipeline that ends.
Each run lands and scores the batches that ended since the last run (usually one).
"""


@dag(
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=SUBMIT_DOC,
    tags=["openai", "batch", "eval", "events"],
)
def nightly_eval_events_submit():
    @task(multiple_outputs=True)
    def build_requests(run_id: str | None = None) -> dict[str, str]:
        folder = ObjectStoragePath(BASE) / PIPELINE / re.sub(r"[^A-Za-z0-9_.-]", "_", run_id or "manual")
        folder.mkdir(parents=True, exist_ok=True)
        with EVAL_SET.open() as handle:
            records = [json.loads(line) for line in handle if line.strip()]
        requests = requests_from_template(
            records, model=MODEL, template="{question}", system="Reply with the answer only.", temperature=0
        )
        write_batch_requests(folder / "requests.jsonl", requests, "/v1/chat/completions")
        return {"folder": str(folder), "input_file": str(folder / "requests.jsonl")}

    paths = build_requests()
    OpenAIBatchOperator(
        task_id="submit",
        input_file=paths["input_file"],
        # The scoring DAG finds the run's folder in the batch's metadata (values up to 512 characters).
        metadata={"pipeline": PIPELINE, "folder": "{{ ti.xcom_pull(task_ids='build_requests', key='folder') }}"},
        wait_for_completion=False,
    )


@dag(
    schedule=[BATCHES_ENDED],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=SCORE_DOC,
    tags=["openai", "batch", "eval", "events"],
)
def nightly_eval_events_score():
    @task
    def ended_batches(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """One entry per batch that ended (the event payload the watcher or the webhook built)."""
        batches = []
        for event in triggering_asset_events[BATCHES_ENDED]:
            payload = event.extra["payload"]
            folder = payload["metadata"].get("folder") or f"{BASE}/{PIPELINE}/{payload['batch_id']}"
            print(f"Batch {payload['batch_id']} ended: {payload['status']} {payload['request_counts']}")
            batches.append(
                {
                    "batch_id": payload["batch_id"],
                    "destination": f"{folder}/results.jsonl",
                    "input_file": f"{folder}/requests.jsonl",
                }
            )
        return batches

    manifests = OpenAIBatchResultsOperator.partial(task_id="land_results").expand_kwargs(ended_batches())

    @task
    def score(manifest: dict[str, Any]) -> dict[str, Any]:
        with EVAL_SET.open() as handle:
            expected = {row["id"]: row["expected"].lower() for row in map(json.loads, handle) if row}
        correct = 0
        with ObjectStoragePath(manifest["result_path"]).open("r") as handle:
            for record in map(json.loads, handle):
                choices = (record.get("response") or {}).get("choices") or [{}]
                answer = ((choices[0].get("message") or {}).get("content") or "").lower()
                correct += bool(answer) and expected.get(record["custom_id"], "\0") in answer
        report = {"batch_ids": manifest["batch_ids"], "questions": len(expected), "correct": correct}
        print(f"Accuracy {correct}/{len(expected)} for {manifest['batch_ids']}")
        return report

    score.expand(manifest=manifests.output)


nightly_eval_events_submit()
nightly_eval_events_score()
