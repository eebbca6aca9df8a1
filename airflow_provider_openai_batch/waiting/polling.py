"""What a wait says: progress lines and the account of a finished batch (floor 1: no Airflow import).

The words users search task logs for, used by the Waiter (:mod:`.waiter`), the UI and the
messages of a finished task. The poll decision itself lives in :mod:`.waiter`; the statuses in
:mod:`~airflow_provider_openai_batch.api.statuses`; the transient rule in
:mod:`~airflow_provider_openai_batch.api.transient`.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_openai_batch.api.models import Batch, BatchStatus

SHOWN_ERRORS = 5
"""How many batch errors a message spells out before it says "and N more"."""


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
