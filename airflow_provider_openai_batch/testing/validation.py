"""Service-side validation of a batch input file, as the real service does while ``validating``.

All-or-nothing: every offending line gets one ``errors.data`` entry (1-based ``line``) and any
entry fails the whole batch. Codes, params and messages are the ones observed from OpenAI
(see the behaviour reference, section 4.2). The file is streamed line by line, so a 200 MB
input never sits in memory.

Where each rule comes from: ``invalid_json_line``, ``missing_required_parameter`` (custom_id,
method, url, body), ``invalid_url``, ``model_not_found``, ``streaming_unsupported`` and
``invalid_request`` for a missing ``body.model`` / ``body.messages`` are observed from OpenAI
(reference 4.2 table); ``duplicate_custom_id``, ``mismatched_model``, ``empty_file`` and
``too_many_tasks`` are the codes of reference 4.2's second paragraph; the required ``input`` of
embeddings and moderations (reference 4.1: "``/v1/moderations``: body must contain ``input``"),
``prompt`` of completions, images and videos follow the observed "X parameter is required."
pattern (inferred). What the endpoint itself rejects inside a valid line (a message without
``role``) is not checked here but per request, in ``request_checks.py``.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_openai_batch.testing.endpoints import ENDPOINT_RULES
from airflow_provider_openai_batch.testing.errors import json_type_name
from airflow_provider_openai_batch.testing.models import is_known_model


@dataclass(frozen=True)
class Limits:
    """Per-batch limits of the Batch API; smaller values let tests reach them cheaply."""

    max_requests: int = 50_000
    max_file_bytes: int = 209_715_200
    max_embedding_inputs: int = 50_000


@dataclass
class ScanResult:
    model: str | None = None
    total: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def batch_error(code: str, message: str, *, line: int | None = None, param: str | None = None) -> dict[str, Any]:
    """One ``BatchError`` entry of ``errors.data``."""
    return {"code": code, "message": message, "param": param, "line": line}


def is_blank(raw: bytes) -> bool:
    """Blank lines (e.g. a doubled trailing newline) carry no request and are skipped, not rejected."""
    return not raw.strip()


def embedding_input_count(value: object) -> int:
    """How many embeddings one ``input`` asks for: a string or a token array is one, a list of them is many."""
    if isinstance(value, list):
        if value and all(isinstance(item, int) for item in value):
            return 1
        return len(value)
    return 1


class _LineChecker:
    def __init__(self, endpoint: str, models: Collection[str] | None) -> None:
        self.endpoint = endpoint
        self.rule = ENDPOINT_RULES[endpoint]
        self.models = models
        self.result = ScanResult()
        self.seen_ids: set[str] = set()
        self.embedding_inputs = 0

    def check(self, raw: bytes, line: int) -> None:
        self.result.total += 1
        problem = self._problem(raw, line)
        if problem is not None:
            self.result.errors.append(problem)

    def _problem(self, raw: bytes, line: int) -> dict[str, Any] | None:
        try:
            request = json.loads(raw)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            return batch_error("invalid_json_line", "This line is not parseable as valid JSON.", line=line)
        for key in ("custom_id", "method", "url", "body"):
            if key not in request:
                return batch_error(
                    "missing_required_parameter", f"Missing required parameter: '{key}'.", line=line, param=key
                )
        custom_id, body = request["custom_id"], request["body"]
        if not isinstance(custom_id, str):
            return _wrong_type("custom_id", "a string", custom_id, line)
        if request["method"] != "POST":
            return batch_error(
                "invalid_value",
                f"Invalid value: '{request['method']}'. Supported values are: 'POST'.",
                line=line,
                param="method",
            )
        if request["url"] != self.endpoint:
            return batch_error(
                "invalid_url",
                "The URL provided for this request does not match the batch endpoint.",
                line=line,
                param="url",
            )
        if not isinstance(body, dict):
            return _wrong_type("body", "an object", body, line)
        if custom_id in self.seen_ids:
            return batch_error(
                "duplicate_custom_id",
                f"The custom_id '{custom_id}' for this request is a duplicate of another request. "
                "The custom_id parameter must be unique for each request in a batch.",
                line=line,
                param="custom_id",
            )
        self.seen_ids.add(custom_id)
        return self._body_problem(body, line)

    def _body_problem(self, body: dict[str, Any], line: int) -> dict[str, Any] | None:
        if body.get("stream"):
            return batch_error(
                "streaming_unsupported",
                f"{self.rule.label}: Streaming is not supported in the Batch API.",
                line=line,
                param="body.stream",
            )
        for name in self.rule.required:
            if body.get(name) is None:
                return batch_error(
                    "invalid_request", f"{name.capitalize()} parameter is required.", line=line, param=f"body.{name}"
                )
        model = body.get("model")
        if model is not None:
            if not isinstance(model, str):
                return _wrong_type("body.model", "a string", model, line)
            if self.models is not None and not is_known_model(model, self.models):
                return batch_error(
                    "model_not_found",
                    f"The provided model '{model}' is not supported by the Batch API.",
                    line=line,
                    param="body.model",
                )
            if self.result.model is None:
                self.result.model = model
            elif model != self.result.model:
                return batch_error(
                    "mismatched_model",
                    f"The model '{model}' for this request does not match the rest of the batch. "
                    "Each batch must contain requests for a single model.",
                    line=line,
                    param="body.model",
                )
        if self.endpoint == "/v1/embeddings":
            self.embedding_inputs += embedding_input_count(body.get("input"))
        return None


def _wrong_type(param: str, expected: str, value: object, line: int) -> dict[str, Any]:
    return batch_error(
        "invalid_type",
        f"Invalid type for '{param}': expected {expected}, but got {json_type_name(value)} instead.",
        line=line,
        param=param,
    )


def _first_model(path: Path) -> str | None:
    with path.open("rb") as source:
        for raw in source:
            if is_blank(raw):
                continue
            try:
                request = json.loads(raw)
            except ValueError:
                return None
            body = request.get("body") if isinstance(request, dict) else None
            model = body.get("model") if isinstance(body, dict) else None
            return model if isinstance(model, str) else None
    return None


def scan_input(path: Path, endpoint: str, limits: Limits, models: Collection[str] | None = None) -> ScanResult:
    """Validate the whole input file for a batch on ``endpoint``."""
    if path.stat().st_size > limits.max_file_bytes:
        model = _first_model(path)
        message = (
            f"The batch input file is larger than the {limits.max_file_bytes} maximum for the "
            f"{model or 'requested'} model. Please try again with a smaller batch."
        )
        return ScanResult(model=model, errors=[batch_error("file_too_large", message)])
    checker = _LineChecker(endpoint, models)
    with path.open("rb") as source:
        for line, raw in enumerate(source, start=1):
            if not is_blank(raw):
                checker.check(raw, line)
    result = checker.result
    if result.total == 0:
        result.errors.append(
            batch_error(
                "empty_file", "The input file is empty. Please ensure that the batch contains at least one request."
            )
        )
    if result.total > limits.max_requests:
        result.errors.append(
            batch_error(
                "too_many_tasks",
                f"The batch input file contains {result.total} requests, more than the maximum of "
                f"{limits.max_requests} requests per batch.",
            )
        )
    if checker.embedding_inputs > limits.max_embedding_inputs:
        result.errors.append(
            batch_error(
                "too_many_tasks",
                f"The batch contains {checker.embedding_inputs} embedding inputs, more than the maximum of "
                f"{limits.max_embedding_inputs} embedding inputs per batch.",
            )
        )
    return result
