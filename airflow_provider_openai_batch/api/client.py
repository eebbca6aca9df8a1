"""Sync and async HTTP clients for the Files and Batches API over httpx (floor 1: no Airflow import).

Both clients share one :class:`ClientConfig` (auth, base URL, timeouts), one
:class:`~airflow_provider_openai_batch.api.retry.RetryPolicy` and one way of turning a
response into a model or an :class:`OpenAIAPIError`; they differ only in how a request
is sent. Uploads stream the file in 64 KiB chunks (httpx multipart), downloads stream
lines, and nothing here ever puts the API key in a repr, a log line or an error.

The async client is built for the triggerer: all triggers of one connection in one
process share at most 64 connections (:meth:`AsyncOpenAIBatchClient.shared`), each in
its own small httpx client lent for one request at a time, because httpx's pool walks
all of its connections on every request and that walk, not the HTTP, was most of a
poll's CPU at thousands of triggers (see DESIGN.md and benchmarks/trigger_scale.py).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import hashlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

import httpx
import tenacity
from pydantic import BaseModel

from airflow_provider_openai_batch.api.exceptions import OpenAIAPIError, OpenAITransportError
from airflow_provider_openai_batch.api.models import Batch, FileDeleted, FileObject, ListPage
from airflow_provider_openai_batch.api.retry import RetryPolicy, replay_first_failure
from airflow_provider_openai_batch.inputs.sources import Source, is_file_like, open_binary, source_filename

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
USER_AGENT = "airflow-provider-openai-batch"
M = TypeVar("M", bound=BaseModel)
CANCEL_FINAL = frozenset({409})
"""A 409 on cancel means the batch is already terminal: final, not transient."""


@dataclass(frozen=True)
class ClientConfig:
    """Everything needed to talk to one account. The key never shows in ``repr``."""

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    organization: str | None = None
    project: str | None = None
    auth_header: str = "bearer"
    """``bearer`` (OpenAI, most compatible services) or ``api-key`` (Azure OpenAI key auth)."""
    timeout: float = 60.0
    connect_timeout: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("An OpenAI API key is required (the connection's password field is empty)")
        object.__setattr__(self, "base_url", (self.base_url or DEFAULT_BASE_URL).rstrip("/"))

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.auth_header == "api-key":
            headers["api-key"] = self.api_key
        else:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        if self.project:
            headers["OpenAI-Project"] = self.project
        return headers

    def httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=self.connect_timeout)

    def display_path(self, path: str) -> str:
        """``/v1/batches/x`` for error messages: the request path as the server saw it."""
        return f"{httpx.URL(self.base_url).path.rstrip('/')}/{path}"

    @property
    def identity(self) -> str:
        """A digest naming this account + endpoint, safe to use as a dict key or log (no key inside)."""
        parts = [self.api_key, self.base_url, self.organization or "", self.project or "", self.auth_header]
        raw = "\0".join([*parts, str(self.timeout), str(self.connect_timeout)])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


# Responses -> models or errors ---------------------------------------------------------------


def _parse_retry_after(headers: httpx.Headers) -> float | None:
    """``retry-after-ms`` (SDK extension), then ``Retry-After`` seconds or HTTP date."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return max(0.0, email.utils.mktime_tz(parsed) - time.time())


def error_from_response(response: httpx.Response, method: str, path: str) -> OpenAIAPIError:
    """Map an error response to one exception carrying status, code, param, message and request id."""
    message, code, param, err_type = "", None, None, None
    try:
        body = response.json()
        detail = body.get("error", body) if isinstance(body, dict) else {}
        if isinstance(detail, dict):
            message = str(detail.get("message") or "")
            code, param, err_type = detail.get("code"), detail.get("param"), detail.get("type")
        else:
            message = str(detail)
    except (ValueError, UnicodeDecodeError):
        message = response.text[:500]
    error = OpenAIAPIError(
        message or response.reason_phrase or "error",
        status_code=response.status_code,
        code=code,
        param=param,
        type=err_type,
        request_id=response.headers.get("x-request-id"),
        method=method,
        path=path,
        retry_after=_parse_retry_after(response.headers),
    )
    should_retry = response.headers.get("x-should-retry")
    error.should_retry = {"true": True, "false": False}.get((should_retry or "").lower())  # type: ignore[attr-defined]
    return error


