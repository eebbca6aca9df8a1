"""The typed end of a wait, and what it means for the task (floor 1: no Airflow import).

Every path that waits for a batch - the trigger, the operator's worker loop, the sensor's
poke - ends with one :class:`WaitOutcome`. It travels as a trigger event's payload (a plain,
secret-free dict: :meth:`WaitOutcome.to_event`) and is validated once when the task resumes
(:meth:`WaitOutcome.from_event`), so nothing downstream reads untyped dicts with ``.get``.
It also carries the :class:`ResumeState` the operator needs to go on (Airflow 3.3's
``dag.test()`` resumes a task with the event alone, see DESIGN.md).

Vocabulary of ``status`` (:data:`~airflow_provider_openai_batch.api.statuses.EVENT_STATUSES`):
``completed``, ``failed``, ``expired``, ``cancelled`` (the batch's own end), ``timeout`` (our
deadline passed first) and ``error`` (the API said no for good, e.g. 401 or 404, or stayed
unreachable longer than the outage budget).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_openai_batch.api.exceptions import BatchTerminalError
from airflow_provider_openai_batch.api.models import Batch

XCOM_KEYS = ("output_file_id", "error_file_id", "request_counts")
TOKEN_LIMIT_CODE = "token_limit_exceeded"
EventStatus = Literal["completed", "failed", "expired", "cancelled", "timeout", "error"]


class ResumeState(BaseModel):
    """What the operator carries through a deferral to go on where it left off (JSON-safe, no secret)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    key: str
    """The idempotency key of this task instance (submit-once)."""
    fingerprint: str
    """The input's fingerprint: a changed input is not re-attached."""
    end_time: float | None = None
    """The wall-clock deadline of the wait (epoch seconds)."""
    created_after: float | None = None
    """The earliest time this task instance could have created a batch (bounds the re-attach look-up)."""
    resubmits: int = 0
    """Resubmissions after ``token_limit_exceeded`` so far."""
    waited: float = 0.0
    """Seconds spent waiting to resubmit so far."""
    input_file_id: str | None = None
    """The uploaded input file, reused by a resubmission."""


class WaitOutcome(BaseModel):
    """How a wait for one batch ended; the one payload of a trigger event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    status: EventStatus
    message: str
    batch_id: str | None = None
    batch_status: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    input_file_id: str | None = None
    request_counts: dict[str, int] | None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)
    resume: ResumeState | None = None

    @classmethod
    def of(
        cls, status: EventStatus, message: str, *, batch_id: str, batch: Batch | None = None, **extra: Any
    ) -> WaitOutcome:
        """An outcome from what the API last said about the batch (``batch`` may be None: never seen)."""
        if batch is None:
            return cls(status=status, message=message, batch_id=batch_id, **extra)
        return cls(
            status=status,
            message=message,
            batch_id=batch.id,
            batch_status=batch.status.value,
            output_file_id=batch.output_file_id,
            error_file_id=batch.error_file_id,
            input_file_id=batch.input_file_id,
            request_counts=batch.request_counts.as_dict(),
            errors=[e.model_dump(include={"code", "message", "param", "line"}) for e in batch.error_list],
            **extra,
        )

    def with_resume(self, resume: ResumeState | None) -> WaitOutcome:
        return self.model_copy(update={"resume": resume})

    def to_event(self) -> dict[str, Any]:
        """The trigger event's payload: plain JSON, nothing secret (ids, counts, messages)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> WaitOutcome:
        """Validate an event once, when the task resumes (raises on a payload that is not an outcome).

        An event from a trigger deferred before this version carries the resume state as ``carry``.
        """
        if "resume" not in event and event.get("carry"):
            event = {**event, "resume": event["carry"]}
        return cls.model_validate(event)

    # What it means

    @property
    def is_token_limit_failure(self) -> bool:
        """The organisation's enqueued-token queue was full: the same input may succeed later."""
        return self.status == "failed" and any(err.get("code") == TOKEN_LIMIT_CODE for err in self.errors)

    @property
    def failed_ratio(self) -> float:
        counts = self.request_counts or {}
        total = counts.get("total") or 0
        return (counts.get("failed") or 0) / total if total else 0.0

    @property
    def has_failed_requests(self) -> bool:
        return bool((self.request_counts or {}).get("failed"))

    def xcom_values(self) -> dict[str, Any]:
        """The ids and counts to push: also on expired/cancelled, so paid-for partial output stays reachable."""
        if self.batch_status is None:
            return {}
        return {key: getattr(self, key) for key in XCOM_KEYS}

    def check(self, *, max_failed_ratio: float | None = None, cancelled: bool = False) -> None:
        """Raise :class:`BatchTerminalError` unless the batch completed within the failure threshold.

        ``cancelled`` tells a timeout message that we cancelled the batch (else it was left running).
        """
        payload = self.to_event()
        if self.status == "completed":
            ratio = self.failed_ratio
            if max_failed_ratio is not None and ratio > max_failed_ratio:
                raise BatchTerminalError(
                    f"{self.message} The failed share {ratio:.1%} is above max_failed_ratio={max_failed_ratio:.1%}.",
                    batch_id=self.batch_id,
                    status="completed",
                    payload=payload,
                )
            return
        message = self.message
        if self.status == "timeout":
            fate = "The batch was cancelled." if cancelled else "The batch was left running."
            message = f"{message}. {fate}"
        elif self.status == "error":
            message = f"{message} A retry of this task re-attaches to the batch if it is still alive."
        raise BatchTerminalError(message, batch_id=self.batch_id, status=self.status, payload=payload)
