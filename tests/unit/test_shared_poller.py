"""The shared poller with a fleet of callers, against the bundled fake server over loopback HTTP.

Each test counts what reached the server from its request log. Callers stand in for triggers:
each asks for its batch, as a trigger does when its poll is due. No wall-clock assertions.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections.abc import AsyncIterator

import pytest

from airflow_provider_openai_batch.api.exceptions import OpenAIAPIError
from airflow_provider_openai_batch.api.retry import RetryPolicy
from airflow_provider_openai_batch.waiting.poller import SHARED_POLLERS, SharedPoller, shared_poller
from tests.helpers import WRONG_KEY, make_config
from tests.unit.many_batches import close_loop_pools, create_batches, get_requests, list_requests

FLEET = 1000
INTERVAL = 0.4
"""The callers' poll interval: short, the figures are counts, not times."""


@pytest.fixture
def fleet(server, tmp_path) -> list[str]:
    return create_batches(server, tmp_path, FLEET + 20)[20:]  # a few older batches that nobody waits for


@pytest.fixture
def some(server, tmp_path) -> list[str]:
    return create_batches(server, tmp_path, 300)


@pytest.fixture
async def pools_closed() -> AsyncIterator[None]:
    yield
    SHARED_POLLERS._by_loop.pop(asyncio.get_running_loop(), None)
    await close_loop_pools()


def poller_for(server, **config) -> SharedPoller:
    return shared_poller(make_config(server, **config))


async def test_one_poller_per_connection_and_loop(server, pools_closed):
    assert poller_for(server) is poller_for(server)
    assert poller_for(server, organization="org-other") is not poller_for(server)


async def test_a_fleet_costs_a_page_per_100_batches_per_interval(server, fleet, pools_closed):
    poller = poller_for(server)
    order = list(fleet)
    random.Random(7).shuffle(order)
    per_interval = []
    for _ in range(3):
        before = len(server.requests)
        got = await asyncio.gather(*(poller.get(batch_id, max_age=INTERVAL / 4) for batch_id in order))
        per_interval.append(len(server.requests) - before)
        assert [batch.id for batch in got] == order
    assert max(per_interval) <= math.ceil(FLEET / 100) + 5, per_interval
    assert not get_requests(server), "every batch was on a page"
    assert poller.watching == FLEET


async def test_callers_spread_over_an_interval_share_pages(server, fleet, pools_closed):
    """As triggers do: each caller polls at its own offset in the interval, neighbours close together.

    The first interval also maps where the batches are (a walk of the pages, once).
    """
    poller = poller_for(server)
    interval = 1.0
    marks: list[int] = []

    async def trigger(index: int, batch_id: str) -> None:
        await asyncio.sleep(interval * index / FLEET)
        for _ in range(3):
            assert (await poller.get(batch_id, max_age=interval / 4)).id == batch_id
            await asyncio.sleep(interval)

    async def count_each_interval() -> None:
        for _ in range(4):
            marks.append(len(server.requests))
            await asyncio.sleep(interval)

    await asyncio.gather(count_each_interval(), *(trigger(i, b) for i, b in enumerate(fleet)))
    first, *steady = [b - a for a, b in itertools.pairwise(marks)]
    target = math.ceil(FLEET / 100) + 5
    assert first <= target + math.ceil(FLEET / 100), (first, steady)
    assert 0 < max(steady) <= target, (first, steady)


async def test_a_recent_state_is_served_without_a_request(server, some, pools_closed):
    poller = poller_for(server)
    await asyncio.gather(poller.get(some[-1]), poller.get(some[-2]))
    before = len(server.requests)
    again = await poller.get(some[-2], max_age=60)
    assert again.id == some[-2]
    assert len(server.requests) == before
    fresh = await poller.get(some[-1])  # max_age 0: a new read
    assert fresh.id == some[-1] and len(server.requests) == before + 1


async def test_a_429_storm_backs_the_group_off_once(server, some, pools_closed):
    poller = poller_for(server)
    server.fail_next(2, 429, method="GET", path_prefix="/v1/batches", retry_after=1)
    before = len(server.requests)
    got = await asyncio.gather(*(poller.get(batch_id) for batch_id in some))
    assert [batch.id for batch in got] == some
    statuses = [r.status for r in server.requests[before:]]
    assert statuses.count(429) == 2, "one request per group attempt, not one per caller"
    assert len(statuses) <= 2 + math.ceil(300 / 100) + 5


async def test_a_429_storm_that_outlasts_the_retries_fails_each_caller_once(server, some, pools_closed):
    poller = poller_for(server, retry=RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02))
    server.set_faults(rate_429=1.0, retry_after=None, methods=["GET"], path_prefix="/v1/batches")
    before = len(server.requests)
    results = await asyncio.gather(*(poller.get(b) for b in some[:200]), return_exceptions=True)
    assert all(isinstance(r, OpenAIAPIError) and r.status_code == 429 for r in results)
    assert len(server.requests) - before == 3, "three attempts for the group"


async def test_a_refused_key_ends_every_wait_with_the_error(server, some, pools_closed):
    poller = poller_for(server, api_key=WRONG_KEY)
    before = len(server.requests)
    results = await asyncio.gather(*(poller.get(b) for b in some[:100]), return_exceptions=True)
    assert all(isinstance(r, OpenAIAPIError) and r.status_code == 401 for r in results)
    assert "401" in str(results[0]) and WRONG_KEY not in str(results[0])
    assert len(server.requests) - before == 1


async def test_a_cancelled_caller_leaves_without_disturbing_the_others(server, some, pools_closed):
    poller = poller_for(server)
    server.set_faults(latency=0.2, methods=["GET"], path_prefix="/v1/batches")
    tasks = [asyncio.create_task(poller.get(b)) for b in some[:100]]
    early, late = tasks[0], tasks[1]
    early.cancel()  # before the round starts
    await asyncio.sleep(poller.window + 0.1)  # the round's first page is in flight
    late.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError) and isinstance(results[1], asyncio.CancelledError)
    assert [r.id for r in results[2:]] == some[2:100]
    assert some[0] not in poller._watch_until and some[1] not in poller._watch_until
    assert not poller._waiting


async def test_a_batch_beyond_the_page_budget_is_fetched_by_id(server, some, pools_closed):
    poller = poller_for(server)
    poller.page_budget = 1
    before = len(server.requests)
    newest, oldest = await asyncio.gather(poller.get(some[-1]), poller.get(some[0]))
    assert (newest.id, oldest.id) == (some[-1], some[0])
    assert len(list_requests(server, before)) == 1
    assert [r.path for r in get_requests(server, before)] == [f"/v1/batches/{some[0]}"]


async def test_an_unknown_batch_fails_only_its_caller(server, some, pools_closed):
    poller = poller_for(server)
    results = await asyncio.gather(poller.get(some[-1]), poller.get("batch_gone"), return_exceptions=True)
    assert results[0].id == some[-1]
    assert isinstance(results[1], OpenAIAPIError) and results[1].status_code == 404
