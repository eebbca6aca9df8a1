"""Planning a batch: validate its input file and, if valid, run its requests.

Done once per batch in a worker thread right after creation, so ``POST /v1/batches`` answers
at once whatever the file size and the event loop never parses JSONL. The lifecycle only
*reveals* the plan as time passes: validation errors at the end of ``validating``, results
at the end of ``in_progress``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_openai_batch.testing.execution import Execution, RequestRunner, execute
from airflow_provider_openai_batch.testing.validation import Limits, batch_error, scan_input


@dataclass(frozen=True)
class PlanSpec:
    batch_id: str
    endpoint: str
    input_file_id: str
    input_path: Path | None
    """``None`` when the input file does not exist: the batch then fails validation."""
    organization: str
    limits: Limits
    models: Collection[str] | None
    runner: RequestRunner
    created: int
    """Timestamp put in response bodies (the moment the batch goes ``in_progress``)."""
    spool: Path
    seed: int
    run_requests: bool
    """False when the batch is doomed anyway (an injected failure): the responder is not called."""


@dataclass
class BatchPlan:
    model: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    execution: Execution | None = None


def missing_file_error(file_id: str, organization: str) -> dict[str, Any]:
    return batch_error(
        "invalid_request",
        f"Cannot find file {file_id}, or organization {organization} does not have access to it.",
        param="file_id",
    )


def plan_batch(spec: PlanSpec) -> BatchPlan:
    if spec.input_path is None:
        return BatchPlan(errors=[missing_file_error(spec.input_file_id, spec.organization)])
    try:
        scan = scan_input(spec.input_path, spec.endpoint, spec.limits, spec.models)
        if scan.errors or not spec.run_requests:
            return BatchPlan(model=scan.model, errors=scan.errors)
        execution = execute(
            spec.input_path,
            spec.endpoint,
            spec.batch_id,
            spec.runner,
            created=spec.created,
            spool=spec.spool,
            seed=spec.seed,
        )
    except FileNotFoundError:  # deleted between create and planning
        return BatchPlan(errors=[missing_file_error(spec.input_file_id, spec.organization)])
    return BatchPlan(model=scan.model, execution=execution)
