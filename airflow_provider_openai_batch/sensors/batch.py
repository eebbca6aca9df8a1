"""OpenAIBatchSensor: gate downstream tasks on a batch made elsewhere (floor 3).

Typical nightly shape: ``OpenAIBatchOperator(wait_for_completion=False)`` submits and
frees the worker, the sensor waits (deferred by default, through the same trigger as
the operator; poke and reschedule modes use the same poll decision), and on
``completed`` returns ``output_file_id``. Expired batches push their partial file ids
before failing, so a downstream task with a trigger rule can still land them. Such
final outcomes fail without retries (the batch will not change its mind). The sensor
does not own the batch: killing it or timing out does not cancel the batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow_provider_openai_batch.api.exceptions import BatchTerminalError
from airflow_provider_openai_batch.compat import AirflowFailException, BaseSensorOperator, PokeReturnValue
from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook
from airflow_provider_openai_batch.links import RECORD_XCOM_KEY, OpenAIBatchLink, batch_record, dashboard_url
from airflow_provider_openai_batch.links import XCOM_KEY as LINK_XCOM_KEY
from airflow_provider_openai_batch.triggers.batch import DEFAULT_MAX_OUTAGE, OpenAIBatchTrigger
from airflow_provider_openai_batch.waiting.outcome import check_outcome, xcom_values
from airflow_provider_openai_batch.waiting.polling import decide, event_payload, is_transient, progress

FINAL_OUTCOMES = frozenset({"completed", "failed", "expired", "cancelled"})
"""Outcomes a sensor retry cannot change (``timeout`` and ``error`` may clear up on a retry)."""
DEFAULT_TIMEOUT = 48 * 3600.0
"""The batch window is 24 h and cancelling can take more minutes: two days is a safe default."""


class OpenAIBatchSensor(BaseSensorOperator):
    """Wait for ``batch_id`` to finish; return its ``output_file_id``.

    :param batch_id: the batch to wait for (templated; typically an XCom of the operator).
    :param conn_id: the ``openai_batch`` connection (templated).
    :param deferrable: wait in the triggerer (default) instead of a worker.
    :param max_failed_ratio: fail a completed batch whose failed share of requests is above this.
    :param max_outage: seconds of unreachable API the deferred wait tolerates.
    """

    template_fields: Sequence[str] = ("batch_id", "conn_id")
    operator_extra_links = (OpenAIBatchLink(),)
    ui_color = "#10a37f"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        batch_id: str,
        conn_id: str = OpenAIBatchHook.default_conn_name,
        deferrable: bool = True,
        poke_interval: float = 60.0,
        timeout: float = DEFAULT_TIMEOUT,
        max_failed_ratio: float | None = None,
        max_outage: float = DEFAULT_MAX_OUTAGE,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.batch_id = batch_id
        self.conn_id = conn_id
        self.deferrable = deferrable
        self.max_failed_ratio = max_failed_ratio
        self.max_outage = max_outage

    @cached_property
    def hook(self) -> OpenAIBatchHook:
        return OpenAIBatchHook(self.conn_id)

    def execute(self, context: Any) -> Any:
        url = dashboard_url(self.batch_id, self.hook.base_url, self.hook.dashboard_template)
        context["ti"].xcom_push(key=LINK_XCOM_KEY, value=url or "")
        context["ti"].xcom_push(key=RECORD_XCOM_KEY, value=batch_record(self.batch_id, self.conn_id, url))
        if not self.deferrable:
            return super().execute(context)
        batch = self.hook.get_batch(self.batch_id)
        if batch.status.is_terminal:
            decision = decide(batch, now=time.time(), end_time=None)
            return self._finish(context, event_payload(batch, decision.status or "error", decision.message))
        self.log.info("Deferring: the triggerer polls batch %s every %ss", self.batch_id, self.poke_interval)
        self.defer(
            trigger=OpenAIBatchTrigger(
                self.batch_id,
                self.conn_id,
                self.poke_interval,
                time.time() + float(self.timeout),
                cancel_on_kill=False,
                max_outage=self.max_outage,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout) + float(self.poke_interval) + 60),
        )

    def poke(self, context: Any) -> PokeReturnValue | bool:
        try:
            batch = self.hook.get_batch(self.batch_id)
        except Exception as error:
            if is_transient(error):
                self.log.warning("Transient error polling batch %s (will poke again): %s", self.batch_id, error)
                return False
            raise
        decision = decide(batch, now=time.time(), end_time=None)
        if not decision.finished:
            self.log.info("Batch %s: %s", batch.id, progress(batch))
            return False
        output_file_id = self._finish(context, event_payload(batch, decision.status or "error", decision.message))
        return PokeReturnValue(is_done=True, xcom_value=output_file_id)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> str | None:
        return self._finish(context, event)

    def _finish(self, context: Any, payload: dict[str, Any]) -> str | None:
        ti = context["ti"]
        for key, value in xcom_values(payload).items():
            ti.xcom_push(key=key, value=value)
        try:
            check_outcome(payload, max_failed_ratio=self.max_failed_ratio)
        except BatchTerminalError as error:
            if error.status in FINAL_OUTCOMES:
                # The batch's end is settled: a retry of the sensor would see the same state again.
                raise AirflowFailException(str(error)) from error
            raise
        level = self.log.warning if (payload.get("request_counts") or {}).get("failed") else self.log.info
        level(payload.get("message"))
        return payload.get("output_file_id")