def transport_error(exc: httpx.TransportError, method: str, path: str) -> OpenAITransportError:
    """Wrap an httpx transport failure; a connect failure means the server never saw the request."""
    not_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
    kind = type(exc).__name__
    return OpenAITransportError(f"{kind}: {exc}", request_sent=not not_sent, method=method, path=path)


def _check(response: httpx.Response, method: str, config: ClientConfig, path: str) -> httpx.Response:
    if response.is_success:
        return response
    raise error_from_response(response, method, config.display_path(path))


def _model(model: type[M], response: httpx.Response) -> M:
    return model.model_validate_json(response.content)


def _split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield complete lines (without the newline) from a stream of byte chunks."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r")
    if pending:
        yield pending.rstrip(b"\r")


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
        self._http = httpx.Client(
            base_url=config.base_url + "/",
            headers=config.headers(),
            timeout=config.httpx_timeout(),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"OpenAIBatchClient(base_url={self.config.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenAIBatchClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(exc, method, self.config.display_path(path)) from None
        return _check(response, method, self.config, path)

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool = True,
        final_statuses: frozenset[int] = frozenset(),
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with the shared retry policy; ``idempotent=False`` only retries unsent requests."""
        policy = self.config.retry.tenacity_kwargs(
            idempotent=idempotent, what=f"{method} /{path}", final_statuses=final_statuses
        )
        retrying = tenacity.Retrying(**policy)
        return retrying(self._send_once, method, path, **kwargs)

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
        replayable = not is_file_like(source) or _seekable(source)
        start = source.tell() if is_file_like(source) and replayable else 0

        def attempt() -> httpx.Response:
            if is_file_like(source) and replayable:
                source.seek(start)
            with open_binary(source) as handle:
                body = _FromPosition(handle, start) if start else handle
                files = {"file": (name, body, "application/jsonl")}
                return self._send_once("POST", "files", data=data, files=files)

        policy = self.config.retry
        kwargs = policy.tenacity_kwargs(idempotent=True, what="POST /files")
        if not replayable:
            kwargs["stop"] = tenacity.stop_after_attempt(1)
        response = tenacity.Retrying(**kwargs)(attempt)
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
                with self._http.stream("GET", path, headers={"Accept": "application/binary"}) as response:
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


class _FromPosition:
    """A view of a seekable stream that begins at ``start``.

    httpx's multipart field seeks its file to 0 and sizes it from the end; this view makes
    "0" mean the caller's position, so bytes the caller already read past are not sent.
    """

    def __init__(self, stream: IO[bytes], start: int) -> None:
        self._stream = stream
        self._start = start

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset + self._start if whence == 0 else offset
        return self._stream.seek(target, whence) - self._start

    def tell(self) -> int:
        return self._stream.tell() - self._start


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


# Async client ----------------------------------------------------------------------------------


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One TLS context (CA bundle loaded once) for every async client of the process.

    Each httpx client would otherwise load the CA bundle itself: ~60 ms of CPU apiece, so
    8 pool shards cost ~0.5 s on the event loop. Build it once off the loop
    (:func:`ensure_ssl_context`) and later calls are free.
    """
    return httpx.create_ssl_context()


async def ensure_ssl_context() -> None:
    """Build the shared TLS context in a thread the first time, so the event loop never loads the CA bundle."""
    if ssl_context.cache_info().currsize == 0:
        await asyncio.to_thread(ssl_context)


class _SharedPools:
    """The connections shared by every async client of one account in one event loop.

    Keyed by the running loop (a connection belongs to the loop that opened it) and by
    :attr:`ClientConfig.identity`.
    """

    def __init__(self, connections: int = 64) -> None:
        self.connections = connections
        self._by_loop: dict[asyncio.AbstractEventLoop, dict[str, _PoolSet]] = {}

    def get(self, config: ClientConfig) -> _PoolSet:
        loop = asyncio.get_running_loop()
        self._forget_closed_loops()
        pools = self._by_loop.setdefault(loop, {})
        pool_set = pools.get(config.identity)
        if pool_set is None:
            pool_set = pools[config.identity] = _PoolSet(config, self.connections)
        return pool_set

    def _forget_closed_loops(self) -> None:
        """Drop the pools of loops that have finished (``asyncio.run``, ``dag.test()``'s inline triggers).

        A weak mapping cannot do this: the pools' connections reference their loop, so the
        loop would stay alive through its own value. Their sockets close when collected.
        """
        for loop in [loop for loop in self._by_loop if loop.is_closed()]:
            del self._by_loop[loop]

    def count(self) -> int:
        """How many pool sets exist in the running loop (for tests and benchmarks)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return 0
        return len(self._by_loop.get(loop, {}))


class _PoolSet:
    """Up to ``size`` single-connection httpx clients of one account, each lent for one request.

    Why not one httpx client with ``size`` connections: on every request and every
    response httpcore walks all of its pool's connections and asks the OS whether each
    idle socket was closed by the server (a poll and a getpeername call apiece); at
    5,000 triggers that walk was the largest part of a poll's CPU
    (benchmarks/trigger_scale.py). With one connection per client the walk is one
    socket long. Clients are made on demand, so a few triggers open a few connections;
    the most recently returned client is lent first (its connection is the likeliest to
    be alive), and requests beyond ``size`` wait here in arrival order.
    """

    def __init__(self, config: ClientConfig, size: int) -> None:
        self.config = config
        self.size = size
        self.clients: list[httpx.AsyncClient] = []
        self._idle: asyncio.LifoQueue[httpx.AsyncClient] = asyncio.LifoQueue()

    async def acquire(self) -> httpx.AsyncClient:
        if self._idle.empty() and len(self.clients) < self.size:
            client = httpx.AsyncClient(
                base_url=self.config.base_url + "/",
                headers=self.config.headers(),
                timeout=self.config.httpx_timeout(),
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                verify=ssl_context(),
            )
            self.clients.append(client)
            return client
        return await self._idle.get()

    def release(self, client: httpx.AsyncClient) -> None:
        self._idle.put_nowait(client)


SHARED_POOLS = _SharedPools()


class AsyncOpenAIBatchClient:
    """Non-blocking client for triggers: the calls a poll loop needs, with the same retry policy."""

    def __init__(self, config: ClientConfig, *, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._own = http is None
        self._http = http
        self._pools: _PoolSet | None = None

    @classmethod
    def shared(cls, config: ClientConfig) -> AsyncOpenAIBatchClient:
        """A client drawing on the process-wide pools of ``config``'s account (call inside the loop)."""
        client = cls(config)
        client._pools = SHARED_POOLS.get(config)
        client._own = False
        return client

    def __repr__(self) -> str:
        return f"AsyncOpenAIBatchClient(base_url={self.config.base_url!r})"

    def _own_client(self) -> httpx.AsyncClient:
        """The private client of a client made without :meth:`shared` (tests, one-off scripts)."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.config.base_url + "/",
                headers=self.config.headers(),
                timeout=self.config.httpx_timeout(),
                verify=ssl_context(),
            )
        return self._http

    async def aclose(self) -> None:
        if self._own and self._http is not None:
            await self._http.aclose()

    async def _send_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            if self._pools is not None:
                http = await self._pools.acquire()
                try:
                    response = await http.request(method, path, **kwargs)
                finally:
                    self._pools.release(http)
            else:
                response = await self._own_client().request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(exc, method, self.config.display_path(path)) from None
        return _check(response, method, self.config, path)

    async def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool = True,
        final_statuses: frozenset[int] = frozenset(),
        **kwargs: Any,
    ) -> httpx.Response:
        # Most polls succeed at once: try once before building tenacity's machinery, which
        # costs more CPU and more short-lived objects than the request itself (every object
        # alive across a request's latency ends up in the old generation, and full
        # collections of it stall the triggerer's loop). A failure is replayed as tenacity's
        # first attempt, so counting, waits and logs are what they would have been.
        try:
            return await self._send_once(method, path, **kwargs)
        except Exception as error:
            first_failure = error
        policy = self.config.retry.tenacity_kwargs(
            idempotent=idempotent, what=f"{method} /{path}", final_statuses=final_statuses
        )
        retrying = tenacity.AsyncRetrying(**policy)
        return await retrying(replay_first_failure(first_failure, self._send_once), method, path, **kwargs)

    async def get_batch(self, batch_id: str) -> Batch:
        return _model(Batch, await self.request("GET", f"batches/{batch_id}"))

    async def cancel_batch(self, batch_id: str) -> Batch:
        return _model(Batch, await self.request("POST", f"batches/{batch_id}/cancel", final_statuses=CANCEL_FINAL))

    async def list_batches(self, *, after: str | None = None, limit: int = 100) -> ListPage[Batch]:
        return _model(ListPage[Batch], await self.request("GET", "batches", params=_list_params(after, limit)))

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
