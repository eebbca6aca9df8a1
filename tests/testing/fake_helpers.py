"""Helpers shared by the fake server's tests: JSONL builders and a thin API client.

The manual clock, ``chat_line`` and the constants come from ``tests.helpers`` and are re-exported here.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from tests.helpers import CHAT, START, ManualClock, chat_line

__all__ = ["CHAT", "DROPPED", "START", "Api", "ManualClock", "chat_line", "fake_cli", "jsonl", "read_jsonl"]


@contextlib.contextmanager
def fake_cli(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m airflow_provider_openai_batch.testing --port 0 ARGS``: the process and the URL it prints
    first. The test stops it (and reads its exit); one still running at the end is killed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_openai_batch.testing", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process, process.stdout.readline().strip()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


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


DROPPED = (httpx.RemoteProtocolError, httpx.ReadError)
"""What a client sees when the fake drops a connection: a cut-off response, or a reset if the
close wins the race against the headers (both are transport errors to every client)."""
