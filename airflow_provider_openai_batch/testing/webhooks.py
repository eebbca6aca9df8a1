"""Signed webhooks from the fake server: ``batch.completed`` and friends, as OpenAI sends them.

When a ``webhook_url`` is configured, a background thread looks at the batches every
``tick`` seconds (looking is what moves the fake's lifecycle on) and, for each batch that
reached a terminal state, POSTs ``{"id": "evt_...", "object": "event", "type":
"batch.<status>", "created_at": ..., "data": {"id": "batch_..."}}`` signed the Standard
Webhooks way with the test secret. Controls for the cases a receiver must survive:
``delay`` (seconds before each delivery), ``duplicates`` (extra deliveries of the same
message, same ``webhook-id``) and ``bad_signature`` (signed with another secret).

The signature timestamp is the wall clock, not the fake's (possibly manual) clock: the
receiver compares it with its own wall clock.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from airflow_provider_openai_batch.api.webhook_signature import sign

TEST_WEBHOOK_SECRET = "whsec_ZmFrZS1vcGVuYWktd2ViaG9vay10ZXN0LXNlY3JldA=="
"""The fake's default signing secret (base64 of ``fake-openai-webhook-test-secret``); put it in
the connection's extra ``webhook_secret``."""
WRONG_WEBHOOK_SECRET = "whsec_bm90LXRoZS1yaWdodC1zZWNyZXQtYXQtYWxs"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True)
class WebhookSettings:
    url: str | None = None
    secret: str = TEST_WEBHOOK_SECRET
    delay: float = 0.0
    duplicates: int = 0
    bad_signature: bool = False
    tick: float = 0.1


@dataclass(frozen=True)
class Delivery:
    webhook_id: str
    event_type: str
    batch_id: str
    status_code: int | None
    """The receiver's answer (None: it could not be reached)."""
    sent_at: float = field(default=0.0)


class WebhookSender:
    """Watches the batches and delivers one signed event per terminal transition."""

    def __init__(self, list_batches: Callable[[], list[dict[str, Any]]], settings: WebhookSettings) -> None:
        self._list_batches = list_batches
        self._settings = settings
        self._seen: set[str] = set()
        self._deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(timeout=10.0)

    @property
    def settings(self) -> WebhookSettings:
        return self._settings

    def configure(self, **changes: Any) -> None:
        """Change the settings from now on (e.g. ``bad_signature=True`` for the next deliveries)."""
        self._settings = replace(self._settings, **changes)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fake-openai-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._http.close()

    def forget(self) -> None:
        """Forget what was delivered (the server was reset)."""
        with self._lock:
            self._seen.clear()
            self._deliveries.clear()

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def _run(self) -> None:
        while not self._stop.wait(self._settings.tick):
            if not self._settings.url:
                continue
            try:
                batches = self._list_batches()
            except Exception:  # the server is going down or was reset mid-look: try again next tick
                continue
            for batch in reversed(batches):  # oldest first
                if batch.get("status") in TERMINAL and batch["id"] not in self._seen:
                    self._seen.add(batch["id"])
                    self._schedule(batch["id"], f"batch.{batch['status']}")

    def _schedule(self, batch_id: str, event_type: str) -> None:
        settings = self._settings
        webhook_id = f"evt_{uuid.uuid4().hex[:24]}"
        if settings.delay > 0:
            timer = threading.Timer(settings.delay, self._deliver, (settings, webhook_id, batch_id, event_type))
            timer.daemon = True
            timer.start()
        else:
            self._deliver(settings, webhook_id, batch_id, event_type)

    def _deliver(self, settings: WebhookSettings, webhook_id: str, batch_id: str, event_type: str) -> None:
        body = json.dumps(
            {
                "id": webhook_id,
                "object": "event",
                "type": event_type,
                "created_at": int(time.time()),
                "data": {"id": batch_id},
            },
        ).encode()
        for _ in range(1 + max(0, settings.duplicates)):
            status = post_signed(
                self._http,
                settings.url or "",
                body,
                webhook_id,
                WRONG_WEBHOOK_SECRET if settings.bad_signature else settings.secret,
            )
            with self._lock:
                self._deliveries.append(Delivery(webhook_id, event_type, batch_id, status, time.time()))


def post_signed(
    http: httpx.Client, url: str, body: bytes, webhook_id: str, secret: str, *, timestamp: int | None = None
) -> int | None:
    """POST one Standard Webhooks delivery; the receiver's status code, or None if unreachable."""
    stamp = int(time.time()) if timestamp is None else timestamp
    headers = {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, webhook_id, stamp, body),
    }
    try:
        return http.post(url, content=body, headers=headers).status_code
    except httpx.HTTPError:
        return None
