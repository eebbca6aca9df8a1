"""Fixtures shared by the unit tests that talk to the bundled fake server over real loopback HTTP.

Each test module gets its own server and manual clock (module scope); before each test the server
is reset and the clock rewound, and after it any outage or injected fault is undone.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_openai_batch.testing import FakeOpenAIServer
from tests.helpers import API_KEY, START, ManualClock


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def fake(clock: ManualClock) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(
        api_key=API_KEY,
        validating_seconds=10,
        in_progress_seconds=100,
        finalizing_seconds=10,
        cancelling_seconds=10,
        clock=clock,
    ) as server:
        yield server


@pytest.fixture
def server(fake: FakeOpenAIServer, clock: ManualClock) -> Iterator[FakeOpenAIServer]:
    fake.reset()
    clock.set(START)
    yield fake
    if not fake.is_up:
        fake.come_back()
    fake.clear_faults()
