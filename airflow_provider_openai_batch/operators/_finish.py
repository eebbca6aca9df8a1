"""What the operator and the sensor share around the Waiter: the deferrable default, the UI link,
the deferral backstop, the one way a task finishes a wait, and cancelling a batch the task owns (floor 3).

Finishing is the same for both: push ``output_file_id``, ``error_file_id`` and ``request_counts``
(also for expired/cancelled batches, whose partial output was paid for), cancel a timed-out
batch when the task owns it, then pass or fail on the
:class:`~airflow_provider_openai_batch.waiting.outcome.WaitOutcome` and say its message.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, NoReturn

from airflow_provider_openai_batch import defaults
from airflow_provider_openai_batch.api.exceptions import BatchTerminalError
from airflow_provider_openai_batch.api.statuses import BATCH_OUTCOMES
from airflow_provider_openai_batch.compat import AirflowFailException, conf, xcom_push
from airflow_provider_openai_batch.links import RECORD_XCOM_KEY, batch_record, dashboard_url
from airflow_provider_openai_batch.links import XCOM_KEY as LINK_XCOM_KEY
from airflow_provider_openai_batch.triggers.batch import OpenAIBatchTrigger
from airflow_provider_openai_batch.waiting.outcome import WaitOutcome
from airflow_provider_openai_batch.waiting.waiter import Step, Waiter

DEFAULT_DEFERRABLE: bool = conf.getboolean("operators", "default_deferrable", fallback=True)
"""Airflow's ``[operators] default_deferrable`` when the operator and sensor classes are imported."""


def push_link(context: Any, hook: Any, conn_id: str, batch_id: str) -> str | None:
    """Push the batch's dashboard URL (the task's extra link) and its record for the "OpenAI Batches" page."""
    url = dashboard_url(batch_id, hook.base_url, hook.dashboard_template)
    context["ti"].xcom_push(key=LINK_XCOM_KEY, value=url or "")
    context["ti"].xcom_push(key=RECORD_XCOM_KEY, value=batch_record(batch_id, conn_id, url))
    return url


def deferral_timeout(end_time: float | None, now: float, poll_interval: float) -> timedelta | None:
    """Airflow's own deferral timeout: a backstop a little after our deadline, so the trigger's clean event wins."""
    if end_time is None:
        return None
    return timedelta(seconds=max(0.0, end_time - now) + poll_interval + defaults.DEFERRAL_MARGIN)


def say(task: Any, step: Step) -> Step:
    """Log what the Waiter said (progress, transient errors) in the task's log."""
    for level, line in step.lines:
        task.log.log(level, line)
    return step


def defer_wait(
    task: Any, waiter: Waiter, conn_id: str, *, cancel_on_kill: bool, carry: dict[str, Any] | None = None
) -> NoReturn:
    """Hand the wait to the triggerer: the same Waiter settings, rebuilt there by the trigger."""
    task.log.info("Deferring: the triggerer polls batch %s every %ss", waiter.batch_id, waiter.poll_interval)
    trigger = OpenAIBatchTrigger(
        waiter.batch_id,
        conn_id,
        waiter.poll_interval,
        waiter.end_time,
        cancel_on_kill=cancel_on_kill,
        max_outage=waiter.max_outage,
        carry=carry,
    )
    timeout = deferral_timeout(waiter.end_time, time.time(), waiter.poll_interval)
    task.defer(trigger=trigger, method_name="execute_complete", timeout=timeout)
    raise AssertionError("defer() returned")  # pragma: no cover - Airflow's defer always raises


def finish(
    task: Any,
    context: Any,
    outcome: WaitOutcome,
    *,
    max_failed_ratio: float | None = None,
    cancel_with: Any = None,
    final_fails_without_retry: bool = False,
) -> WaitOutcome:
    """Push the outcome's ids and counts, then pass (say the message) or raise.

    :param cancel_with: the hook that cancels the batch after a ``timeout``, given when the task owns
        the batch and was asked to (the operator's ``cancel_on_timeout``; the sensor owns none).
    :param final_fails_without_retry: a batch's own end (failed, expired, ...) fails the task without
        retries - a retry would see the same state again (the sensor's choice).
    """
    ti = context["ti"]
    for key, value in outcome.xcom_values().items():
        xcom_push(ti, key, value)
    cancelled = False
    if cancel_with is not None and outcome.status == "timeout" and outcome.batch_id:
        cancelled = cancel_owned(task, cancel_with, outcome.batch_id, "the wait timed out")
    try:
        outcome.check(max_failed_ratio=max_failed_ratio, cancelled=cancelled)
    except BatchTerminalError as error:
        if final_fails_without_retry and error.status in BATCH_OUTCOMES:
            raise AirflowFailException(str(error)) from error
        raise
    (task.log.warning if outcome.has_failed_requests else task.log.info)(outcome.message)
    return outcome


def cancel_owned(task: Any, hook: Any, batch_id: str, why: str) -> bool:
    """Cancel a batch the task owns (the operator's, never the sensor's); say why, or why it could not be."""
    try:
        batch = hook.cancel_batch(batch_id)
    except Exception as error:
        task.log.warning("Could not cancel batch %s after %s: %s", batch_id, why, error)
        return False
    task.log.warning("Cancelled batch %s because %s (now %s)", batch_id, why, batch.status.value)
    return True
