"""The Files and Batches API calls, sync and async, over :mod:`.transport` (floor 1: no Airflow import).

This module says which calls exist and what they return; :mod:`.transport` says how a
request is sent (configuration, the triggerer's shared pools, TLS, the one retry policy
applied one way for both twins). Uploads stream the file in 64 KiB chunks (httpx
multipart), downloads stream lines, and nothing here ever puts the API key in a repr, a
log line or an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from airflow_provider_openai_batch.api.exceptions import OpenAIAPIError
from airflow_provider_openai_batch.api.models import Batch, FileDeleted, FileObject, ListPage
from airflow_provider_openai_batch.api.raw_pages import RawPage, parse_raw_page
from airflow_provider_openai_batch.api.transport import (
    DEFAULT_BASE_URL,
    SHARED_POOLS,
    AsyncTransport,
    ClientConfig,
    SyncTransport,
    call_with_retry,
    error_from_response,
    transport_error,
)
from airflow_provider_openai_batch.inputs.sources import (
    FromPosition,
    Source,
    is_file_like,
    is_seekable,
    open_binary,
    source_filename,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "SHARED_POOLS",
    "AsyncOpenAIBatchClient",
    "ClientConfig",
    "OpenAIBatchClient",
    "error_from_response",
]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
CANCEL_FINAL = frozenset({409})
"""A 409 on cancel means the batch is already terminal: final, not transient."""


def _model(model: type[M], response: httpx.Response) -> M:
    return model.model_validate_json(response.content)


def _split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield complete lines (without the newline) from a stream of byte chunks.

    Each line is sliced once out of the chunk holding it (only a line spanning chunks is joined): a results file
    is gigabytes, and re-concatenating every chunk with the previous tail would copy it all once more.
    """
    tail: list[bytes] = []
    for chunk in chunks:
        start = 0
        end = chunk.find(b"\n")
        if end < 0:
            tail.append(chunk)
            continue
        if tail:
            tail.append(chunk[:end])
            yield b"".join(tail).rstrip(b"\r")
            tail.clear()
            start = end + 1
            end = chunk.find(b"\n", start)
        while end >= 0:
            yield chunk[start:end].rstrip(b"\r")
            start = end + 1
            end = chunk.find(b"\n", start)
        if start < len(chunk):
            tail.append(chunk[start:])
    if tail:
        yield b"".join(tail).rstrip(b"\r")


def _batch_body(
    input_file_id: str,
    endpoint: str,
    completion_window: str,
    metadata: dict[str, str] | None,
    output_expires_after: int | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "input_file_id": input_file_id,
        "endpoint": endpoint,
        "completion_window": completion_window,
    }
    if metadata:
        body["metadata"] = metadata
    if output_expires_after is not None:
        body["output_expires_after"] = {"anchor": "created_at", "seconds": int(output_expires_after)}
    return body


def _list_params(after: str | None, limit: int) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if after:
        params["after"] = after
    return params


# Sync client -----------------------------------------------------------------------------------


