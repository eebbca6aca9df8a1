"""DAGs the end-to-end tests run with real Airflow dag.test() against the fake server.

The input file comes from ``dag_run.conf["input_file"]`` so one DAG serves many cases.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from airflow_provider_openai_batch import OpenAIBatchOperator, OpenAIBatchSensor
from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook

INPUT = "{{ dag_run.conf['input_file'] }}"
FAST = {"poll_interval": 0.2, "deferrable": True}
"""Deferred explicitly: the default follows ``[operators] default_deferrable``, which is False in stock Airflow."""


@dag(schedule=None, catchup=False, tags=["e2e"])
def e2e_operator_deferrable():
    OpenAIBatchOperator(task_id="batch", input_file=INPUT, **FAST)


@dag(schedule=None, catchup=False, tags=["e2e"])
def e2e_operator_sync():
    OpenAIBatchOperator(task_id="batch", input_file=INPUT, deferrable=False, poll_interval=0.2)


@dag(schedule=None, catchup=False, tags=["e2e"])
def e2e_operator_timeout():
    OpenAIBatchOperator(task_id="batch", input_file=INPUT, timeout=0.5, **FAST)


@dag(schedule=None, catchup=False, tags=["e2e"])
def e2e_operator_token_limit():
    OpenAIBatchOperator(task_id="batch", input_file=INPUT, token_limit_retry_delay=0.5, **FAST)


@dag(schedule=None, catchup=False, tags=["e2e"])
def e2e_submit_then_sense():
    submit = OpenAIBatchOperator(task_id="submit", input_file=INPUT, wait_for_completion=False)
    wait = OpenAIBatchSensor(task_id="wait", batch_id=submit.output, poke_interval=0.2, deferrable=True)

    @task
    def read_results(output_file_id: str) -> int:
        return sum(1 for line in OpenAIBatchHook().iter_file_lines(output_file_id) if line.strip())

    read_results(wait.output)


@dag(schedule=None, catchup=False, tags=["e2e"])
def e2e_sensor_poke():
    submit = OpenAIBatchOperator(task_id="submit", input_file=INPUT, wait_for_completion=False)
    OpenAIBatchSensor(task_id="wait", batch_id=submit.output, deferrable=False, mode="poke", poke_interval=0.2)


e2e_operator_deferrable()
e2e_operator_sync()
e2e_operator_timeout()
e2e_operator_token_limit()
e2e_submit_then_sense()
e2e_sensor_poke()
