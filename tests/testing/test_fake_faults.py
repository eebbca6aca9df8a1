"""Fault injection: rates, counted failures, dropped connections, latency, outages."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from fake_helpers import CHAT, DROPPED, Api, chat_line, jsonl

from airflow_provider_openai_batch.testing import FakeOpenAIServer


def test_rate_429_carries_retry_after(server: FakeOpenAIServer, client: httpx.Client) -> None:
    server.set_faults(rate_429=1.0, retry_after=2)

    response = client.get("/batches")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.headers["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "rate_limit_exceeded"
    assert server.stats()["faults"]["rate_429"] == 1


def test_rate_429_with_retry_after_ms(server: FakeOpenAIServer, client: httpx.Client) -> None:
    server.set_faults(rate_429=1.0, retry_after_ms=250)

    response = client.get("/batches")

    assert response.headers["retry-after-ms"] == "250"
    assert "retry-after" not in response.headers


def test_rates_are_seeded_and_deterministic(server: FakeOpenAIServer, client: httpx.Client) -> None:
    def run() -> list[int]:
        server.reset()
        server.set_faults(rate_429=0.3, rate_503=0.2, rate_500=0.1)
        return [client.get("/batches").status_code for _ in range(60)]

    first, second = run(), run()

    assert first == second
    assert {200, 429, 503, 500} == set(first)


def test_faults_can_target_a_method_and_path(server: FakeOpenAIServer, client: httpx.Client) -> None:
    server.set_faults(rate_503=1.0, methods=["POST"], path_prefix="/v1/batches")

    assert client.get("/batches").status_code == 200
    assert client.get("/files").status_code == 200
    assert client.post("/batches", json={}).status_code == 503


def test_fail_next_counts_down(server: FakeOpenAIServer, client: httpx.Client) -> None:
    server.fail_next(2, status=503, method="GET", path_prefix="/v1/batches", retry_after=3)

    statuses = [client.get("/batches") for _ in range(3)]

    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].headers["retry-after"] == "3"
    assert statuses[0].json()["error"]["type"] == "server_error"
    assert server.stats()["faults"]["fail_next"] == 2
    assert [entry.fault for entry in server.requests] == ["fail_next", "fail_next", None]


def test_fail_next_with_429(server: FakeOpenAIServer, client: httpx.Client) -> None:
    server.fail_next(1, status=429)

    response = client.get("/files")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_drop_before_does_not_do_the_work(server: FakeOpenAIServer, api: Api) -> None:
    file_id = api.upload(jsonl([chat_line("a")]))["id"]
    server.drop_next(1, when="before", method="POST", path_prefix="/v1/batches")

    with pytest.raises(DROPPED):
        api.client.post("/batches", json={"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"})

    assert server.batches() == []
    assert server.stats()["faults"]["drop_before"] == 1
    assert server.requests[-1].status is None


def test_drop_after_does_the_work_but_loses_the_response(server: FakeOpenAIServer, api: Api) -> None:
    file_id = api.upload(jsonl([chat_line("a")]))["id"]
    server.drop_next(1, when="after", method="POST", path_prefix="/v1/batches")

    with pytest.raises(DROPPED):
        api.client.post("/batches", json={"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"})

    batches = server.batches()
    assert len(batches) == 1
    assert batches[0]["input_file_id"] == file_id
    assert server.stats()["batches_created"] == 1
    assert api.client.get("/batches").json()["data"][0]["id"] == batches[0]["id"]


def test_latency_is_counted_and_the_request_still_succeeds(server: FakeOpenAIServer, client: httpx.Client) -> None:
    server.set_faults(latency=(0.001, 0.002), path_prefix="/v1/files")

    assert client.get("/files").status_code == 200
    assert client.get("/batches").status_code == 200

    assert server.stats()["faults"] == {"latency": 1}


def test_clear_faults(server: FakeOpenAIServer, client: httpx.Client) -> None:
    server.set_faults(rate_500=1.0)
    server.fail_next(5)
    server.clear_faults()

    assert client.get("/batches").status_code == 200


def test_invalid_fault_arguments_are_refused(server: FakeOpenAIServer) -> None:
    with pytest.raises(ValueError, match="sum to at most 1"):
        server.set_faults(rate_429=0.7, rate_503=0.7)
    with pytest.raises(ValueError, match="before"):
        server.drop_next(1, when="during")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="error status"):
        server.fail_next(1, status=200)


def test_go_down_refuses_connections_and_come_back_keeps_state() -> None:
    with FakeOpenAIServer() as server:
        url = server.url
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer k"}) as client:
            file_id = Api(client).upload(jsonl([chat_line("a")]))["id"]

        server.go_down()
        assert not server.is_up
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer k"}) as client:
            with pytest.raises(httpx.ConnectError):
                client.get("/files")

            server.come_back()
            assert server.url == url
            assert client.get(f"/files/{file_id}").json()["id"] == file_id


def test_go_down_for_a_while_comes_back_by_itself() -> None:
    with FakeOpenAIServer() as server:
        server.go_down(seconds=0.05)
        with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer k"}) as client:
            response = None
            while response is None:
                try:
                    response = client.get("/files")
                except httpx.TransportError:
                    time.sleep(0.01)

        assert response.status_code == 200
        assert server.is_up


def test_openai_sdk_sees_connection_errors_for_drops(server: FakeOpenAIServer) -> None:
    client = openai.OpenAI(api_key="sk-test", base_url=server.url, max_retries=0)
    server.drop_next(1, when="after", method="GET")

    with pytest.raises(openai.APIConnectionError):
        client.batches.list()
    assert client.batches.list().data == []
