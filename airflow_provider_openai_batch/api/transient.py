"""The one rule for "is this error transient" (floor 1: no Airflow import).

Transient means: the same request, asked again later, may succeed - 408, 409, 429 (except
``insufficient_quota``, which waiting does not fix), any 5xx, and every failure without a
response (refused, timed out, dropped). 400, 401, 403, 404 and 422 are permanent: the key, the
id or the request is wrong, and asking again only repeats the answer.

Two callers apply this rule, each with a difference that is on purpose:

- the per-call retry policy (:class:`~airflow_provider_openai_batch.api.retry.RetryPolicy`)
  retries a transient error *within one call*, and narrows the rule for that call: a
  non-idempotent request (``POST /batches``) is retried only when it never left; the server's
  ``x-should-retry`` header wins over the status; a ``Retry-After`` longer than the policy's cap
  ends the call (the wait, not the call, should sit out a long pause); and a call can name
  statuses that are its answer (409 on cancel: already terminal).
- the Waiter (:mod:`~airflow_provider_openai_batch.waiting.waiter`) keeps *waiting for a batch*
  through transient errors, for up to its outage budget, after the call's own retries gave up:
  the batch keeps running on OpenAI's side whatever the API's weather. It also counts
  ``OSError`` / ``TimeoutError`` raised outside the client (a connection lookup) as transient.
"""

from __future__ import annotations

TRANSIENT_STATUS_CODES = frozenset({408, 409, 429})
"""Besides every 5xx."""
PERMANENT_STATUS_CODES = frozenset({400, 401, 403, 404, 422})
NOT_TRANSIENT_CODES = frozenset({"insufficient_quota"})
"""Error codes that make an otherwise transient status permanent (a 429 for an exhausted quota)."""


def transient_status(status_code: int | None, code: str | None = None) -> bool:
    """The rule on an HTTP answer; ``status_code`` None means no response at all (transient)."""
    if status_code is None:
        return True
    if code in NOT_TRANSIENT_CODES or status_code in PERMANENT_STATUS_CODES:
        return False
    return status_code in TRANSIENT_STATUS_CODES or status_code >= 500


def is_transient(error: BaseException) -> bool:
    """The rule on any error a wait can meet: API errors by status, OS-level failures as transient."""
    from airflow_provider_openai_batch.api.exceptions import OpenAIAPIError

    if isinstance(error, OpenAIAPIError):
        return transient_status(error.status_code, error.code)
    return isinstance(error, (OSError, TimeoutError))
