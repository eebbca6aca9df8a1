"""OpenAIBatchHook: an Airflow connection (from an ``AIRFLOW_CONN_*`` env var) turned into clients.

The connection points at the bundled fake server; every call goes over real loopback HTTP.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from airflow.sdk import Connection

from airflow_provider_openai_batch.api.client import DEFAULT_BASE_URL, SHARED_POOLS
from airflow_provider_openai_batch.api.models import BatchStatus
from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook, base_url_from, config_from_connection
from airflow_provider_openai_batch.results.merge import ResultStatus
from airflow_provider_openai_batch.testing import FakeOpenAIServer
from tests.helpers import API_KEY, CHAT, LIFETIME, WRONG_KEY, chat_line

CONN_ID = "openai_hook_test"


def set_connection(monkeypatch, conn_id: str, *, password: str | None, host: str, **extra) -> None:
    conn = {"conn_type": "openai_batch", "host": host, "extra": extra}
    if password is not None:
        conn["password"] = password
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.fixture
def conn(server: FakeOpenAIServer, monkeypatch) -> str:
    set_connection(monkeypatch, CONN_ID, password=API_KEY, host=server.url, organization="org-hook", max_retries=1)
    return CONN_ID


@pytest.fixture
def input_path(tmp_path: Path) -> Path:
    path = tmp_path / "eval.jsonl"
    lines = [chat_line(f"q-{i}", "hi") for i in range(5)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


# Connection -> configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "schema", "expected"),
    [
        ("http://127.0.0.1:8765/v1", None, None, "http://127.0.0.1:8765/v1"),
        ("http://127.0.0.1:8765/v1/", None, None, "http://127.0.0.1:8765/v1"),
        (
            "https://my-resource.openai.azure.com/openai/v1",
            None,
            None,
            "https://my-resource.openai.azure.com/openai/v1",
        ),
        (None, None, None, DEFAULT_BASE_URL),
        ("", None, None, DEFAULT_BASE_URL),
        ("   ", None, None, DEFAULT_BASE_URL),
        ("api.example.com", None, None, "https://api.example.com/v1"),
        ("proxy.internal", 8443, None, "https://proxy.internal:8443/v1"),
        ("gateway.example.com", None, "openai/v1", "https://gateway.example.com/openai/v1"),
        ("gateway.example.com", 443, "/openai/v1/", "https://gateway.example.com:443/openai/v1"),
    ],
)
def test_base_url_from_host_forms(host, port, schema, expected):
    assert base_url_from(host, port, schema) == expected


def test_config_from_connection_with_url_host_and_extras():
    conn = Connection(
        conn_id="c1",
        conn_type="openai_batch",
        host="http://127.0.0.1:8765/v1",
        password=API_KEY,
        extra=json.dumps(
            {"organization": "org-1", "project": "proj_1", "auth_header": "api-key", "timeout": "30", "max_retries": 2}
        ),
    )
    config = config_from_connection(conn)
    assert config.api_key == API_KEY
    assert config.base_url == "http://127.0.0.1:8765/v1"
    assert (config.organization, config.project, config.auth_header) == ("org-1", "proj_1", "api-key")
    assert config.timeout == 30.0
    assert config.retry.max_attempts == 3
    headers = config.headers()
    assert headers["api-key"] == API_KEY and "Authorization" not in headers
    assert (headers["OpenAI-Organization"], headers["OpenAI-Project"]) == ("org-1", "proj_1")
    assert API_KEY not in repr(config)


def test_config_from_connection_defaults():
    config = config_from_connection(Connection(conn_id="c2", conn_type="openai_batch", password=API_KEY))
    assert config.base_url == DEFAULT_BASE_URL
    assert (config.organization, config.project, config.auth_header) == (None, None, "bearer")
    assert config.timeout == 60.0
    assert config.retry.max_attempts == 8
    assert config.headers()["Authorization"] == f"Bearer {API_KEY}"


def test_config_from_a_connection_uri_with_bare_host():
    uri = f"openai-batch://:{API_KEY}@proxy.internal:8443/v1"
    if hasattr(Connection, "from_uri"):
        conn = Connection.from_uri(uri, conn_id="c3")
    else:  # Airflow 3.0: the Task SDK's Connection has no from_uri; the core model parses URIs
        from airflow.models.connection import Connection as CoreConnection

        conn = CoreConnection(conn_id="c3", uri=uri)
    config = config_from_connection(conn)
    assert config.base_url == "https://proxy.internal:8443/v1"
    assert config.api_key == API_KEY


def test_empty_extras_are_ignored():
    conn = Connection(
        conn_id="c4",
        conn_type="openai_batch",
        password=API_KEY,
        extra=json.dumps({"organization": "", "project": None, "timeout": None, "max_retries": None}),
    )
    config = config_from_connection(conn)
    assert (config.organization, config.project, config.timeout, config.retry.max_attempts) == (None, None, 60.0, 8)
    assert "OpenAI-Organization" not in config.headers()


def test_missing_password_is_a_clear_error_naming_the_connection():
    conn = Connection(conn_id="openai_no_key", conn_type="openai_batch", host="http://127.0.0.1:8765/v1")
    with pytest.raises(ValueError, match=r"'openai_no_key'.*no API key.*password"):
        config_from_connection(conn)


def test_hook_with_keyless_connection_fails_clearly(monkeypatch):
    set_connection(monkeypatch, "openai_keyless", password=None, host="http://127.0.0.1:9/v1")
    hook = OpenAIBatchHook("openai_keyless")
    with pytest.raises(ValueError, match="openai_keyless"):
        hook.get_batch("batch_x")
    ok, message = OpenAIBatchHook("openai_keyless").test_connection()
    assert ok is False and "openai_keyless" in message and "API key" in message


# test_connection and repr -----------------------------------------------------------------------------


def test_test_connection_succeeds_against_the_server(server, monkeypatch):
    set_connection(monkeypatch, "openai_default", password=API_KEY, host=server.url)
    ok, message = OpenAIBatchHook().test_connection()
    assert ok is True
    assert server.url in message
    [record] = server.requests
    assert (record.method, record.path, record.auth_accepted) == ("GET", "/v1/batches", True)


def test_test_connection_reports_a_wrong_key_without_showing_it(server, monkeypatch):
    set_connection(monkeypatch, "openai_default", password=WRONG_KEY, host=server.url)
    hook = OpenAIBatchHook()
    ok, message = hook.test_connection()
    assert ok is False
    assert "401" in message and "invalid_api_key" in message
    assert WRONG_KEY not in message
    assert len(server.requests) == 1, "a 401 is not retried"
    assert WRONG_KEY not in repr(hook) and WRONG_KEY not in repr(hook.client) and WRONG_KEY not in repr(hook.config)


def test_repr_has_no_key(conn):
    hook = OpenAIBatchHook(conn)
    assert repr(hook) == f"OpenAIBatchHook(conn_id={conn!r})"
    assert API_KEY not in repr(hook) + repr(hook.config) + repr(hook.client)
    assert hook.base_url.startswith("http://127.0.0.1:")


def test_hook_metadata():
    assert (OpenAIBatchHook.conn_type, OpenAIBatchHook.default_conn_name) == ("openai_batch", "openai_default")
    assert OpenAIBatchHook.conn_name_attr == "conn_id"
    assert OpenAIBatchHook().conn_id == "openai_default"


# Sync round trip ------------------------------------------------------------------------------------


def test_sync_round_trip(server, conn, clock, input_path):
    hook = OpenAIBatchHook(conn)
    uploaded = hook.upload_file(input_path, expires_after=86_400)
    assert uploaded.bytes == input_path.stat().st_size and uploaded.purpose == "batch"
    assert hook.get_file(uploaded.id).filename == "eval.jsonl"

    batch = hook.create_batch(uploaded.id, CHAT, metadata={"suite": "nightly"}, output_expires_after=7 * 86_400)
    doomed = hook.create_batch(uploaded.id, CHAT)
    assert batch.status == BatchStatus.VALIDATING and batch.metadata == {"suite": "nightly"}
    assert [b.id for b in hook.list_batches(limit=10).data] == [doomed.id, batch.id]
    assert hook.cancel_batch(doomed.id).status == BatchStatus.CANCELLING

    clock.advance(LIFETIME + 20)
    done = hook.get_batch(batch.id)
    assert done.status == BatchStatus.COMPLETED
    assert done.request_counts.as_dict() == {"total": 5, "completed": 5, "failed": 0}
    assert hook.get_batch(doomed.id).status == BatchStatus.CANCELLED

    raw = list(hook.iter_file_lines(done.output_file_id))
    assert all(isinstance(line, bytes) and not line.endswith(b"\n") for line in raw)
    lines = [json.loads(line) for line in raw if line.strip()]  # the recipe of the docstring and the README
    assert sorted(line["custom_id"] for line in lines) == [f"q-{i}" for i in range(5)]

    records = list(hook.iter_results(batch.id, input_source=input_path))
    assert [r.custom_id for r in records] == [f"q-{i}" for i in range(5)], "input order"
    assert {r.status for r in records} == {ResultStatus.SUCCEEDED}
    assert all(r.batch_id == batch.id and r.status_code == 200 for r in records)

    assert hook.delete_file(uploaded.id).deleted is True
    assert hook.get_conn() is hook.client
    record_orgs = {r.organization for r in server.requests}
    assert record_orgs == {"org-hook"}, "the connection's organization went with every request"


# Async -----------------------------------------------------------------------------------------------


async def close_loop_pools() -> None:
    """Test hygiene: close the shared pools of this test's loop (no public API; see test_async_client)."""
    for pool_set in SHARED_POOLS._by_loop.pop(asyncio.get_running_loop(), {}).values():
        for http in pool_set.clients:
            await http.aclose()


