"""What the Batch API requires of an input file, and how problems with one are collected (floor 1: no Airflow import).

Shared by the validator, the splitter and the request builder (through :mod:`.scanner`), so the
three can never disagree about the limits or the required fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_openai_batch.api.exceptions import BatchFileValidationError, BatchParameterError, LineProblem
from airflow_provider_openai_batch.api.models import ENDPOINTS

EMBEDDINGS_ENDPOINT = "/v1/embeddings"

REQUIRED_BODY_FIELDS: dict[str, tuple[str, ...]] = {
    "/v1/chat/completions": ("model", "messages"),
    "/v1/embeddings": ("model", "input"),
    "/v1/responses": ("model", "input"),
    "/v1/completions": ("model", "prompt"),
    "/v1/moderations": ("input",),
    "/v1/images/generations": ("prompt",),
    "/v1/images/edits": ("prompt",),
    "/v1/videos": ("prompt",),
}
"""Body fields each endpoint needs; the service fails a batch whose line lacks one.

Deliberately small: only fields every request to the endpoint must carry (per the API
reference and the service's observed ``Model parameter is required.`` style errors). The
rest of the body is the endpoint's business and is passed through unchecked.
"""

MAX_STORED_PROBLEMS = 1_000
"""Problems kept as objects; all are counted. A broken 200 MB file must not build a huge error."""


@dataclass(frozen=True)
class BatchLimits:
    """Per-batch limits of the service; the defaults are OpenAI's.

    OpenAI-compatible services differ (Azure OpenAI allows 100,000 requests per file), so the
    limits are a value the caller can replace rather than constants baked into the checks.
    """

    max_requests: int = 50_000
    max_bytes: int = 209_715_200
    max_embedding_inputs: int = 50_000

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BatchParameterError(f"BatchLimits.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class BatchFileSummary:
    """What a valid input file holds; ``fingerprint`` is the sha256 hex of the exact bytes to upload.

    Those are the file's bytes, or with ``skip_blank_lines=True`` the file's bytes without its
    ``blank_lines_skipped`` blank lines (``bytes`` counts the same bytes): the same requests give the
    same fingerprint however many blank lines sit between them.

    ``estimated_tokens`` is a cheap, deliberately high estimate of the input tokens: the
    characters of every request line (JSON keys and punctuation included) divided by 4, the
    usual English average. It is good enough to keep a file under an enqueued-token budget;
    it is not a tokenizer and does not count output tokens.
    """

    requests: int
    bytes: int
    model: str | None
    endpoint: str
    embedding_inputs: int
    fingerprint: str
    estimated_tokens: int
    blank_lines_skipped: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict (for XCom and logs)."""
        return asdict(self)


class ProblemLog:
    """Collects problems: keeps the first :data:`MAX_STORED_PROBLEMS`, counts all of them."""

    def __init__(self, cap: int = MAX_STORED_PROBLEMS) -> None:
        self.problems: list[LineProblem] = []
        self.total = 0
        self._cap = cap

    def add(self, line: int | None, field: str | None, message: str) -> None:
        self.total += 1
        if len(self.problems) < self._cap:
            self.problems.append(LineProblem(line, field, message))

    def count_more(self, more: int) -> None:
        """Count problems that are not kept (past the cap already)."""
        self.total += more

    def raise_if_any(self, source: str, file_problems: list[LineProblem], hint: str = "") -> None:
        """Raise one error for everything found; whole-file problems go first so they are always shown."""
        total = self.total + len(file_problems)
        if total:
            raise BatchFileValidationError(source, [*file_problems, *self.problems], total, hint)


def check_endpoint(endpoint: str) -> str:
    """Return ``endpoint`` if the Batch API accepts it, else raise naming the ones it does."""
    if endpoint not in ENDPOINTS:
        allowed = ", ".join(ENDPOINTS)
        raise BatchParameterError(f"Unknown batch endpoint {endpoint!r}; the Batch API accepts: {allowed}")
    return endpoint
