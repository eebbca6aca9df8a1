"""The async client (the triggerer's) against the bundled fake server over real loopback HTTP.

Also the shared pools: every ``AsyncOpenAIBatchClient.shared(config)`` of one account in one event
loop draws on ONE set of at most 64 single-connection httpx clients; other accounts and other loops
get their own.
"""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from airflow_provider_openai_batch.api.client import (
    SHARED_POOLS,
    AsyncOpenAIBatchClient,
    OpenAIBatchClient,
)
from airflow_provider_openai_batch.api.exceptions import OpenAIAPIError, OpenAITransportError
from airflow_provider_openai_batch.api.models import BatchStatus
from airflow_provider_openai_batch.api.retry import RetryPolicy
from airflow_provider_openai_batch.testing import FakeOpenAIServer
from tests.helpers import CHAT, LIFETIME, chat_line, make_config


async def close_loop_pools() -> None:
    """Test hygiene: close the shared pools of the running loop so no socket outlives its loop.

    The library has no public way to close them (a triggerer's loop lives as long as the process).
    """
    pools = SHARED_POOLS._by_loop.pop(asyncio.get_running_loop(), {})
    for pool_set in pools.values():
        for http in pool_set.clients:
            await http.aclose()


@pytest.fixture
async def pools_closed() -> AsyncIterator[None]:
    yield
    await close_loop_pools()


@pytest.fixture
def batch_ids(server: FakeOpenAIServer, tmp_path: Path) -> list[str]:
    """Three batches made with the sync client, oldest first."""
    path = tmp_path / "input.jsonl"
    lines = [chat_line(f"r{i}", "hi") for i in range(4)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with OpenAIBatchClient(make_config(server), transport=httpx.HTTPTransport(verify=False)) as client:
        file_id = client.upload_file(path).id
        ids = [client.create_batch(file_id, CHAT).id for _ in range(3)]
    return ids


def api_requests(server: FakeOpenAIServer, method: str, route: str) -> list:
    return [r for r in server.requests if r.method == method and r.route == route]


# Calls -----------------------------------------------------------------------------------------------


async def test_get_batch(server, batch_ids, clock):
    client = AsyncOpenAIBatchClient(make_config(server, organization="org-async", project="proj_a"))
    try:
        batch = await client.get_batch(batch_ids[0])
        assert (batch.id, batch.status) == (batch_ids[0], BatchStatus.VALIDATING)
        clock.advance(LIFETIME + 1)
        done = await client.get_batch(batch_ids[0])
        assert done.status == BatchStatus.COMPLETED
        assert done.request_counts.as_dict() == {"total": 4, "completed": 4, "failed": 0}
    finally:
        await client.aclose()
    [first, second] = api_requests(server, "GET", "/v1/batches/{batch_id}")
    assert (first.organization, first.project, first.auth_accepted) == ("org-async", "proj_a", True)
    assert second.status == 200


async def test_cancel_batch_and_409_on_terminal(server, batch_ids, clock):
    client = AsyncOpenAIBatchClient(make_config(server))
    try:
        cancelling = await client.cancel_batch(batch_ids[0])
        assert cancelling.status == BatchStatus.CANCELLING
        clock.advance(LIFETIME + 20)
        assert (await client.get_batch(batch_ids[1])).status == BatchStatus.COMPLETED
        with pytest.raises(OpenAIAPIError) as caught:
            await client.cancel_batch(batch_ids[1])
    finally:
        await client.aclose()
    assert caught.value.status_code == 409
    cancels = api_requests(server, "POST", "/v1/batches/{batch_id}/cancel")
    assert [r.status for r in cancels] == [200, 409], "409 on cancel is final: no retry"


async def test_list_and_iter_batches(server, batch_ids):
    client = AsyncOpenAIBatchClient(make_config(server))
    try:
        page = await client.list_batches(limit=2)
        assert [b.id for b in page.data] == batch_ids[::-1][:2] and page.has_more
        listed = [b.id async for b in client.iter_batches(page_size=2)]
        limited = [b.id async for b in client.iter_batches(page_size=1, max_items=2)]
    finally:
        await client.aclose()
    assert listed == batch_ids[::-1]
    assert limited == batch_ids[::-1][:2]
    assert len(api_requests(server, "GET", "/v1/batches")) == 1 + 2 + 2


async def test_404_maps_to_api_error(server):
    client = AsyncOpenAIBatchClient(make_config(server))
    try:
        with pytest.raises(OpenAIAPIError) as caught:
            await client.get_batch("batch_missing")
    finally:
        await client.aclose()
    assert caught.value.status_code == 404
    assert caught.value.request_id.startswith("req_")
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [429, 503])
async def test_transient_status_is_retried(server, batch_ids, status):
    before = len(server.requests)
    server.fail_next(2, status, method="GET")
    client = AsyncOpenAIBatchClient(make_config(server))
    try:
        batch = await client.get_batch(batch_ids[2])
    finally:
        await client.aclose()
    assert batch.id == batch_ids[2]
    assert [r.status for r in server.requests[before:]] == [status, status, 200]


