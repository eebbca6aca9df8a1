"""Synchronous checks of ``POST /v1/batches`` and of file expiry parameters.

These are the 400s the real service returns before a batch exists (bad endpoint, window,
metadata, expiry); anything about the input file's content is checked later, asynchronously,
by :mod:`validation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_openai_batch.testing.batch_records import CreateRequest
from airflow_provider_openai_batch.testing.endpoints import SUPPORTED_ENDPOINTS
from airflow_provider_openai_batch.testing.errors import (
    ApiError,
    integer_in_range,
    invalid_type,
    invalid_value,
    missing_parameter,
)

MIN_EXPIRY_SECONDS = 3600
MAX_EXPIRY_SECONDS = 2_592_000
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
CREATE_FIELDS = ("input_file_id", "endpoint", "completion_window", "metadata", "output_expires_after")


def parse_create_request(payload: object, allowed_windows: tuple[str, ...]) -> CreateRequest:
    if not isinstance(payload, dict):
        raise invalid_type("body", "an object", payload)
    for name in payload:
        if name not in CREATE_FIELDS:
            raise ApiError(400, f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")
    for name in CREATE_FIELDS[:3]:
        if payload.get(name) is None:
            raise missing_parameter(name)
        if not isinstance(payload[name], str):
            raise invalid_type(name, "a string", payload[name])
    if payload["endpoint"] not in SUPPORTED_ENDPOINTS:
        raise invalid_value("endpoint", payload["endpoint"], SUPPORTED_ENDPOINTS)
    if payload["completion_window"] not in allowed_windows:
        raise invalid_value("completion_window", payload["completion_window"], allowed_windows)
    expiry = payload.get("output_expires_after")
    return CreateRequest(
        input_file_id=payload["input_file_id"],
        endpoint=payload["endpoint"],
        completion_window=payload["completion_window"],
        metadata=parse_metadata(payload.get("metadata")),
        output_expires_after=None if expiry is None else parse_expiry("output_expires_after", expiry),
    )


def parse_metadata(metadata: object) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise invalid_type("metadata", "an object", metadata)
    if len(metadata) > MAX_METADATA_PAIRS:
        raise ApiError(
            400,
            f"Invalid 'metadata': too many properties. Expected an object with at most {MAX_METADATA_PAIRS} "
            f"properties, but got an object with {len(metadata)} properties instead.",
            param="metadata",
            code="object_above_max_properties",
        )
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY:
            raise ApiError(
                400,
                f"Invalid 'metadata': key too long. Expected keys with a maximum length of {MAX_METADATA_KEY}, "
                f"but got a key with length {len(key)} instead.",
                param="metadata",
                code="string_above_max_length",
            )
        if not isinstance(value, str):
            raise invalid_type(f"metadata.{key}", "a string", value)
        if len(value) > MAX_METADATA_VALUE:
            raise ApiError(
                400,
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum length "
                f"{MAX_METADATA_VALUE}, but got a string with length {len(value)} instead.",
                param=f"metadata.{key}",
                code="string_above_max_length",
            )
    return dict(metadata)


def parse_expiry(param: str, expiry: object) -> int:
    """``{"anchor": "created_at", "seconds": 3600..2592000}`` -> seconds."""
    if not isinstance(expiry, Mapping):
        raise invalid_type(param, "an object", expiry)
    anchor = expiry.get("anchor")
    if anchor is None:
        raise missing_parameter(f"{param}.anchor")
    if anchor != "created_at":
        raise invalid_value(f"{param}.anchor", anchor, ("created_at",))
    if expiry.get("seconds") is None:
        raise missing_parameter(f"{param}.seconds")
    return integer_in_range(f"{param}.seconds", expiry["seconds"], MIN_EXPIRY_SECONDS, MAX_EXPIRY_SECONDS)


def parse_form_expiry(fields: Mapping[str, str]) -> int | None:
    """``expires_after[anchor]`` / ``expires_after[seconds]`` of a multipart upload (bracket notation)."""
    anchor = fields.get("expires_after[anchor]")
    seconds: Any = fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    return parse_expiry("expires_after", {"anchor": anchor, "seconds": seconds})
