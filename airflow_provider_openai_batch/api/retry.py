"""The one retry policy shared by the sync and the async client (floor 1: no Airflow import).

It follows what the official SDK does (``_base_client._should_retry`` and
``_calculate_retry_timeout``), with more attempts because a nightly pipeline would
rather wait a minute than fail: retry 408/409/429/5xx, timeouts and dropped
connections; honour ``retry-after-ms`` / ``Retry-After`` up to a cap; otherwise
exponential backoff (0.5 s doubling to 8 s) with up to 25 % jitter downwards.
``x-should-retry`` from the server overrides the status rule.

Non-idempotent calls (``POST /batches``) are retried only when the request cannot
have reached the server (a connect error): anything else is surfaced so the caller
can look for the batch the server may already have made.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity

from airflow_provider_openai_batch.api.exceptions import OpenAIAPIError, OpenAITransportError
from airflow_provider_openai_batch.api.transient import transient_status

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how long to retry one API call."""

    max_attempts: int = 8
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 120.0

    def should_retry(
        self, error: BaseException, *, idempotent: bool = True, final_statuses: frozenset[int] = frozenset()
    ) -> bool:
        """Whether ``error`` from one attempt is worth another attempt of the same call.

        :mod:`~airflow_provider_openai_batch.api.transient` is the rule; this narrows it for
        one call (idempotency, ``x-should-retry``, the ``Retry-After`` cap, ``final_statuses``).

        ``final_statuses`` are statuses that answer the question for this call (a 409 on
        cancel means the batch is already terminal; asking again cannot change that).
        """
        if not isinstance(error, OpenAIAPIError) or error.status_code in final_statuses:
            return False
        if isinstance(error, OpenAITransportError):
            return idempotent or not error.request_sent
        if not idempotent:
            return False
        if error.retry_after is not None and error.retry_after > self.max_retry_after:
            return False
        should = getattr(error, "should_retry", None)
        if should is not None:
            return bool(should)
        return transient_status(error.status_code, error.code)

    def delay(self, error: BaseException | None, retries_taken: int) -> float:
        """Seconds to sleep before the next attempt."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None and 0 < retry_after <= self.max_retry_after:
            return float(retry_after)
        backoff = min(self.initial_delay * 2**retries_taken, self.max_delay)
        return backoff * (1 - 0.25 * random.random())

    def tenacity_kwargs(
        self, *, idempotent: bool, what: str, final_statuses: frozenset[int] = frozenset()
    ) -> dict[str, Any]:
        """Arguments for ``tenacity.Retrying`` / ``AsyncRetrying``: the same policy for both."""

        def _wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            return self.delay(error, state.attempt_number - 1)

        def _before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            sleep = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "Retrying %s in %.1fs (attempt %d of %d) after: %s",
                what,
                sleep,
                state.attempt_number + 1,
                self.max_attempts,
                error,
            )

        return {
            "stop": tenacity.stop_after_attempt(self.max_attempts),
            "wait": _wait,
            "retry": tenacity.retry_if_exception(
                lambda e: self.should_retry(e, idempotent=idempotent, final_statuses=final_statuses)
            ),
            "before_sleep": _before_sleep,
            "reraise": True,
        }


def replay_first_failure(failure: Exception, attempt: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """``attempt``, except that its first call raises ``failure`` (an attempt already made and failed).

    Lets a caller try once without tenacity and hand only a failure over to it, with
    the failed try counted as attempt 1 and its error deciding the retry and the wait.
    """
    pending = [failure]

    async def call(*args: Any, **kwargs: Any) -> T:
        if pending:
            raise pending.pop()
        return await attempt(*args, **kwargs)

    return call


def replay_first_failure_sync(failure: Exception, attempt: Callable[[], T]) -> Callable[[], T]:
    """The sync twin of :func:`replay_first_failure`."""
    pending = [failure]

    def call() -> T:
        if pending:
            raise pending.pop()
        return attempt()

    return call
