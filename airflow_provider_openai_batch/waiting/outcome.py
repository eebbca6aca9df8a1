"""What a finished wait means for the task (floor 1: no Airflow import).

The operator and the sensor both end with a payload from :func:`polling.event_payload`
(from the trigger, a poke or the in-worker loop). This module decides which of its
values go to XCom and whether the task fails, so both speak one failure vocabulary.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_openai_batch.api.exceptions import BatchTerminalError
from airflow_provider_openai_batch.waiting.polling import failed_ratio

XCOM_KEYS = ("output_file_id", "error_file_id", "request_counts")


def xcom_values(payload: dict[str, Any]) -> dict[str, Any]:
    """The ids and counts to push: also on expired/cancelled, so paid-for partial output stays reachable."""
    return {key: payload.get(key) for key in XCOM_KEYS if key in payload}


def check_outcome(payload: dict[str, Any], *, max_failed_ratio: float | None = None, cancelled: bool = False) -> None:
    """Raise :class:`BatchTerminalError` unless the batch completed within the failure threshold.

    ``cancelled`` tells a timeout message that we cancelled the batch (else it was left running).
    """
    status = payload.get("status")
    batch_id = payload.get("batch_id")
    message = payload.get("message") or f"Batch {batch_id} ended {status}"
    if status == "completed":
        ratio = failed_ratio(payload.get("request_counts"))
        if max_failed_ratio is not None and ratio > max_failed_ratio:
            raise BatchTerminalError(
                f"{message} The failed share {ratio:.1%} is above max_failed_ratio={max_failed_ratio:.1%}.",
                batch_id=batch_id,
                status="completed",
                payload=payload,
            )
        return
    if status == "timeout":
        fate = "The batch was cancelled." if cancelled else "The batch was left running."
        message = f"{message}. {fate}"
    elif status == "error":
        message = f"{message} A retry of this task re-attaches to the batch if it is still alive."
    raise BatchTerminalError(message, batch_id=batch_id, status=str(status), payload=payload)
