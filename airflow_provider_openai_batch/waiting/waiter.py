"""The Waiter: the one poll decision behind the trigger, the worker loop and the sensor's poke (floor 1).

Waiting for a batch has four rules, and three places wait (the trigger in the triggerer, the
operator's non-deferrable loop in a worker, the sensor's poke/reschedule). The rules live
here once, as a pure object fed with what the API said and the clock:

- a terminal batch ends the wait with its own status (and wins over a deadline passed in
  the same poll: the result is already paid for);
- the wall-clock deadline ``end_time`` ends the wait with ``timeout`` - on every path, also
  while the API is failing (the worker loop used to spin there until the outage budget ran out);
- transient API errors (:mod:`~airflow_provider_openai_batch.api.transient`) are waited out
  for up to ``max_outage`` seconds in a row; a permanent one (401, 404) ends the wait at once;
- progress is said only when the status or the counts change, so a 24 h wait logs little.

Each answer is a :class:`Step`: sleep this long (and say these lines), or the typed
:class:`~airflow_provider_openai_batch.waiting.outcome.WaitOutcome`. The shells only fetch,
log, sleep and hand the outcome on. A Waiter is small (``__slots__``, no logger, no
references to clients) because a triggerer keeps thousands of them alive for hours, and every
long-lived object lengthens CPython's full collections (DESIGN.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from airflow_provider_openai_batch import defaults
from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.api.transient import is_transient
from airflow_provider_openai_batch.waiting.outcome import WaitOutcome
from airflow_provider_openai_batch.waiting.polling import describe_batch, progress

INFO, WARNING = logging.INFO, logging.WARNING


class Step(NamedTuple):
    """One answer of the Waiter: ``outcome`` when the wait is over, else ``sleep`` seconds.

    ``lines`` are (logging level, text) to log now: progress and transient errors. The outcome's
    own ``message`` is said by whoever finishes the task (once).
    """

    sleep: float
    outcome: WaitOutcome | None = None
    lines: tuple[tuple[int, str], ...] = ()


class Waiter:
    """Decides, poll by poll, whether the wait for ``batch_id`` goes on, and for how long to sleep.

    :param batch_id: the batch waited for.
    :param poll_interval: seconds between polls.
    :param end_time: wall-clock deadline (epoch seconds, ``time.time()`` based); None waits until the batch ends.
    :param max_outage: seconds of consecutive transient errors tolerated before the wait ends with ``error``.
    """

    __slots__ = ("_errors", "_outage_started", "_said", "batch_id", "end_time", "max_outage", "poll_interval")

    def __init__(
        self,
        batch_id: str,
        *,
        poll_interval: float = defaults.POLL_INTERVAL,
        end_time: float | None = None,
        max_outage: float = defaults.MAX_OUTAGE,
    ) -> None:
        self.batch_id = batch_id
        self.poll_interval = float(poll_interval)
        self.end_time = end_time
        self.max_outage = float(max_outage)
        self._outage_started: float | None = None
        self._errors = 0
        self._said: tuple[str, int, int, int] | None = None

    def sleep_before(self, now: float, shorten: float = 0.0) -> float:
        """Seconds until the next poll: the interval cut by the share ``shorten`` (jitter), never past the deadline."""
        interval = self.poll_interval * (1.0 - shorten)
        if self.end_time is None:
            return interval
        return max(0.0, min(interval, self.end_time - now))

    def on_batch(self, batch: Batch, now: float) -> Step:
        """The API answered with the batch's state."""
        self._outage_started, self._errors = None, 0
        lines: tuple[tuple[int, str], ...] = ()
        counts = batch.request_counts
        said = (batch.status.value, counts.total, counts.completed, counts.failed)
        if said != self._said:
            self._said = said
            lines = ((INFO, f"Batch {batch.id}: {progress(batch)}"),)
        if batch.status.is_terminal:
            message = describe_batch(batch)
            outcome = WaitOutcome.of(batch.status.value, message, batch_id=self.batch_id, batch=batch)  # type: ignore[arg-type]
            return Step(0.0, outcome, lines)
        if self.end_time is not None and now >= self.end_time:
            message = f"Timed out waiting for batch {batch.id} ({progress(batch)})"
            return Step(0.0, WaitOutcome.of("timeout", message, batch_id=self.batch_id, batch=batch), lines)
        return Step(self.sleep_before(now), None, lines)

    def on_error(self, error: BaseException, now: float) -> Step:
        """Asking for the batch failed (after the call's own retries)."""
        if not is_transient(error):
            message = f"Stopped waiting for batch {self.batch_id}: {error}"
            return Step(0.0, WaitOutcome.of("error", message, batch_id=self.batch_id))
        self._errors += 1
        if self._outage_started is None:
            self._outage_started = now
        elapsed = now - self._outage_started
        if elapsed >= self.max_outage:
            message = (
                f"Stopped waiting for batch {self.batch_id}: the API kept failing for {elapsed:.0f}s "
                f"({self._errors} polls in a row); last error: {error}. The batch may still be running."
            )
            return Step(0.0, WaitOutcome.of("error", message, batch_id=self.batch_id))
        if self.end_time is not None and now >= self.end_time:
            message = f"Timed out waiting for batch {self.batch_id} while the API was failing: {error}"
            return Step(0.0, WaitOutcome.of("timeout", message, batch_id=self.batch_id))
        warning = (WARNING, f"Transient error polling batch {self.batch_id} (will retry): {error}")
        return Step(self._sleep_after(error, now), None, (warning,))

    def _sleep_after(self, error: BaseException, now: float) -> float:
        """The interval, or longer when the API asked for a longer pause (``Retry-After``), never past the deadline."""
        sleep = max(self.poll_interval, float(getattr(error, "retry_after", None) or 0.0))
        if self.end_time is None:
            return sleep
        return max(0.0, min(sleep, self.end_time - now))

    def wait_blocking(
        self,
        get_batch: Callable[[str], Batch],
        *,
        say: Callable[[int, str], None],
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> WaitOutcome:
        """The worker's loop: poll, say, sleep, until an outcome (the operator's non-deferrable wait)."""
        while True:
            try:
                step = self.on_batch(get_batch(self.batch_id), clock())
            except Exception as error:
                step = self.on_error(error, clock())
            for level, line in step.lines:
                say(level, line)
            if step.outcome is not None:
                return step.outcome
            sleep(step.sleep)
