"""Running the requests of a validated batch: responder calls and the result spool.

Every request is answered once, when the batch is planned, and its finished output line is
appended to a spool file on disk; only small per-request facts (custom_id, spool offset,
failed flag, token usage) stay in memory. A seeded permutation fixes the order in which
requests "complete": the first ``k`` of it are the ones done when ``k`` are done, which keeps
the growing ``request_counts``, a cancel's partial output and an expiry's split consistent.
"""

from __future__ import annotations

import json
import random
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_openai_batch.testing.bodies import TEXT_BODIES, default_body, request_error, usage_of
from airflow_provider_openai_batch.testing.ids import derived_id
from airflow_provider_openai_batch.testing.request_checks import request_problem
from airflow_provider_openai_batch.testing.validation import is_blank

ResponderResult = tuple[int, dict[str, Any]] | str | None
"""``(status_code, body)``; or a ``str``, the answer text (chat/responses/completions); or ``None`` for the default."""

Responder = Callable[[str, dict[str, Any], str], ResponderResult]
"""``responder(endpoint, request_body, custom_id)``: scripts the fake's answer to one request."""

Usage = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class RequestRunner:
    """Answers one request: the endpoint's body checks first (a 400 the service would give), then
    ``fail_requests``, then the responder, then the default body."""

    responder: Responder | None = None
    fail_requests: Mapping[str, int] = field(default_factory=dict)

    def run(self, endpoint: str, body: dict[str, Any], custom_id: str, *, key: str, created: int) -> tuple[int, Any]:
        rejected = request_problem(endpoint, body)
        if rejected is not None:
            return rejected
        status = self.fail_requests.get(custom_id)
        if status is not None:
            return status, request_error(status, body)
        try:
            scripted = self.responder(endpoint, body, custom_id) if self.responder else None
        except Exception as exc:  # a bug in a test's responder shows up in the error file, not as a hang
            return 500, _server_error(f"responder raised {type(exc).__name__}: {exc}")
        if scripted is None:
            return 200, default_body(endpoint, body, key=key, created=created)
        if isinstance(scripted, str):
            text_body = TEXT_BODIES.get(endpoint)
            if text_body is None:
                return 500, _server_error(f"responder returned text for {endpoint}, which needs a body")
            return 200, text_body(body, scripted, key=key, created=created)
        return scripted


def _server_error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}


def output_line(batch_id: str, custom_id: str, status: int, body: Any) -> dict[str, Any]:
    """A ``BatchRequestOutput`` line for a request that got an HTTP answer (success or failure)."""
    return {
        "id": derived_id("batch_req_", batch_id, custom_id),
        "custom_id": custom_id,
        "response": {
            "status_code": status,
            "request_id": derived_id("req_", batch_id, custom_id, "request"),
            "body": body,
        },
        "error": None,
    }


@dataclass
class Execution:
    """What is known about each request after running it (lists are in input order)."""

    spool: Path
    custom_ids: list[str] = field(default_factory=list)
    offsets: array = field(default_factory=lambda: array("q"))
    failed: bytearray = field(default_factory=bytearray)
    usages: list[Usage] = field(default_factory=list)
    order: list[int] = field(default_factory=list)
    """Seeded permutation of input indexes: the order in which requests complete."""
    failed_prefix: array = field(default_factory=lambda: array("q", [0]))
    """``failed_prefix[k]`` = failed requests among the first ``k`` completed."""

    @property
    def total(self) -> int:
        return len(self.custom_ids)

    def counts(self, done: int) -> tuple[int, int]:
        """``(completed, failed)`` once ``done`` requests have finished."""
        failed = self.failed_prefix[done]
        return done - failed, failed


def execute(
    path: Path, endpoint: str, batch_id: str, runner: RequestRunner, *, created: int, spool: Path, seed: int
) -> Execution:
    """Answer every request of the (already validated) input file, spooling output lines to ``spool``."""
    execution = Execution(spool=spool)
    with path.open("rb") as source, spool.open("wb") as sink:
        for raw in source:
            if is_blank(raw):
                continue
            request = json.loads(raw)
            custom_id = request["custom_id"]
            status, body = runner.run(
                endpoint, request["body"], custom_id, key=f"{batch_id}/{custom_id}", created=created
            )
            execution.custom_ids.append(custom_id)
            execution.offsets.append(sink.tell())
            execution.failed.append(0 if 200 <= status < 300 else 1)
            execution.usages.append(usage_of(body) if isinstance(body, dict) else (0, 0, 0, 0, 0))
            sink.write(json.dumps(output_line(batch_id, custom_id, status, body)).encode() + b"\n")
    execution.order = list(range(execution.total))
    random.Random(f"{seed}/{batch_id}/order").shuffle(execution.order)
    for index in execution.order:
        execution.failed_prefix.append(execution.failed_prefix[-1] + execution.failed[index])
    return execution
