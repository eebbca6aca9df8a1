"""The one poll decision shared by the trigger, the sensor's poke and the operator's sync wait.

Floor 1 (no Airflow import): everything here is a pure function of what the API said
and the clock, so the deferred path, the poke path and the in-worker path cannot drift,
and each rule is tested without a server.

Vocabulary of a finished wait (the ``status`` of a trigger event):
``completed``, ``failed``, ``expired``, ``cancelled`` (the batch's own terminal state),
``timeout`` (our deadline passed first) and ``error`` (the API said no for good, e.g. 401
or 404, or stayed unreachable longer than the outage budget).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from airflow_provider_openai_batch.api.exceptions import OpenAIAPIError
from airflow_provider_openai_batch.api.models import Batch, BatchStatus

EVENT_STATUSES = frozenset({"completed", "failed", "expired", "cancelled", "timeout", "error"})
SHOWN_ERRORS = 5
"""How many batch errors a message spells out before it says "and N more"."""
PERMANENT_STATUS_CODES = frozenset({400, 401, 403, 404, 422})
TOKEN_LIMIT_CODE = "token_limit_exceeded"


class PollAction(str, Enum):
    WAIT = "wait"
    FINISH = "finish"


@dataclass(frozen=True)
class PollDecision:
    action: PollAction
    status: str | None = None
    """The event status when ``action`` is FINISH."""
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.action is PollAction.FINISH


def decide(batch: Batch, *, now: float, end_time: float | None) -> PollDecision:
    """Keep waiting, or finish with the batch's terminal state, or time out.

    A terminal state wins over a deadline that passed in the same poll: the result is
    already paid for and there is nothing left to cancel.
    """
    if batch.status.is_terminal:
        return PollDecision(PollAction.FINISH, batch.status.value, describe_batch(batch))
    if end_time is not None and now >= end_time:
        return PollDecision(PollAction.FINISH, "timeout", f"Timed out waiting for batch {batch.id} ({progress(batch)})")
    return PollDecision(PollAction.WAIT)


@dataclass
class OutageBudget:
    """Tolerates transient API errors for up to ``max_outage`` seconds in a row.

    429s, 5xx, timeouts and refused connections during a long wait are the API's weather,
    not the batch's fate: the batch keeps running on OpenAI's side, so the wait goes on.
    A permanent error (bad key, batch not found) finishes the wait at once.
    """

    max_outage: float = 1800.0
    outage_started: float | None = field(default=None)
    consecutive_errors: int = 0

    def on_success(self) -> None:
        self.outage_started = None
        self.consecutive_errors = 0

    def on_error(self, error: Exception, *, now: float, batch_id: str) -> PollDecision:
        if not is_transient(error):
            return PollDecision(PollAction.FINISH, "error", f"Stopped waiting for batch {batch_id}: {error}")
        self.consecutive_errors += 1
        if self.outage_started is None:
            self.outage_started = now
        elapsed = now - self.outage_started
        if elapsed >= self.max_outage:
            return PollDecision(
                PollAction.FINISH,
                "error",
                f"Stopped waiting for batch {batch_id}: the API kept failing for {elapsed:.0f}s "
                f"({self.consecutive_errors} polls in a row); last error: {error}. The batch may still be running.",
            )
        return PollDecision(PollAction.WAIT, message=f"Transient error polling batch {batch_id} (will retry): {error}")


def is_transient(error: BaseException) -> bool:
    if isinstance(error, OpenAIAPIError):
        if error.status_code in PERMANENT_STATUS_CODES:
            return False
        return error.is_transient
    return isinstance(error, (OSError, TimeoutError))


# What to say -----------------------------------------------------------------------------------


def progress(batch: Batch) -> str:
    """``in_progress 12,340/50,000 (24.7%), 3 failed`` - the line users watch in the task log."""
    counts = batch.request_counts
    done = counts.completed + counts.failed
    if counts.total:
        text = f"{batch.status.value} {done:,}/{counts.total:,} ({100.0 * done / counts.total:.1f}%)"
    else:
        text = f"{batch.status.value}"
    if counts.failed:
        text += f", {counts.failed:,} failed"
    return text


class ProgressTracker:
    """Says something only when the status or the counts change, so a 24 h wait logs little."""

    def __init__(self) -> None:
        self._last: tuple[Any, ...] | None = None

    def update(self, batch: Batch) -> str | None:
        counts = batch.request_counts
        key = (batch.status.value, counts.total, counts.completed, counts.failed)
        if key == self._last:
            return None
        self._last = key
        return f"Batch {batch.id}: {progress(batch)}"


def describe_errors(errors: list[dict[str, Any]], shown: int = SHOWN_ERRORS) -> str:
    parts = []
    for err in errors[:shown]:
        where = f"line {err['line']}: " if err.get("line") is not None else ""
        param = f" ({err['param']})" if err.get("param") else ""
        parts.append(f"{where}{err.get('code') or 'error'}{param}: {err.get('message') or ''}".strip())
    text = "; ".join(parts)
    if len(errors) > shown:
        text += f"; and {len(errors) - shown} more"
    return text


def describe_batch(batch: Batch) -> str:
    """A one-paragraph account of a terminal batch, in the words users search logs for."""
    counts = batch.request_counts
    files = _files_text(batch.output_file_id, batch.error_file_id)
    status = batch.status
    if status is BatchStatus.COMPLETED:
        if counts.failed:
            return (
                f"Batch {batch.id} completed with failures: {counts.completed:,} of {counts.total:,} requests "
                f"succeeded, {counts.failed:,} failed{files}."
            )
        return f"Batch {batch.id} completed: {counts.completed:,} of {counts.total:,} requests succeeded{files}."
    if status is BatchStatus.FAILED:
        errors = [e.model_dump() for e in batch.error_list]
        detail = describe_errors(errors) if errors else "no error details were given"
        return f"Batch {batch.id} failed with {len(errors)} error(s): {detail}"
    if status is BatchStatus.EXPIRED:
        return (
            f"Batch {batch.id} expired before finishing its completion window: {counts.completed:,} of "
            f"{counts.total:,} requests completed (partial results kept){files}."
        )
    if status is BatchStatus.CANCELLED:
        return (
            f"Batch {batch.id} was cancelled: {counts.completed:,} of {counts.total:,} requests completed "
            f"before cancellation (partial results kept){files}."
        )
    return f"Batch {batch.id}: {progress(batch)}"


def _files_text(output_file_id: str | None, error_file_id: str | None) -> str:
    parts = []
    if output_file_id:
        parts.append(f"output file {output_file_id}")
    if error_file_id:
        parts.append(f"error file {error_file_id}")
    return f" ({', '.join(parts)})" if parts else ""


def event_payload(batch: Batch | None, status: str, message: str, *, batch_id: str | None = None) -> dict[str, Any]:
    """The one event a wait ends with: everything ``execute_complete`` needs, nothing secret."""
    if status not in EVENT_STATUSES:
        raise ValueError(f"Unknown event status {status!r}")
    payload: dict[str, Any] = {"status": status, "message": message, "batch_id": batch_id}
    if batch is not None:
        payload.update(
            batch_id=batch.id,
            batch_status=batch.status.value,
            output_file_id=batch.output_file_id,
            error_file_id=batch.error_file_id,
            request_counts=batch.request_counts.as_dict(),
            errors=[e.model_dump(include={"code", "message", "param", "line"}) for e in batch.error_list],
            input_file_id=batch.input_file_id,
        )
    return payload


def is_token_limit_failure(payload: dict[str, Any]) -> bool:
    """The organisation's enqueued-token queue was full: the same input may succeed later."""
    return payload.get("status") == "failed" and any(
        (err or {}).get("code") == TOKEN_LIMIT_CODE for err in payload.get("errors") or []
    )


def failed_ratio(request_counts: dict[str, int] | None) -> float:
    counts = request_counts or {}
    total = counts.get("total") or 0
    return (counts.get("failed") or 0) / total if total else 0.0
