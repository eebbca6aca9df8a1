"""OpenAIBatchHook: an Airflow connection turned into the Files/Batches clients (floor 2).

The connection (type ``openai_batch``, default id ``openai_default``):
password = API key; host = base URL including ``/v1`` (empty = ``https://api.openai.com/v1``);
extra ``organization``, ``project``, and optionally ``auth_header`` (``api-key`` for Azure
OpenAI key auth), ``timeout`` (seconds), ``max_retries``, ``dashboard_url`` (a link
template with ``{batch_id}`` for services other than OpenAI's) and ``shared_poll``
(``false`` for a service whose list endpoint differs: each trigger then GETs its batch).

Inside a trigger the connection is looked up with the async API so the triggerer's
event loop never blocks (one lookup serves every hook of the process for a few
seconds), every trigger of one connection in the process shares up to 64 pooled
connections (no TLS handshake per poll), and their polls share one paged poller
(:mod:`airflow_provider_openai_batch.waiting.poller`: about one request per 100 batches).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from functools import cached_property
from time import monotonic
from typing import Any

from airflow_provider_openai_batch.api.client import AsyncOpenAIBatchClient, OpenAIBatchClient
from airflow_provider_openai_batch.api.models import Batch, FileDeleted, FileObject, ListPage
from airflow_provider_openai_batch.api.retry import RetryPolicy
from airflow_provider_openai_batch.api.transport import DEFAULT_BASE_URL, ClientConfig, ensure_ssl_context
from airflow_provider_openai_batch.compat import BaseHook, get_async_connection
from airflow_provider_openai_batch.inputs.sources import Source
from airflow_provider_openai_batch.results.merge import ResultRecord, iter_results
from airflow_provider_openai_batch.submitting.submission import Submission, submit_once
from airflow_provider_openai_batch.waiting.poller import shared_poller


def base_url_from(host: str | None, port: int | None = None, schema: str | None = None) -> str:
    """Accept ``http(s)://host[:port]/v1`` as typed in the UI, or a bare host from a connection URI."""
    host = (host or "").strip()
    if not host:
        return DEFAULT_BASE_URL
    if "://" in host:
        return host.rstrip("/")
    netloc = f"{host}:{port}" if port else host
    path = (schema or "v1").strip("/")
    return f"https://{netloc}/{path}"


def config_from_connection(conn: Any) -> ClientConfig:
    """Build the client configuration from an Airflow ``Connection`` (sync or async lookup)."""
    extra = conn.extra_dejson or {}
    policy = RetryPolicy()
    if extra.get("max_retries") is not None:
        policy = RetryPolicy(max_attempts=int(extra["max_retries"]) + 1)
    if not conn.password:
        raise ValueError(
            f"Connection {conn.conn_id!r} has no API key: put the key in the connection's password (API Key) field"
        )
    return ClientConfig(
        api_key=conn.password,
        base_url=base_url_from(conn.host, conn.port, conn.schema),
        organization=extra.get("organization") or None,
        project=extra.get("project") or None,
        auth_header=extra.get("auth_header") or "bearer",
        timeout=float(extra.get("timeout") or 60.0),
        retry=policy,
    )


RECENT_LOOKUP_SECONDS = 5.0
_recent_configs: dict[str, tuple[float, ClientConfig, bool]] = {}


def shared_poll_from(conn: Any) -> bool:
    """Extra ``shared_poll`` (default true): whether triggers poll through the shared paged poller."""
    value = (conn.extra_dejson or {}).get("shared_poll", True)
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off")
    return bool(value)


def forget_recent_connections() -> None:
    """Drop the connection configs the async path looked up in the last few seconds (tests change them)."""
    _recent_configs.clear()


