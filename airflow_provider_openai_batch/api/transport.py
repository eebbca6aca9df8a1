"""How a request reaches the API and comes back: configuration, pools, TLS, the one retry policy (floor 1).

:mod:`~airflow_provider_openai_batch.api.client` says *which* calls exist; this module says
*how* each is sent. Both the sync transport (workers) and the async one (the triggerer) send a
request the same way: one plain attempt, and only when it fails is the attempt handed to
tenacity with :class:`~airflow_provider_openai_batch.api.retry.RetryPolicy` (the failed try
counts as attempt 1), because the retry machinery costs more CPU and short-lived objects than
a successful poll itself. A response becomes a model or one :class:`OpenAIAPIError`; nothing
here puts the API key in a repr, a log line or an error.

The async side is built for the triggerer: all triggers of one connection in one process share
at most 64 single-connection httpx clients (:data:`SHARED_POOLS`; :class:`_PoolSet` says why).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import hashlib
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import tenacity

from airflow_provider_openai_batch.api.exceptions import OpenAIAPIError, OpenAITransportError
from airflow_provider_openai_batch.api.retry import RetryPolicy, replay_first_failure, replay_first_failure_sync

DEFAULT_BASE_URL = "https://api.openai.com/v1"
USER_AGENT = "airflow-provider-openai-batch"
T = TypeVar("T")


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


# Responses -> errors -------------------------------------------------------------------------


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


def checked(response: httpx.Response, method: str, config: ClientConfig, path: str) -> httpx.Response:
    """The response when it is a success, else its :class:`OpenAIAPIError`."""
    if response.is_success:
        return response
    raise error_from_response(response, method, config.display_path(path))


# The one retry policy, applied one way -------------------------------------------------------


def _retry_kwargs(config: ClientConfig, what: str, idempotent: bool, finals: frozenset[int], once: bool) -> Any:
    kwargs = config.retry.tenacity_kwargs(idempotent=idempotent, what=what, final_statuses=finals)
    return {**kwargs, "stop": tenacity.stop_after_attempt(1)} if once else kwargs


def call_with_retry(
    config: ClientConfig,
    attempt: Callable[[], T],
    *,
    what: str,
    idempotent: bool = True,
    final_statuses: frozenset[int] = frozenset(),
    once: bool = False,
) -> T:
    """Run ``attempt`` once; on failure let the retry policy decide the next attempts (sync)."""
    try:
        return attempt()
    except Exception as error:
        first_failure = error
    retrying = tenacity.Retrying(**_retry_kwargs(config, what, idempotent, final_statuses, once))
    return retrying(replay_first_failure_sync(first_failure, attempt))


async def acall_with_retry(
    config: ClientConfig,
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str,
    idempotent: bool = True,
    final_statuses: frozenset[int] = frozenset(),
) -> T:
    """Run ``attempt`` once; on failure let the retry policy decide the next attempts (async twin)."""
    try:
        return await attempt()
    except Exception as error:
        first_failure = error
    retrying = tenacity.AsyncRetrying(**_retry_kwargs(config, what, idempotent, final_statuses, False))
    return await retrying(replay_first_failure(first_failure, attempt))


# Sync transport ----------------------------------------------------------------------------


class SyncTransport:
    """One httpx client per worker-side API client; requests go through :func:`call_with_retry`."""

    def __init__(self, config: ClientConfig, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.http = httpx.Client(
            base_url=config.base_url + "/",
            headers=config.headers(),
            timeout=config.httpx_timeout(),
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def send_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One attempt, no retry: the unit :func:`call_with_retry` repeats."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(exc, method, self.config.display_path(path)) from None
        return checked(response, method, self.config, path)

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
        return call_with_retry(
            self.config,
            functools.partial(self.send_once, method, path, **kwargs),
            what=f"{method} /{path}",
            idempotent=idempotent,
            final_statuses=final_statuses,
        )


# Async transport: one TLS context, shared pools ------------------------------------------------


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
            client = _async_http(self.config, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
            self.clients.append(client)
            return client
        return await self._idle.get()

    def release(self, client: httpx.AsyncClient) -> None:
        self._idle.put_nowait(client)


SHARED_POOLS = _SharedPools()


def _async_http(config: ClientConfig, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=config.base_url + "/",
        headers=config.headers(),
        timeout=config.httpx_timeout(),
        verify=ssl_context(),
        **kwargs,
    )


class AsyncTransport:
    """The triggerer's way to send: a client lent from :data:`SHARED_POOLS`, or a private one.

    ``pools`` is set for :meth:`shared` transports; otherwise the transport uses the
    caller's httpx client or makes its own on first use (tests, one-off scripts).
    """

    __slots__ = ("_http", "_own", "config", "pools")

    def __init__(self, config: ClientConfig, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.pools: _PoolSet | None = None
        self._http = http
        self._own = http is None

    @classmethod
    def shared(cls, config: ClientConfig) -> AsyncTransport:
        """A transport on the process-wide pools of ``config``'s account (call inside the loop)."""
        transport = cls(config)
        transport.pools = SHARED_POOLS.get(config)
        transport._own = False
        return transport

    async def aclose(self) -> None:
        if self._own and self._http is not None:
            await self._http.aclose()

    async def send_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            if self.pools is not None:
                http = await self.pools.acquire()
                try:
                    response = await http.request(method, path, **kwargs)
                finally:
                    self.pools.release(http)
            else:
                if self._http is None:
                    self._http = _async_http(self.config)
                response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(exc, method, self.config.display_path(path)) from None
        return checked(response, method, self.config, path)

    async def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool = True,
        final_statuses: frozenset[int] = frozenset(),
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with the shared retry policy, exactly as :meth:`SyncTransport.request` does."""
        return await acall_with_retry(
            self.config,
            functools.partial(self.send_once, method, path, **kwargs),
            what=f"{method} /{path}",
            idempotent=idempotent,
            final_statuses=final_statuses,
        )
