"""The ASGI layer in front of the API routes: headers, auth, faults and the request log.

Written as plain ASGI rather than Starlette middleware because two faults need control over
the raw response: a dropped connection must send headers and then abort, so the client sees a
protocol error rather than any HTTP status, and a drop *after* the work must let the route run
to completion while none of its response leaves the server. Control routes (``/_fake/...``)
get the response headers but skip auth, faults and the log.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import uuid
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_provider_openai_batch.testing.errors import ApiError, status_fault
from airflow_provider_openai_batch.testing.faults import Decision, FaultInjector
from airflow_provider_openai_batch.testing.observe import Recorder, RequestRecord

CONTROL_PREFIX = "/_fake"
OPENAI_VERSION = b"2020-10-01"


class DroppedConnection(Exception):
    """Raised after a response has started so that uvicorn closes the connection mid-response."""


class _HideDroppedConnections(logging.Filter):
    """Injected drops are intended: keep them out of uvicorn's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


def install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDroppedConnections) for f in logger.filters):
        logger.addFilter(_HideDroppedConnections())


def credentials_accepted(authorization: str | None, api_key: str | None) -> bool:
    """A non-empty Bearer token; equal to ``api_key`` when one is configured."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return False
    return api_key is None or hmac.compare_digest(token.encode(), api_key.encode())


def unauthorized(authorization: str | None) -> ApiError:
    # The key itself is never echoed (the real service shows a masked prefix; we show nothing).
    if not authorization:
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    else:
        message = (
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
        )
    return ApiError(401, message, code="invalid_api_key")


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """``/v1/batches/{batch_id}`` for ``/v1/batches/batch_123``, so stats group by endpoint."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return getattr(route, "path_format", scope["path"])
        if match is Match.PARTIAL and partial is None:
            partial = getattr(route, "path_format", None)
    return partial or scope["path"]


class FrontDoor:
    def __init__(
        self,
        app: ASGIApp,
        routes: Sequence[BaseRoute],
        *,
        api_key: str | None,
        faults: FaultInjector,
        recorder: Recorder,
    ) -> None:
        self._app = app
        self._routes = routes
        self._api_key = api_key
        self._faults = faults
        self._recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        send = _with_openai_headers(send, headers.get("openai-organization"))
        path: str = scope["path"]
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            await self._app(scope, receive, send)
            return
        await self._serve_api(scope, receive, send, headers)

    async def _serve_api(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        method: str = scope["method"]
        authorization = headers.get("authorization")
        accepted = credentials_accepted(authorization, self._api_key)
        decision = self._faults.decide(method, scope["path"])
        recorded = False

        def record(status: int | None) -> None:
            # Recorded before the first response byte leaves, so a client that has its answer
            # (and a test that then inspects or resets the server) always finds the entry.
            nonlocal recorded
            if recorded:
                return
            recorded = True
            self._recorder.record(
                RequestRecord(
                    method=method,
                    path=scope["path"],
                    route=route_template(self._routes, scope),
                    status=status,
                    organization=headers.get("openai-organization"),
                    project=headers.get("openai-project"),
                    auth_accepted=accepted,
                    fault=decision.kind,
                )
            )

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record(message["status"])
            await send(message)

        async def drop() -> None:
            record(None)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]})
            raise DroppedConnection

        try:
            if decision.latency > 0:
                await asyncio.sleep(decision.latency)
            if decision.kind == "drop_before":
                await drop()
            elif decision.status is not None:
                await _respond(_fault_error(decision), scope, receive, recording_send)
            elif not accepted:
                await _respond(unauthorized(authorization), scope, receive, recording_send)
            elif decision.kind == "drop_after":
                await self._app(scope, receive, _discard)
                await drop()
            else:
                await self._app(scope, receive, recording_send)
        finally:
            record(None)  # no response at all (e.g. the client went away first)


def _fault_error(decision: Decision) -> ApiError:
    assert decision.status is not None
    error = status_fault(decision.status, decision.retry_after)
    if decision.retry_after_ms is not None:
        error.headers["retry-after-ms"] = str(decision.retry_after_ms)
    elif decision.retry_after is not None:
        error.headers["retry-after"] = str(max(1, round(decision.retry_after)))
    return error


async def _respond(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    await JSONResponse(error.body(), status_code=error.status, headers=error.headers)(scope, receive, send)


async def _discard(message: Message) -> None:
    """The ``send`` of a request whose connection will be dropped after the work is done."""


def _with_openai_headers(send: Send, organization: str | None) -> Send:
    extra = [
        (b"x-request-id", f"req_{uuid.uuid4().hex}".encode()),
        (b"openai-version", OPENAI_VERSION),
        (b"openai-organization", (organization or "org-fake").encode("latin-1", "replace")),
    ]

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return send_with_headers
