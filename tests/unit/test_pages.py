"""read_batches: many batches in few requests, against the bundled fake server over loopback HTTP.

What the request log must show: list pages newest first with the ``after`` cursor until every
wanted id was seen (or the page budget ran out), then single GETs for the rest; an error that
stops the reading (401, 429 after the client's retries) is every unread id's answer.
"""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator

import pytest

from airflow_provider_openai_batch.api.client import AsyncOpenAIBatchClient
from airflow_provider_openai_batch.api.exceptions import OpenAIAPIError
from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.api.raw_pages import parse_raw_page
from airflow_provider_openai_batch.api.retry import RetryPolicy
from airflow_provider_openai_batch.waiting.pages import PageMap, Reading, parse_batch
from airflow_provider_openai_batch.waiting.poller import read_batches
from tests.helpers import WRONG_KEY, make_config
from tests.unit.many_batches import create_batches, get_requests, list_requests


@pytest.fixture
def batch_ids(server, tmp_path) -> list[str]:
    return create_batches(server, tmp_path, 250)


@pytest.fixture
async def client(server) -> AsyncIterator[AsyncOpenAIBatchClient]:
    client = AsyncOpenAIBatchClient(make_config(server))
    yield client
    await client.aclose()


async def test_reads_recent_batches_from_pages(server, batch_ids, client):
    wanted = batch_ids[-180:]  # the newest 180: pages 1 and 2
    before = len(server.requests)
    answers = await read_batches(client, wanted)
    assert sorted(answers) == sorted(wanted)
    assert all(isinstance(a, Batch) and a.id == i for i, a in answers.items())
    pages = list_requests(server, before)
    assert [p.path for p in pages] == ["/v1/batches", "/v1/batches"]
    assert len(server.requests) - before == 2, "no single GET when pages found everything"


async def test_pages_follow_the_after_cursor(server, batch_ids, client):
    reading = await Reading(client, [batch_ids[0], batch_ids[-1]], page_budget=5).run()
    assert set(reading.found) == {batch_ids[0], batch_ids[-1]}
    assert reading.page_requests == 3 and reading.get_requests == 0
    # The third page is the one after the 200th newest batch: its cursor is remembered for next time.
    assert reading.map.position[batch_ids[0]] == batch_ids[-200]
    assert reading.map.position[batch_ids[-1]] == ""


async def test_beyond_the_page_budget_is_fetched_by_id(server, batch_ids, client):
    before = len(server.requests)
    answers = await read_batches(client, [batch_ids[-1], batch_ids[0]], page_budget=1)
    assert {i: a.id for i, a in answers.items()} == {batch_ids[-1]: batch_ids[-1], batch_ids[0]: batch_ids[0]}
    assert len(list_requests(server, before)) == 1
    assert [r.path for r in get_requests(server, before)] == [f"/v1/batches/{batch_ids[0]}"]


async def test_known_pages_are_read_directly(server, batch_ids, client):
    pages = PageMap()
    await Reading(client, [batch_ids[0]], pages=pages, page_budget=5).run()
    before = len(server.requests)
    again = await Reading(client, [batch_ids[0], batch_ids[1]], pages=pages).run()
    assert set(again.found) == {batch_ids[0], batch_ids[1]}
    assert len(list_requests(server, before)) == 1
    assert len(server.requests) - before == 1, "one page, straight from its cursor (a walk would take 3)"


async def test_unknown_id_gets_its_404_and_the_others_their_batch(server, batch_ids, client):
    answers = await read_batches(client, [batch_ids[-1], "batch_nope"], page_budget=2)
    assert isinstance(answers[batch_ids[-1]], Batch)
    error = answers["batch_nope"]
    assert isinstance(error, OpenAIAPIError) and error.status_code == 404


async def test_a_refused_key_is_every_ids_answer_after_one_request(server, batch_ids):
    client = AsyncOpenAIBatchClient(make_config(server, api_key=WRONG_KEY))
    before = len(server.requests)
    try:
        answers = await read_batches(client, batch_ids[:5])
    finally:
        await client.aclose()
    assert {a.status_code for a in answers.values()} == {401}  # type: ignore[union-attr]
    assert len(server.requests) - before == 1


