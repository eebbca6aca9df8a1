"""DAGs whose batches the "OpenAI Batches" API tests look at (real dag.test() runs, fake server).

``e2e_ui_private`` is the DAG the tests' auth manager hides from non-admin users.
"""

from __future__ import annotations

from airflow.sdk import dag

from airflow_provider_openai_batch import OpenAIBatchOperator

INPUT = "{{ dag_run.conf['input_file'] }}"
PLANTED = "<script>window.__planted = 'metadata'</script>"


@dag(schedule=None, catchup=False, tags=["e2e"])
def e2e_ui_team():
    OpenAIBatchOperator(
        task_id="batch",
        input_file=INPUT,
        metadata={"note": PLANTED},
        retry_on_token_limit=False,
        poll_interval=0.2,
    )


@dag(schedule=None, catchup=False, tags=["e2e"])
def e2e_ui_submit_only():
    OpenAIBatchOperator(task_id="batch", input_file=INPUT, wait_for_completion=False)


@dag(schedule=None, catchup=False, tags=["e2e"])
def e2e_ui_private():
    OpenAIBatchOperator(task_id="batch", input_file=INPUT, poll_interval=0.2)


e2e_ui_team()
e2e_ui_submit_only()
e2e_ui_private()
