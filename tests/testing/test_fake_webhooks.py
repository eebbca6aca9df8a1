"""The fake server's signed webhooks, received by a real HTTP server on 127.0.0.1 that checks them."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fake_helpers import START, Api, ManualClock, chat_line, fake_cli, jsonl

from airflow_provider_openai_batch.api.webhook_signature import WebhookVerificationError, verify
from airflow_provider_openai_batch.testing import FakeOpenAIServer
from airflow_provider_openai_batch.testing.webhooks import TEST_WEBHOOK_SECRET

LIFETIME = 10 + 100 + 10 + 1


class Receiver:
    """Records each POST: headers, body, and whether the test secret's signature checks out."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verify(TEST_WEBHOOK_SECRET, headers, body)
                    valid = True
                except WebhookVerificationError:
                    valid = False
                outer.received.append({"headers": headers, "event": json.loads(body), "valid": valid})
                self.send_response(200 if valid else 401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"got {len(self.received)} webhooks, expected {count}"
            time.sleep(0.02)
        return self.received


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.httpd.shutdown()


@pytest.fixture
def webhook_server(receiver: Receiver) -> Iterator[tuple[FakeOpenAIServer, ManualClock, Api]]:
    clock = ManualClock(START)
    with (
        FakeOpenAIServer(
            validating_seconds=10,
            in_progress_seconds=100,
            finalizing_seconds=10,
            cancelling_seconds=10,
            clock=clock,
            webhook_url=receiver.url,
        ) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": "Bearer sk-any"}) as client,
    ):
        yield server, clock, Api(client)


def created(api: Api, count: int = 1) -> list[str]:
    return [api.create(jsonl([chat_line("q-0")]))["id"] for _ in range(count)]


def test_one_signed_event_per_terminal_transition(webhook_server, receiver: Receiver):
    server, clock, api = webhook_server
    done, cancelled = created(api, 2)
    api.client.post(f"/batches/{cancelled}/cancel")
    clock.advance(LIFETIME)
    got = receiver.wait_for(2)
    time.sleep(0.3)  # several more looks: nothing is sent twice
    assert len(receiver.received) == 2
    by_batch = {r["event"]["data"]["id"]: r for r in got}
    assert by_batch[done]["event"]["type"] == "batch.completed"
    assert by_batch[cancelled]["event"]["type"] == "batch.cancelled"
    assert all(r["valid"] for r in got)
    assert all(r["event"]["object"] == "event" and r["event"]["id"] == r["headers"]["webhook-id"] for r in got)
    assert {d.status_code for d in server.webhook_deliveries()} == {200}


def test_duplicates_repeat_the_same_message(webhook_server, receiver: Receiver):
    server, clock, api = webhook_server
    server.configure_webhooks(duplicates=2)
    created(api)
    clock.advance(LIFETIME)
    got = receiver.wait_for(3)
    assert len({r["headers"]["webhook-id"] for r in got}) == 1 and all(r["valid"] for r in got)


def test_bad_signature_is_refused_by_a_checking_receiver(webhook_server, receiver: Receiver):
    server, clock, api = webhook_server
    server.configure_webhooks(bad_signature=True)
    created(api)
    clock.advance(LIFETIME)
    [got] = receiver.wait_for(1)
    assert not got["valid"]
    assert [d.status_code for d in server.webhook_deliveries()] == [401]


def test_delayed_delivery_waits(webhook_server, receiver: Receiver):
    server, clock, api = webhook_server
    server.configure_webhooks(delay=2.0)
    created(api)
    clock.advance(LIFETIME)
    wait_until(lambda: _ended(api))
    assert receiver.received == [], "the batch ended but its webhook is held back"
    assert receiver.wait_for(1)[0]["valid"]


def _ended(api: Api) -> bool:
    return all(b["status"] == "completed" for b in api.client.get("/batches").json()["data"])


def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_no_url_no_webhooks(receiver: Receiver):
    clock = ManualClock(START)
    with (
        FakeOpenAIServer(clock=clock) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": "Bearer sk-any"}) as client,
    ):
        created(Api(client))
        clock.advance(LIFETIME)
        time.sleep(0.3)
        assert server.webhook_deliveries() == [] and receiver.received == []


def test_cli_flags_turn_webhooks_on(receiver: Receiver):
    timings = ["--validating-seconds", "0", "--in-progress-seconds", "0", "--finalizing-seconds", "0"]
    with fake_cli(*timings, "--webhook-url", receiver.url, "--webhook-duplicates", "1") as (process, url):
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer sk-any"}) as client:
            batch_id = created(Api(client))[0]
        got = receiver.wait_for(2)
        assert {r["event"]["data"]["id"] for r in got} == {batch_id} and all(r["valid"] for r in got)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0