async def test_a_rate_limit_stops_the_reading(server, batch_ids):
    once = AsyncOpenAIBatchClient(make_config(server, retry=RetryPolicy(max_attempts=1)))
    server.set_faults(rate_429=1.0, retry_after=None, methods=["GET"], path_prefix="/v1/batches")
    before = len(server.requests)
    try:
        answers = await read_batches(once, batch_ids, page_budget=0)  # straight to single GETs
    finally:
        await once.aclose()
    assert {a.status_code for a in answers.values()} == {429}  # type: ignore[union-attr]
    assert len(server.requests) - before <= 8, "at most one GET per concurrent slot, not one per batch"


async def test_a_list_endpoint_that_differs_falls_back_to_single_gets(server, batch_ids, client):
    server.fail_next(1, 404, method="GET", path_prefix="/v1/batches")
    before = len(server.requests)
    answers = await read_batches(client, batch_ids[-3:])
    assert all(isinstance(a, Batch) for a in answers.values())
    assert [r.status for r in list_requests(server, before)] == [404]
    assert len(get_requests(server, before)) == 3


async def test_a_list_that_ignores_the_cursor_cannot_loop_the_reading():
    """A service (no server here can) whose list always answers the same page and says there is more."""
    import json

    import httpx

    from airflow_provider_openai_batch.api.client import ClientConfig

    def batch(batch_id: str) -> dict:
        return {"id": batch_id, "object": "batch", "status": "in_progress"}

    page = {"object": "list", "data": [batch(f"batch_{i}") for i in range(3)], "has_more": True}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/batches":
            return httpx.Response(200, json=page)
        return httpx.Response(200, content=json.dumps(batch(request.url.path.rsplit("/", 1)[-1])))

    config = ClientConfig(api_key="sk-x", base_url="http://service.test/v1", retry=RetryPolicy(max_attempts=1))
    http = httpx.AsyncClient(base_url=config.base_url + "/", transport=httpx.MockTransport(answer))
    client = AsyncOpenAIBatchClient(config, http=http)
    pages = PageMap()
    try:
        for _ in range(3):
            reading = await Reading(client, ["batch_1", "batch_elsewhere"], pages=pages, page_budget=50).run()
            assert {i: b.id for i, b in reading.answers().items()} == {
                "batch_1": "batch_1",
                "batch_elsewhere": "batch_elsewhere",
            }
            assert reading.page_requests <= 3 and reading.get_requests == 1
    finally:
        await http.aclose()


async def test_a_reading_keeps_batches_as_untracked_json_and_parses_only_its_answers(client, batch_ids) -> None:
    """Kept states are ``bytes`` (no objects for the cyclic collector); answers are real models."""
    newest, neighbour = batch_ids[-1], batch_ids[-2]
    noticed: dict[str, bytes] = {}
    reading = await Reading(client, [newest], page_budget=2, watched=set(batch_ids), notice=noticed.__setitem__).run()
    assert set(noticed) >= {newest, neighbour}  # a neighbour on the same page is noticed too
    assert all(type(raw) is bytes and not gc.is_tracked(raw) for raw in noticed.values())
    assert json.loads(noticed[neighbour])["id"] == neighbour
    answer = reading.answers()[newest]
    assert isinstance(answer, Batch) and answer.id == newest


def test_a_batch_that_does_not_parse_is_the_answer_for_its_id_only() -> None:
    error = parse_batch(b'{"id": "batch_1"}')  # no status
    assert isinstance(error, ValueError) and "status" in str(error)
    assert parse_batch(b'{"id": "batch_1", "status": "completed"}').status.value == "completed"


def test_a_list_body_of_another_shape_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_raw_page(b'{"batches": []}')
    with pytest.raises(ValueError):
        parse_raw_page(b'{"data": [{"status": "completed"}]}')  # an item without an id
    page = parse_raw_page(b'{"object": "list", "data": [{"id": "b2"}, {"id": "b1"}], "has_more": true}')
    assert [batch_id for batch_id, _ in page.items] == ["b2", "b1"] and page.has_more
