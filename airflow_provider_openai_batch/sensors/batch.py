"""OpenAIBatchSensor: gate downstream tasks on a batch made elsewhere (floor 3).

Typical nightly shape: ``OpenAIBatchOperator(wait_for_completion=False)`` submits and
frees the worker, the sensor waits (deferred by default, through the same trigger as
the operator; poke and reschedule modes use the same
:class:`~airflow_provider_openai_batch.waiting.waiter.Waiter`, so a deadline, an outage and
a message are the same on every path), and on
``completed`` returns ``output_file_id``. Expired batches push their partial file ids
before failing, so a downstream task with a trigger rule can still land them. Such
final outcomes fail without retries (the batch will not change its mind). The sensor
does not own the batch: killing it or timing out does not cancel the batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow_provider_openai_batch import defaults
from airflow_provider_openai_batch.compat import BaseSensorOperator, PokeReturnValue
from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook
from airflow_provider_openai_batch.links import OpenAIBatchLink
from airflow_provider_openai_batch.operators._finish import DEFAULT_DEFERRABLE, defer_wait, finish, push_link, say
from airflow_provider_openai_batch.waiting.outcome import WaitOutcome
from airflow_provider_openai_batch.waiting.waiter import Step, Waiter

DEFAULT_TIMEOUT = defaults.SENSOR_TIMEOUT


class OpenAIBatchSensor(BaseSensorOperator):
    """Wait for ``batch_id`` to finish; return its ``output_file_id``.

    :param batch_id: the batch to wait for (templated; typically an XCom of the operator).
    :param conn_id: the ``openai_batch`` connection (templated).
    :param deferrable: wait in the triggerer instead of a worker (default: Airflow's
        ``[operators] default_deferrable``).
    :param max_failed_ratio: fail a completed batch whose failed share of requests is above this.
    :param max_outage: seconds of unreachable API the wait tolerates (in ``reschedule`` mode each
        poke starts afresh: only the deadline carries over).
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
        deferrable: bool = DEFAULT_DEFERRABLE,
        poke_interval: float = defaults.POLL_INTERVAL,
        timeout: float = defaults.SENSOR_TIMEOUT,
        max_failed_ratio: float | None = None,
        max_outage: float = defaults.MAX_OUTAGE,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.batch_id = batch_id
        self.conn_id = conn_id
        self.deferrable = deferrable
        self.max_failed_ratio = max_failed_ratio
        self.max_outage = max_outage
        self._started: float | None = None
        self._waiter: Waiter | None = None

    @cached_property
    def hook(self) -> OpenAIBatchHook:
        return OpenAIBatchHook(self.conn_id)

    def execute(self, context: Any) -> Any:
        push_link(context, self.hook, self.conn_id, self.batch_id)
        self._started = time.time()
        if not self.deferrable:
            return super().execute(context)
        # Check once before deferring: a batch that is already over finishes here, at once.
        step = self._step(self._poke_waiter(context))
        if step.outcome is not None:
            return self._finish(context, step.outcome)
        defer_wait(self, self._poke_waiter(context), self.conn_id, cancel_on_kill=False)

    def poke(self, context: Any) -> PokeReturnValue | bool:
        step = self._step(self._poke_waiter(context))
        if step.outcome is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._finish(context, step.outcome))

    def _poke_waiter(self, context: Any) -> Waiter:
        """One Waiter per try; its deadline counts from the first poke of the try (the first reschedule's)."""
        if self._waiter is None:
            started = self._started if self._started is not None else time.time()
            if self.reschedule:
                first = context["ti"].get_first_reschedule_date(context)
                started = first.timestamp() if first is not None else started
            end_time = started + float(self.timeout)
            self._waiter = Waiter(
                self.batch_id, poll_interval=float(self.poke_interval), end_time=end_time, max_outage=self.max_outage
            )
        return self._waiter

    def _step(self, waiter: Waiter) -> Step:
        try:
            return say(self, waiter.on_batch(self.hook.get_batch(self.batch_id), time.time()))
        except Exception as error:
            return say(self, waiter.on_error(error, time.time()))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> str | None:
        return self._finish(context, WaitOutcome.from_event(event))

    def _finish(self, context: Any, outcome: WaitOutcome) -> str | None:
        finish(self, context, outcome, max_failed_ratio=self.max_failed_ratio, final_fails_without_retry=True)
        return outcome.output_file_id