async def test_async_methods_use_the_async_lookup_and_shared_pools(server, conn, input_path):
    sync_hook = OpenAIBatchHook(conn)
    batch_id = sync_hook.create_batch(sync_hook.upload_file(input_path).id, CHAT).id
    try:
        hook = OpenAIBatchHook(conn)
        batch = await hook.aget_batch(batch_id)
        assert (batch.id, batch.status) == (batch_id, BatchStatus.VALIDATING)
        config = await hook.aconfig()
        assert config is await hook.aconfig(), "looked up once per hook"
        assert config.organization == "org-hook" and config.retry.max_attempts == 2
        other = OpenAIBatchHook(conn)
        cancelled = await other.acancel_batch(batch_id)
        assert cancelled.status == BatchStatus.CANCELLING
        assert SHARED_POOLS.count() == 1, "hooks of one connection share one pool set"
        assert (await hook.aclient())._pools is (await other.aclient())._pools
        assert await hook.aclient() is await hook.aclient(), "one client per hook, not one per poll"
        assert await other.aconfig() is config, "hooks of one connection hold one config object"
    finally:
        await close_loop_pools()
    last_two = server.requests[-2:]
    assert [(r.method, r.route) for r in last_two] == [
        ("GET", "/v1/batches/{batch_id}"),
        ("POST", "/v1/batches/{batch_id}/cancel"),
    ]
    assert all(r.organization == "org-hook" and r.auth_accepted for r in last_two)


