"""How the batch operator submits: the state it starts from, the upload, submit-once through the
hook with the batch recorded before any wait, and a resubmission after a full enqueued-token queue
(floor 3).

The decisions live on floor 1 (submit-once and its idempotency key in
:mod:`~airflow_provider_openai_batch.submitting.submission`, when to resubmit in
:class:`~airflow_provider_openai_batch.submitting.resubmit.TokenLimitPolicy`); this module
is the Airflow side of them: the task instance, its log, its XComs, deferring or sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from airflow_provider_openai_batch import defaults
from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook
from airflow_provider_openai_batch.inputs.sources import describe_source
from airflow_provider_openai_batch.operators._finish import push_link
from airflow_provider_openai_batch.submitting.resubmit import TokenLimitPolicy
from airflow_provider_openai_batch.submitting.submission import idempotency_key
from airflow_provider_openai_batch.triggers.batch import OpenAIBatchResubmitTrigger
from airflow_provider_openai_batch.waiting.outcome import ResumeState, WaitOutcome


def start_state(context: Any, fingerprint: str, timeout: float | None) -> ResumeState:
    """What a submission starts from: this task instance's idempotency key, the input's fingerprint,
    the wait's deadline and the bound of the re-attach look-up."""
    ti = context["ti"]
    return ResumeState(
        key=idempotency_key(ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1)),
        fingerprint=fingerprint,
        end_time=time.time() + timeout if timeout is not None else None,
        created_after=created_after(context),
    )


def created_after(context: Any) -> float | None:
    """The earliest time this task instance could have created a batch: its DAG run's ``run_after``.

    A task of a run never starts before the run's ``run_after``, and clearing the run keeps it
    (unlike ``start_date``), so retries and clears find batches made by earlier tries. A
    clock-skew margin covers a server clock behind ours. None (no DAG run in the context)
    falls back to a count-bounded look-up.
    """
    dag_run = context.get("dag_run") if hasattr(context, "get") else None
    for name in ("run_after", "logical_date", "start_date"):
        when = getattr(dag_run, name, None)
        if when is not None:
            return when.timestamp() - defaults.REATTACH_CLOCK_SKEW
    return None


def upload(task: Any, hook: OpenAIBatchHook, source: Any, expires_after: int | None) -> str:
    """Upload the (validated) input; called by submit-once only when a new batch is really needed."""
    uploaded = hook.upload_file(source, "batch", expires_after=expires_after)
    task.log.info("Uploaded %s as %s (%s bytes)", describe_source(source), uploaded.id, uploaded.bytes)
    return uploaded.id


def submit(
    task: Any,
    context: Any,
    hook: OpenAIBatchHook,
    conn_id: str,
    state: ResumeState,
    input_file_id: Callable[[], str],
    **create: Any,
) -> Batch:
    """Re-attach to this task instance's batch or create it (``create``: the create parameters), say
    which, and record it before any wait, so a crash never loses it: the task's ``batch_id`` (what
    its ``on_kill`` cancels), the XCom ``batch_id`` and the UI link."""
    submission = hook.submit_once(
        key=state.key,
        fingerprint=state.fingerprint,
        input_file_id=input_file_id,
        created_after=state.created_after,
        **create,
    )
    batch = submission.batch
    verb = "Re-attached to" if submission.reattached else "Created"
    task.log.info("%s batch %s (%s) on %s", verb, batch.id, batch.status.value, hook.base_url)
    task.batch_id = batch.id
    context["ti"].xcom_push(key="batch_id", value=batch.id)
    url = push_link(context, hook, conn_id, batch.id)
    if url:
        task.log.info("Follow it at %s", url)
    return batch


def wait_to_resubmit(
    task: Any, policy: TokenLimitPolicy, outcome: WaitOutcome, state: ResumeState, delay: float, *, deferrable: bool
) -> ResumeState:
    """Wait ``delay`` seconds before resubmitting: deferred (the task resumes in its ``resubmit``
    method with the state as the event's ``carry``) or asleep in the worker; return the state to go on with."""
    state = policy.after_waiting(state, delay)
    task.log.warning(policy.describe(outcome, state, delay))
    if deferrable:
        carry = state.model_dump(mode="json")
        task.defer(trigger=OpenAIBatchResubmitTrigger(time.time() + delay, carry), method_name="resubmit")
    time.sleep(delay)
    return state
