"""Checks of the create-batch parameters, before any request is sent (floor 1: no Airflow import).

The service rejects a bad ``POST /v1/batches`` only after the input file has been uploaded;
checking here lets a task fail at once with every problem listed, and lets the operator check
its arguments when it is constructed rather than after a worker picked it up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_openai_batch.api.exceptions import BatchParameterError
from airflow_provider_openai_batch.api.models import ENDPOINTS

DEFAULT_COMPLETION_WINDOW = "24h"
"""The only completion window OpenAI accepts."""

MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MIN_OUTPUT_EXPIRES_AFTER = 3_600
"""One hour, in seconds: the shortest output expiry the API accepts."""
MAX_OUTPUT_EXPIRES_AFTER = 2_592_000
"""Thirty days, in seconds: the longest output expiry the API accepts."""


def validate_create_params(
    endpoint: str,
    completion_window: str = DEFAULT_COMPLETION_WINDOW,
    metadata: Mapping[str, Any] | None = None,
    output_expires_after: int | None = None,
    *,
    allow_any_completion_window: bool = False,
    reserved_metadata_pairs: int = 0,
) -> None:
    """Raise one :class:`BatchParameterError` listing every problem with these create-batch parameters.

    ``allow_any_completion_window`` is for OpenAI-compatible services that accept other windows
    (``"48h"``, ``"7d"``); OpenAI itself accepts only ``"24h"``. ``reserved_metadata_pairs`` is
    how many of the 16 metadata pairs the caller adds itself (the operator adds 2: its
    idempotency key and the input fingerprint), so the user's own metadata must leave room.
    """
    if not _is_int(reserved_metadata_pairs) or not 0 <= reserved_metadata_pairs <= MAX_METADATA_PAIRS:
        raise BatchParameterError(f"reserved_metadata_pairs must be 0..16, got {reserved_metadata_pairs!r}")
    problems = [
        *_endpoint_problems(endpoint),
        *_window_problems(completion_window, allow_any_completion_window),
        *_metadata_problems(metadata, reserved_metadata_pairs),
        *_expiry_problems(output_expires_after),
    ]
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        raise BatchParameterError(f"Invalid batch parameters ({len(problems)} {noun}):\n{listed}")


def output_expires_after_body(seconds: int) -> dict[str, Any]:
    """The API's shape for an output expiry: the provider takes seconds, the API wants an anchored object."""
    problems = _expiry_problems(seconds)
    if problems:
        raise BatchParameterError(problems[0])
    return {"anchor": "created_at", "seconds": seconds}


def _endpoint_problems(endpoint: object) -> list[str]:
    if endpoint in ENDPOINTS:
        return []
    return [f"endpoint {endpoint!r} is not one the Batch API accepts; use one of: {', '.join(ENDPOINTS)}"]


def _window_problems(window: object, allow_any: bool) -> list[str]:
    if allow_any:
        if isinstance(window, str) and window.strip():
            return []
        return [f"completion_window must be a non-empty string such as '24h' or '7d', got {window!r}"]
    if window == DEFAULT_COMPLETION_WINDOW:
        return []
    return [
        f"completion_window must be {DEFAULT_COMPLETION_WINDOW!r} (the only window OpenAI accepts), got {window!r}; "
        "for an OpenAI-compatible service that accepts others, opt in with allow_any_completion_window=True"
    ]


def _metadata_problems(metadata: object, reserved: int) -> list[str]:
    if metadata is None:
        return []
    if not isinstance(metadata, Mapping):
        return [f"metadata must be a dict of strings, got {type(metadata).__name__}"]
    problems = []
    allowed = MAX_METADATA_PAIRS - reserved
    if len(metadata) > allowed:
        why = (
            f" (the API allows {MAX_METADATA_PAIRS} and {reserved} are reserved for the operator's "
            "idempotency key and input fingerprint)"
            if reserved
            else ""
        )
        problems.append(f"metadata has {len(metadata)} pairs; at most {allowed} are allowed{why}")
    for key, value in metadata.items():
        problems.extend(_metadata_pair_problems(key, value))
    return problems


def _metadata_pair_problems(key: object, value: object) -> list[str]:
    if not isinstance(key, str):
        return [f"metadata key {key!r} must be a string, got {type(key).__name__}"]
    problems = []
    if len(key) > MAX_METADATA_KEY_CHARS:
        problems.append(f"metadata key {key[:20]!r}... is {len(key)} characters; the limit is {MAX_METADATA_KEY_CHARS}")
    if not isinstance(value, str):
        problems.append(f"metadata[{key!r}] must be a string, got {type(value).__name__}")
    elif len(value) > MAX_METADATA_VALUE_CHARS:
        problems.append(f"metadata[{key!r}] is {len(value)} characters; the limit is {MAX_METADATA_VALUE_CHARS}")
    return problems


def _expiry_problems(seconds: object) -> list[str]:
    if seconds is None:
        return []
    if not _is_int(seconds):
        return [f"output_expires_after must be an int number of seconds, got {seconds!r}"]
    if not MIN_OUTPUT_EXPIRES_AFTER <= seconds <= MAX_OUTPUT_EXPIRES_AFTER:
        return [
            f"output_expires_after must be between {MIN_OUTPUT_EXPIRES_AFTER} (1 hour) and "
            f"{MAX_OUTPUT_EXPIRES_AFTER} (30 days) seconds, got {seconds}"
        ]
    return []


def _is_int(value: object) -> bool:
    # bool is an int subclass, but True seconds or True reserved pairs is a mistake, not a number.
    return isinstance(value, int) and not isinstance(value, bool)
