"""The ``/_fake`` control routes: the Python test API over HTTP.

Deployment tests run the fake in another process (``python -m airflow_provider_openai_batch.testing``)
and still need to inject faults, expire batches and read counters. These routes take the same
arguments as the matching :class:`FakeOpenAIServer` methods, as a JSON object. They need no
auth and are never faulted or logged.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airflow_provider_openai_batch.testing.context import Context
from airflow_provider_openai_batch.testing.errors import ApiError, invalid_json_body
from airflow_provider_openai_batch.testing.waiting import settle


class Controls(Protocol):
    """The server methods the control routes call (see :class:`FakeOpenAIServer`)."""

    def set_faults(self, **kwargs: Any) -> None: ...
    def clear_faults(self) -> None: ...
    def fail_next(self, **kwargs: Any) -> None: ...
    def drop_next(self, **kwargs: Any) -> None: ...
    def fail_next_batches(self, **kwargs: Any) -> None: ...
    def configure(self, **kwargs: Any) -> None: ...
    def reset(self) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def go_down(self, seconds: float | None = None) -> None: ...


async def json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        payload = json.loads(raw)
    except ValueError:
        raise invalid_json_body() from None
    if not isinstance(payload, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return payload


async def call_with(request: Request, method: Any) -> Response:
    """Call a server method with the request's JSON object as keyword arguments."""
    payload = await json_object(request)
    try:
        method(**payload)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, str(exc)) from None
    return JSONResponse({"ok": True})


def control_routes(ctx: Context, controls: Controls) -> list[Route]:
    async def stats(request: Request) -> Response:
        return JSONResponse(controls.stats())

    async def requests_log(request: Request) -> Response:
        return JSONResponse([entry.to_dict() for entry in ctx.recorder.log()])

    async def batches(request: Request) -> Response:
        listed, _ = await settle(lambda: ctx.engine.page(None, 2**31))
        return JSONResponse(listed)

    async def one_batch(request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        return JSONResponse(await settle(lambda: ctx.engine.view(batch_id)))

    async def files(request: Request) -> Response:
        return JSONResponse([stored.to_api() for stored in ctx.files.all()])

    async def set_faults(request: Request) -> Response:
        return await call_with(request, controls.set_faults)

    async def clear_faults(request: Request) -> Response:
        controls.clear_faults()
        return JSONResponse({"ok": True})

    async def fail_next(request: Request) -> Response:
        return await call_with(request, controls.fail_next)

    async def drop_next(request: Request) -> Response:
        return await call_with(request, controls.drop_next)

    async def fail_next_batches(request: Request) -> Response:
        return await call_with(request, controls.fail_next_batches)

    async def configure(request: Request) -> Response:
        return await call_with(request, controls.configure)

    async def expire(request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        fraction = (await json_object(request)).get("completed_fraction", 0.5)
        if not isinstance(fraction, (int, float)):
            raise ApiError(400, "completed_fraction must be a number.", param="completed_fraction")
        await settle(lambda: ctx.engine.expire(batch_id, float(fraction)))
        return JSONResponse(await settle(lambda: ctx.engine.view(batch_id)))

    async def reset(request: Request) -> Response:
        controls.reset()
        return JSONResponse({"ok": True})

    async def go_down(request: Request) -> Response:
        seconds = (await json_object(request)).get("seconds")
        if not isinstance(seconds, (int, float)) or seconds <= 0:
            raise ApiError(400, "seconds (> 0) is required: the server must come back by itself.", param="seconds")
        # Stopping the server waits for its event loop, so it must happen off the loop, after this response.
        return JSONResponse({"ok": True}, background=BackgroundTask(_go_down_in_thread, controls, float(seconds)))

    return [
        Route("/_fake/stats", stats, methods=["GET"]),
        Route("/_fake/requests", requests_log, methods=["GET"]),
        Route("/_fake/batches", batches, methods=["GET"]),
        Route("/_fake/batches/{batch_id}", one_batch, methods=["GET"]),
        Route("/_fake/files", files, methods=["GET"]),
        Route("/_fake/faults", set_faults, methods=["POST"]),
        Route("/_fake/faults", clear_faults, methods=["DELETE"]),
        Route("/_fake/fail_next", fail_next, methods=["POST"]),
        Route("/_fake/drop_next", drop_next, methods=["POST"]),
        Route("/_fake/fail_next_batches", fail_next_batches, methods=["POST"]),
        Route("/_fake/config", configure, methods=["POST"]),
        Route("/_fake/batches/{batch_id}/expire", expire, methods=["POST"]),
        Route("/_fake/reset", reset, methods=["POST"]),
        Route("/_fake/go_down", go_down, methods=["POST"]),
    ]


def _go_down_in_thread(controls: Controls, seconds: float) -> None:
    threading.Thread(target=controls.go_down, args=(seconds,), name="fake-openai-outage", daemon=True).start()
