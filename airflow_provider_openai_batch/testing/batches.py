"""The batch lifecycle, advanced lazily from elapsed time.

No background task moves batches along: every read, list, cancel or expire first applies the
transitions that are due by now (validating -> in_progress -> finalizing -> completed, or
failed / expired / cancelling -> cancelled), stamping each with the moment it was due, not the
moment it was observed. That makes the timeline exact and independent of polling frequency,
and a manual clock can drive it in tests. State changes happen under one lock that is never
held while waiting: heavy work (planning, writing result files) runs in worker threads and
callers wait for it outside the lock (see :mod:`waiting`).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Collection
from concurrent.futures import Executor
from typing import Any

from airflow_provider_openai_batch.testing.batch_records import (
    BatchRecord,
    CreateRequest,
    InjectedFailure,
    Timings,
    window_seconds,
)
from airflow_provider_openai_batch.testing.errors import ApiError, batch_not_found
from airflow_provider_openai_batch.testing.execution import Execution, RequestRunner
from airflow_provider_openai_batch.testing.ids import IdFactory
from airflow_provider_openai_batch.testing.plan import PlanSpec, plan_batch
from airflow_provider_openai_batch.testing.results import write_results
from airflow_provider_openai_batch.testing.store import FileStore, StoredFile
from airflow_provider_openai_batch.testing.validation import Limits
from airflow_provider_openai_batch.testing.waiting import Pending

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
STOP_CODES = {"expired": "batch_expired", "cancelled": "batch_cancelled"}
ZERO_USAGE: dict[str, Any] = {
    "input_tokens": 0,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 0,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 0,
}
TOKEN_LIMIT_MESSAGE = (
    "Enqueued token limit reached for {model} in organization org-fake. Limit: 2,000,000 enqueued tokens. "
    "Please try again once some in_progress batches have been completed."
)
"""Observed message of an asynchronous ``token_limit_exceeded`` failure; ``{model}`` is filled in."""


class BatchEngine:
    def __init__(
        self,
        files: FileStore,
        ids: IdFactory,
        executor: Executor,
        *,
        clock: Callable[[], float],
        seed: int,
        limits: Limits,
        models: Collection[str] | None,
        runner: RequestRunner,
        timings: Timings,
    ) -> None:
        self._files = files
        self._ids = ids
        self._executor = executor
        self._clock = clock
        self._seed = seed
        self._limits = limits
        self._models = models
        self.runner = runner
        self.timings = timings
        self._lock = threading.Lock()
        self._batches: dict[str, BatchRecord] = {}
        self._order: list[BatchRecord] = []
        self._failures: deque[InjectedFailure] = deque()

    # -- configuration -------------------------------------------------------------------------

    def fail_next_batches(self, count: int, code: str, message: str) -> None:
        with self._lock:
            self._failures.extend(InjectedFailure(code, message) for _ in range(count))

    def clear(self) -> None:
        """Forget every batch and file (result writers still running find their batch gone)."""
        with self._lock:
            self._batches.clear()
            self._order.clear()
            self._failures.clear()
            self._files.clear()

    # -- operations ----------------------------------------------------------------------------

    def create(self, request: CreateRequest, input_file: StoredFile | None, organization: str) -> str:
        batch_id = self._ids.new("batch_")
        created = self._clock()
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
            timings, runner = self.timings, self.runner
        spec = PlanSpec(
            batch_id=batch_id,
            endpoint=request.endpoint,
            input_file_id=request.input_file_id,
            input_path=input_file.path if input_file is not None else None,
            organization=organization,
            limits=self._limits,
            models=self._models,
            runner=runner,
            created=int(created + timings.validating),
            spool=self._files.scratch_path("spool"),
            seed=self._seed,
            run_requests=failure is None,
        )
        record = BatchRecord(
            id=batch_id,
            request=request,
            created=created,
            window=window_seconds(request.completion_window),
            timings=timings,
            plan=self._executor.submit(plan_batch, spec),
            failure=failure,
        )
        with self._lock:
            self._batches[batch_id] = record
            self._order.append(record)
        return batch_id

    def view(self, batch_id: str) -> dict[str, Any] | Pending:
        with self._lock:
            batch = self._get(batch_id)
            now = self._clock()
            pending = self._advance(batch, now)
            return pending or self._render(batch, now)

    def page(self, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool] | Pending:
        """Newest first; ``after`` is the id of the last batch of the previous page."""
        with self._lock:
            newest_first = self._order[::-1]
            if after is not None:
                ids = [batch.id for batch in newest_first]
                newest_first = newest_first[ids.index(after) + 1 :] if after in ids else []
            chosen = newest_first[:limit]
            now = self._clock()
            for batch in chosen:
                pending = self._advance(batch, now)
                if pending is not None:
                    return pending
            return [self._render(batch, now) for batch in chosen], len(newest_first) > limit

    def cancel(self, batch_id: str) -> Pending | None:
        with self._lock:
            batch = self._get(batch_id)
            now = self._clock()
            pending = self._advance(batch, now)
            if pending is not None or batch.status in ("cancelling", "cancelled"):
                return pending
            if batch.status in TERMINAL:
                raise ApiError(409, f"Cannot cancel a batch with status '{batch.status}'.")
            batch.done_at_cancel = self._done_at(batch, now)
            if batch.execution is not None:
                batch.completed, batch.failed = batch.execution.counts(batch.done_at_cancel)
            batch.status = "cancelling"
            batch.times["cancelling"] = now
            return None

    def expire(self, batch_id: str, completed_fraction: float) -> Pending | None:
        """End the batch now as ``expired`` with ``completed_fraction`` of its requests done."""
        if not 0 <= completed_fraction <= 1:
            raise ApiError(400, "completed_fraction must be between 0 and 1.", param="completed_fraction")
        with self._lock:
            batch = self._get(batch_id)
            now = self._clock()
            pending = self._advance(batch, now)
            if pending is not None:
                return pending
            if batch.status == "validating":
                if not batch.plan.done():
                    return Pending(batch.plan)
                self._finish_validation(batch, now)
            if batch.status not in ("in_progress", "finalizing"):
                raise ApiError(409, f"Cannot expire a batch with status '{batch.status}'.")
            self._stop(batch, "expired", now, math.floor(batch.total * completed_fraction))
            return None

    # -- lifecycle (lock held) -----------------------------------------------------------------

    def _get(self, batch_id: str) -> BatchRecord:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise batch_not_found(batch_id)
        return batch

    def _advance(self, batch: BatchRecord, now: float) -> Pending | None:
        """Apply every transition due by ``now``; Pending if one needs a worker's result first."""
        timings = batch.timings
        while True:
            if batch.status == "validating":
                due = batch.created + timings.validating
                if now < due:
                    return None
                if not batch.plan.done():
                    return Pending(batch.plan)
                self._finish_validation(batch, due)
            elif batch.status == "in_progress":
                end = batch.times["in_progress"] + timings.in_progress
                expiry = self._expiry(batch, end)
                if expiry is not None and now >= expiry[0]:
                    self._stop(batch, "expired", *expiry)
                    continue
                if now < end:
                    return None
                assert batch.execution is not None
                batch.completed, batch.failed = batch.execution.counts(batch.total)
                batch.status = "finalizing"
                batch.times["finalizing"] = end
            elif batch.status == "finalizing":
                end = batch.times["finalizing"] + timings.finalizing
                if now < end:
                    return None
                self._stop(batch, "completed", end, batch.total)
            elif batch.status == "cancelling":
                end = batch.times["cancelling"] + timings.cancelling
                if now < end:
                    return None
                self._stop(batch, "cancelled", end, batch.done_at_cancel)
            else:
                results = batch.results
                return Pending(results) if results is not None and not results.done() else None

    def _finish_validation(self, batch: BatchRecord, at: float) -> None:
        plan = batch.plan.result()
        batch.model = plan.model
        errors = plan.errors
        if batch.failure is not None:
            message = batch.failure.message.replace("{model}", plan.model or "the requested model")
            errors = [{"code": batch.failure.code, "message": message, "param": None, "line": None}]
        if errors:
            batch.status = "failed"
            batch.times["failed"] = at
            batch.errors = errors
            batch.usage = ZERO_USAGE
            return
        assert plan.execution is not None
        batch.execution = plan.execution
        batch.total = plan.execution.total
        batch.status = "in_progress"
        batch.times["in_progress"] = at

    def _done_at(self, batch: BatchRecord, at: float) -> int:
        """Requests finished by ``at``: linear over the in-progress phase, all of them after it."""
        if batch.status == "finalizing":
            return batch.total
        if batch.status != "in_progress":
            return 0
        duration = batch.timings.in_progress
        if duration <= 0:
            return batch.total
        elapsed = max(0.0, at - batch.times["in_progress"])
        return min(batch.total, math.floor(batch.total * elapsed / duration))

    def _expiry(self, batch: BatchRecord, end: float) -> tuple[float, int] | None:
        """When (and with how many requests done) an in-progress batch expires, if before ``end``."""
        candidates: list[tuple[float, int]] = []
        fraction = batch.timings.expire_after_fraction
        if fraction is not None:
            at = batch.times["in_progress"] + fraction * batch.timings.in_progress
            candidates.append((at, math.floor(batch.total * fraction)))
        window_end = batch.created + batch.window
        if window_end < end:
            candidates.append((window_end, self._done_at(batch, window_end)))
        early = [candidate for candidate in candidates if candidate[0] < end]
        return min(early) if early else None

    def _stop(self, batch: BatchRecord, status: str, at: float, done: int) -> None:
        """Enter a terminal status and start writing the result files of the ``done`` requests."""
        batch.status = status
        batch.times[status] = at
        execution = batch.execution
        if execution is None:  # cancelled while validating: nothing ran
            batch.usage = ZERO_USAGE
            return
        completed, failed = execution.counts(done)
        batch.completed = completed
        batch.failed = failed + (batch.total - done if status == "expired" else 0)
        batch.results = self._executor.submit(self._write_results, batch, execution, done, int(at))

    def _write_results(self, batch: BatchRecord, execution: Execution, done: int, created_at: int) -> None:
        files = write_results(
            execution,
            batch_id=batch.id,
            done=done,
            stop_code=STOP_CODES.get(batch.status),
            output_path=self._files.scratch_path("output"),
            error_path=self._files.scratch_path("errors"),
            seed=self._seed,
        )
        keep = batch.request.output_expires_after
        with self._lock:
            if self._batches.get(batch.id) is not batch:  # reset while writing
                for path in (files.output, files.errors):
                    if path is not None:
                        path.unlink(missing_ok=True)
                return
            for path, kind in ((files.output, "output"), (files.errors, "error")):
                if path is None:
                    continue
                stored = self._files.add(
                    path,
                    filename=f"batch_{batch.id}_{kind}.jsonl",
                    purpose="batch_output",
                    created_at=created_at,
                    expires_after=keep,
                )
                if kind == "output":
                    batch.output_file_id = stored.id
                else:
                    batch.error_file_id = stored.id
            batch.usage = files.usage

    # -- rendering (lock held) -----------------------------------------------------------------

    def _render(self, batch: BatchRecord, now: float) -> dict[str, Any]:
        completed, failed = batch.completed, batch.failed
        if batch.status == "in_progress" and batch.execution is not None:
            completed, failed = batch.execution.counts(self._done_at(batch, now))

        def stamp(name: str) -> int | None:
            value = batch.times.get(name)
            return int(value) if value is not None else None

        created_at = int(batch.created)
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.request.endpoint,
            "model": batch.model,
            "errors": {"object": "list", "data": list(batch.errors)} if batch.errors else None,
            "input_file_id": batch.request.input_file_id,
            "completion_window": batch.request.completion_window,
            "status": batch.status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": created_at,
            "in_progress_at": stamp("in_progress"),
            "expires_at": created_at + batch.window,
            "finalizing_at": stamp("finalizing"),
            "completed_at": stamp("completed"),
            "failed_at": stamp("failed"),
            "expired_at": stamp("expired"),
            "cancelling_at": stamp("cancelling"),
            "cancelled_at": stamp("cancelled"),
            "request_counts": {"total": batch.total, "completed": completed, "failed": failed},
            "usage": batch.usage,
            "metadata": dict(batch.request.metadata) if batch.request.metadata is not None else None,
        }
