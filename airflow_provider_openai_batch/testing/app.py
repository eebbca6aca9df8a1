"""Assembling the ASGI application: routes, OpenAI-style error handling, the front door."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from airflow_provider_openai_batch.testing.api import api_routes
from airflow_provider_openai_batch.testing.context import Context
from airflow_provider_openai_batch.testing.control import Controls, control_routes
from airflow_provider_openai_batch.testing.errors import SERVER_ERROR, ApiError, error_envelope, invalid_url
from airflow_provider_openai_batch.testing.frontdoor import FrontDoor


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    # Unknown paths and wrong methods answer like the real API: 404 "Invalid URL (METHOD /path)".
    assert isinstance(exc, HTTPException)
    if exc.status_code in (404, 405):
        return await _api_error(request, invalid_url(request.method, request.url.path))
    return JSONResponse(error_envelope(str(exc.detail)), status_code=exc.status_code)


async def _server_error(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        error_envelope("The server had an error while processing your request.", type=SERVER_ERROR), status_code=500
    )


def build_app(ctx: Context, controls: Controls, api_key: str | None) -> ASGIApp:
    routes = [*api_routes(ctx), *control_routes(ctx, controls)]
    app = Starlette(
        routes=routes,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _server_error},
    )
    return FrontDoor(app, routes, api_key=api_key, faults=ctx.faults, recorder=ctx.recorder)
