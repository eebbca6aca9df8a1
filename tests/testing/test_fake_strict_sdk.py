"""The fake is as strict as the service by default, seen through the official ``openai`` SDK.

Two places, as on the service: a line the batch validator rejects fails the whole batch
(``errors.data`` with line / param / code), and a request its endpoint rejects becomes a 400 line
of the error file while the other requests run (see ``testing/request_checks.py``).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from fake_helpers import CHAT, ManualClock, chat_line, fake_cli, jsonl

from airflow_provider_openai_batch.testing import FakeOpenAIServer
from airflow_provider_openai_batch.testing.models import DEFAULT_MODELS

EMBEDDINGS = "/v1/embeddings"
RESPONSES = "/v1/responses"
MODERATIONS = "/v1/moderations"
COMPLETIONS = "/v1/completions"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def line(custom_id: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def submit(sdk: openai.OpenAI, tmp_path: Path, lines: list[Any], endpoint: str) -> str:
    path = tmp_path / "input.jsonl"
    path.write_bytes(jsonl(lines))
    with path.open("rb") as handle:
        file_id = sdk.files.create(file=handle, purpose="batch").id
    return sdk.batches.create(input_file_id=file_id, endpoint=endpoint, completion_window="24h").id  # type: ignore[arg-type]


def finish(sdk: openai.OpenAI, clock: ManualClock, batch_id: str) -> openai.types.Batch:
    clock.advance(1000)  # past validating + in_progress + finalizing of every server in these tests
    return sdk.batches.retrieve(batch_id)


def lines_of(sdk: openai.OpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    if file_id is None:
        return {}
    return {row["custom_id"]: row for row in map(json.loads, sdk.files.content(file_id).text.splitlines())}


def rejections(sdk: openai.OpenAI, batch: openai.types.Batch) -> dict[str, tuple[int, str, str]]:
    """custom_id -> (status_code, code, param) of each error-file line with an HTTP answer."""
    result = {}
    for custom_id, row in lines_of(sdk, batch.error_file_id).items():
        assert row["error"] is None
        error = row["response"]["body"]["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error"
        result[custom_id] = (row["response"]["status_code"], error["code"], error["param"])
    return result


def validation_errors(batch: openai.types.Batch) -> list[tuple[int | None, str | None, str | None]]:
    assert batch.status == "failed"
    assert batch.errors is not None
    assert batch.errors.data is not None
    return [(error.line, error.code, error.param) for error in batch.errors.data]


# -- per request: the endpoint's 400 in the error file ------------------------------------------------------------


def test_chat_messages_without_role_or_content_get_a_400_line(
    sdk: openai.OpenAI, clock: ManualClock, tmp_path: Path
) -> None:
    def chat(custom_id: str, messages: object) -> dict[str, Any]:
        return line(custom_id, CHAT, {"model": "gpt-4o-mini", "messages": messages})

    batch_id = submit(
        sdk,
        tmp_path,
        [
            chat_line("ok"),
            chat("no-role", [{"content": "hi"}]),
            chat("bad-role", [{"role": "robot", "content": "hi"}]),
            chat("no-content", [{"role": "system", "content": "Be short."}, {"role": "user"}]),
            chat("null-content", [{"role": "user", "content": None}]),
            chat("empty", []),
            chat("not-a-list", "hi"),
            chat("not-an-object", ["hi"]),
            chat("number-content", [{"role": "user", "content": 7}]),
            chat("tool-call", [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [{"id": "c"}]}]),
            chat("parts", [{"role": "developer", "content": [{"type": "text", "text": "hi"}]}]),
        ],
        CHAT,
    )

    batch = finish(sdk, clock, batch_id)

    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (11, 3, 8)
    assert set(lines_of(sdk, batch.output_file_id)) == {"ok", "tool-call", "parts"}
    assert rejections(sdk, batch) == {
        "no-role": (400, "missing_required_parameter", "messages[0].role"),
        "bad-role": (400, "invalid_value", "messages[0].role"),
        "no-content": (400, "missing_required_parameter", "messages[1].content"),
        "null-content": (400, "missing_required_parameter", "messages[0].content"),
        "empty": (400, "empty_array", "messages"),
        "not-a-list": (400, "invalid_type", "messages"),
        "not-an-object": (400, "invalid_type", "messages[0]"),
        "number-content": (400, "invalid_type", "messages[0].content"),
    }


def test_the_400_body_reads_like_the_endpoints_own(sdk: openai.OpenAI, clock: ManualClock, tmp_path: Path) -> None:
    messages = [{"content": "hi"}]
    batch_id = submit(sdk, tmp_path, [line("a", CHAT, {"model": "gpt-4o", "messages": messages})], CHAT)

    batch = finish(sdk, clock, batch_id)

    row = lines_of(sdk, batch.error_file_id)["a"]
    assert row["response"]["body"] == {
        "error": {
            "message": "Missing required parameter: 'messages[0].role'.",
            "type": "invalid_request_error",
            "param": "messages[0].role",
            "code": "missing_required_parameter",
        }
    }
    assert row["response"]["request_id"].startswith("req_")
    assert batch.output_file_id is None


def test_a_rejected_request_never_reaches_the_responder(clock: ManualClock, tmp_path: Path) -> None:
    asked: list[str] = []

    def responder(endpoint: str, body: dict[str, Any], custom_id: str) -> str:
        asked.append(custom_id)
        return "scripted"

    with (
        FakeOpenAIServer(validating_seconds=1, clock=clock, responder=responder) as server,
        openai.OpenAI(api_key="sk-test", base_url=server.url, max_retries=0) as sdk,
    ):
        bad = line("bad", CHAT, {"model": "gpt-4o-mini", "messages": [{"role": "user"}]})
        batch = finish(sdk, clock, submit(sdk, tmp_path, [chat_line("good"), bad], CHAT))
        assert rejections(sdk, batch) == {"bad": (400, "missing_required_parameter", "messages[0].content")}

    assert asked == ["good"]


@pytest.mark.parametrize(
    ("endpoint", "body", "expected"),
    [
        (RESPONSES, {"model": "gpt-5"}, (400, "missing_required_parameter", "input")),
        (RESPONSES, {"model": "gpt-5", "input": 3}, (400, "invalid_type", "input")),
        (
            RESPONSES,
            {"model": "gpt-5", "input": [{"role": "user"}]},
            (400, "missing_required_parameter", "input[0].content"),
        ),
        (
            RESPONSES,
            {"model": "gpt-5", "input": [{"role": "tool", "content": "x"}]},
            (400, "invalid_value", "input[0].role"),
        ),
        (EMBEDDINGS, {"model": "text-embedding-3-small", "input": []}, (400, "empty_array", "input")),
        (EMBEDDINGS, {"model": "text-embedding-3-small", "input": 42}, (400, "invalid_type", "input")),
        (MODERATIONS, {"model": "omni-moderation-latest", "input": []}, (400, "empty_array", "input")),
        (MODERATIONS, {"input": {"text": "hi"}}, (400, "invalid_type", "input")),
        (COMPLETIONS, {"model": "gpt-3.5-turbo-instruct", "prompt": 5}, (400, "invalid_type", "prompt")),
        (COMPLETIONS, {"model": "gpt-3.5-turbo-instruct", "prompt": []}, (400, "empty_array", "prompt")),
    ],
    ids=lambda value: "" if isinstance(value, dict | tuple) else value,
)
def test_other_endpoints_reject_bad_inputs_per_request(
    sdk: openai.OpenAI,
    clock: ManualClock,
    tmp_path: Path,
    endpoint: str,
    body: dict[str, Any],
    expected: tuple[int, str, str],
) -> None:
    good = {
        RESPONSES: {"model": "gpt-5", "input": "hi"},
        EMBEDDINGS: {"model": "text-embedding-3-small", "input": "hi"},
        MODERATIONS: {"model": "omni-moderation-latest", "input": "hi"},
        COMPLETIONS: {"model": "gpt-3.5-turbo-instruct", "prompt": "hi"},
    }[endpoint]

    batch = finish(
        sdk, clock, submit(sdk, tmp_path, [line("good", endpoint, good), line("bad", endpoint, body)], endpoint)
    )

    assert batch.status == "completed"
    assert set(lines_of(sdk, batch.output_file_id)) == {"good"}
    assert rejections(sdk, batch) == {"bad": expected}


def test_a_responses_request_may_take_its_input_from_elsewhere(
    sdk: openai.OpenAI, clock: ManualClock, tmp_path: Path
) -> None:
    lines = [
        line("prompt", RESPONSES, {"model": "gpt-5", "prompt": {"id": "pmpt_1"}}),
        line("previous", RESPONSES, {"model": "gpt-5", "previous_response_id": "resp_1"}),
        line("items", RESPONSES, {"model": "gpt-5", "input": [{"type": "function_call_output", "call_id": "c"}]}),
    ]

    batch = finish(sdk, clock, submit(sdk, tmp_path, lines, RESPONSES))

    assert set(lines_of(sdk, batch.output_file_id)) == {"prompt", "previous", "items"}
    assert batch.error_file_id is None


# -- at validation: the whole batch fails, each bad line named ------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "body", "param"),
    [
        (CHAT, {"model": "gpt-4o-mini"}, "body.messages"),
        (CHAT, {"messages": [{"role": "user", "content": "hi"}]}, "body.model"),
        (EMBEDDINGS, {"model": "text-embedding-3-small"}, "body.input"),
        (MODERATIONS, {"model": "omni-moderation-latest"}, "body.input"),
        (COMPLETIONS, {"model": "gpt-3.5-turbo-instruct"}, "body.prompt"),
        (RESPONSES, {"input": "hi"}, "body.model"),
    ],
    ids=[
        "chat-messages",
        "chat-model",
        "embeddings-input",
        "moderations-input",
        "completions-prompt",
        "responses-model",
    ],
)
def test_a_missing_required_parameter_fails_validation(
    sdk: openai.OpenAI, clock: ManualClock, tmp_path: Path, endpoint: str, body: dict[str, Any], param: str
) -> None:
    batch = finish(sdk, clock, submit(sdk, tmp_path, [line("a", endpoint, body)], endpoint))

    assert validation_errors(batch) == [(1, "invalid_request", param)]


def test_an_unknown_model_fails_validation_by_default(sdk: openai.OpenAI, clock: ManualClock, tmp_path: Path) -> None:
    batch = finish(sdk, clock, submit(sdk, tmp_path, [chat_line("a", model="nonexistent-model-xyz")], CHAT))

    assert validation_errors(batch) == [(1, "model_not_found", "body.model")]
    assert batch.errors is not None and batch.errors.data is not None
    assert (
        batch.errors.data[0].message == "The provided model 'nonexistent-model-xyz' is not supported by the Batch API."
    )


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        (CHAT, {"model": "gpt-4o-mini-2024-07-18", "messages": [{"role": "user", "content": "hi"}]}),
        (CHAT, {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}),
        (RESPONSES, {"model": "o4-mini", "input": "hi"}),
        (EMBEDDINGS, {"model": "text-embedding-3-large", "input": ["a", "b"]}),
        (MODERATIONS, {"model": "omni-moderation-latest", "input": "hi"}),
        (COMPLETIONS, {"model": "gpt-3.5-turbo-instruct", "prompt": "hi"}),
    ],
    ids=["snapshot", "chat", "responses", "embeddings", "moderations", "completions"],
)
def test_real_models_and_their_snapshots_are_known_by_default(
    sdk: openai.OpenAI, clock: ManualClock, tmp_path: Path, endpoint: str, body: dict[str, Any]
) -> None:
    batch = finish(sdk, clock, submit(sdk, tmp_path, [line("a", endpoint, body)], endpoint))

    assert batch.status == "completed"
    assert batch.model == body["model"]
    assert set(lines_of(sdk, batch.output_file_id)) == {"a"}


def test_a_given_model_list_replaces_the_default(clock: ManualClock, tmp_path: Path) -> None:
    with (
        FakeOpenAIServer(validating_seconds=1, clock=clock, models=["my-model"]) as server,
        openai.OpenAI(api_key="sk-test", base_url=server.url, max_retries=0) as sdk,
    ):
        lines = [chat_line("mine", model="my-model"), chat_line("real", model="gpt-4o-mini")]
        batch = finish(sdk, clock, submit(sdk, tmp_path, lines, CHAT))

    assert validation_errors(batch) == [(2, "model_not_found", "body.model")]


def test_accept_any_model_turns_the_check_off(clock: ManualClock, tmp_path: Path) -> None:
    with (
        FakeOpenAIServer(validating_seconds=1, clock=clock, accept_any_model=True) as server,
        openai.OpenAI(api_key="sk-test", base_url=server.url, max_retries=0) as sdk,
    ):
        batch = finish(sdk, clock, submit(sdk, tmp_path, [chat_line("a", model="my-azure-deployment")], CHAT))

    assert batch.status == "completed"
    assert batch.model == "my-azure-deployment"


def test_every_model_this_repo_uses_is_known() -> None:
    used = {
        "gpt-4o-mini",
        "gpt-4o",
        "gpt-4.1",
        "gpt-5",
        "gpt-3.5-turbo-instruct",
        "text-embedding-3-small",
        "omni-moderation-latest",
        "gpt-image-1",
        "sora-2",
    }

    assert used <= DEFAULT_MODELS
    assert "nonexistent-model-xyz" not in DEFAULT_MODELS


@pytest.mark.parametrize(
    ("flags", "model", "status"),
    [
        ([], "my-deployment", "failed"),
        (["--accept-any-model"], "my-deployment", "completed"),
        (["--model", "my-deployment", "--model", "other"], "my-deployment", "completed"),
        (["--model", "my-deployment"], "gpt-4o-mini", "failed"),
    ],
    ids=["default", "accept-any", "model-list-accepts", "model-list-replaces"],
)
def test_cli_model_flags(tmp_path: Path, flags: list[str], model: str, status: str) -> None:
    timings = ["--validating-seconds", "0", "--in-progress-seconds", "0", "--finalizing-seconds", "0"]
    with fake_cli(*timings, *flags) as (process, url):
        with openai.OpenAI(api_key="sk-test", base_url=url, max_retries=0) as sdk:
            batch = sdk.batches.retrieve(submit(sdk, tmp_path, [chat_line("a", model=model)], CHAT))
            for _ in range(500):
                if batch.status in TERMINAL:
                    break
                time.sleep(0.02)
                batch = sdk.batches.retrieve(batch.id)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)

    assert batch.status == status
    if status == "failed":
        assert validation_errors(batch) == [(1, "model_not_found", "body.model")]
