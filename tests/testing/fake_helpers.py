"""Helpers shared by the fake server's tests: a manual clock, JSONL builders, a thin API client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

import httpx

START = 1_750_000_000.0
CHAT = "/v1/chat/completions"


class ManualClock:
    """Epoch seconds that only move when the test says so."""

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
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def jsonl(lines: Iterable[dict[str, Any] | str]) -> bytes:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()


def read_jsonl(content: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in content.splitlines() if line.strip()]


class Api:
    """A thin httpx helper for the fake's ``/v1`` API."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def upload(self, content: bytes, filename: str = "input.jsonl", purpose: str = "batch") -> dict[str, Any]:
        response = self.client.post("/files", files={"file": (filename, content)}, data={"purpose": purpose})
        assert response.status_code == 200, response.text
        return response.json()

    def create(self, content: bytes, endpoint: str = CHAT, **params: Any) -> dict[str, Any]:
        file_id = self.upload(content)["id"]
        body = {"input_file_id": file_id, "endpoint": endpoint, "completion_window": "24h", **params}
        response = self.client.post("/batches", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def batch(self, batch_id: str) -> dict[str, Any]:
        response = self.client.get(f"/batches/{batch_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def content(self, file_id: str) -> list[dict[str, Any]]:
        response = self.client.get(f"/files/{file_id}/content")
        assert response.status_code == 200, response.text
        return read_jsonl(response.content)
