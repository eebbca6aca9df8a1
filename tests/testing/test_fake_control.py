"""The /_fake control routes: the Python test API over HTTP, without auth and never faulted."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from fake_helpers import DROPPED, Api, ManualClock, chat_line, jsonl

from airflow_provider_openai_batch.testing import FakeOpenAIServer


@pytest.fixture
def control(server: FakeOpenAIServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url.removesuffix("/v1")) as client:
        yield client


def test_stats_requests_batches_and_files(control: httpx.Client, api: Api) -> None:
    batch = api.create(jsonl([chat_line("a")]))

    stats = control.get("/_fake/stats").json()
    assert stats["uploads"] == 1
    assert stats["batches_created"] == 1
    assert stats["requests"] == {"POST /v1/files": 1, "POST /v1/batches": 1}
    assert [entry["route"] for entry in control.get("/_fake/requests").json()] == ["/v1/files", "/v1/batches"]
    assert [b["id"] for b in control.get("/_fake/batches").json()] == [batch["id"]]
    assert [f["id"] for f in control.get("/_fake/files").json()] == [batch["input_file_id"]]


def test_faults_over_http_never_hit_control_routes(control: httpx.Client, api: Api) -> None:
    assert control.post("/_fake/faults", json={"rate_503": 1.0, "latency": [0.0, 0.001]}).json() == {"ok": True}

    assert api.client.get("/batches").status_code == 503
    assert control.get("/_fake/stats").status_code == 200

    assert control.delete("/_fake/faults").status_code == 200
    assert api.client.get("/batches").status_code == 200


def test_fail_next_and_drop_next_over_http(control: httpx.Client, api: Api) -> None:
    control.post("/_fake/fail_next", json={"n": 1, "status": 429, "retry_after": 1})
    control.post("/_fake/drop_next", json={"n": 1, "when": "before", "method": "GET"})

    assert api.client.get("/files").status_code == 429
    with pytest.raises(DROPPED):
        api.client.get("/files")
    assert control.get("/_fake/stats").json()["faults"] == {"fail_next": 1, "drop_before": 1}


def test_bad_control_arguments_are_400(control: httpx.Client) -> None:
    response = control.post("/_fake/faults", json={"rate_999": 1})

    assert response.status_code == 400
    assert "rate_999" in response.json()["error"]["message"]
    assert control.post("/_fake/fail_next", content=b"[1]").status_code == 400


def test_fail_next_batches_and_expire_over_http(control: httpx.Client, api: Api, clock: ManualClock) -> None:
    control.post("/_fake/fail_next_batches", json={"count": 1, "code": "quota", "message": "over {model}"})
    doomed = api.create(jsonl([chat_line("a")]))
    running = api.create(jsonl([chat_line(str(i)) for i in range(4)]))
    clock.advance(10)

    assert api.batch(doomed["id"])["errors"]["data"][0] == {
        "code": "quota",
        "message": "over gpt-4o-mini",
        "param": None,
        "line": None,
    }
    expired = control.post(f"/_fake/batches/{running['id']}/expire", json={"completed_fraction": 0.5}).json()
    assert expired["status"] == "expired"
    assert expired["request_counts"] == {"total": 4, "completed": 2, "failed": 2}
    assert control.post(f"/_fake/batches/{running['id']}/expire").status_code == 409
    assert control.post("/_fake/batches/batch_nope/expire").status_code == 404


def test_config_changes_timings_of_new_batches(control: httpx.Client, api: Api, clock: ManualClock) -> None:
    assert control.post("/_fake/config", json={"validating_seconds": 1, "in_progress_seconds": 0}).status_code == 200
    batch_id = api.create(jsonl([chat_line("a")]))["id"]

    clock.advance(1)

    assert api.batch(batch_id)["status"] == "finalizing"
    assert control.post("/_fake/config", json={"warp": 9}).status_code == 400


def test_reset_forgets_everything(control: httpx.Client, api: Api, server: FakeOpenAIServer) -> None:
    api.create(jsonl([chat_line("a")]))

    assert control.post("/_fake/reset").json() == {"ok": True}

    assert server.batches() == []
    assert server.files() == []
    assert server.stats()["requests_total"] == 0


def test_go_down_over_http_comes_back_by_itself() -> None:
    with FakeOpenAIServer() as server, httpx.Client(base_url=server.url.removesuffix("/v1")) as control:
        assert control.post("/_fake/go_down", json={"seconds": 1.0}).status_code == 200
        refused = False
        while not refused:
            try:
                control.get("/_fake/stats")
            except httpx.TransportError:  # refused, or reset if it raced the shutdown
                refused = True
            time.sleep(0.01)
        back = None
        while back is None:
            try:
                back = control.get("/_fake/stats")
            except httpx.TransportError:
                time.sleep(0.01)

    assert back.status_code == 200


def test_go_down_needs_seconds(control: httpx.Client) -> None:
    response = control.post("/_fake/go_down", json={})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "seconds"
