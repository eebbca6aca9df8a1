"""``POST /openai-batch/webhooks/{conn_id}``: OpenAI's batch webhooks into asset events (floor 3).

No Airflow login on purpose (OpenAI cannot log in): the Standard Webhooks signature, made
with the ``whsec_...`` secret in the connection's extra ``webhook_secret``, is the
authentication. So an unsigned, wrongly signed, stale (more than 5 minutes off) or
oversized (more than 1 MB) request is refused with a 4xx, emits nothing and is logged
without the secret.

The answer is fast: after the checks the work runs in a background task. For
``batch.completed``, ``batch.failed``, ``batch.expired`` and ``batch.cancelled`` the batch
is read again from the API with the connection's key (the payload only says which batch;
it is never trusted for state) and the watcher's asset event is emitted once (see
``webhook_emit.py`` for which assets and how "once" holds across workers and replays).
Other event types are answered 200 and ignored.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse

from airflow_provider_openai_batch.api.client import AsyncOpenAIBatchClient, ClientConfig
from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.api.webhook_signature import WebhookVerificationError, verify
from airflow_provider_openai_batch.compat import ServerConnection
from airflow_provider_openai_batch.hooks.batch import config_from_connection
from airflow_provider_openai_batch.plugins.webhook_emit import emit_batch_event

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
BATCH_EVENT_TYPES = frozenset({"batch.completed", "batch.failed", "batch.expired", "batch.cancelled"})
REREAD_ATTEMPTS = 3
REREAD_DELAY = 2.0
"""A batch read right after its webhook may still show its previous status for a moment."""

router = APIRouter()


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@router.post("/webhooks/{conn_id}")
async def receive_webhook(conn_id: str, request: Request, background: BackgroundTasks) -> JSONResponse:
    """Verify, answer at once, and do the work after the response."""
    client = request.client.host if request.client else "?"
    try:
        body = await _read_body(request)
        secret, config = await _connection(conn_id)
        delivery = verify(secret, request.headers, body)
        event = _parse(body)
    except _Refused as refused:
        log.warning("Refused webhook for connection %s from %s: %s", conn_id, client, refused.reason)
        return JSONResponse({"detail": refused.reason}, status_code=refused.status)
    except WebhookVerificationError as error:
        log.warning("Refused webhook for connection %s from %s: %s", conn_id, client, error.reason)
        return JSONResponse({"detail": f"signature check failed: {error.reason}"}, status_code=401)
    event_type = event.get("type")
    if event_type not in BATCH_EVENT_TYPES:
        log.info("Webhook %s (%s) for %s: not a batch event, ignored", delivery.webhook_id, event_type, conn_id)
        return JSONResponse({"status": "ignored", "type": event_type})
    batch_id = (event.get("data") or {}).get("id")
    if not isinstance(batch_id, str) or not batch_id:
        log.warning("Webhook %s for connection %s names no batch (data.id): ignored", delivery.webhook_id, conn_id)
        return JSONResponse({"detail": "the event names no batch in data.id"}, status_code=400)
    background.add_task(process_batch_webhook, conn_id, config, batch_id, delivery.webhook_id)
    return JSONResponse({"status": "accepted", "batch_id": batch_id})


async def process_batch_webhook(conn_id: str, config: ClientConfig, batch_id: str, webhook_id: str) -> None:
    """Re-read the batch with the connection's key; if it ended, emit its asset event once."""
    try:
        batch = await _reread(config, batch_id)
        if batch is None:
            log.warning("Webhook %s: batch %s has not ended on re-read; left to the watcher", webhook_id, batch_id)
            return
        await asyncio.to_thread(emit_batch_event, conn_id, batch, webhook_id)
    except Exception:
        log.exception("Webhook %s for batch %s of connection %s could not be processed", webhook_id, batch_id, conn_id)


async def _reread(config: ClientConfig, batch_id: str) -> Batch | None:
    client = AsyncOpenAIBatchClient(config)
    try:
        for attempt in range(REREAD_ATTEMPTS):
            batch = await client.get_batch(batch_id)
            if batch.status.is_terminal:
                return batch
            if attempt + 1 < REREAD_ATTEMPTS:
                await asyncio.sleep(REREAD_DELAY)
        return None
    finally:
        await client.aclose()


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _Refused(413, f"body larger than {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY_BYTES:
            raise _Refused(413, f"body larger than {MAX_BODY_BYTES} bytes")
    return bytes(body)


async def _connection(conn_id: str) -> tuple[str, ClientConfig]:
    """The connection's webhook secret and client configuration (looked up off the event loop)."""
    try:
        conn = await asyncio.to_thread(ServerConnection.get_connection_from_secrets, conn_id)
    except Exception:
        raise _Refused(404, f"no connection {conn_id!r}") from None
    secret = (conn.extra_dejson or {}).get("webhook_secret")
    if not secret:
        raise _Refused(404, f"connection {conn_id!r} has no webhook_secret in its extra: webhooks are off for it")
    try:
        config = config_from_connection(conn)
    except ValueError as error:
        raise _Refused(404, str(error)) from None
    return str(secret), config


def _parse(body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except ValueError:
        raise _Refused(400, "the body is not JSON") from None
    if not isinstance(event, dict):
        raise _Refused(400, "the body is not a JSON object")
    return event
