"""Fidelity: the official ``openai`` SDK, a client nobody here wrote, works against the fake."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest
from fake_helpers import CHAT, ManualClock, chat_line, jsonl

from airflow_provider_openai_batch.testing import FakeOpenAIServer

TERMINAL = {"completed", "failed", "expired", "cancelled"}


def upload(sdk: openai.OpenAI, path: Path) -> str:
    with path.open("rb") as handle:
        return sdk.files.create(file=handle, purpose="batch").id


def test_round_trip_in_real_time(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(jsonl(chat_line(f"req-{i}", f"question {i}") for i in range(10)))
    with (
        FakeOpenAIServer(validating_seconds=0.05, in_progress_seconds=0.1, finalizing_seconds=0.05) as server,
        openai.OpenAI(api_key="sk-test", base_url=server.url, max_retries=0) as sdk,
    ):
        with path.open("rb") as handle:
            uploaded = sdk.files.create(file=handle, purpose="batch")
        batch = sdk.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"run": "nightly"},
            output_expires_after={"anchor": "created_at", "seconds": 3600},
        )
        assert batch.status == "validating"
        while batch.status not in TERMINAL:
            time.sleep(0.02)
            batch = sdk.batches.retrieve(batch.id)
        output = sdk.files.content(batch.output_file_id).text
        output_file = sdk.files.retrieve(batch.output_file_id)

    assert uploaded.purpose == "batch"
    assert uploaded.bytes == path.stat().st_size
    assert batch.status == "completed"
    assert batch.model == "gpt-4o-mini"
    assert batch.metadata == {"run": "nightly"}
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (10, 10)
    assert batch.usage is not None
    assert batch.usage.total_tokens > 0
    assert output_file.purpose == "batch_output"
    answers = {line["custom_id"]: line for line in map(json.loads, output.splitlines())}
    assert answers["req-3"]["response"]["body"]["choices"][0]["message"]["content"] == "echo: question 3"


def test_list_auto_pagination(sdk: openai.OpenAI, server: FakeOpenAIServer, input_path: Path) -> None:
    file_id = upload(sdk, input_path)
    created = [sdk.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h").id for _ in range(5)]

    listed = [batch.id for batch in sdk.batches.list(limit=2)]

    assert listed == created[::-1]
    assert server.stats()["requests"]["GET /v1/batches"] == 3


def test_files_list_and_delete(sdk: openai.OpenAI, input_path: Path) -> None:
    file_ids = [upload(sdk, input_path) for _ in range(3)]

    listed = [f.id for f in sdk.files.list(purpose="batch", order="asc", limit=2)]
    deleted = sdk.files.delete(file_ids[0])

    assert listed == file_ids
    assert (deleted.id, deleted.deleted) == (file_ids[0], True)


def test_upload_with_expiry(sdk: openai.OpenAI, input_path: Path) -> None:
    expiry: openai.types.file_create_params.ExpiresAfter = {"anchor": "created_at", "seconds": 7200}
    with input_path.open("rb") as handle:
        uploaded = sdk.files.create(file=handle, purpose="batch", expires_after=expiry)

    assert uploaded.expires_at == uploaded.created_at + 7200


def test_cancel_and_partial_results(sdk: openai.OpenAI, clock: ManualClock, input_path: Path) -> None:
    batch = sdk.batches.create(input_file_id=upload(sdk, input_path), endpoint=CHAT, completion_window="24h")
    clock.advance(10 + 50)

    cancelling = sdk.batches.cancel(batch.id)
    clock.advance(10)
    cancelled = sdk.batches.retrieve(batch.id)

    assert cancelling.status == "cancelling"
    assert cancelled.status == "cancelled"
    assert cancelled.output_file_id is not None
    assert cancelled.error_file_id is not None
    errors = [json.loads(line) for line in sdk.files.content(cancelled.error_file_id).text.splitlines()]
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}


def test_validation_errors_parse_as_sdk_batch_errors(sdk: openai.OpenAI, clock: ManualClock, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(jsonl([chat_line("a"), "nope"]))
    batch = sdk.batches.create(input_file_id=upload(sdk, path), endpoint=CHAT, completion_window="24h")
    clock.advance(10)

    failed = sdk.batches.retrieve(batch.id)

    assert failed.status == "failed"
    assert failed.errors is not None
    assert failed.errors.data is not None
    assert [(e.code, e.line, e.param) for e in failed.errors.data] == [("invalid_json_line", 2, None)]


def test_not_found_errors(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as batch_error:
        sdk.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError) as file_error:
        sdk.files.retrieve("file-nope")

    assert batch_error.value.status_code == 404
    assert "No batch found" in batch_error.value.message
    assert batch_error.value.request_id is not None
    assert batch_error.value.request_id.startswith("req_")
    assert file_error.value.param == "id"


def test_conflict_on_cancelling_a_completed_batch(sdk: openai.OpenAI, clock: ManualClock, input_path: Path) -> None:
    batch = sdk.batches.create(input_file_id=upload(sdk, input_path), endpoint=CHAT, completion_window="24h")
    clock.advance(1000)

    with pytest.raises(openai.ConflictError) as error:
        sdk.batches.cancel(batch.id)

    assert error.value.message.endswith("Cannot cancel a batch with status 'completed'.")


def test_authentication_error() -> None:
    with (
        FakeOpenAIServer(api_key="sk-right") as server,
        openai.OpenAI(api_key="sk-wrong", base_url=server.url, max_retries=0) as sdk,
        pytest.raises(openai.AuthenticationError) as error,
    ):
        sdk.batches.list()

    assert error.value.code == "invalid_api_key"


def test_bad_request_errors(sdk: openai.OpenAI, tmp_path: Path) -> None:
    with pytest.raises(openai.BadRequestError) as endpoint_error:
        sdk.batches.create(input_file_id="file-x", endpoint="/v1/invalid", completion_window="24h")  # type: ignore[arg-type]
    text = tmp_path / "requests.txt"
    text.write_text("{}\n")
    with pytest.raises(openai.BadRequestError) as format_error, text.open("rb") as handle:
        sdk.files.create(file=handle, purpose="batch")
    with pytest.raises(openai.BadRequestError) as metadata_error:
        sdk.batches.create(input_file_id="file-x", endpoint=CHAT, completion_window="24h", metadata={"n": 1})  # type: ignore[dict-item]

    assert (endpoint_error.value.code, endpoint_error.value.param) == ("invalid_value", "endpoint")
    assert format_error.value.message.endswith("Invalid file format for Batch API. Must be .jsonl")
    assert (metadata_error.value.code, metadata_error.value.param) == ("invalid_type", "metadata.n")


def test_rate_limit_error(sdk: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.fail_next(1, status=429, retry_after=1)

    with pytest.raises(openai.RateLimitError) as error:
        sdk.batches.list()

    assert error.value.code == "rate_limit_exceeded"
    assert error.value.response.headers["retry-after"] == "1"


def test_sdk_retries_an_injected_503(server: FakeOpenAIServer) -> None:
    server.fail_next(1, status=503)
    with openai.OpenAI(api_key="sk-test", base_url=server.url, max_retries=2) as sdk:
        page = sdk.batches.list()

    assert page.data == []
    assert [entry.status for entry in server.requests] == [503, 200]
