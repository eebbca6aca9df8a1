"""DAGs that leave batches in every state for ``make test-ui`` (run_ui.py) to look at in a browser.

Input files come from ``OPENAI_BATCH_UI_DATA`` (written by run_ui.py before Airflow starts).
The fake server decides the outcomes (run_ui.py arms it): a token-limit failure with a planted
<script> in its message, failed requests in a completed batch, batches left in flight (one
mapped), one expired with partial results, one for the admin to cancel from the page.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import dag

from airflow_provider_openai_batch import OpenAIBatchOperator

DATA = Path(os.environ.get("OPENAI_BATCH_UI_DATA", "/nonexistent"))
PLANTED = "<script>window.__planted = 'metadata'</script>"
FAST = {"poll_interval": 2}


@dag(schedule=None, catchup=False, tags=["ui"])
def ui_token_limit():
    OpenAIBatchOperator(
        task_id="batch",
        input_file=str(DATA / "small.jsonl"),
        metadata={"note": PLANTED},
        retry_on_token_limit=False,
        retries=0,
        **FAST,
    )


@dag(schedule=None, catchup=False, tags=["ui"])
def ui_completed_with_failures():
    OpenAIBatchOperator(task_id="batch", input_file=str(DATA / "mixed.jsonl"), **FAST)


@dag(schedule=None, catchup=False, tags=["ui"])
def ui_in_flight():
    OpenAIBatchOperator.partial(task_id="batch", wait_for_completion=False).expand(
        input_file=[str(DATA / "shard-0.jsonl"), str(DATA / "shard-1.jsonl")]
    )


@dag(schedule=None, catchup=False, tags=["ui"])
def ui_to_expire():
    OpenAIBatchOperator(task_id="batch", input_file=str(DATA / "large.jsonl"), wait_for_completion=False)


@dag(schedule=None, catchup=False, tags=["ui"])
def ui_to_cancel():
    OpenAIBatchOperator(task_id="batch", input_file=str(DATA / "large.jsonl"), wait_for_completion=False)


ui_token_limit()
ui_completed_with_failures()
ui_in_flight()
ui_to_expire()
ui_to_cancel()
