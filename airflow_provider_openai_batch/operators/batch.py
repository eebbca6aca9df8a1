"""OpenAIBatchOperator: validate, submit once, wait without a worker (floor 3).

Steps: check the create parameters -> validate the whole input file locally (nothing is
uploaded when it is bad) -> re-attach to this task instance's batch if one is alive, else
upload and create (``hook.submit_once``) -> push ``batch_id`` (and the dashboard link) ->
wait. Waiting is the :class:`~airflow_provider_openai_batch.waiting.waiter.Waiter`'s, in the
triggerer (deferred) or in this worker; finishing is shared with the sensor
(:mod:`._finish`). A batch that fails with ``token_limit_exceeded`` is resubmitted from the
same uploaded file after the delay of
:class:`~airflow_provider_openai_batch.submitting.resubmit.TokenLimitPolicy`, spent deferred.
This class is the order of the steps; the Airflow side of submitting (state, upload, record,
the wait to resubmit) is :mod:`._submit`, inputs are :mod:`._inputs`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from airflow_provider_openai_batch import defaults
from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.api.params import validate_create_params
from airflow_provider_openai_batch.compat import BaseOperator
from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook
from airflow_provider_openai_batch.links import OpenAIBatchLink
from airflow_provider_openai_batch.operators._finish import DEFAULT_DEFERRABLE, cancel_owned, defer_wait, finish, say
from airflow_provider_openai_batch.operators._inputs import checked_input, resolve_input
from airflow_provider_openai_batch.operators._submit import start_state, submit, upload, wait_to_resubmit
from airflow_provider_openai_batch.submitting.resubmit import TokenLimitPolicy
from airflow_provider_openai_batch.submitting.submission import RESERVED_METADATA_PAIRS
from airflow_provider_openai_batch.waiting.outcome import ResumeState, WaitOutcome
from airflow_provider_openai_batch.waiting.waiter import Waiter


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
    :param deferrable: wait in the triggerer instead of polling in the worker (default: Airflow's
        ``[operators] default_deferrable``).
    :param poll_interval: seconds between status polls.
    :param timeout: seconds to wait before giving up (None: until the batch ends).
    :param cancel_on_kill: cancel the batch when the task is killed (worker or deferred).
    :param cancel_on_timeout: cancel the batch when ``timeout`` passes (else leave it running).
    :param max_failed_ratio: fail a completed batch whose failed share of requests is above this.
    :param retry_on_token_limit: resubmit after ``token_limit_exceeded`` (enqueued-token queue full).
    :param token_limit_retry_delay: first delay before resubmitting; it doubles, capped at an hour.
    :param token_limit_max_wait: the most time spent waiting to resubmit, in total.
    :param max_outage: seconds of unreachable API the wait tolerates before failing.
    :param skip_blank_lines: upload a copy of ``input_file`` without its blank lines (streamed, never
        held) instead of refusing a file with a blank line before a request.
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
        deferrable: bool = DEFAULT_DEFERRABLE,
        poll_interval: float = defaults.POLL_INTERVAL,
        timeout: float | None = None,
        cancel_on_kill: bool = True,
        cancel_on_timeout: bool = True,
        max_failed_ratio: float | None = None,
        retry_on_token_limit: bool = True,
        token_limit_retry_delay: float = defaults.TOKEN_LIMIT_RETRY_DELAY,
        token_limit_max_wait: float = defaults.TOKEN_LIMIT_MAX_WAIT,
        max_outage: float = defaults.MAX_OUTAGE,
        allow_any_completion_window: bool = False,
        skip_blank_lines: bool = False,
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
        self.skip_blank_lines = skip_blank_lines
        self.batch_id: str | None = None

    @cached_property
    def hook(self) -> OpenAIBatchHook:
        return OpenAIBatchHook(self.conn_id)

    @property
    def token_limit(self) -> TokenLimitPolicy:
        return TokenLimitPolicy(
            self.retry_on_token_limit, self.token_limit_retry_delay, max_wait=self.token_limit_max_wait
        )

    @property
    def _create_params(self) -> dict[str, Any]:
        """What every (re)submission creates its batch with; checked before anything is uploaded."""
        return {
            "endpoint": self.endpoint,
            "completion_window": self.completion_window,
            "metadata": self.metadata,
            "output_expires_after": self.output_expires_after,
        }

    # Submit

    def execute(self, context: Any) -> str:
        validate_create_params(
            **self._create_params,
            allow_any_completion_window=self.allow_any_completion_window,
            reserved_metadata_pairs=RESERVED_METADATA_PAIRS,
        )
        source, file_id = resolve_input(self.input_file)
        fingerprint, source = checked_input(source, file_id, self.endpoint, self.log, self.skip_blank_lines)
        state = start_state(context, fingerprint, self.timeout)
        return self._submit(
            context, state, lambda: file_id or upload(self, self.hook, source, self.input_file_expires_after)
        )

    def _submit(self, context: Any, state: ResumeState, input_file_id: Callable[[], str]) -> str:
        batch = submit(self, context, self.hook, self.conn_id, state, input_file_id, **self._create_params)
        state = state.model_copy(update={"input_file_id": batch.input_file_id})
        return self._wait(context, batch, state) if self.wait_for_completion else batch.id

    # Wait

    def _wait(self, context: Any, batch: Batch, state: ResumeState) -> str:
        waiter = Waiter(batch.id, poll_interval=self.poll_interval, end_time=state.end_time, max_outage=self.max_outage)
        step = say(self, waiter.on_batch(batch, time.time()))
        if step.outcome is None and self.deferrable:
            defer_wait(
                self, waiter, self.conn_id, cancel_on_kill=self.cancel_on_kill, carry=state.model_dump(mode="json")
            )
        outcome = step.outcome or waiter.wait_blocking(self.hook.get_batch, say=self.log.log)
        return self._finish(context, outcome.with_resume(state))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> str:
        return self._finish(context, WaitOutcome.from_event(event))

    def _finish(self, context: Any, outcome: WaitOutcome) -> str:
        self.batch_id = outcome.batch_id
        delay = self.token_limit.next_delay(outcome)
        if delay is not None and outcome.resume is not None:
            state = wait_to_resubmit(self, self.token_limit, outcome, outcome.resume, delay, deferrable=self.deferrable)
            return self._resubmit(context, state)
        owner = self.hook if self.cancel_on_timeout else None
        finish(self, context, outcome, max_failed_ratio=self.max_failed_ratio, cancel_with=owner)
        return str(outcome.batch_id)

    # Enqueued-token limit: the task resumes here after a deferred wait to resubmit

    def resubmit(self, context: Any, event: dict[str, Any]) -> str:
        return self._resubmit(context, ResumeState.model_validate(event["carry"]))

    def _resubmit(self, context: Any, state: ResumeState) -> str:
        file_id = state.input_file_id  # a resubmission reuses the uploaded file: nothing is uploaded again
        if file_id is None:
            raise ValueError("A resubmission needs the uploaded input file id; the resume state has none")
        return self._submit(context, state, lambda: file_id)

    # Cancel what we own

    def on_kill(self) -> None:
        if self.cancel_on_kill and self.batch_id:
            cancel_owned(self, self.hook, self.batch_id, "the task was killed")
