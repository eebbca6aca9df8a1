"""The plugin's per-connection cache of batch states, against the fake server over real loopback HTTP.

Pages are shrunk to 10 batches so that a few dozen batches make the shape that 1,000 make with
the API's 100: batches still in flight sitting behind many final ones in the newest-first list.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook, forget_recent_connections
from airflow_provider_openai_batch.plugins.live import LiveStates
from airflow_provider_openai_batch.testing import FakeOpenAIServer
from airflow_provider_openai_batch.waiting import pages
from tests.helpers import API_KEY, CHAT, LIFETIME, chat_line

CONN_ID = "openai_live_test"
PAGE = 10


@pytest.fixture
def conn(server: FakeOpenAIServer, monkeypatch) -> str:
    conn = {"conn_type": "openai_batch", "host": server.url, "password": API_KEY, "extra": {"max_retries": 0}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    monkeypatch.setattr(pages, "PAGE_SIZE", PAGE)
    forget_recent_connections()
    return CONN_ID


def requests(server: FakeOpenAIServer) -> list[str]:
    return [f"{r.method} {r.route}" for r in server.requests]


def test_a_refresh_reads_in_flight_batches_behind_final_ones_with_list_pages_only(server, conn, clock, tmp_path):
    hook = OpenAIBatchHook(conn)
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(chat_line("q-0")) + "\n")
    file_id = hook.upload_file(path).id
    server.configure(in_progress_seconds=10**6)
    running = [hook.create_batch(file_id, CHAT).id for _ in range(2)]  # the oldest: the last page
    server.configure(in_progress_seconds=100)
    ended = [hook.create_batch(file_id, CHAT).id for _ in range(48)]
    clock.advance(LIFETIME + 1)
    assert {b["status"] for b in server.batches() if b["id"] in ended} == {"completed"}
    live = LiveStates()
    everything = running + ended

    async def listing() -> dict:
        return await live.states(conn, everything)

    first = asyncio.run(listing())
    assert {first[i].batch.status.value for i in running} == {"in_progress"}
    live.expire()
    before = len(server.requests)
    again = asyncio.run(listing())
    refresh = requests(server)[before:]
    # The 2 batches in flight are on the 5th page: walked to, not fetched one by one after 4 pages.
    assert refresh == ["GET /v1/batches"] * (len(everything) // PAGE), refresh
    assert all(not again[i].stale and again[i].batch.status.value == "in_progress" for i in running)
    assert all(again[i].batch.status.value == "completed" for i in ended)