async def test_dropped_connection_is_retried(server, batch_ids):
    before = len(server.requests)
    server.drop_next(1, when="before", method="GET")
    client = AsyncOpenAIBatchClient(make_config(server))
    try:
        batch = await client.get_batch(batch_ids[0])
    finally:
        await client.aclose()
    assert batch.id == batch_ids[0]
    assert [r.fault for r in server.requests[before:]] == ["drop_before", None]


async def test_attempts_are_bounded(server):
    server.fail_next(50, 503, method="GET")
    client = AsyncOpenAIBatchClient(make_config(server, retry=RetryPolicy(max_attempts=3, initial_delay=0.01)))
    try:
        with pytest.raises(OpenAIAPIError) as caught:
            await client.get_batch("batch_any")
    finally:
        await client.aclose()
    assert caught.value.status_code == 503
    assert len(server.requests) == 3


async def test_a_first_failure_is_retried_as_attempt_2_and_honours_retry_after(server, batch_ids, caplog):
    """The first try runs outside tenacity; its failure must still count, log and wait as attempt 1."""
    server.fail_next(1, 429, method="GET", retry_after=1)
    client = AsyncOpenAIBatchClient(make_config(server, retry=RetryPolicy(max_attempts=3, initial_delay=5.0)))
    caplog.set_level("WARNING", logger="airflow_provider_openai_batch.api.retry")
    try:
        batch = await client.get_batch(batch_ids[1])
    finally:
        await client.aclose()
    assert batch.id == batch_ids[1]
    assert [r.status for r in api_requests(server, "GET", "/v1/batches/{batch_id}")] == [429, 200]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1, messages
    assert f"GET /batches/{batch_ids[1]} in 1.0s (attempt 2 of 3)" in messages[0], "Retry-After, not the 5 s backoff"


async def test_a_poll_that_succeeds_builds_no_retry_machinery(server, batch_ids, monkeypatch):
    """The triggerer's hot path: tenacity is only built once an attempt has failed."""
    import tenacity

    built: list[object] = []
    real = tenacity.AsyncRetrying

    def counting(*args: object, **kwargs: object) -> object:
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tenacity, "AsyncRetrying", counting)
    client = AsyncOpenAIBatchClient(make_config(server))
    try:
        assert (await client.get_batch(batch_ids[0])).id == batch_ids[0]
        assert built == []
        server.fail_next(1, 503, method="GET")
        assert (await client.get_batch(batch_ids[0])).id == batch_ids[0]
        assert built == [1]
    finally:
        await client.aclose()


async def test_refused_connection_is_a_transport_error_not_sent(server):
    server.go_down()
    client = AsyncOpenAIBatchClient(make_config(server, retry=RetryPolicy(max_attempts=2, initial_delay=0.01)))
    try:
        with pytest.raises(OpenAITransportError) as caught:
            await client.get_batch("batch_any")
    finally:
        await client.aclose()
    assert caught.value.request_sent is False


async def test_refused_connection_is_waited_out(server, batch_ids, pools_closed):
    patient = RetryPolicy(max_attempts=100, initial_delay=0.01, max_delay=0.02)
    client = AsyncOpenAIBatchClient.shared(make_config(server, retry=patient))
    before = len(server.requests)
    server.go_down(0.3)
    batch = await client.get_batch(batch_ids[0])
    assert batch.id == batch_ids[0]
    assert len(server.requests[before:]) == 1, "refused attempts never reached the server"


async def test_caller_supplied_http_client_is_used_and_not_closed(server, batch_ids):
    async with httpx.AsyncClient(base_url=server.url + "/", headers=make_config(server).headers()) as http:
        client = AsyncOpenAIBatchClient(make_config(server), http=http)
        assert (await client.get_batch(batch_ids[0])).id == batch_ids[0]
        await client.aclose()
        assert not http.is_closed


# Shared pools ---------------------------------------------------------------------------------------


