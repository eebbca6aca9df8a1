"""Pydantic models of the Batch and Files API (floor 1: no Airflow import).

Parsing is lenient on purpose: unknown fields are kept (``extra="allow"``) so a field
the API adds tomorrow survives a round trip, an unknown status string becomes a
pseudo-member of :class:`BatchStatus` (in ``statuses.py``) instead of a crash, and counts that some
OpenAI-compatible services send as ``null`` while validating read as 0.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_provider_openai_batch.api.statuses import TERMINAL_STATUSES as TERMINAL_STATUSES  # re-exported
from airflow_provider_openai_batch.api.statuses import BatchStatus

ENDPOINTS: tuple[str, ...] = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
"""The endpoints the Batch API accepts (``CreateBatchRequest.endpoint``)."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class BatchError(_Lenient):
    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


class BatchErrors(_Lenient):
    object: str = "list"
    data: list[BatchError] = Field(default_factory=list)


class RequestCounts(_Lenient):
    total: int = 0
    completed: int = 0
    failed: int = 0

    @field_validator("total", "completed", "failed", mode="before")
    @classmethod
    def _null_is_zero(cls, value: Any) -> Any:
        return 0 if value is None else value

    def as_dict(self) -> dict[str, int]:
        """The plain dict pushed to XCom: ``{"total", "completed", "failed"}``."""
        return {"total": self.total, "completed": self.completed, "failed": self.failed}


class InputTokensDetails(_Lenient):
    cached_tokens: int = 0


class OutputTokensDetails(_Lenient):
    reasoning_tokens: int = 0


class BatchUsage(_Lenient):
    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int = 0


class Batch(_Lenient):
    id: str
    object: str = "batch"
    endpoint: str | None = None
    model: str | None = None
    errors: BatchErrors | None = None
    input_file_id: str | None = None
    completion_window: str | None = None
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int | str | None = None
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts = Field(default_factory=RequestCounts)
    usage: BatchUsage | None = None
    metadata: dict[str, str] | None = None

    @field_validator("request_counts", mode="before")
    @classmethod
    def _null_counts(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def error_list(self) -> list[BatchError]:
        return list(self.errors.data) if self.errors else []


class FileObject(_Lenient):
    id: str
    object: str = "file"
    bytes: int | None = None
    created_at: int | None = None
    expires_at: int | None = None
    filename: str | None = None
    purpose: str | None = None
    status: str | None = None
    status_details: str | None = None


class FileDeleted(_Lenient):
    id: str
    object: str = "file"
    deleted: bool


T = TypeVar("T")


class ListPage(_Lenient, Generic[T]):
    object: str = "list"
    data: list[T]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class ErrorDetail(_Lenient):
    message: str = ""
    type: str | None = None
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(_Lenient):
    error: ErrorDetail


# JSONL line shapes ---------------------------------------------------------------------------


class BatchRequestLine(_Lenient):
    """One line of a batch input file."""

    custom_id: str
    method: Literal["POST"] = "POST"
    url: str
    body: dict[str, Any]


class BatchResponse(_Lenient):
    status_code: int
    request_id: str | None = None
    body: dict[str, Any] | None = None


class BatchLineError(_Lenient):
    code: str | None = None
    message: str | None = None


class BatchOutputLine(_Lenient):
    """One line of a batch output or error file."""

    id: str | None = None
    custom_id: str
    response: BatchResponse | None = None
    error: BatchLineError | None = None
