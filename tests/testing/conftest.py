"""Fixtures for the fake server's own tests.

Most tests share one server driven by a manual clock: the lifecycle then moves only when a
test advances time, so nothing sleeps and nothing depends on how fast the machine is. The
server is reset (state, faults, counters, ids) and the clock rewound before each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from fake_helpers import START, Api, ManualClock, chat_line, jsonl

from airflow_provider_openai_batch.testing import FakeOpenAIServer


@pytest.fixture(scope="session")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session")
def shared_server(clock: ManualClock) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(
        validating_seconds=10, in_progress_seconds=100, finalizing_seconds=10, cancelling_seconds=10, clock=clock
    ) as server:
        yield server


@pytest.fixture
def server(shared_server: FakeOpenAIServer, clock: ManualClock) -> FakeOpenAIServer:
    shared_server.reset()
    clock.set(START)
    return shared_server


@pytest.fixture(scope="session")
def shared_client(shared_server: FakeOpenAIServer) -> Iterator[httpx.Client]:
    # One client for the session: creating an httpx client loads the CA bundle (tens of ms).
    with httpx.Client(base_url=shared_server.url, headers={"Authorization": "Bearer sk-test"}, timeout=30) as http:
        yield http


@pytest.fixture
def client(server: FakeOpenAIServer, shared_client: httpx.Client) -> httpx.Client:
    return shared_client


@pytest.fixture
def api(client: httpx.Client) -> Api:
    return Api(client)


@pytest.fixture
def input_path(tmp_path: Path) -> Path:
    path = tmp_path / "input.jsonl"
    path.write_bytes(jsonl(chat_line(f"req-{i}", f"question {i}") for i in range(10)))
    return path


@pytest.fixture
def sdk(server: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    """The official SDK, a client nobody here wrote, on the shared server (no retries: faults show)."""
    with openai.OpenAI(api_key="sk-test", base_url=server.url, max_retries=0) as client:
        yield client
