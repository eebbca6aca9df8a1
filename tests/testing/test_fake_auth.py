"""Authentication and the request log (which must never hold the key)."""

from __future__ import annotations

import httpx
import pytest

from airflow_provider_openai_batch.testing import FakeOpenAIServer

INVALID_KEY = {
    "message": "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    "type": "invalid_request_error",
    "param": None,
    "code": "invalid_api_key",
}


@pytest.mark.parametrize("authorization", ["", "Bearer", "Basic abc", "Bearer wrong-key"])
def test_only_the_configured_key_is_accepted(authorization: str) -> None:
    with FakeOpenAIServer(api_key="sk-right") as server, httpx.Client(base_url=server.url) as client:
        headers = {"Authorization": authorization} if authorization else {}
        rejected = client.get("/batches", headers=headers)
        accepted = client.get("/batches", headers={"Authorization": "Bearer sk-right"})

        assert rejected.status_code == 401
        error = rejected.json()["error"]
        assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, "invalid_api_key")
        assert "sk-right" not in rejected.text
        assert "wrong-key" not in rejected.text
        assert accepted.status_code == 200
        assert server.stats()["auth_failures"] == 1


def test_wrong_key_message() -> None:
    with FakeOpenAIServer(api_key="sk-right") as keyed, httpx.Client(base_url=keyed.url) as client:
        response = client.get("/files", headers={"Authorization": "Bearer sk-wrong"})

    assert response.json() == {"error": INVALID_KEY}


def test_any_non_empty_key_is_accepted_without_api_key(server: FakeOpenAIServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/batches", headers={"Authorization": "Bearer anything"}).status_code == 200
        assert client.get("/batches").status_code == 401


def test_request_log_has_headers_but_never_the_key(server: FakeOpenAIServer) -> None:
    headers = {"Authorization": "Bearer sk-secret-123", "OpenAI-Organization": "org-1", "OpenAI-Project": "proj-2"}
    with httpx.Client(base_url=server.url, headers=headers) as client:
        client.get("/batches")
        client.get("/batches/batch_x")
        client.get(server.url.removesuffix("/v1") + "/_fake/stats")

    log = server.requests
    assert [(e.method, e.path, e.route, e.status) for e in log] == [
        ("GET", "/v1/batches", "/v1/batches", 200),
        ("GET", "/v1/batches/batch_x", "/v1/batches/{batch_id}", 404),
    ]
    assert {(e.organization, e.project, e.auth_accepted) for e in log} == {("org-1", "proj-2", True)}
    assert "sk-secret-123" not in repr(log)
    assert server.stats()["requests"] == {"GET /v1/batches": 1, "GET /v1/batches/{batch_id}": 1}


def test_organization_is_echoed_in_response_headers(server: FakeOpenAIServer) -> None:
    with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer k"}) as client:
        plain = client.get("/batches")
        with_org = client.get("/batches", headers={"OpenAI-Organization": "org-acme"})

    assert plain.headers["openai-organization"] == "org-fake"
    assert with_org.headers["openai-organization"] == "org-acme"


def test_unknown_routes_answer_invalid_url(client: httpx.Client) -> None:
    response = client.put("/batches")

    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (PUT /v1/batches)"