async def test_shared_clients_draw_on_one_pool_set_of_single_connection_clients(
    server, batch_ids, monkeypatch, pools_closed
):
    made: list[httpx.AsyncClient] = []
    original_init = httpx.AsyncClient.__init__

    def counting_init(self, *args, **kwargs):
        made.append(self)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "__init__", counting_init)
    assert SHARED_POOLS.count() == 0
    config = make_config(server)
    clients = [AsyncOpenAIBatchClient.shared(config) for _ in range(50)]
    clients += [AsyncOpenAIBatchClient.shared(make_config(server)) for _ in range(50)]  # equal config, new object
    assert SHARED_POOLS.count() == 1
    pool_set = clients[0]._pools
    assert all(c._pools is pool_set for c in clients)
    assert made == [], "connections are opened on demand, not by shared()"

    assert [(await c.get_batch(batch_ids[0])).id for c in clients[:5]] == [batch_ids[0]] * 5
    assert len(made) == 1, "one request at a time reuses one connection"

    server.set_faults(latency=0.2, methods="GET")
    before = len(server.requests)
    results = await asyncio.gather(*(c.get_batch(batch_ids[i % 3]) for i, c in enumerate(clients)))
    assert [b.id for b in results] == [batch_ids[i % 3] for i in range(100)]
    assert len(server.requests) - before == 100
    assert len(made) == SHARED_POOLS.connections == 64, "100 concurrent requests share at most 64 connections"
    assert all(http._transport._pool._max_connections == 1 for http in pool_set.clients)
    await asyncio.gather(*(c.get_batch(batch_ids[0]) for c in clients[:30]))
    assert len(made) == 64, "later requests made no new clients"


async def test_a_cancelled_poll_gives_its_connection_back(server, batch_ids, pools_closed):
    """A trigger killed mid-request (the user marked the task failed) must not take a pooled client with it."""
    client = AsyncOpenAIBatchClient.shared(make_config(server))
    server.set_faults(latency=0.5, methods="GET")
    polls = [asyncio.create_task(client.get_batch(batch_ids[0])) for _ in range(3)]
    await asyncio.sleep(0.1)
    for poll in polls:
        poll.cancel()
    assert [isinstance(r, asyncio.CancelledError) for r in await asyncio.gather(*polls, return_exceptions=True)] == [
        True
    ] * 3
    server.set_faults()
    pool_set = client._pools
    assert pool_set._idle.qsize() == len(pool_set.clients) == 3, "every client is back, idle"
    results = await asyncio.gather(*(client.get_batch(batch_ids[1]) for _ in range(3)))
    assert [b.id for b in results] == [batch_ids[1]] * 3
    assert len(pool_set.clients) == 3, "the returned clients were reused"


async def test_different_accounts_get_different_pool_sets(server, pools_closed):
    a = AsyncOpenAIBatchClient.shared(make_config(server))
    b = AsyncOpenAIBatchClient.shared(make_config(server, api_key="sk-other-account-key"))
    c = AsyncOpenAIBatchClient.shared(make_config(server, project="proj_other"))
    assert len({id(a._pools), id(b._pools), id(c._pools)}) == 3
    assert SHARED_POOLS.count() == 3
    await a.list_batches(limit=1)
    with pytest.raises(OpenAIAPIError) as caught:
        await b.list_batches(limit=1)
    assert caught.value.status_code == 401, "the other account's pool sends the other key"
    assert "sk-other-account-key" not in repr(b) + str(caught.value)


async def test_shared_clients_retry_with_their_own_policy(server, batch_ids, pools_closed):
    server.fail_next(2, 503, method="GET")
    client = AsyncOpenAIBatchClient.shared(make_config(server))
    before = len(server.requests)
    assert (await client.get_batch(batch_ids[0])).id == batch_ids[0]
    assert [r.status for r in server.requests[before:]] == [503, 503, 200]
    await client.aclose()  # a shared client does not close the shared pools
    assert not any(http.is_closed for http in client._pools.clients)


def test_pools_are_not_shared_across_event_loops(server, batch_ids):
    config = make_config(server)

    async def use_pools():
        first = AsyncOpenAIBatchClient.shared(config)
        second = AsyncOpenAIBatchClient.shared(config)
        batch = await first.get_batch(batch_ids[0])
        count = SHARED_POOLS.count()
        await close_loop_pools()
        return first._pools, second._pools, count, batch.id

    run1 = asyncio.run(use_pools())
    run2 = asyncio.run(use_pools())
    assert run1[0] is run1[1] and run2[0] is run2[1], "one pool set per loop"
    assert run1[0] is not run2[0], "a new loop gets its own pool set"
    assert set(map(id, run1[0].clients)).isdisjoint(map(id, run2[0].clients))
    assert run1[2] == run2[2] == 1
    assert run1[3] == run2[3] == batch_ids[0]


def test_shared_needs_a_running_loop(server):
    with pytest.raises(RuntimeError):
        AsyncOpenAIBatchClient.shared(make_config(server))


def test_a_finished_event_loop_is_not_kept_alive_by_its_pools(server, batch_ids):
    # The pools' connections reference their loop, so only an explicit prune lets a finished loop
    # (asyncio.run, dag.test()'s inline triggers) and its 8 clients be collected.
    config = make_config(server)

    async def use_pools():
        await AsyncOpenAIBatchClient.shared(config).get_batch(batch_ids[0])
        return weakref.ref(asyncio.get_running_loop())

    first_loop = asyncio.run(use_pools())
    asyncio.run(use_pools())  # by the next use of the shared pools at the latest, the first loop is let go
    gc.collect()
    assert first_loop() is None
