"""One error hierarchy for the whole provider (floor 1: no Airflow import).

Every error a user can cause or meet names the problem and where it is. None of
them ever carries the API key: API errors are built from the response body and
headers only, never from the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class OpenAIBatchError(Exception):
    """Base class of every error raised by this provider."""


class OpenAIAPIError(OpenAIBatchError):
    """The API answered with an error status (or could not be reached at all).

    ``status_code`` is ``None`` for transport failures (connection refused, timeout,
    dropped connection); ``code``, ``param``, ``type`` come from the error envelope
    ``{"error": {"message", "type", "param", "code"}}``; ``request_id`` from ``x-request-id``.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        request_id: str | None = None,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.code = code
        self.param = param
        self.type = type
        self.request_id = request_id
        self.method = method
        self.path = path
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.method} {self.path}" if self.method and self.path else "OpenAI API"
        status = f"HTTP {self.status_code}" if self.status_code is not None else "no response"
        details = [f"code={self.code}" if self.code else "", f"param={self.param}" if self.param else ""]
        extra = ", ".join(d for d in details if d)
        rid = f" [request id {self.request_id}]" if self.request_id else ""
        return f"{where} failed ({status}{', ' + extra if extra else ''}): {self.message}{rid}"

    @property
    def is_transient(self) -> bool:
        """True when waiting and asking again may succeed: the one rule of :mod:`.transient`."""
        from airflow_provider_openai_batch.api.transient import transient_status

        return transient_status(self.status_code, self.code)


class OpenAITransportError(OpenAIAPIError):
    """No HTTP response: connection refused, timeout, or the connection dropped mid-request.

    ``request_sent`` tells whether the request may have reached the server; a
    non-idempotent call (``POST /batches``) is only retried blindly when it is False.
    """

    def __init__(self, message: str, *, request_sent: bool, method: str | None = None, path: str | None = None):
        self.request_sent = request_sent
        super().__init__(message, method=method, path=path)


class BatchParameterError(OpenAIBatchError, ValueError):
    """A create-batch parameter (endpoint, completion_window, metadata, expiry) is invalid."""


@dataclass(frozen=True)
class LineProblem:
    """One problem found in a batch input file; ``line`` is 1-based, ``None`` for whole-file problems."""

    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        field = f" [{self.field}]" if self.field else ""
        return f"{where}{field}: {self.message}"


class BatchFileValidationError(OpenAIBatchError, ValueError):
    """The batch input file breaks the Batch API's rules; nothing was uploaded.

    ``problems`` holds every problem found (up to a cap); ``total`` counts all of them.
    """

    SHOWN = 10

    def __init__(self, source: str, problems: list[LineProblem], total: int | None = None, hint: str = ""):
        self.source = source
        self.problems = problems
        self.total = total if total is not None else len(problems)
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        shown = "\n".join(f"  - {p}" for p in self.problems[: self.SHOWN])
        more = self.total - min(len(self.problems), self.SHOWN)
        tail = f"\n  ... and {more} more" if more > 0 else ""
        hint = f"\n{self.hint}" if self.hint else ""
        noun = "problem" if self.total == 1 else "problems"
        return f"Batch input file {self.source} has {self.total} {noun}; nothing was uploaded:\n{shown}{tail}{hint}"


class BatchTerminalError(OpenAIBatchError):
    """A batch ended in a state the task treats as failure (failed, cancelled, expired, timeout)."""

    def __init__(self, message: str, *, batch_id: str | None, status: str, payload: dict[str, Any] | None = None):
        self.batch_id = batch_id
        self.status = status
        self.payload = payload or {}
        super().__init__(message)