class OpenAIBatchClient:
    """Blocking client for workers: upload, create, inspect, cancel, list, download, delete."""

    def __init__(self, config: ClientConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self._transport = SyncTransport(config, transport)
        self.request = self._transport.request

    def __repr__(self) -> str:
        return f"OpenAIBatchClient(base_url={self.config.base_url!r})"

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> OpenAIBatchClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Files

    def upload_file(
        self,
        source: Source,
        purpose: str = "batch",
        *,
        filename: str | None = None,
        expires_after: int | None = None,
    ) -> FileObject:
        """Upload ``source`` as multipart, streamed from disk or object storage in 64 KiB chunks.

        Each attempt reopens a path or storage path. A caller's stream is sent from its
        current position; it is rewound there for a retry when it is seekable, and otherwise
        sent once (it cannot be replayed).
        """
        name = filename or source_filename(source)
        data: dict[str, str] = {"purpose": purpose}
        if expires_after is not None:
            data["expires_after[anchor]"] = "created_at"
            data["expires_after[seconds]"] = str(int(expires_after))
        replayable = not is_file_like(source) or is_seekable(source)
        start = source.tell() if is_file_like(source) and replayable else 0

        def attempt() -> httpx.Response:
            if is_file_like(source) and replayable:
                source.seek(start)
            with open_binary(source) as handle:
                body = FromPosition(handle, start) if start else handle
                files = {"file": (name, body, "application/jsonl")}
                return self._transport.send_once("POST", "files", data=data, files=files)

        response = call_with_retry(self.config, attempt, what="POST /files", once=not replayable)
        return _model(FileObject, response)

    def get_file(self, file_id: str) -> FileObject:
        return _model(FileObject, self.request("GET", f"files/{file_id}"))

    def delete_file(self, file_id: str) -> FileDeleted:
        return _model(FileDeleted, self.request("DELETE", f"files/{file_id}"))

    def list_files(
        self, *, purpose: str | None = None, limit: int = 100, after: str | None = None, order: str = "desc"
    ) -> ListPage[FileObject]:
        params = {**_list_params(after, limit), "order": order}
        if purpose:
            params["purpose"] = purpose
        return _model(ListPage[FileObject], self.request("GET", "files", params=params))

    def iter_file_lines(self, file_id: str) -> Iterator[bytes]:
        """Stream a file's lines as bytes, never holding the file in memory.

        A connection dropped mid-file is retried with the shared policy: the download
        restarts and the lines already yielded are skipped, so callers see each line once.
        """
        yielded = 0
        retries_taken = 0
        path = f"files/{file_id}/content"
        while True:
            try:
                with self._transport.http.stream("GET", path, headers={"Accept": "application/binary"}) as response:
                    if not response.is_success:
                        response.read()
                        raise error_from_response(response, "GET", self.config.display_path(path))
                    for index, line in enumerate(_split_lines(response.iter_bytes())):
                        if index >= yielded:
                            yielded += 1
                            yield line
                return
            except httpx.TransportError as exc:
                error: OpenAIAPIError = transport_error(exc, "GET", self.config.display_path(path))
            except OpenAIAPIError as exc:
                error = exc
            policy = self.config.retry
            retries_taken += 1
            if retries_taken >= policy.max_attempts or not policy.should_retry(error):
                raise error
            delay = policy.delay(error, retries_taken - 1)
            log.warning("Retrying download of %s in %.1fs after: %s", file_id, delay, error)
            time.sleep(delay)

    # Batches

    def create_batch(
        self,
        input_file_id: str,
        endpoint: str,
        completion_window: str = "24h",
        metadata: dict[str, str] | None = None,
        output_expires_after: int | None = None,
    ) -> Batch:
        """Create a batch. Not idempotent: only a request that never left is retried."""
        body = _batch_body(input_file_id, endpoint, completion_window, metadata, output_expires_after)
        return _model(Batch, self.request("POST", "batches", json=body, idempotent=False))

    def get_batch(self, batch_id: str) -> Batch:
        return _model(Batch, self.request("GET", f"batches/{batch_id}"))

    def cancel_batch(self, batch_id: str) -> Batch:
        return _model(Batch, self.request("POST", f"batches/{batch_id}/cancel", final_statuses=CANCEL_FINAL))

    def list_batches(self, *, after: str | None = None, limit: int = 100) -> ListPage[Batch]:
        return _model(ListPage[Batch], self.request("GET", "batches", params=_list_params(after, limit)))

    def iter_batches(self, *, page_size: int = 100, max_items: int | None = None) -> Iterator[Batch]:
        """Newest first, following ``after`` = the last item's id until ``has_more`` is false."""
        after: str | None = None
        seen = 0
        while True:
            page = self.list_batches(after=after, limit=page_size)
            for batch in page.data:
                yield batch
                seen += 1
                if max_items is not None and seen >= max_items:
                    return
            if not page.has_more or not page.data:
                return
            after = page.data[-1].id


# Async client ----------------------------------------------------------------------------------


class AsyncOpenAIBatchClient:
    """Non-blocking client for triggers: the calls a poll loop needs, with the same retry policy."""

    __slots__ = ("_transport", "config")

    def __init__(self, config: ClientConfig, *, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._transport = AsyncTransport(config, http)

    @classmethod
    def shared(cls, config: ClientConfig) -> AsyncOpenAIBatchClient:
        """A client drawing on the process-wide pools of ``config``'s account (call inside the loop)."""
        client = cls(config)
        client._transport = AsyncTransport.shared(config)
        return client

    @property
    def _pools(self) -> Any:
        """The shared pool set this client draws on (None for a private client)."""
        return self._transport.pools

    def __repr__(self) -> str:
        return f"AsyncOpenAIBatchClient(base_url={self.config.base_url!r})"

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self._transport.request(method, path, **kwargs)

    async def get_batch(self, batch_id: str) -> Batch:
        return _model(Batch, await self.request("GET", f"batches/{batch_id}"))

    async def cancel_batch(self, batch_id: str) -> Batch:
        return _model(Batch, await self.request("POST", f"batches/{batch_id}/cancel", final_statuses=CANCEL_FINAL))

    async def list_batches(self, *, after: str | None = None, limit: int = 100) -> ListPage[Batch]:
        return _model(ListPage[Batch], await self.request("GET", "batches", params=_list_params(after, limit)))

    async def get_batch_json(self, batch_id: str) -> bytes:
        """The batch as the JSON the API sent, parsed by whoever needs it (see :mod:`.raw_pages`)."""
        return (await self.request("GET", f"batches/{batch_id}")).content

    async def list_batches_json(self, *, after: str | None = None, limit: int = 100) -> RawPage:
        """A list page with each batch kept as its JSON (see :mod:`.raw_pages`)."""
        return parse_raw_page((await self.request("GET", "batches", params=_list_params(after, limit))).content)

    async def iter_batches(self, *, page_size: int = 100, max_items: int | None = None) -> AsyncIterator[Batch]:
        after: str | None = None
        seen = 0
        while True:
            page = await self.list_batches(after=after, limit=page_size)
            for batch in page.data:
                yield batch
                seen += 1
                if max_items is not None and seen >= max_items:
                    return
            if not page.has_more or not page.data:
                return
            after = page.data[-1].id
