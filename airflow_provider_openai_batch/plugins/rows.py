"""One JSON row per batch: Airflow's record joined with the batch's live (or last known) state.

Also the "at a glance" figures: time left in the completion window, whether the batch is likely
to expire (under 10 % of the window left and under half done), and the totals at the top.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow_provider_openai_batch.api.statuses import BatchStatus
from airflow_provider_openai_batch.plugins.live import Known
from airflow_provider_openai_batch.plugins.records import BatchRecord

IN_FLIGHT = frozenset(status.value for status in BatchStatus if not status.is_terminal)
"""The API's statuses that can still change (the complement of the one terminal set)."""
FIRST_ERRORS = 3
LIKELY_TO_EXPIRE_WINDOW_LEFT = 0.10
LIKELY_TO_EXPIRE_DONE = 0.50
DAY = 24 * 3600


def task_instance_url(record: BatchRecord) -> str:
    """The Airflow UI page of the task instance that owns the batch."""
    dag, run, task = (quote(part, safe="") for part in (record.dag_id, record.run_id, record.task_id))
    path = f"/dags/{dag}/runs/{run}/tasks/{task}"
    return f"{path}/mapped/{record.map_index}" if record.map_index >= 0 else path


def _epoch(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def _window(batch: Any, now: float) -> tuple[float | None, bool]:
    """Seconds left in the completion window, and whether the batch is likely to expire."""
    created, expires = _epoch(batch.created_at), _epoch(batch.expires_at)
    if expires is None:
        return None, False
    left = expires - now
    if created is None or expires <= created or batch.status.value not in IN_FLIGHT:
        return left, False
    counts = batch.request_counts
    done = (counts.completed + counts.failed) / counts.total if counts.total else 0.0
    likely = left < LIKELY_TO_EXPIRE_WINDOW_LEFT * (expires - created) and done < LIKELY_TO_EXPIRE_DONE
    return left, likely


def make_row(record: BatchRecord, known: Known, now: float, *, can_cancel: bool, all_errors: bool = False) -> dict:
    """The row the page shows; every string from the API goes out as data, never as markup."""
    batch = known.batch
    row: dict[str, Any] = {
        "batch_id": record.batch_id,
        "conn_id": record.conn_id,
        "dag_id": record.dag_id,
        "run_id": record.run_id,
        "task_id": record.task_id,
        "map_index": record.map_index,
        "recorded_at": record.recorded_at.isoformat() if record.recorded_at else None,
        "stale": known.stale,
        "last_read_at": known.read_at,
        "links": {"task_instance": task_instance_url(record), "dashboard": record.dashboard_url},
    }
    if batch is None:
        row.update(status="unknown", in_flight=False, request_counts={"total": 0, "completed": 0, "failed": 0})
        row.update(endpoint=None, model=None, created_at=None, expires_at=None, usage=None, metadata={})
        row.update(output_file_id=None, error_file_id=None, errors=[], error_count=0)
        row.update(window_left_seconds=None, likely_to_expire=False, can_cancel=False)
        return row
    errors = [e.model_dump(exclude_none=True) for e in batch.error_list]
    left, likely = _window(batch, now)
    status = batch.status.value
    row.update(
        endpoint=batch.endpoint,
        model=batch.model,
        status=status,
        in_flight=status in IN_FLIGHT,
        request_counts=batch.request_counts.model_dump(),
        created_at=_epoch(batch.created_at),
        expires_at=batch.expires_at,
        usage=batch.usage.model_dump() if batch.usage else None,
        metadata=dict(batch.metadata or {}),
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
        errors=errors if all_errors else errors[:FIRST_ERRORS],
        error_count=len(errors),
        window_left_seconds=left,
        likely_to_expire=likely,
        can_cancel=can_cancel and status in IN_FLIGHT and status != "cancelling",
    )
    return row


def sort_key(row: dict) -> tuple:
    """In flight first (likely to expire on top), then newest first."""
    return (not row["in_flight"], not row["likely_to_expire"], -(row["created_at"] or 0))


def totals(rows: list[dict], now: float) -> dict:
    """The figures at the top of the page, over the rows shown."""
    in_flight = [r for r in rows if r["in_flight"]]
    done = sum(r["request_counts"]["completed"] + r["request_counts"]["failed"] for r in in_flight)
    total = sum(r["request_counts"]["total"] for r in in_flight)
    since = now - DAY
    tokens = sum(
        (r["usage"] or {}).get("total_tokens") or 0 for r in rows if r["usage"] and (r["created_at"] or 0) >= since
    )
    return {
        "in_flight": len(in_flight),
        "requests_done": done,
        "requests_total": total,
        "failed_requests": sum(r["request_counts"]["failed"] for r in rows),
        "tokens_today": tokens,
    }
