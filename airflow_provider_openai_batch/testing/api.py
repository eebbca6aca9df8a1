"""The ``/v1`` routes: Files and Batches, as the OpenAI API serves them.

Handlers stay async and cheap: uploads stream to disk, downloads stream from disk, and batch
reads only do bookkeeping under the engine lock (heavy work is awaited from worker threads).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from airflow_provider_openai_batch.testing.context import Context
from airflow_provider_openai_batch.testing.create_params import parse_create_request, parse_form_expiry
from airflow_provider_openai_batch.testing.errors import (
    ApiError,
    integer_in_range,
    invalid_json_body,
    invalid_value,
    missing_parameter,
)
from airflow_provider_openai_batch.testing.multipart import receive_upload
from airflow_provider_openai_batch.testing.waiting import settle

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


def list_body(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def query_limit(request: Request, default: int, maximum: int) -> int:
    raw = request.query_params.get("limit")
    return default if raw is None else integer_in_range("limit", raw, 1, maximum)


def organization(request: Request) -> str:
    return request.headers.get("openai-organization") or "org-fake"


def api_routes(ctx: Context) -> list[Route]:
    async def create_file(request: Request) -> Response:
        scratch = ctx.files.scratch_path("upload")
        try:
            form = await receive_upload(request.stream(), request.headers.get("content-type", ""), scratch)
            purpose = form.fields.get("purpose")
            if form.filename is None:
                raise missing_parameter("file")
            if purpose is None:
                raise missing_parameter("purpose")
            if purpose not in UPLOAD_PURPOSES:
                raise invalid_value("purpose", purpose, UPLOAD_PURPOSES)
            expires_after = parse_form_expiry(form.fields)
            if purpose == "batch" and not form.filename.lower().endswith(".jsonl"):
                raise ApiError(400, "Invalid file format for Batch API. Must be .jsonl")
            stored = ctx.files.add(
                scratch,
                filename=form.filename,
                purpose=purpose,
                created_at=int(ctx.clock()),
                expires_after=expires_after,
            )
        except BaseException:
            scratch.unlink(missing_ok=True)
            raise
        ctx.recorder.count("uploads")
        return JSONResponse(stored.to_api())

    async def list_files(request: Request) -> Response:
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise invalid_value("order", order, ("asc", "desc"))
        files, has_more = ctx.files.page(
            purpose=request.query_params.get("purpose"),
            ascending=order == "asc",
            after=request.query_params.get("after"),
            limit=query_limit(request, 10_000, 10_000),
        )
        return JSONResponse(list_body([f.to_api() for f in files], has_more))

    async def retrieve_file(request: Request) -> Response:
        return JSONResponse(ctx.files.get(request.path_params["file_id"]).to_api())

    async def file_content(request: Request) -> Response:
        stored = ctx.files.get(request.path_params["file_id"])
        return FileResponse(stored.path, media_type="application/octet-stream")

    async def delete_file(request: Request) -> Response:
        file_id = request.path_params["file_id"]
        ctx.files.delete(file_id)
        return JSONResponse({"id": file_id, "object": "file", "deleted": True})

    async def create_batch(request: Request) -> Response:
        try:
            payload = json.loads(await request.body())
        except ValueError:
            raise invalid_json_body() from None
        params = parse_create_request(payload, ctx.allowed_completion_windows)
        input_file = ctx.files.find(params.input_file_id)
        batch_id = ctx.engine.create(params, input_file, organization(request))
        ctx.recorder.count("batches_created")
        return JSONResponse(await settle(lambda: ctx.engine.view(batch_id)))

    async def list_batches(request: Request) -> Response:
        after = request.query_params.get("after")
        limit = query_limit(request, 20, 100)
        batches, has_more = await settle(lambda: ctx.engine.page(after, limit))
        return JSONResponse(list_body(batches, has_more))

    async def retrieve_batch(request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        return JSONResponse(await settle(lambda: ctx.engine.view(batch_id)))

    async def cancel_batch(request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        await settle(lambda: ctx.engine.cancel(batch_id))
        return JSONResponse(await settle(lambda: ctx.engine.view(batch_id)))

    return [
        Route("/v1/files", create_file, methods=["POST"]),
        Route("/v1/files", list_files, methods=["GET"]),
        Route("/v1/files/{file_id}", retrieve_file, methods=["GET"]),
        Route("/v1/files/{file_id}", delete_file, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
        Route("/v1/batches", create_batch, methods=["POST"]),
        Route("/v1/batches", list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", retrieve_batch, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
    ]
