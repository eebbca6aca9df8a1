"""Submit exactly once (floor 1: no Airflow import).

``POST /batches`` is not idempotent and the API takes no idempotency header, so a retry,
a cleared task or a create whose response was lost could bill a second batch. Every
batch we create carries an idempotency key (derived from the task instance, never the
try number) and the input's fingerprint in its metadata; before creating, and after a
create that may or may not have reached the server, we look the key up among the
batches created since this task instance could first have made one, and re-attach to what
we find instead of creating another.

The look-up is bounded by time, not by a count: the list endpoint is newest first, so the
scan stops at the first batch created before ``created_after`` (the DAG run's ``run_after``
minus a clock-skew margin, see the operator). An organisation that creates thousands of
batches between a lost create and the retry (a fan-out of a few hundred shards is enough to
pass any fixed count) still finds its batch.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from airflow_provider_openai_batch.api.client import OpenAIBatchClient
from airflow_provider_openai_batch.api.exceptions import OpenAIAPIError
from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.api.statuses import REATTACHABLE_STATUSES

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY = "airflow_idempotency_key"
FINGERPRINT_KEY = "airflow_input_fingerprint"
RESERVED_METADATA_PAIRS = 2
"""Metadata pairs the operator uses itself, out of the API's 16."""
FINGERPRINT_CHARS = 16

REATTACHABLE = REATTACHABLE_STATUSES
UNBOUNDED_SCAN = 500
"""Without a time bound (``created_after`` unknown), the newest this many batches are looked at."""


def idempotency_key(dag_id: str, task_id: str, run_id: str, map_index: int | None) -> str:
    """Stable across retries and clears of one task instance (the try number is left out on purpose)."""
    raw = "\0".join([dag_id, task_id, run_id, str(-1 if map_index is None else map_index)])
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def stamp_metadata(metadata: dict[str, str] | None, key: str, fingerprint: str) -> dict[str, str]:
    return {**(metadata or {}), IDEMPOTENCY_KEY: key, FINGERPRINT_KEY: fingerprint[:FINGERPRINT_CHARS]}


@dataclass(frozen=True)
class Submission:
    batch: Batch
    reattached: bool
    uploaded_file_id: str | None = None


def find_batch(
    client: OpenAIBatchClient, key: str, *, created_after: float | None = None, max_scan: int | None = None
) -> Batch | None:
    """The newest batch carrying ``key`` created at or after ``created_after`` (epoch seconds), if any.

    Pages are read newest first and the scan stops at the first older batch. ``max_scan``
    caps the count as well (default: :data:`UNBOUNDED_SCAN` when there is no time bound).
    """
    if max_scan is None and created_after is None:
        max_scan = UNBOUNDED_SCAN
    for batch in client.iter_batches(page_size=100, max_items=max_scan):
        if created_after is not None and _created(batch) < created_after:
            return None
        if (batch.metadata or {}).get(IDEMPOTENCY_KEY) == key:
            return batch
    return None


def _created(batch: Batch) -> float:
    """``created_at`` in epoch seconds; a missing or non-numeric one counts as new (never stops a scan)."""
    try:
        return float(batch.created_at)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("inf")


def reattachable(batch: Batch | None, fingerprint: str) -> bool:
    if batch is None or batch.status not in REATTACHABLE:
        return False
    return (batch.metadata or {}).get(FINGERPRINT_KEY) == fingerprint[:FINGERPRINT_CHARS]


def submit_once(
    client: OpenAIBatchClient,
    *,
    key: str,
    fingerprint: str,
    input_file_id: Callable[[], str],
    endpoint: str,
    completion_window: str = "24h",
    metadata: dict[str, str] | None = None,
    output_expires_after: int | None = None,
    created_after: float | None = None,
    max_scan: int | None = None,
    max_create_attempts: int = 5,
    sleep: Callable[[float], None] = time.sleep,
) -> Submission:
    """Re-attach to this task instance's batch if one is alive, else upload (lazily) and create one.

    ``input_file_id`` is called only when a new batch is really needed, so a re-attach
    uploads nothing. A create that fails in a way that may have reached the server is
    reconciled by looking the key up again before trying once more.
    """
    existing = find_batch(client, key, created_after=created_after, max_scan=max_scan)
    if reattachable(existing, fingerprint):
        assert existing is not None
        log.info(
            "Re-attaching to batch %s (status %s) made earlier for this task instance", existing.id, existing.status
        )
        return Submission(existing, reattached=True)
    if existing is not None:
        if existing.status in REATTACHABLE:
            log.warning(
                "Batch %s for this task instance was made from different input (fingerprint changed); "
                "submitting a new batch. The earlier one is left as it is.",
                existing.id,
            )
        else:
            log.info(
                "Earlier batch %s for this task instance ended %s; submitting afresh", existing.id, existing.status
            )
    file_id = input_file_id()
    stamped = stamp_metadata(metadata, key, fingerprint)
    policy = client.config.retry
    last_error: OpenAIAPIError | None = None
    for attempt in range(max_create_attempts):
        try:
            batch = client.create_batch(file_id, endpoint, completion_window, stamped, output_expires_after)
            return Submission(batch, reattached=False, uploaded_file_id=file_id)
        except OpenAIAPIError as error:
            if not policy.should_retry(error):
                raise
            last_error = error
        found = find_batch(client, key, created_after=created_after, max_scan=max_scan)
        if found is not None and reattachable(found, fingerprint):
            log.warning("Create failed (%s) but the server had made batch %s: re-attaching", last_error, found.id)
            return Submission(found, reattached=True, uploaded_file_id=file_id)
        if attempt + 1 == max_create_attempts:
            break
        delay = policy.delay(last_error, attempt)
        log.warning("Create batch failed (%s); no batch was made; trying again in %.1fs", last_error, delay)
        sleep(delay)
    assert last_error is not None
    raise last_error
