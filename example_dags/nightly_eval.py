"""Nightly evaluation pipeline on the OpenAI Batch API (the main example; ``make demo`` runs it)."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import ObjectStoragePath, dag, task

from airflow_provider_openai_batch import OpenAIBatchOperator, OpenAIBatchResultsOperator, OpenAIBatchSensor
from airflow_provider_openai_batch.inputs.builder import requests_from_template, write_batch_requests

EVAL_SET = Path(__file__).parent / "data" / "nightly_eval_set.jsonl"
BASE = os.environ.get("OPENAI_BATCH_EXAMPLES_BASE", "file:///tmp/openai-batch-examples")
MODEL = os.environ.get("OPENAI_BATCH_EVAL_MODEL", "gpt-4o-mini")
POLL = float(os.environ.get("OPENAI_BATCH_POLL_INTERVAL", "60"))

DOC = """
### Nightly eval on the OpenAI Batch API

Every night this DAG grades a model on a fixed question set at half the synchronous price:

1. **build_requests** turns `data/nightly_eval_set.jsonl` (questions with expected answers) into a
   batch input file with the request builder, under `OPENAI_BATCH_EXAMPLES_BASE/<run>/`.
2. **submit** validates the file locally (line numbers for every problem, nothing uploaded when it
   is bad), uploads it and creates the batch. It does not wait, so no worker is held.
   Retries and clears re-attach to the batch already made: never two billed batches per run.
3. **wait** is a deferrable sensor: the triggerer polls; the task log shows progress
   (`in_progress 12/24 (50.0%)`) and the **OpenAI Batch** button links to the dashboard.
4. **land_results** joins the output and error files by `custom_id` into one JSONL in input order
   (also for expired or cancelled batches: their partial output was paid for).
5. **score** compares answers with the expected ones and writes `report.json`: accuracy, the
   failures, token usage. The report is the DAG's return value.

Set the connection `openai_default` (type `openai_batch`) and `OPENAI_BATCH_EVAL_MODEL`.
"""


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def answer_text(record: dict[str, Any]) -> str | None:
    """The assistant's text in a landed chat-completions result, if the request succeeded."""
    body = record.get("response") or {}
    choices = body.get("choices") or []
    if record.get("status") != "succeeded" or not choices:
        return None
    return (choices[0].get("message") or {}).get("content")


def is_correct(answer: str | None, expected: str) -> bool:
    """Lenient exact-match grading: the expected answer appears as whole words in the reply."""
    if answer is None:
        return False
    return f" {_normalise(expected)} " in f" {_normalise(answer)} "


@dag(
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["openai", "batch", "eval"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
)
def nightly_eval():
    @task(multiple_outputs=True)
    def build_requests(run_id: str | None = None) -> dict[str, str]:
        """Write tonight's batch input file; return where every artifact of this run goes."""
        folder = ObjectStoragePath(BASE) / "nightly_eval" / re.sub(r"[^A-Za-z0-9_.-]", "_", run_id or "manual")
        folder.mkdir(parents=True, exist_ok=True)
        with EVAL_SET.open() as handle:
            records = [json.loads(line) for line in handle if line.strip()]
        requests = requests_from_template(
            records,
            model=MODEL,
            template="{question}",
            system="You are graded by exact match. Reply with the answer only.",
            temperature=0,
            max_tokens=20,
        )
        summary = write_batch_requests(folder / "requests.jsonl", requests, "/v1/chat/completions")
        print(f"Built {summary.requests} requests for {MODEL} ({summary.bytes} bytes)")
        return {
            "input_file": str(folder / "requests.jsonl"),
            "results": str(folder / "results.jsonl"),
            "report": str(folder / "report.json"),
        }

    paths = build_requests()
    submit = OpenAIBatchOperator(
        task_id="submit",
        input_file=paths["input_file"],
        endpoint="/v1/chat/completions",
        metadata={"pipeline": "nightly_eval", "run": "{{ run_id }}"},
        output_expires_after=7 * 24 * 3600,
        wait_for_completion=False,
    )
    wait = OpenAIBatchSensor(
        task_id="wait", batch_id=submit.output, poke_interval=POLL, max_failed_ratio=0.25, deferrable=True
    )
    land = OpenAIBatchResultsOperator(
        task_id="land_results",
        batch_id=submit.output,
        destination=paths["results"],
        input_file=paths["input_file"],
        trigger_rule="all_done",
    )

    @task
    def score(manifest: dict[str, Any], results: str, report: str) -> dict[str, Any]:
        """Grade every answer against the eval set and write the night's report."""
        with EVAL_SET.open() as handle:
            expected = {row["id"]: row["expected"] for row in map(json.loads, handle) if row}
        graded, failures = 0, []
        with ObjectStoragePath(results).open("r") as handle:
            for line in iter(handle.readline, ""):  # readline: Airflow 3.0's storage file cannot be iterated
                record = json.loads(line)
                answer = answer_text(record)
                if is_correct(answer, expected.get(record["custom_id"], "")):
                    graded += 1
                else:
                    failures.append(
                        {
                            "id": record["custom_id"],
                            "status": record["status"],
                            "expected": expected.get(record["custom_id"]),
                            "got": answer if answer is not None else (record.get("error") or {}).get("message"),
                        }
                    )
        total = len(expected)
        summary = {
            "batch_ids": manifest["batch_ids"],
            "model": ", ".join(manifest.get("models") or [MODEL]),
            "questions": total,
            "correct": graded,
            "accuracy": round(graded / total, 4) if total else 0.0,
            "result_counts": manifest["counts"],
            "usage": manifest["usage"],
            "failures": failures,
            "report_path": report,
        }
        with ObjectStoragePath(report).open("w") as handle:
            json.dump(summary, handle, indent=2)
        print(f"Accuracy {graded}/{total} = {summary['accuracy']:.1%}; report at {report}")
        for failure in failures:
            print(f"  wrong: {failure['id']}: expected {failure['expected']!r}, got {failure['got']!r}")
        return summary

    wait >> land
    score(land.output, paths["results"], paths["report"])


nightly_eval()
