"""OpenAIBatchTrigger: waits for a batch in the triggerer, async all the way down (floor 3).

The decisions (deadline, outage budget, progress lines, the outcome) are the
:class:`~airflow_provider_openai_batch.waiting.waiter.Waiter`'s, the same object the
operator's worker loop and the sensor's poke use. Polls go through the connection's
shared paged poller (every trigger of the connection in the process is served by list
pages, about one request per 100 batches, non-blocking, on pooled connections); the
connection is looked up with the async API. The deadline ``end_time`` is wall-clock
epoch seconds, so a triggerer restart resumes the same deadline instead of starting a
new one. Transient API errors are waited out (up to an outage budget); a permanent one
(401, 404) ends the wait at once. Exactly one
event is yielded: a :class:`~airflow_provider_openai_batch.waiting.outcome.WaitOutcome`
as a plain dict, carrying everything ``execute_complete`` needs (also the operator's
resume state, handed in as ``carry``), because ``dag.test()`` resumes a task with the
event alone.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow_provider_openai_batch import defaults
from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.compat import SUPPORTS_TRIGGER_ON_KILL, BaseTrigger, TriggerEvent, log_degraded
from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook
from airflow_provider_openai_batch.waiting.outcome import WaitOutcome
from airflow_provider_openai_batch.waiting.poller import FRESH_SHARE
from airflow_provider_openai_batch.waiting.waiter import Waiter

DEFAULT_MAX_OUTAGE = defaults.MAX_OUTAGE
_LEVELS = {"error": logging.ERROR, "timeout": logging.WARNING}


class OpenAIBatchTrigger(BaseTrigger):
    """Polls ``batch_id`` every ``poll_interval`` seconds until it is terminal or ``end_time`` passes.

    A thin shell around :class:`~airflow_provider_openai_batch.waiting.waiter.Waiter`, which
    decides; this class only fetches (:meth:`_get_batch`), logs, sleeps and yields the one
    :class:`~airflow_provider_openai_batch.waiting.outcome.WaitOutcome` as the event payload.

    :param batch_id: the batch to watch.
    :param conn_id: the ``openai_batch`` connection (only its id is serialized, never the key).
    :param poll_interval: seconds between polls.
    :param end_time: wall-clock deadline (``time.time()`` based); None waits until the batch ends.
    :param cancel_on_kill: cancel the batch when a user kills the deferred task (Airflow 3.3+).
    :param max_outage: seconds of consecutive transient errors tolerated before giving up.
    :param carry: the operator's resume state (JSON-safe), echoed in the event as ``resume``.
    """

    def __init__(
        self,
        batch_id: str,
        conn_id: str = OpenAIBatchHook.default_conn_name,
        poll_interval: float = defaults.POLL_INTERVAL,
        end_time: float | None = None,
        *,
        cancel_on_kill: bool = False,
        max_outage: float = defaults.MAX_OUTAGE,
        carry: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.batch_id = batch_id
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = end_time
        self.cancel_on_kill = cancel_on_kill
        self.max_outage = float(max_outage)
        self.carry = carry or {}

    @property
    def log(self) -> Any:
        """One logger for the class (Airflow's ``logger()``), not one per instance.

        Each instance's own logger is six more long-lived objects; at thousands of
        triggers they lengthen the garbage collector's full passes, which stall the loop.
        Trigger lines still reach the right task log: the triggerer routes them by context.
        """
        return type(self).logger()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "batch_id": self.batch_id,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "cancel_on_kill": self.cancel_on_kill,
                "max_outage": self.max_outage,
                "carry": self.carry,
            },
        )

    async def _get_batch(self, hook: OpenAIBatchHook) -> Batch:
        """The one place the trigger asks for its batch: through the connection's shared paged poller,
        which may answer with a state read for a neighbour up to a third of the poll interval ago."""
        return await hook.apoll_batch(self.batch_id, max_age=self.poll_interval * FRESH_SHARE)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.cancel_on_kill and not SUPPORTS_TRIGGER_ON_KILL:
            log_degraded(
                "cancelling the batch when its deferred task is killed (cancel_on_kill)",
                "3.3",
                "a deferred task that is killed leaves its batch running (cancel it with "
                "OpenAIBatchHook.cancel_batch or in the OpenAI dashboard)",
                self.log,
            )
        hook = OpenAIBatchHook(self.conn_id)
        waiter = Waiter(
            self.batch_id, poll_interval=self.poll_interval, end_time=self.end_time, max_outage=self.max_outage
        )
        # The task looked at the batch just before deferring; polling again at once would only
        # repeat that answer, and an event fired within seconds of the deferral can race the
        # worker's exit report in Airflow 3.3 and get the resumed task marked failed. Jitter
        # spreads the first polls of many triggers started together (a triggerer restart).
        await asyncio.sleep(waiter.sleep_before(time.time(), shorten=defaults.FIRST_POLL_JITTER * random.random()))
        while True:
            try:
                step = waiter.on_batch(await self._get_batch(hook), time.time())
            except Exception as error:
                step = waiter.on_error(error, time.time())
            for level, line in step.lines:
                self.log.log(level, line)
            if step.outcome is not None:
                yield TriggerEvent(self._event(step.outcome))
                return
            await asyncio.sleep(step.sleep)

    def _event(self, outcome: WaitOutcome) -> dict[str, Any]:
        """The outcome as the event payload, with the task's resume state (validated by the task, not here)."""
        self.log.log(_LEVELS.get(outcome.status, logging.INFO), outcome.message)
        return {**outcome.to_event(), "resume": self.carry or None}

    async def on_kill(self) -> None:
        """A user killed the deferred task (mark failed / clear / mark success): stop paying for it."""
        if not self.cancel_on_kill:
            return
        hook = OpenAIBatchHook(self.conn_id)
        try:
            batch = await hook.acancel_batch(self.batch_id)
            self.log.info("Task killed: cancelled batch %s (now %s)", self.batch_id, batch.status.value)
        except Exception as error:
            self.log.warning("Task killed, but cancelling batch %s failed: %s", self.batch_id, error)


class OpenAIBatchResubmitTrigger(BaseTrigger):
    """Sleeps until ``resume_at`` (epoch seconds), then hands ``carry`` back to the task.

    Used to wait out a full enqueued-token queue without holding a worker; the deadline
    is wall-clock so a triggerer restart does not lengthen the wait.
    """

    def __init__(self, resume_at: float, carry: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.resume_at = float(resume_at)
        self.carry = carry or {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"resume_at": self.resume_at, "carry": self.carry},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        delay = self.resume_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield TriggerEvent({"status": "resubmit", "carry": self.carry})
