"""What the fake's batch engine keeps per batch: timings, the create request, the record (testing).

Plain data, split from :mod:`.batches` (the lifecycle) so that module stays about one thing.
"""

from __future__ import annotations

import re
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_openai_batch.testing.execution import Execution
from airflow_provider_openai_batch.testing.plan import BatchPlan


@dataclass(frozen=True)
class Timings:
    """How long each phase lasts (seconds); captured per batch at creation."""

    validating: float = 0.2
    in_progress: float = 0.5
    finalizing: float = 0.1
    cancelling: float = 0.2
    expire_after_fraction: float | None = None
    """If set, batches expire once this fraction of the in-progress phase has elapsed."""

    def __post_init__(self) -> None:
        for name in ("validating", "in_progress", "finalizing", "cancelling"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.expire_after_fraction is not None and not 0 <= self.expire_after_fraction <= 1:
            raise ValueError("expire_after_fraction must be between 0 and 1")


@dataclass(frozen=True)
class CreateRequest:
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None
    output_expires_after: int | None = None


@dataclass(frozen=True)
class InjectedFailure:
    code: str
    message: str


@dataclass
class BatchRecord:
    id: str
    request: CreateRequest
    created: float
    window: int
    timings: Timings
    plan: Future[BatchPlan]
    failure: InjectedFailure | None
    status: str = "validating"
    times: dict[str, float] = field(default_factory=dict)
    model: str | None = None
    errors: list[dict[str, Any]] | None = None
    execution: Execution | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    done_at_cancel: int = 0
    results: Future[None] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    usage: dict[str, Any] | None = None


def window_seconds(window: str) -> int:
    """``"24h"`` -> 86400, ``"7d"`` -> 604800; anything else counts as 24 hours."""
    match = re.fullmatch(r"(\d+)\s*([hd])", window.strip())
    if match is None:
        return 24 * 3600
    return int(match.group(1)) * (3600 if match.group(2) == "h" else 86400)