class OpenAIBatchHook(BaseHook):
    """Talks to the OpenAI Files and Batches API for one Airflow connection.

    Sync methods (for workers): ``upload_file``, ``create_batch``, ``submit_once``, ``get_batch``,
    ``cancel_batch``, ``list_batches``, ``get_file``, ``delete_file``, ``iter_file_lines``,
    ``test_connection``. Async methods (for triggers): ``aget_batch``, ``apoll_batch``,
    ``acancel_batch``, ``alist_batches``.
    """

    conn_name_attr = "conn_id"
    default_conn_name = "openai_default"
    conn_type = "openai_batch"
    hook_name = "OpenAI Batch"

    def __init__(self, conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self._async_config: ClientConfig | None = None
        self._shared_poll = True
        self._async_client: tuple[asyncio.AbstractEventLoop, AsyncOpenAIBatchClient] | None = None

    def __repr__(self) -> str:
        return f"OpenAIBatchHook(conn_id={self.conn_id!r})"

    # Configuration

    @cached_property
    def config(self) -> ClientConfig:
        return config_from_connection(self.get_connection(self.conn_id))

    async def aconfig(self) -> ClientConfig:
        """The configuration, looked up without blocking the event loop (cached per hook).

        A lookup made by another hook of the process in the last ``RECENT_LOOKUP_SECONDS``
        is reused: Airflow runs some secrets backends (environment variables among them)
        in a worker thread, and thousands of triggers starting together (a triggerer
        restart) would keep that thread busy, taking the GIL from the event loop in 5 ms
        slices. A changed connection is still seen within seconds.
        """
        if self._async_config is None:
            recent = _recent_configs.get(self.conn_id)
            if recent is not None and recent[0] > monotonic():
                _, self._async_config, self._shared_poll = recent
                return recent[1]
            conn = await get_async_connection(self.conn_id)
            self._async_config = config_from_connection(conn)
            self._shared_poll = shared_poll_from(conn)
            _recent_configs[self.conn_id] = (monotonic() + RECENT_LOOKUP_SECONDS, self._async_config, self._shared_poll)
        return self._async_config

    @property
    def base_url(self) -> str:
        return self.config.base_url

    @property
    def dashboard_template(self) -> str | None:
        """Extra ``dashboard_url``: where the UI link of a batch on a non-OpenAI service points."""
        return (self.get_connection(self.conn_id).extra_dejson or {}).get("dashboard_url") or None

    # Clients

    @cached_property
    def client(self) -> OpenAIBatchClient:
        return OpenAIBatchClient(self.config)

    def get_conn(self) -> OpenAIBatchClient:
        return self.client

    async def aclient(self) -> AsyncOpenAIBatchClient:
        """A client on the process-wide shared pools; the TLS context is built off the event loop.

        Kept per hook and event loop: a trigger polls through one client, not one per poll.
        """
        loop = asyncio.get_running_loop()
        if self._async_client is None or self._async_client[0] is not loop:
            config = await self.aconfig()
            await ensure_ssl_context()
            self._async_client = (loop, AsyncOpenAIBatchClient.shared(config))
        return self._async_client[1]

    # Files

    def upload_file(self, source: Source, purpose: str = "batch", *, expires_after: int | None = None) -> FileObject:
        return self.client.upload_file(source, purpose, expires_after=expires_after)

    def get_file(self, file_id: str) -> FileObject:
        return self.client.get_file(file_id)

    def delete_file(self, file_id: str) -> FileDeleted:
        return self.client.delete_file(file_id)

    def iter_file_lines(self, file_id: str) -> Iterator[bytes]:
        """Stream a file's lines as ``bytes`` (without the newline), never the whole file in memory.

        Bytes, not str: batch files are UTF-8 JSONL and ``json.loads`` takes bytes directly, so no
        decode step is spent per line. To read JSON records::

            records = (json.loads(line) for line in hook.iter_file_lines(file_id) if line.strip())

        (``if line.strip()`` skips blank lines, e.g. a trailing empty one.) For merged,
        typed results of a batch, :meth:`iter_results` does the joining and classifying.
        """
        return self.client.iter_file_lines(file_id)

    # Batches

    def create_batch(
        self,
        input_file_id: str,
        endpoint: str,
        completion_window: str = "24h",
        metadata: dict[str, str] | None = None,
        output_expires_after: int | None = None,
    ) -> Batch:
        return self.client.create_batch(input_file_id, endpoint, completion_window, metadata, output_expires_after)

    def get_batch(self, batch_id: str) -> Batch:
        return self.client.get_batch(batch_id)

    def submit_once(self, *, key: str, fingerprint: str, input_file_id: Callable[[], str], **create: Any) -> Submission:
        """Re-attach to the batch of idempotency ``key`` if it is alive, else create it (upload lazily).

        See :func:`~airflow_provider_openai_batch.submitting.submission.submit_once`; ``create``
        holds ``endpoint``, ``completion_window``, ``metadata``, ``output_expires_after`` and
        ``created_after`` (the time bound of the re-attach look-up).
        """
        return submit_once(self.client, key=key, fingerprint=fingerprint, input_file_id=input_file_id, **create)

    def cancel_batch(self, batch_id: str) -> Batch:
        return self.client.cancel_batch(batch_id)

    def list_batches(self, *, after: str | None = None, limit: int = 100) -> ListPage[Batch]:
        return self.client.list_batches(after=after, limit=limit)

    async def aget_batch(self, batch_id: str) -> Batch:
        return await (await self.aclient()).get_batch(batch_id)

    async def apoll_batch(self, batch_id: str, *, max_age: float = 0.0) -> Batch:
        """The batch's state for a trigger's poll, through the connection's shared paged poller.

        ``max_age``: a state read that many seconds ago is good enough (a page read for another
        trigger may already hold it). With the extra ``shared_poll: false``, a plain GET.
        Raises what :meth:`aget_batch` raises.
        """
        client = await self.aclient()
        if not self._shared_poll:
            return await client.get_batch(batch_id)
        return await shared_poller(client.config).get(batch_id, max_age=max_age)

    async def acancel_batch(self, batch_id: str) -> Batch:
        return await (await self.aclient()).cancel_batch(batch_id)

    async def alist_batches(self, *, after: str | None = None, limit: int = 100) -> ListPage[Batch]:
        return await (await self.aclient()).list_batches(after=after, limit=limit)

    # Results

    def iter_results(self, batch_ids: str | list[str], *, input_source: Source | None = None) -> Iterator[ResultRecord]:
        """Merged, classified results (joined by custom_id, streamed) for ``@task`` code."""
        ids = [batch_ids] if isinstance(batch_ids, str) else list(batch_ids)
        batches = [self.get_batch(batch_id) for batch_id in ids]
        return iter_results(batches, self.iter_file_lines, input_source=input_source)

    # UI

    def test_connection(self) -> tuple[bool, str]:
        """One cheap authenticated call (list one batch), for the UI's Test button."""
        try:
            self.client.list_batches(limit=1)
        except Exception as error:
            return False, str(error)
        return True, f"Connected to {self.config.base_url}"
