"""Helpers shared across the test suites: constants, a manual clock and request builders.

Fixtures built on these live in ``tests/unit/conftest.py``; the fake server's own tests add theirs
in ``tests/testing/fake_helpers.py``.
"""

from __future__ import annotations

import threading
from typing import Any

from airflow_provider_openai_batch.api.client import ClientConfig
from airflow_provider_openai_batch.api.retry import RetryPolicy
from airflow_provider_openai_batch.testing import FakeOpenAIServer

API_KEY = "sk-test-unit-0123456789abcdef"
WRONG_KEY = "sk-wrong-key-fedcba9876543210"
CHAT = "/v1/chat/completions"
START = 1_750_000_000.0
FAST = RetryPolicy(initial_delay=0.01, max_delay=0.05)
LIFETIME = 10 + 100 + 10  # validating + in_progress + finalizing seconds of the fake in tests/unit/conftest.py


class ManualClock:
    """Epoch seconds that move only when a test says so: the batch lifecycle never races the test."""

    def __init__(self, now: float = START) -> None:
        self._lock = threading.Lock()
        self._now = now

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def set(self, now: float) -> None:
        with self._lock:
            self._now = now


def chat_line(custom_id: str, text: str = "hello", model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    """One Batch API input line for the chat endpoint; ``extra`` goes into the request body."""
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def make_config(server: FakeOpenAIServer, **changes: Any) -> ClientConfig:
    """A client configuration for ``server`` with the shared key and the fast retry policy."""
    return ClientConfig(**{"api_key": API_KEY, "base_url": server.url, "retry": FAST, **changes})
