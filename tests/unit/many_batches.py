"""Make many batches on the fake server quickly (one upload, then creates over one connection)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from airflow_provider_openai_batch.api.client import SHARED_POOLS, OpenAIBatchClient
from airflow_provider_openai_batch.testing import FakeOpenAIServer
from tests.helpers import CHAT, chat_line, make_config


def create_batches(server: FakeOpenAIServer, folder: Path, count: int) -> list[str]:
    """``count`` new batches, oldest first (the list endpoint shows them newest first)."""
    path = folder / "one-line.jsonl"
    path.write_text(json.dumps(chat_line("r0", "hi")) + "\n")
    with OpenAIBatchClient(make_config(server), transport=httpx.HTTPTransport()) as client:
        file_id = client.upload_file(path).id
        return [client.create_batch(file_id, CHAT).id for _ in range(count)]


def list_requests(server: FakeOpenAIServer, since: int = 0) -> list:
    return [r for r in server.requests[since:] if r.method == "GET" and r.route == "/v1/batches"]


def get_requests(server: FakeOpenAIServer, since: int = 0) -> list:
    return [r for r in server.requests[since:] if r.method == "GET" and r.route == "/v1/batches/{batch_id}"]


async def close_loop_pools() -> None:
    """Close the shared pools of the running loop so no socket outlives its loop (test hygiene)."""
    pools = SHARED_POOLS._by_loop.pop(asyncio.get_running_loop(), {})
    for pool_set in pools.values():
        for http in pool_set.clients:
            await http.aclose()
