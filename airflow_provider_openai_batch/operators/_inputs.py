"""Where a task's input comes from and its output goes to: one resolution for every operator (floor 3).

Also the input's fingerprint, validating a local file first (nothing is uploaded when it is bad).

A ``file-...`` id is used as is, a URI (``s3://...``) becomes an Airflow ``ObjectStoragePath``,
anything else is a local path or an already-open source. Operators share this module
instead of importing each other.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from airflow_provider_openai_batch.api.exceptions import BatchParameterError
from airflow_provider_openai_batch.inputs.batchfile import BatchFileSummary, validate_batch_file
from airflow_provider_openai_batch.inputs.sources import describe_source
from airflow_provider_openai_batch.inputs.without_blank_lines import WithoutBlankLines

FILE_ID_PREFIX = "file-"


def resolve_input(input_file: Any) -> tuple[Any, str | None]:
    """Return ``(source, file_id)``: a ``file-...`` id is used as is, a URI becomes an ObjectStoragePath."""
    if isinstance(input_file, os.PathLike) or hasattr(input_file, "open"):
        return input_file, None
    if not isinstance(input_file, str) or not input_file.strip():
        raise BatchParameterError(f"input_file must be a local path, a storage URI or a file id, got {input_file!r}")
    text = input_file.strip()
    if text.startswith(FILE_ID_PREFIX):
        return None, text
    if "://" in text:
        from airflow_provider_openai_batch.compat import ObjectStoragePath

        return ObjectStoragePath(text), None
    return text, None


def resolve_location(value: Any) -> Any:
    """A destination: a local path, or a storage URI / ObjectStoragePath."""
    source, file_id = resolve_input(value)
    if file_id is not None:
        raise BatchParameterError(f"{value!r} is a file id, not a place to write to")
    return source


def checked_input(
    source: Any, file_id: str | None, endpoint: str, log: Any, skip_blank_lines: bool = False
) -> tuple[str, Any]:
    """Validate a local/storage input (raises before anything is uploaded); return its fingerprint and what to upload.

    An uploaded ``file-...`` id is not validated (it is already on the server); its id is the fingerprint.
    With ``skip_blank_lines`` a file with blank lines is uploaded as a streamed copy without them, and the
    fingerprint is that copy's.
    """
    if file_id is not None:
        log.info("Using uploaded file %s (not validated locally: it is already on the server)", file_id)
        return hashlib.sha256(f"file:{file_id}".encode()).hexdigest(), source
    summary = validate_batch_file(source, endpoint, skip_blank_lines=skip_blank_lines)
    log.info("Validated %s: %s", describe_source(source), _summary_text(summary))
    if summary.blank_lines_skipped:
        source = WithoutBlankLines(source, summary.bytes)
    return summary.fingerprint, source


def _summary_text(summary: BatchFileSummary) -> str:
    parts = [f"{summary.requests:,} requests", f"{summary.bytes / 1e6:.1f} MB"]
    if summary.model:
        parts.append(f"model {summary.model}")
    if summary.embedding_inputs:
        parts.append(f"{summary.embedding_inputs:,} embedding inputs")
    if summary.blank_lines_skipped:
        parts.append(f"{summary.blank_lines_skipped:,} blank lines left out of the upload")
    parts.append(f"fingerprint {summary.fingerprint[:12]}")
    return ", ".join(parts)
