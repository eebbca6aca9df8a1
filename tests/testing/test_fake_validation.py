"""Service-side validation of batch input files: codes, 1-based lines, params and messages."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fake_helpers import CHAT, START, Api, ManualClock, chat_line, jsonl

from airflow_provider_openai_batch.testing import FakeOpenAIServer


def failed_errors(api: Api, clock: ManualClock, content: bytes, endpoint: str = CHAT) -> list[dict[str, Any]]:
    batch_id = api.create(content, endpoint=endpoint)["id"]
    clock.advance(10)
    batch = api.batch(batch_id)
    assert batch["status"] == "failed"
    assert batch["failed_at"] == int(START) + 10
    assert batch["errors"]["object"] == "list"
    assert batch["output_file_id"] is None
    return batch["errors"]["data"]


def test_every_bad_line_is_reported_with_its_line_number(api: Api, clock: ManualClock) -> None:
    lines = [
        chat_line("ok-1"),
        "{not json",
        {"method": "POST", "url": CHAT, "body": {"model": "gpt-4o-mini"}},
        {"custom_id": "no-method", "url": CHAT, "body": {}},
        {"custom_id": "no-url", "method": "POST", "body": {}},
        {"custom_id": "no-body", "method": "POST", "url": CHAT},
        {**chat_line("wrong-url"), "url": "/v1/embeddings"},
        chat_line("ok-1"),
        chat_line("other-model", model="gpt-4o"),
        chat_line("streams", stream=True),
        {"custom_id": "no-model", "method": "POST", "url": CHAT, "body": {"messages": []}},
        {"custom_id": "no-messages", "method": "POST", "url": CHAT, "body": {"model": "gpt-4o-mini"}},
        {**chat_line("get"), "method": "GET"},
        {**chat_line("x"), "custom_id": 7},
    ]

    errors = failed_errors(api, clock, jsonl(lines))

    assert [(e["line"], e["code"], e["param"]) for e in errors] == [
        (2, "invalid_json_line", None),
        (3, "missing_required_parameter", "custom_id"),
        (4, "missing_required_parameter", "method"),
        (5, "missing_required_parameter", "url"),
        (6, "missing_required_parameter", "body"),
        (7, "invalid_url", "url"),
        (8, "duplicate_custom_id", "custom_id"),
        (9, "mismatched_model", "body.model"),
        (10, "streaming_unsupported", "body.stream"),
        (11, "invalid_request", "body.model"),
        (12, "invalid_request", "body.messages"),
        (13, "invalid_value", "method"),
        (14, "invalid_type", "custom_id"),
    ]
    messages = {e["line"]: e["message"] for e in errors}
    assert messages[2] == "This line is not parseable as valid JSON."
    assert messages[3] == "Missing required parameter: 'custom_id'."
    assert messages[7] == "The URL provided for this request does not match the batch endpoint."
    assert messages[8] == (
        "The custom_id 'ok-1' for this request is a duplicate of another request. "
        "The custom_id parameter must be unique for each request in a batch."
    )
    assert messages[9] == (
        "The model 'gpt-4o' for this request does not match the rest of the batch. "
        "Each batch must contain requests for a single model."
    )
    assert messages[10] == "Chat Completions: Streaming is not supported in the Batch API."
    assert messages[11] == "Model parameter is required."
    assert messages[12] == "Messages parameter is required."


def test_blank_lines_are_skipped_but_counted_in_line_numbers(api: Api, clock: ManualClock) -> None:
    content = jsonl([chat_line("a")]) + b"\n" + b"oops\n"

    errors = failed_errors(api, clock, content)

    assert [(e["line"], e["code"]) for e in errors] == [(3, "invalid_json_line")]


def test_empty_file(api: Api, clock: ManualClock) -> None:
    errors = failed_errors(api, clock, b"\n")

    assert errors == [
        {
            "code": "empty_file",
            "message": "The input file is empty. Please ensure that the batch contains at least one request.",
            "param": None,
            "line": None,
        }
    ]


def test_validation_errors_reveal_only_when_validating_ends(api: Api, clock: ManualClock) -> None:
    batch_id = api.create(b"garbage\n")["id"]
    clock.advance(9)

    batch = api.batch(batch_id)

    assert (batch["status"], batch["errors"]) == ("validating", None)


def limited_server(clock: ManualClock, **limits: Any) -> FakeOpenAIServer:
    return FakeOpenAIServer(validating_seconds=1, clock=clock, **limits)


def errors_on(server: FakeOpenAIServer, clock: ManualClock, content: bytes, endpoint: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer k"}) as client:
        api = Api(client)
        batch_id = api.create(content, endpoint=endpoint)["id"]
        clock.advance(1)
        batch = api.batch(batch_id)
    assert batch["status"] == "failed"
    return batch["errors"]["data"]


def test_too_many_tasks(clock: ManualClock) -> None:
    with limited_server(clock, max_requests=3) as server:
        errors = errors_on(server, clock, jsonl(chat_line(str(i)) for i in range(4)), CHAT)

    assert [(e["code"], e["line"], e["param"]) for e in errors] == [("too_many_tasks", None, None)]
    assert "4 requests" in errors[0]["message"]


def test_file_larger_than_the_limit(clock: ManualClock) -> None:
    content = jsonl(chat_line(str(i), model="gpt-4o") for i in range(20))
    with limited_server(clock, max_file_bytes=len(content) - 1) as server:
        errors = errors_on(server, clock, content, CHAT)

    assert errors == [
        {
            "code": "file_too_large",
            "message": f"The batch input file is larger than the {len(content) - 1} maximum for the gpt-4o model. "
            "Please try again with a smaller batch.",
            "param": None,
            "line": None,
        }
    ]


def test_too_many_embedding_inputs(clock: ManualClock) -> None:
    lines = [
        {
            "custom_id": str(i),
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": ["a", "b", "c"]},
        }
        for i in range(2)
    ]
    with limited_server(clock, max_embedding_inputs=5) as server:
        errors = errors_on(server, clock, jsonl(lines), "/v1/embeddings")

    assert [e["code"] for e in errors] == ["too_many_tasks"]
    assert "6 embedding inputs" in errors[0]["message"]


def test_unknown_model_when_models_are_listed(clock: ManualClock) -> None:
    with limited_server(clock, models=["gpt-4o-mini"]) as server:
        errors = errors_on(server, clock, jsonl([chat_line("a", model="nonexistent-model-xyz")]), CHAT)

    assert errors == [
        {
            "code": "model_not_found",
            "message": "The provided model 'nonexistent-model-xyz' is not supported by the Batch API.",
            "param": "body.model",
            "line": 1,
        }
    ]


@pytest.mark.parametrize(
    ("endpoint", "body", "param"),
    [
        ("/v1/embeddings", {"model": "text-embedding-3-small"}, "body.input"),
        ("/v1/completions", {"model": "gpt-3.5-turbo-instruct"}, "body.prompt"),
        ("/v1/responses", {"input": "hi"}, "body.model"),
        ("/v1/moderations", {"model": "omni-moderation-latest"}, "body.input"),
        ("/v1/images/generations", {"model": "gpt-image-1"}, "body.prompt"),
        ("/v1/videos", {"model": "sora-2"}, "body.prompt"),
    ],
)
def test_required_body_fields_per_endpoint(
    api: Api, clock: ManualClock, endpoint: str, body: dict[str, Any], param: str
) -> None:
    line = {"custom_id": "a", "method": "POST", "url": endpoint, "body": body}

    errors = failed_errors(api, clock, (json.dumps(line) + "\n").encode(), endpoint=endpoint)

    assert [(e["code"], e["param"], e["line"]) for e in errors] == [("invalid_request", param, 1)]


def test_the_default_limit_is_fifty_thousand_requests(api: Api, clock: ManualClock) -> None:
    line = json.dumps(chat_line("ID")).replace('"ID"', '"r%d"') + "\n"
    content = "".join(line % i for i in range(50_001)).encode()

    errors = failed_errors(api, clock, content)

    assert errors == [
        {
            "code": "too_many_tasks",
            "message": "The batch input file contains 50001 requests, more than the maximum of 50000 requests "
            "per batch.",
            "param": None,
            "line": None,
        }
    ]
