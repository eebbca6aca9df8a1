"""Batches API of the fake server: creation, lifecycle, results, cancel, expiry, pagination."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from fake_helpers import CHAT, START, Api, ManualClock, chat_line, jsonl

from airflow_provider_openai_batch.testing import FakeOpenAIServer

DAY = 24 * 3600
TIMESTAMPS = (
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)


def ten_requests() -> bytes:
    return jsonl(chat_line(f"req-{i}", f"question {i}") for i in range(10))


def test_create_returns_a_validating_batch_with_every_field(api: Api) -> None:
    batch = api.create(ten_requests(), metadata={"task": "nightly"})

    assert batch["id"].startswith("batch_")
    assert batch == {
        "id": batch["id"],
        "object": "batch",
        "endpoint": CHAT,
        "model": None,
        "errors": None,
        "input_file_id": batch["input_file_id"],
        "completion_window": "24h",
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": int(START),
        "expires_at": int(START) + DAY,
        **dict.fromkeys(TIMESTAMPS),
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "usage": None,
        "metadata": {"task": "nightly"},
    }


def test_lifecycle_follows_elapsed_time(api: Api, clock: ManualClock) -> None:
    batch_id = api.create(ten_requests())["id"]

    clock.advance(9.9)
    assert api.batch(batch_id)["status"] == "validating"

    clock.advance(0.1)  # validating lasts 10 s
    running = api.batch(batch_id)
    assert running["status"] == "in_progress"
    assert running["in_progress_at"] == int(START) + 10
    assert running["model"] == "gpt-4o-mini"
    assert running["request_counts"] == {"total": 10, "completed": 0, "failed": 0}

    seen = []
    for _ in range(9):
        clock.advance(10)  # in_progress lasts 100 s: one request per 10 s
        seen.append(api.batch(batch_id)["request_counts"]["completed"])
    assert seen == [1, 2, 3, 4, 5, 6, 7, 8, 9]

    clock.advance(10)
    finalizing = api.batch(batch_id)
    assert finalizing["status"] == "finalizing"
    assert finalizing["finalizing_at"] == int(START) + 110
    assert finalizing["output_file_id"] is None

    clock.advance(10)
    done = api.batch(batch_id)
    assert done["status"] == "completed"
    assert done["completed_at"] == int(START) + 120
    assert done["request_counts"] == {"total": 10, "completed": 10, "failed": 0}
    assert done["output_file_id"].startswith("file-")
    assert done["error_file_id"] is None
    assert done["usage"]["total_tokens"] == done["usage"]["input_tokens"] + done["usage"]["output_tokens"] > 0


def test_a_late_first_read_sees_the_batch_completed_with_exact_timestamps(api: Api, clock: ManualClock) -> None:
    batch_id = api.create(ten_requests())["id"]

    clock.advance(3600)
    batch = api.batch(batch_id)

    assert batch["status"] == "completed"
    assert [batch[name] - int(START) for name in ("in_progress_at", "finalizing_at", "completed_at")] == [10, 110, 120]


def test_output_lines_are_shuffled_and_carry_every_custom_id(api: Api, clock: ManualClock) -> None:
    batch_id = api.create(jsonl(chat_line(f"req-{i}", f"question {i}") for i in range(40)))["id"]
    clock.advance(1000)
    batch = api.batch(batch_id)

    lines = api.content(batch["output_file_id"])

    custom_ids = [line["custom_id"] for line in lines]
    assert sorted(custom_ids) == sorted(f"req-{i}" for i in range(40))
    assert custom_ids != [f"req-{i}" for i in range(40)]
    by_id = {line["custom_id"]: line for line in lines}
    line = by_id["req-7"]
    assert line["id"].startswith("batch_req_")
    assert line["error"] is None
    assert line["response"]["status_code"] == 200
    assert line["response"]["request_id"].startswith("req_")
    body = line["response"]["body"]
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "echo: question 7"
    output_file = api.client.get(f"/files/{batch['output_file_id']}").json()
    assert output_file["purpose"] == "batch_output"
    assert output_file["filename"] == f"batch_{batch_id}_output.jsonl"


def test_shuffle_is_deterministic_for_a_seed(api: Api, clock: ManualClock, server: FakeOpenAIServer) -> None:
    orders = []
    for _ in range(2):
        server.reset()  # same seed, same calls: same ids, same order
        clock.set(START)
        batch_id = api.create(ten_requests())["id"]
        clock.advance(1000)
        orders.append([line["custom_id"] for line in api.content(api.batch(batch_id)["output_file_id"])])

    assert orders[0] == orders[1]


def test_per_request_failures_go_to_the_error_file(api: Api, clock: ManualClock, server: FakeOpenAIServer) -> None:
    def responder(endpoint: str, body: dict[str, Any], custom_id: str) -> Any:
        if custom_id == "req-1":
            return 404, {"error": {"message": "nope", "type": "invalid_request_error", "param": None, "code": "x"}}
        if custom_id == "req-2":
            return "Paris"
        return None

    server.set_responder(responder, fail_requests={"req-3": 400})
    batch_id = api.create(ten_requests())["id"]
    clock.advance(1000)
    batch = api.batch(batch_id)
    outputs = {line["custom_id"]: line for line in api.content(batch["output_file_id"])}
    errors = {line["custom_id"]: line for line in api.content(batch["error_file_id"])}

    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 10, "completed": 8, "failed": 2}
    assert set(errors) == {"req-1", "req-3"}
    assert errors["req-1"]["response"]["status_code"] == 404
    assert errors["req-1"]["error"] is None
    assert errors["req-3"]["response"]["status_code"] == 400
    assert errors["req-3"]["response"]["body"]["error"]["code"] == "context_length_exceeded"
    assert outputs["req-2"]["response"]["body"]["choices"][0]["message"]["content"] == "Paris"
    assert outputs["req-4"]["response"]["body"]["choices"][0]["message"]["content"] == "echo: question 4"


def test_a_batch_where_every_request_failed_is_completed_without_output_file(
    api: Api, clock: ManualClock, server: FakeOpenAIServer
) -> None:
    server.set_responder(fail_requests={f"req-{i}": 500 for i in range(10)})
    batch_id = api.create(ten_requests())["id"]
    clock.advance(1000)
    batch = api.batch(batch_id)

    assert batch["status"] == "completed"
    assert batch["output_file_id"] is None
    assert batch["error_file_id"] is not None
    assert batch["request_counts"] == {"total": 10, "completed": 0, "failed": 10}


def test_a_raising_responder_shows_up_as_server_errors(api: Api, clock: ManualClock, server: FakeOpenAIServer) -> None:
    def responder(endpoint: str, body: dict[str, Any], custom_id: str) -> Any:
        raise RuntimeError("bug in test")

    server.set_responder(responder)
    batch_id = api.create(ten_requests())["id"]
    clock.advance(1000)
    errors = api.content(api.batch(batch_id)["error_file_id"])

    assert {line["response"]["status_code"] for line in errors} == {500}
    assert "RuntimeError: bug in test" in errors[0]["response"]["body"]["error"]["message"]


# -- cancel ----------------------------------------------------------------------------------------


def test_cancel_keeps_partial_results(api: Api, clock: ManualClock) -> None:
    batch_id = api.create(ten_requests())["id"]
    clock.advance(10 + 40)  # 4 of 10 requests done

    cancelling = api.client.post(f"/batches/{batch_id}/cancel").json()
    assert cancelling["status"] == "cancelling"
    assert cancelling["cancelling_at"] == int(START) + 50
    assert cancelling["request_counts"] == {"total": 10, "completed": 4, "failed": 0}

    clock.advance(10)
    cancelled = api.batch(batch_id)
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelled_at"] == int(START) + 60
    assert cancelled["request_counts"] == {"total": 10, "completed": 4, "failed": 0}
    done = {line["custom_id"] for line in api.content(cancelled["output_file_id"])}
    not_run = api.content(cancelled["error_file_id"])
    assert len(done) == 4
    assert {line["custom_id"] for line in not_run} == {f"req-{i}" for i in range(10)} - done
    assert {line["error"]["code"] for line in not_run} == {"batch_cancelled"}
    assert all(line["response"] is None for line in not_run)


def test_cancel_while_validating_runs_nothing(api: Api, clock: ManualClock) -> None:
    batch_id = api.create(ten_requests())["id"]

    assert api.client.post(f"/batches/{batch_id}/cancel").json()["status"] == "cancelling"
    clock.advance(10)
    cancelled = api.batch(batch_id)

    assert cancelled["status"] == "cancelled"
    assert (cancelled["output_file_id"], cancelled["error_file_id"]) == (None, None)
    assert cancelled["request_counts"] == {"total": 0, "completed": 0, "failed": 0}


def test_cancelling_again_returns_the_batch(api: Api, clock: ManualClock) -> None:
    batch_id = api.create(ten_requests())["id"]
    api.client.post(f"/batches/{batch_id}/cancel")

    again = api.client.post(f"/batches/{batch_id}/cancel")
    clock.advance(60)
    after_cancelled = api.client.post(f"/batches/{batch_id}/cancel")

    assert (again.status_code, again.json()["status"]) == (200, "cancelling")
    assert (after_cancelled.status_code, after_cancelled.json()["status"]) == (200, "cancelled")


@pytest.mark.parametrize("final", ["completed", "failed", "expired"])
def test_cancel_on_a_terminal_batch_is_409(api: Api, clock: ManualClock, server: FakeOpenAIServer, final: str) -> None:
    content = ten_requests() if final != "failed" else b"not json\n"
    batch_id = api.create(content)["id"]
    if final == "expired":
        server.expire_batch(batch_id)
    else:
        clock.advance(1000)
    assert api.batch(batch_id)["status"] == final

    response = api.client.post(f"/batches/{batch_id}/cancel")

    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "message": f"Cannot cancel a batch with status '{final}'.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


# -- expiry ----------------------------------------------------------------------------------------


def test_expire_batch_keeps_done_requests_and_marks_the_rest(api: Api, server: FakeOpenAIServer) -> None:
    batch_id = api.create(ten_requests())["id"]

    expired = server.expire_batch(batch_id, completed_fraction=0.3)

    assert expired["status"] == "expired"
    assert expired["expired_at"] == int(START)
    assert expired["request_counts"] == {"total": 10, "completed": 3, "failed": 7}
    done = api.content(expired["output_file_id"])
    rest = api.content(expired["error_file_id"])
    assert len(done) == 3
    assert len(rest) == 7
    assert {line["custom_id"] for line in done} | {line["custom_id"] for line in rest} == {
        f"req-{i}" for i in range(10)
    }
    assert rest[0] == {
        "id": rest[0]["id"],
        "custom_id": rest[0]["custom_id"],
        "response": None,
        "error": {
            "code": "batch_expired",
            "message": "This request could not be executed before the completion window expired.",
        },
    }


def test_expire_after_fraction_option(api: Api, clock: ManualClock, server: FakeOpenAIServer) -> None:
    server.configure(expire_after_fraction=0.5)
    batch_id = api.create(ten_requests())["id"]
    clock.advance(59)
    assert api.batch(batch_id)["status"] == "in_progress"

    clock.advance(1)
    batch = api.batch(batch_id)

    assert batch["status"] == "expired"
    assert batch["expired_at"] == int(START) + 60
    assert batch["request_counts"] == {"total": 10, "completed": 5, "failed": 5}


def test_the_completion_window_expires_a_slow_batch(api: Api, clock: ManualClock, server: FakeOpenAIServer) -> None:
    server.configure(validating_seconds=0, in_progress_seconds=2 * DAY)
    batch_id = api.create(ten_requests())["id"]

    clock.advance(DAY + 5)
    batch = api.batch(batch_id)

    assert batch["status"] == "expired"
    assert batch["expired_at"] == batch["expires_at"]
    assert batch["request_counts"] == {"total": 10, "completed": 5, "failed": 5}


def test_expiring_a_terminal_batch_is_refused(api: Api, clock: ManualClock, server: FakeOpenAIServer) -> None:
    batch_id = api.create(ten_requests())["id"]
    clock.advance(1000)

    with pytest.raises(ValueError, match="Cannot expire a batch with status 'completed'"):
        server.expire_batch(batch_id)
    with pytest.raises(KeyError):
        server.expire_batch("batch_nope")


# -- token limit -----------------------------------------------------------------------------------


def test_fail_next_batches_fails_after_creation(api: Api, clock: ManualClock, server: FakeOpenAIServer) -> None:
    server.fail_next_batches()
    doomed = api.create(ten_requests())
    healthy = api.create(ten_requests())
    assert doomed["status"] == "validating"

    clock.advance(10)
    failed = api.batch(doomed["id"])

    assert failed["status"] == "failed"
    assert failed["failed_at"] == int(START) + 10
    assert failed["errors"] == {
        "object": "list",
        "data": [
            {
                "code": "token_limit_exceeded",
                "message": "Enqueued token limit reached for gpt-4o-mini in organization org-fake. Limit: "
                "2,000,000 enqueued tokens. Please try again once some in_progress batches have been completed.",
                "param": None,
                "line": None,
            }
        ],
    }
    assert api.batch(healthy["id"])["status"] == "in_progress"


def test_unknown_input_file_fails_in_validation(client: httpx.Client, clock: ManualClock) -> None:
    created = client.post(
        "/batches",
        json={"input_file_id": "file-ghost", "endpoint": CHAT, "completion_window": "24h"},
        headers={"OpenAI-Organization": "org-acme"},
    )
    assert created.status_code == 200

    clock.advance(10)
    batch = client.get(f"/batches/{created.json()['id']}").json()

    assert batch["status"] == "failed"
    assert batch["errors"]["data"] == [
        {
            "code": "invalid_request",
            "message": "Cannot find file file-ghost, or organization org-acme does not have access to it.",
            "param": "file_id",
            "line": None,
        }
    ]


# -- create-time errors ----------------------------------------------------------------------------


def create_error(client: httpx.Client, **overrides: Any) -> dict[str, Any]:
    body = {"input_file_id": "file-x", "endpoint": CHAT, "completion_window": "24h", **overrides}
    body = {key: value for key, value in body.items() if value is not ...}
    response = client.post("/batches", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    return error


def test_bad_endpoint_lists_the_supported_ones(client: httpx.Client) -> None:
    error = create_error(client, endpoint="/v1/invalid/endpoint")

    assert (error["code"], error["param"]) == ("invalid_value", "endpoint")
    assert error["message"].startswith("Invalid value: '/v1/invalid/endpoint'. Supported values are: ")
    for endpoint in (
        "/v1/responses",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/moderations",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/videos",
    ):
        assert f"'{endpoint}'" in error["message"]


@pytest.mark.parametrize("window", ["1h", "48h", ""])
def test_bad_completion_window(client: httpx.Client, window: str) -> None:
    error = create_error(client, completion_window=window)

    assert (error["code"], error["param"]) == ("invalid_value", "completion_window")


def test_other_windows_when_allowed(clock: ManualClock) -> None:
    with (
        FakeOpenAIServer(allowed_completion_windows=("24h", "7d"), clock=clock) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": "Bearer k"}) as client,
    ):
        batch = Api(client).create(ten_requests(), completion_window="7d")

    assert batch["expires_at"] - batch["created_at"] == 7 * DAY


@pytest.mark.parametrize("missing", ["input_file_id", "endpoint", "completion_window"])
def test_missing_required_parameter(client: httpx.Client, missing: str) -> None:
    error = create_error(client, **{missing: ...})

    assert error == {
        "message": f"Missing required parameter: '{missing}'.",
        "type": "invalid_request_error",
        "param": missing,
        "code": "missing_required_parameter",
    }


@pytest.mark.parametrize(
    ("metadata", "param", "code"),
    [
        ({"tags": ["a"]}, "metadata.tags", "invalid_type"),
        ({f"k{i}": "v" for i in range(17)}, "metadata", "object_above_max_properties"),
        ({"k" * 65: "v"}, "metadata", "string_above_max_length"),
        ({"k": "v" * 513}, "metadata.k", "string_above_max_length"),
        ("text", "metadata", "invalid_type"),
    ],
    ids=["non-string-value", "17-pairs", "long-key", "long-value", "not-an-object"],
)
def test_bad_metadata(client: httpx.Client, metadata: Any, param: str, code: str) -> None:
    error = create_error(client, metadata=metadata)

    assert (error["code"], error["param"]) == (code, param)


def test_metadata_type_message(client: httpx.Client) -> None:
    error = create_error(client, metadata={"tags": ["a"]})

    assert error["message"] == "Invalid type for 'metadata.tags': expected a string, but got an array instead."


@pytest.mark.parametrize(
    ("expiry", "param", "code"),
    [
        ({"anchor": "created_at", "seconds": 60}, "output_expires_after.seconds", "integer_below_min_value"),
        ({"anchor": "created_at", "seconds": 2_592_001}, "output_expires_after.seconds", "integer_above_max_value"),
        ({"anchor": "completed_at", "seconds": 3600}, "output_expires_after.anchor", "invalid_value"),
        ({"seconds": 3600}, "output_expires_after.anchor", "missing_required_parameter"),
        (3600, "output_expires_after", "invalid_type"),
    ],
)
def test_bad_output_expires_after(client: httpx.Client, expiry: Any, param: str, code: str) -> None:
    error = create_error(client, output_expires_after=expiry)

    assert (error["code"], error["param"]) == (code, param)


def test_unknown_parameter_and_invalid_json(client: httpx.Client) -> None:
    error = create_error(client, priority="high")
    assert (error["code"], error["param"]) == ("unknown_parameter", "priority")

    response = client.post("/batches", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "could not parse the JSON body" in response.json()["error"]["message"]


def test_output_expiry_applies_to_result_files(api: Api, clock: ManualClock) -> None:
    batch_id = api.create(ten_requests(), output_expires_after={"anchor": "created_at", "seconds": 7200})["id"]
    clock.advance(1000)
    batch = api.batch(batch_id)

    output_file = api.client.get(f"/files/{batch['output_file_id']}").json()

    assert "output_expires_after" not in batch
    assert output_file["expires_at"] == output_file["created_at"] + 7200


# -- reads and lists -------------------------------------------------------------------------------


def test_unknown_batch_is_404(client: httpx.Client) -> None:
    for response in (client.get("/batches/batch_nope"), client.post("/batches/batch_nope/cancel")):
        assert response.status_code == 404
        assert response.json()["error"]["message"] == "No batch found with id 'batch_nope'."
        assert response.json()["error"]["type"] == "invalid_request_error"


def test_list_is_newest_first_with_cursor_pagination(api: Api, clock: ManualClock) -> None:
    created = []
    for _ in range(5):
        created.append(api.create(ten_requests())["id"])
        clock.advance(1)
    newest_first = created[::-1]

    page = api.client.get("/batches", params={"limit": 2}).json()
    assert [b["id"] for b in page["data"]] == newest_first[:2]
    assert (page["first_id"], page["last_id"], page["has_more"]) == (newest_first[0], newest_first[1], True)

    page = api.client.get("/batches", params={"limit": 2, "after": page["last_id"]}).json()
    assert [b["id"] for b in page["data"]] == newest_first[2:4]
    assert page["has_more"] is True

    page = api.client.get("/batches", params={"limit": 2, "after": page["last_id"]}).json()
    assert [b["id"] for b in page["data"]] == newest_first[4:]
    assert page["has_more"] is False

    default = api.client.get("/batches").json()
    assert len(default["data"]) == 5
    assert default["data"][0]["status"] == "validating"


def test_list_advances_the_batches_it_shows(api: Api, clock: ManualClock) -> None:
    api.create(ten_requests())
    clock.advance(1000)

    listed = api.client.get("/batches").json()["data"]

    assert listed[0]["status"] == "completed"
    assert listed[0]["output_file_id"] is not None


@pytest.mark.parametrize("limit", [0, 101])
def test_list_limit_bounds(client: httpx.Client, limit: int) -> None:
    response = client.get("/batches", params={"limit": limit})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"


def test_default_real_time_lifecycle_reaches_completed() -> None:
    with (
        FakeOpenAIServer(validating_seconds=0.05, in_progress_seconds=0.1, finalizing_seconds=0.05) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": "Bearer k"}) as client,
    ):
        api = Api(client)
        batch_id = api.create(ten_requests())["id"]
        statuses = []
        while not statuses or statuses[-1] != "completed":
            statuses.append(api.batch(batch_id)["status"])
            time.sleep(0.01)

    assert statuses[0] in ("validating", "in_progress")
    assert statuses[-1] == "completed"