async def test_hooks_share_a_lookup_made_seconds_ago_and_see_a_changed_connection_after(server, conn, monkeypatch):
    """Thousands of triggers starting together look the connection up once, not once each."""
    from airflow_provider_openai_batch.hooks import batch as hook_module

    lookups: list[str] = []
    real_lookup = hook_module.get_async_connection

    async def counting_lookup(conn_id: str) -> object:
        lookups.append(conn_id)
        return await real_lookup(conn_id)

    monkeypatch.setattr(hook_module, "get_async_connection", counting_lookup)
    first = await OpenAIBatchHook(conn).aconfig()
    assert [(await OpenAIBatchHook(conn).aconfig()) is first for _ in range(20)] == [True] * 20
    assert lookups == [conn]

    set_connection(monkeypatch, conn, password=API_KEY, host=server.url, organization="org-changed")
    assert (await OpenAIBatchHook(conn).aconfig()).organization == "org-hook", "still within the window"
    later = hook_module.monotonic() + hook_module.RECENT_LOOKUP_SECONDS + 0.1
    monkeypatch.setattr(hook_module, "monotonic", lambda: later)
    assert (await OpenAIBatchHook(conn).aconfig()).organization == "org-changed"
    assert lookups == [conn, conn]


@pytest.mark.parametrize("shared_poll", [None, False, "false"])
async def test_apoll_batch_goes_through_the_shared_poller_unless_turned_off(
    server, monkeypatch, input_path, shared_poll
):
    from airflow_provider_openai_batch.waiting.poller import SHARED_POLLERS

    extra = {} if shared_poll is None else {"shared_poll": shared_poll}
    set_connection(monkeypatch, CONN_ID, password=API_KEY, host=server.url, **extra)
    sync_hook = OpenAIBatchHook(CONN_ID)
    file_id = sync_hook.upload_file(input_path).id
    ids = [sync_hook.create_batch(file_id, CHAT).id for _ in range(3)]
    before = len(server.requests)
    try:
        hooks = [OpenAIBatchHook(CONN_ID) for _ in ids]
        batches = await asyncio.gather(*(h.apoll_batch(i) for h, i in zip(hooks, ids, strict=True)))
    finally:
        SHARED_POLLERS._by_loop.pop(asyncio.get_running_loop(), None)
        await close_loop_pools()
    assert [b.id for b in batches] == ids
    routes = [r.route for r in server.requests[before:]]
    if shared_poll is None:
        assert routes == ["/v1/batches"], "three triggers, one list page"
    else:
        assert routes == ["/v1/batches/{batch_id}"] * 3, "turned off: one GET per trigger"
