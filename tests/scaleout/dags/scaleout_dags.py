"""DAGs of ``make test-scaleout``: the example pipelines' shapes on shared storage, several connections.

``tests/scaleout/run_scaleout.py`` copies this file into the DAGs folder of a CeleryExecutor
deployment. Every input, shard and landed result lives under the storage root given as a URI
(``OPENAI_BATCH_SCALEOUT_STORAGE``, ``file://`` on a folder every worker sees here, ``s3://`` in
production): a task may run on any worker, so nothing is kept on a worker's own disk.

* ``scaleout_backfill``: the ``embeddings_backfill`` example's shape. One input split into 20
  shards, one deferrable batch per shard (``.expand()``), the results landed and counted.
* ``scaleout_eval_a`` / ``scaleout_eval_b``: the ``nightly_eval`` example's shape (submit, then a
  deferrable sensor, land, check) on connection ``openai_a`` / ``openai_b``.
* ``scaleout_kill``: one deferrable batch with retries, on ``openai_b``: the runner kills the
  worker that runs it during the upload or during a create whose response is lost.

Each waiting task has a timeout, so its trigger carries a wall-clock ``end_time`` the runner can
compare before and after a triggerer dies.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import ObjectStoragePath, dag, task

from airflow_provider_openai_batch import (
    OpenAIBatchOperator,
    OpenAIBatchResultsOperator,
    OpenAIBatchSensor,
    OpenAIBatchSplitOperator,
)
from airflow_provider_openai_batch.inputs.builder import embedding_request, write_batch_requests

STORAGE = os.environ.get("OPENAI_BATCH_SCALEOUT_STORAGE", "file:///tmp/openai-batch-scaleout")
POLL = float(os.environ.get("OPENAI_BATCH_POLL_INTERVAL", "5"))
WAIT_TIMEOUT = 1800.0
"""Far beyond any batch here: the deadline only has to exist, so that it can be seen to survive."""
SHARDS = 20
DOCUMENTS_PER_SHARD = 5
QUESTIONS = 12
RETRY = {"retries": 1, "retry_delay": timedelta(seconds=2)}
"""Every task may meet a killed worker (scenario c kills one while the fleet runs): one retry each."""


def run_folder(dag_id: str, run_id: str | None) -> ObjectStoragePath:
    folder = ObjectStoragePath(STORAGE) / dag_id / re.sub(r"[^A-Za-z0-9_.-]", "_", run_id or "manual")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def count_landed(results: str) -> dict[str, int]:
    """Succeeded and failed lines of a landed results file (read back from shared storage)."""
    counts = {"succeeded": 0, "other": 0}
    with ObjectStoragePath(results).open("r") as handle:
        for line in handle:
            counts["succeeded" if json.loads(line)["status"] == "succeeded" else "other"] += 1
    return counts


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["openai", "scaleout"], default_args=RETRY)
def scaleout_backfill():
    @task(multiple_outputs=True)
    def build_input(run_id: str | None = None) -> dict[str, str]:
        folder = run_folder("scaleout_backfill", run_id)
        texts = (f"Document {n} about topic {n % 7}." for n in range(SHARDS * DOCUMENTS_PER_SHARD))
        requests = (embedding_request(f"doc-{n}", "text-embedding-3-small", text) for n, text in enumerate(texts))
        write_batch_requests(folder / "input.jsonl", requests, "/v1/embeddings")
        return {
            "input": str(folder / "input.jsonl"),
            "shards": str(folder / "shards"),
            "results": str(folder / "results.jsonl"),
        }

    paths = build_input()
    split = OpenAIBatchSplitOperator(
        task_id="split",
        source=paths["input"],
        destination=paths["shards"],
        endpoint="/v1/embeddings",
        max_requests=DOCUMENTS_PER_SHARD,
    )
    embed = OpenAIBatchOperator.partial(
        task_id="embed",
        endpoint="/v1/embeddings",
        conn_id="openai_a",
        poll_interval=POLL,
        timeout=WAIT_TIMEOUT,
    ).expand(input_file=split.output)
    land = OpenAIBatchResultsOperator(
        task_id="land",
        batch_id=embed.output,
        destination=paths["results"],
        input_file=paths["input"],
        conn_id="openai_a",
    )

    @task
    def check(manifest: dict[str, Any], results: str) -> dict[str, Any]:
        counts = count_landed(results)
        print(f"Landed {counts} from {len(manifest['batch_ids'])} batches at {results}")
        return {"landed": counts, "batch_ids": manifest["batch_ids"], "results": results}

    check(land.output, paths["results"])


def eval_dag(dag_id: str, conn_id: str):
    @dag(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["openai", "scaleout"],
        default_args=RETRY,
    )
    def scaleout_eval():
        @task(multiple_outputs=True)
        def build_requests(run_id: str | None = None) -> dict[str, str]:
            folder = run_folder(dag_id, run_id)
            with (folder / "requests.jsonl").open("w") as handle:
                for n in range(QUESTIONS):
                    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"What is {n} + {n}?"}]}
                    line = {"custom_id": f"q-{n}", "method": "POST", "url": "/v1/chat/completions", "body": body}
                    handle.write(json.dumps(line) + "\n")
            return {"input_file": str(folder / "requests.jsonl"), "results": str(folder / "results.jsonl")}

        paths = build_requests()
        submit = OpenAIBatchOperator(
            task_id="submit",
            input_file=paths["input_file"],
            conn_id=conn_id,
            metadata={"pipeline": dag_id},
            wait_for_completion=False,
        )
        wait = OpenAIBatchSensor(
            task_id="wait", batch_id=submit.output, conn_id=conn_id, poke_interval=POLL, timeout=WAIT_TIMEOUT
        )
        land = OpenAIBatchResultsOperator(
            task_id="land",
            batch_id=submit.output,
            destination=paths["results"],
            input_file=paths["input_file"],
            conn_id=conn_id,
        )

        @task
        def check(manifest: dict[str, Any], results: str) -> dict[str, Any]:
            counts = count_landed(results)
            print(f"Landed {counts} at {results}")
            return {"landed": counts, "batch_ids": manifest["batch_ids"], "results": results}

        wait >> land
        check(land.output, paths["results"])

    return scaleout_eval()


eval_dag("scaleout_eval_a", "openai_a")
eval_dag("scaleout_eval_b", "openai_b")


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["openai", "scaleout"], default_args=RETRY)
def scaleout_kill():
    @task
    def build_requests(run_id: str | None = None) -> str:
        folder = run_folder("scaleout_kill", run_id)
        with (folder / "kill_requests.jsonl").open("w") as handle:
            for n in range(QUESTIONS):
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Kill test {n}?"}]}
                handle.write(
                    json.dumps({"custom_id": f"k-{n}", "method": "POST", "url": "/v1/chat/completions", "body": body})
                    + "\n"
                )
        return str(folder / "kill_requests.jsonl")

    OpenAIBatchOperator(
        task_id="batch",
        input_file=build_requests(),
        conn_id="openai_b",
        poll_interval=POLL,
        timeout=WAIT_TIMEOUT,
        retries=2,
        retry_delay=timedelta(seconds=1),
    )


scaleout_backfill()
scaleout_kill()
