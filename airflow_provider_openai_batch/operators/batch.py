"""OpenAIBatchOperator: validate, submit once, wait without a worker (floor 3).

Steps: check the create parameters -> validate the whole input file locally (nothing is
uploaded when it is bad) -> re-attach to this task instance's batch if one is alive,
else upload and create -> push ``batch_id`` (and the dashboard link) -> wait, deferred
by default. After waiting it pushes ``output_file_id``, ``error_file_id`` and
``request_counts`` (also for expired/cancelled batches, whose partial output was paid
for) and returns the batch id.

A batch that fails because the organisation's enqueued-token queue is full
(``token_limit_exceeded``) is resubmitted from the same uploaded file after a growing,
bounded delay spent deferred.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow_provider_openai_batch.api.exceptions import BatchParameterError
from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.api.params import validate_create_params
from airflow_provider_openai_batch.compat import BaseOperator
from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook
from airflow_provider_openai_batch.inputs.batchfile import BatchFileSummary, validate_batch_file
from airflow_provider_openai_batch.inputs.sources import describe_source
from airflow_provider_openai_batch.links import RECORD_XCOM_KEY, OpenAIBatchLink, batch_record, dashboard_url
from airflow_provider_openai_batch.links import XCOM_KEY as LINK_XCOM_KEY
from airflow_provider_openai_batch.submitting.submission import RESERVED_METADATA_PAIRS, idempotency_key, submit_once
from airflow_provider_openai_batch.triggers.batch import (
    DEFAULT_MAX_OUTAGE,
    OpenAIBatchResubmitTrigger,
    OpenAIBatchTrigger,
)
from airflow_provider_openai_batch.waiting.outcome import check_outcome, xcom_values
from airflow_provider_openai_batch.waiting.polling import (
    OutageBudget,
    ProgressTracker,
    decide,
    event_payload,
    is_token_limit_failure,
)

FILE_ID_PREFIX = "file-"


def resolve_input(input_file: Any) -> tuple[Any, str | None]:
    """Return ``(source, file_id)``: a ``file-...`` id is used as is, a URI becomes an ObjectStoragePath."""
    if isinstance(input_file, os.PathLike) or hasattr(input_file, "open"):
        return input_file, None
    if not isinstance(input_file, str) or not input_file.strip():
        raise BatchParameterError(f"input_file must be a local path, a storage URI or a file id, got {input_file!r}")
    text = input_file.strip()
    if text.startswith(FILE_ID_PREFIX):
        return None, text
    if "://" in text:
        from airflow_provider_openai_batch.compat import ObjectStoragePath

        return ObjectStoragePath(text), None
    return text, None


class OpenAIBatchOperator(BaseOperator):
    """Run one OpenAI batch from a JSONL file as an Airflow task.

    :param input_file: local path, ``ObjectStoragePath`` / storage URI (``s3://...``), or an
        uploaded ``file-...`` id (then it is not validated locally). Templated.
    :param endpoint: one of the Batch API endpoints. Templated.
    :param completion_window: ``24h``; other values need ``allow_any_completion_window=True``
        (for OpenAI-compatible services that accept them).
    :param metadata: up to 14 string pairs (2 of the API's 16 hold the idempotency key). Templated.
    :param output_expires_after: seconds (3600..2592000) after which OpenAI deletes the output files.
    :param input_file_expires_after: seconds after which OpenAI deletes the uploaded input file.
    :param conn_id: the ``openai_batch`` connection. Templated.
    :param wait_for_completion: wait for a terminal state; otherwise return the batch id at once
        (then gate downstream tasks with ``OpenAIBatchSensor``).
    :param deferrable: wait in the triggerer (default) instead of polling in the worker.
    :param poll_interval: seconds between status polls.
    :param timeout: seconds to wait before giving up (None: until the batch ends).
    :param cancel_on_kill: cancel the batch when the task is killed (worker or deferred).
    :param cancel_on_timeout: cancel the batch when ``timeout`` passes (else leave it running).
    :param max_failed_ratio: fail a completed batch whose failed share of requests is above this.
    :param retry_on_token_limit: resubmit after ``token_limit_exceeded`` (enqueued-token queue full).
    :param token_limit_retry_delay: first delay before resubmitting; it doubles, capped at an hour.
    :param token_limit_max_wait: the most time spent waiting to resubmit, in total.
    :param max_outage: seconds of unreachable API the wait tolerates before failing.
    """

    template_fields: Sequence[str] = ("input_file", "endpoint", "metadata", "conn_id")
    template_fields_renderers = {"metadata": "json"}
    operator_extra_links = (OpenAIBatchLink(),)
    ui_color = "#10a37f"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        input_file: Any,
        endpoint: str = "/v1/chat/completions",
        completion_window: str = "24h",
        metadata: dict[str, str] | None = None,
        output_expires_after: int | None = None,
        input_file_expires_after: int | None = None,
        conn_id: str = OpenAIBatchHook.default_conn_name,
        wait_for_completion: bool = True,
        deferrable: bool = True,
        poll_interval: float = 60.0,
        timeout: float | None = None,
        cancel_on_kill: bool = True,
        cancel_on_timeout: bool = True,
        max_failed_ratio: float | None = None,
        retry_on_token_limit: bool = True,
        token_limit_retry_delay: float = 300.0,
        token_limit_max_wait: float = 6 * 3600.0,
        max_outage: float = DEFAULT_MAX_OUTAGE,
        allow_any_completion_window: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_file = input_file
        self.endpoint = endpoint
        self.completion_window = completion_window
        self.metadata = metadata
        self.output_expires_after = output_expires_after
        self.input_file_expires_after = input_file_expires_after
        self.conn_id = conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.cancel_on_kill = cancel_on_kill
        self.cancel_on_timeout = cancel_on_timeout
        self.max_failed_ratio = max_failed_ratio
        self.retry_on_token_limit = retry_on_token_limit
        self.token_limit_retry_delay = token_limit_retry_delay
        self.token_limit_max_wait = token_limit_max_wait
        self.max_outage = max_outage
        self.allow_any_completion_window = allow_any_completion_window
        self.batch_id: str | None = None

    @cached_property
    def hook(self) -> OpenAIBatchHook:
        return OpenAIBatchHook(self.conn_id)

    # Submit

    def execute(self, context: Any) -> str:
        validate_create_params(
            self.endpoint,
            self.completion_window,
            self.metadata,
            self.output_expires_after,
            allow_any_completion_window=self.allow_any_completion_window,
            reserved_metadata_pairs=RESERVED_METADATA_PAIRS,
        )
        source, file_id = resolve_input(self.input_file)
        if file_id is None:
            summary = validate_batch_file(source, self.endpoint)
            self.log.info("Validated %s: %s", describe_source(source), _summary_text(summary))
            fingerprint = summary.fingerprint
        else:
            self.log.info("Using uploaded file %s (not validated locally: it is already on the server)", file_id)
            fingerprint = hashlib.sha256(f"file:{file_id}".encode()).hexdigest()

        ti = context["ti"]
        key = idempotency_key(ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1))
        end_time = time.time() + self.timeout if self.timeout is not None else None
        carry = {"key": key, "fingerprint": fingerprint, "end_time": end_time, "resubmits": 0, "waited": 0.0}
        return self._submit(context, carry, lambda: file_id or self._upload(source))

    def _upload(self, source: Any) -> str:
        uploaded = self.hook.upload_file(source, "batch", expires_after=self.input_file_expires_after)
        self.log.info("Uploaded %s as %s (%s bytes)", describe_source(source), uploaded.id, uploaded.bytes)
        return uploaded.id

    def _submit(self, context: Any, carry: dict[str, Any], input_file_id: Any) -> str:
        submission = submit_once(
            self.hook.client,
            key=carry["key"],
            fingerprint=carry["fingerprint"],
            input_file_id=input_file_id,
            endpoint=self.endpoint,
            completion_window=self.completion_window,
            metadata=self.metadata,
            output_expires_after=self.output_expires_after,
        )
        batch = submission.batch
        carry = {**carry, "input_file_id": batch.input_file_id}
        verb = "Re-attached to" if submission.reattached else "Created"
        self.log.info("%s batch %s (%s) on %s", verb, batch.id, batch.status.value, self.hook.base_url)
        self._announce(context, batch)
        if not self.wait_for_completion:
            return batch.id
        return self._wait(context, batch, carry)

    def _announce(self, context: Any, batch: Batch) -> None:
        """Record the batch before waiting, so a crash never loses it and the UI link works at once."""
        self.batch_id = batch.id
        ti = context["ti"]
        ti.xcom_push(key="batch_id", value=batch.id)
        url = dashboard_url(batch.id, self.hook.base_url, self.hook.dashboard_template)
        ti.xcom_push(key=LINK_XCOM_KEY, value=url or "")
        ti.xcom_push(key=RECORD_XCOM_KEY, value=batch_record(batch.id, self.conn_id, url))
        if url:
            self.log.info("Follow it at %s", url)

    # Wait

    def _wait(self, context: Any, batch: Batch, carry: dict[str, Any]) -> str:
        if batch.status.is_terminal:
            return self._finish(context, self._payload(batch, carry))
        if self.deferrable:
            self.log.info("Deferring: the triggerer polls batch %s every %ss", batch.id, self.poll_interval)
            self.defer(
                trigger=OpenAIBatchTrigger(
                    batch.id,
                    self.conn_id,
                    self.poll_interval,
                    carry.get("end_time"),
                    cancel_on_kill=self.cancel_on_kill,
                    max_outage=self.max_outage,
                    carry=carry,
                ),
                method_name="execute_complete",
                timeout=self._defer_timeout(carry.get("end_time")),
            )
        return self._finish(context, self._poll_in_worker(batch.id, carry))

    def _defer_timeout(self, end_time: float | None) -> timedelta | None:
        """A backstop a little after our own deadline, so the trigger's clean timeout event wins."""
        if end_time is None:
            return None
        return timedelta(seconds=max(0.0, end_time - time.time()) + self.poll_interval + 60)

    def _payload(self, batch: Batch, carry: dict[str, Any]) -> dict[str, Any]:
        decision = decide(batch, now=time.time(), end_time=None)
        payload = event_payload(batch, decision.status or batch.status.value, decision.message)
        payload["carry"] = carry
        return payload

    def _poll_in_worker(self, batch_id: str, carry: dict[str, Any]) -> dict[str, Any]:
        """The non-deferrable wait: the same decision as the trigger, with blocking sleeps."""
        budget = OutageBudget(max_outage=self.max_outage)
        progress = ProgressTracker()
        end_time = carry.get("end_time")
        batch: Batch | None = None
        while True:
            try:
                batch = self.hook.get_batch(batch_id)
            except Exception as error:
                decision = budget.on_error(error, now=time.time(), batch_id=batch_id)
                if decision.finished:
                    return {**event_payload(batch, "error", decision.message, batch_id=batch_id), "carry": carry}
                self.log.warning(decision.message)
            else:
                budget.on_success()
                line = progress.update(batch)
                if line:
                    self.log.info(line)
                decision = decide(batch, now=time.time(), end_time=end_time)
                if decision.finished:
                    payload = event_payload(batch, decision.status or "error", decision.message)
                    return {**payload, "carry": carry}
            sleep = self.poll_interval if end_time is None else min(self.poll_interval, end_time - time.time())
            time.sleep(max(0.0, sleep))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> str:
        return self._finish(context, event)

    def _finish(self, context: Any, payload: dict[str, Any]) -> str:
        carry = payload.get("carry") or {}
        batch_id = payload.get("batch_id")
        self.batch_id = batch_id
        if is_token_limit_failure(payload) and self.retry_on_token_limit:
            delay = self._token_limit_delay(carry)
            if delay is not None:
                return self._wait_then_resubmit(context, payload, carry, delay)
        ti = context["ti"]
        for key, value in xcom_values(payload).items():
            ti.xcom_push(key=key, value=value)
        cancelled = False
        if payload.get("status") == "timeout" and self.cancel_on_timeout and batch_id:
            cancelled = self._cancel(batch_id, "the wait timed out")
        check_outcome(payload, max_failed_ratio=self.max_failed_ratio, cancelled=cancelled)
        level = self.log.warning if (payload.get("request_counts") or {}).get("failed") else self.log.info
        level(payload.get("message"))
        return str(batch_id)

    # Enqueued-token limit

    def _token_limit_delay(self, carry: dict[str, Any]) -> float | None:
        """Next delay (doubling from ``token_limit_retry_delay``, at most an hour), or None when the budget is spent."""
        resubmits = int(carry.get("resubmits", 0))
        waited = float(carry.get("waited", 0.0))
        delay = min(self.token_limit_retry_delay * 2**resubmits, 3600.0)
        if waited + delay > self.token_limit_max_wait:
            return None
        return delay

    def _wait_then_resubmit(self, context: Any, payload: dict[str, Any], carry: dict[str, Any], delay: float) -> str:
        carry = {
            **carry,
            "resubmits": int(carry.get("resubmits", 0)) + 1,
            "waited": float(carry.get("waited", 0)) + delay,
        }
        self.log.warning(
            "Batch %s failed because the organisation's enqueued-token limit is full (%s). Waiting %.0fs, then "
            "resubmitting the same input file %s (resubmission %d, %.0fs of %.0fs waiting budget used).",
            payload.get("batch_id"),
            payload.get("message"),
            delay,
            carry.get("input_file_id"),
            carry["resubmits"],
            carry["waited"],
            self.token_limit_max_wait,
        )
        if self.deferrable:
            self.defer(trigger=OpenAIBatchResubmitTrigger(time.time() + delay, carry), method_name="resubmit")
        time.sleep(delay)
        return self._resubmit(context, carry)

    def resubmit(self, context: Any, event: dict[str, Any]) -> str:
        return self._resubmit(context, event["carry"])

    def _resubmit(self, context: Any, carry: dict[str, Any]) -> str:
        file_id = carry["input_file_id"]
        return self._submit(context, carry, lambda: file_id)

    # Cancel what we own

    def _cancel(self, batch_id: str, why: str) -> bool:
        try:
            batch = self.hook.cancel_batch(batch_id)
        except Exception as error:
            self.log.warning("Could not cancel batch %s after %s: %s", batch_id, why, error)
            return False
        self.log.warning("Cancelled batch %s because %s (now %s)", batch_id, why, batch.status.value)
        return True

    def on_kill(self) -> None:
        if self.cancel_on_kill and self.batch_id:
            self._cancel(self.batch_id, "the task was killed")


def _summary_text(summary: BatchFileSummary) -> str:
    parts = [f"{summary.requests:,} requests", f"{summary.bytes / 1e6:.1f} MB"]
    if summary.model:
        parts.append(f"model {summary.model}")
    if summary.embedding_inputs:
        parts.append(f"{summary.embedding_inputs:,} embedding inputs")
    parts.append(f"fingerprint {summary.fingerprint[:12]}")
    return ", ".join(parts)
