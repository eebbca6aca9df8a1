"""OpenAIBatchResultsOperator: land a batch's results as data the next task can use (floor 3).

It streams the output and error files of one or more batches, joins them by
``custom_id`` (input order when the input file is given, with ``missing`` requests
detected), writes one JSONL file atomically to a local path or object storage, and
returns a small manifest for XCom (counts, token usage, timings). Results never go to
XCom. It works on completed, expired and cancelled batches, so a DAG can salvage
partial output with a trigger rule; it can also write the retryable remainder as a new
batch input file, and delete the batch's files afterwards.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any

from airflow_provider_openai_batch.api.exceptions import BatchParameterError
from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.compat import BaseOperator
from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook
from airflow_provider_openai_batch.operators._inputs import resolve_input, resolve_location
from airflow_provider_openai_batch.results.landing import land_results
from airflow_provider_openai_batch.results.retry_file import write_retry_file


def as_batch_ids(batch_id: str | Sequence[str]) -> list[str]:
    ids = [batch_id] if isinstance(batch_id, str) else list(batch_id)
    ids = [str(i).strip() for i in ids if i and str(i).strip()]
    if not ids:
        raise BatchParameterError("batch_id is empty: give one batch id or a list of them")
    return ids


class OpenAIBatchResultsOperator(BaseOperator):
    """Land merged results of ``batch_id`` at ``destination`` and return the manifest.

    :param batch_id: one batch id or a list (e.g. the mapped output of a fan-out). Templated.
    :param destination: the results JSONL path: local, or an object-storage URI / ObjectStoragePath. Templated.
    :param input_file: the batch input (path, URI, ObjectStoragePath or ``file-...`` id): results then
        follow input order and requests absent from both result files are reported ``missing``. Templated.
    :param retry_destination: also write the requests worth sending again (expired, cancelled, missing,
        429/5xx) there, as a valid batch input file. Needs ``input_file``. Templated.
    :param delete_files: delete the batches' input, output and error files on OpenAI after landing.
    :param conn_id: the ``openai_batch`` connection. Templated.
    """

    template_fields: Sequence[str] = ("batch_id", "destination", "input_file", "retry_destination", "conn_id")
    ui_color = "#10a37f"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        batch_id: str | Sequence[str],
        destination: Any,
        input_file: Any = None,
        retry_destination: Any = None,
        delete_files: bool = False,
        conn_id: str = OpenAIBatchHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_id = batch_id
        self.destination = destination
        self.input_file = input_file
        self.retry_destination = retry_destination
        self.delete_files = delete_files
        self.conn_id = conn_id

    @cached_property
    def hook(self) -> OpenAIBatchHook:
        return OpenAIBatchHook(self.conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        if self.retry_destination and not self.input_file:
            raise BatchParameterError("retry_destination needs input_file: the retry file copies input lines")
        destination = resolve_location(self.destination)
        batches = self._terminal_batches(as_batch_ids(self.batch_id))
        with self._input_source() as input_source:
            manifest = land_results(batches, self.hook.iter_file_lines, destination, input_source=input_source)
            result = manifest.as_xcom()
            self.log.info(
                "Landed %s results of %s at %s: %s",
                result["counts"]["total"],
                ", ".join(result["batch_ids"]),
                result["result_path"],
                {k: v for k, v in result["counts"].items() if k != "total" and v},
            )
            if self.retry_destination:
                retry = write_retry_file(destination, input_source, resolve_location(self.retry_destination))
                result["retry_file"] = retry.as_xcom()
                self.log.info("Retry file: %s", result["retry_file"])
        if self.delete_files:
            self._delete_files(batches)
        return result

    def _terminal_batches(self, batch_ids: list[str]) -> list[Batch]:
        batches = [self.hook.get_batch(batch_id) for batch_id in batch_ids]
        running = [f"{b.id} ({b.status.value})" for b in batches if not b.status.is_terminal]
        if running:
            raise BatchParameterError(
                f"Batch(es) not finished yet: {', '.join(running)}. Wait for them first (OpenAIBatchSensor)."
            )
        return batches

    @contextlib.contextmanager
    def _input_source(self) -> Iterator[Any]:
        """The input as a readable source; a ``file-...`` id is streamed once to a temporary file."""
        if not self.input_file:
            yield None
            return
        source, file_id = resolve_input(self.input_file)
        if file_id is None:
            yield source
            return
        with tempfile.NamedTemporaryFile(suffix=".jsonl") as handle:
            for line in self.hook.iter_file_lines(file_id):
                handle.write(line + b"\n")
            handle.flush()
            yield handle.name

    def _delete_files(self, batches: list[Batch]) -> None:
        for batch in batches:
            for file_id in (batch.input_file_id, batch.output_file_id, batch.error_file_id):
                if not file_id:
                    continue
                try:
                    self.hook.delete_file(file_id)
                    self.log.info("Deleted %s (batch %s)", file_id, batch.id)
                except Exception as error:
                    self.log.warning("Could not delete %s of batch %s: %s", file_id, batch.id, error)
