"""``FakeOpenAIServer``: the fake served by uvicorn on 127.0.0.1 in a background thread.

A real socket and a real HTTP stack, so clients are tested with their actual transport:
connection pools, timeouts, retries, dropped connections and refused connections all behave
as they would against the service. The listening socket is created here (not by uvicorn) so
the port is known before serving starts and ``go_down()`` / ``come_back()`` can stop and resume
listening on the very same port while the state (files, batches, counters) survives.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import socket
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from airflow_provider_openai_batch.testing.app import build_app
from airflow_provider_openai_batch.testing.batch_records import Timings
from airflow_provider_openai_batch.testing.batches import TOKEN_LIMIT_MESSAGE, BatchEngine
from airflow_provider_openai_batch.testing.context import Context
from airflow_provider_openai_batch.testing.errors import ApiError
from airflow_provider_openai_batch.testing.execution import RequestRunner, Responder
from airflow_provider_openai_batch.testing.faults import (
    CountedRule,
    DropWhen,
    FaultInjector,
    FaultRates,
    Latency,
    RequestFilter,
)
from airflow_provider_openai_batch.testing.frontdoor import install_log_filter
from airflow_provider_openai_batch.testing.ids import IdFactory
from airflow_provider_openai_batch.testing.models import resolve_models
from airflow_provider_openai_batch.testing.observe import Recorder, RequestRecord
from airflow_provider_openai_batch.testing.store import FileStore
from airflow_provider_openai_batch.testing.validation import Limits
from airflow_provider_openai_batch.testing.waiting import settle_sync
from airflow_provider_openai_batch.testing.webhooks import TEST_WEBHOOK_SECRET, Delivery, WebhookSender, WebhookSettings

STARTUP_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 10.0
TIMING_OPTIONS = {
    "validating_seconds": "validating",
    "in_progress_seconds": "in_progress",
    "finalizing_seconds": "finalizing",
    "cancelling_seconds": "cancelling",
    "expire_after_fraction": "expire_after_fraction",
}


class FakeOpenAIServer:
    """A local OpenAI Files + Batches API; see the package docstring for the full contract."""

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        api_key: str | None = None,
        validating_seconds: float = 0.2,
        in_progress_seconds: float = 0.5,
        finalizing_seconds: float = 0.1,
        cancelling_seconds: float = 0.2,
        expire_after_fraction: float | None = None,
        seed: int = 0,
        allowed_completion_windows: Collection[str] = ("24h",),
        responder: Responder | None = None,
        fail_requests: Mapping[str, int] | None = None,
        models: Collection[str] | None = None,
        accept_any_model: bool = False,
        max_requests: int = 50_000,
        max_file_bytes: int = 209_715_200,
        max_embedding_inputs: int = 50_000,
        clock: Callable[[], float] = time.time,
        data_dir: str | Path | None = None,
        backlog: int = 4096,
        worker_threads: int = 4,
        webhook_url: str | None = None,
        webhook_secret: str = TEST_WEBHOOK_SECRET,
        webhook_delay: float = 0.0,
        webhook_duplicates: int = 0,
        webhook_bad_signature: bool = False,
    ) -> None:
        self._host = host
        self._port = port
        self._backlog = backlog
        self._timings = Timings(
            validating_seconds, in_progress_seconds, finalizing_seconds, cancelling_seconds, expire_after_fraction
        )
        if data_dir is not None:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
        self._root = Path(tempfile.mkdtemp(prefix="fake-openai-", dir=data_dir))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._root, ignore_errors=True)
        self._executor = ThreadPoolExecutor(max_workers=worker_threads, thread_name_prefix="fake-openai-work")
        self._runner = RequestRunner(responder, dict(fail_requests or {}))
        self._ids = IdFactory(seed)
        self._files = FileStore(self._root, self._ids)
        self._faults = FaultInjector(seed)
        self._recorder = Recorder()
        self._engine = BatchEngine(
            self._files,
            self._ids,
            self._executor,
            clock=clock,
            seed=seed,
            limits=Limits(max_requests, max_file_bytes, max_embedding_inputs),
            models=resolve_models(models, accept_any_model),
            runner=self._runner,
            timings=self._timings,
        )
        ctx = Context(self._files, self._engine, self._faults, self._recorder, clock, tuple(allowed_completion_windows))
        self._app = build_app(ctx, self, api_key)
        self._lifecycle = threading.RLock()
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._comeback: threading.Timer | None = None
        self._closed = False
        settings = WebhookSettings(
            webhook_url, webhook_secret, webhook_delay, webhook_duplicates, webhook_bad_signature
        )
        self._webhooks = WebhookSender(self.batches, settings)

    # -- serving -------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The listening port (the real one once started with ``port=0``)."""
        if self._port == 0:
            raise RuntimeError("the server has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        """Base URL to give clients: ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self._host}:{self.port}/v1"

    @property
    def is_up(self) -> bool:
        with self._lifecycle:
            return self._uvicorn is not None

    def start(self) -> FakeOpenAIServer:
        with self._lifecycle:
            if self._closed:
                raise RuntimeError("a stopped FakeOpenAIServer cannot be restarted; use go_down()/come_back()")
            if self._uvicorn is None:
                self._serve()
            self._webhooks.start()
            return self

    def stop(self) -> None:
        """Stop serving for good and delete all stored content."""
        with self._lifecycle:
            if self._closed:
                return
            self._closed = True
            self._cancel_comeback()
            self._halt()
        self._webhooks.stop()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._cleanup()

    def go_down(self, seconds: float | None = None) -> None:
        """Stop listening (clients get connection refused); state is kept. Back after ``seconds`` if given.

        Connections already accepted are closed, so a request racing the shutdown may see a reset
        instead of a refusal, as with a real server going away.
        """
        with self._lifecycle:
            if threading.current_thread() is self._thread:
                raise RuntimeError("go_down() cannot be called from the server's own thread")
            self._cancel_comeback()
            self._halt()
            if seconds is not None:
                self._comeback = threading.Timer(seconds, self.come_back)
                self._comeback.daemon = True
                self._comeback.start()

    def come_back(self) -> None:
        """Listen again on the same port, with the state from before :meth:`go_down`."""
        with self._lifecycle:
            if not self._closed and self._uvicorn is None:
                self._serve()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _listen(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
            sock.listen(self._backlog)
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        return sock

    def _serve(self) -> None:
        install_log_filter()
        sock = self._listen()
        config = uvicorn.Config(
            self._app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            proxy_headers=False,
            backlog=self._backlog,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"fake-openai-{self._port}", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                sock.close()
                raise RuntimeError(f"the fake OpenAI server did not start on {self._host}:{self._port}")
            time.sleep(0.005)
        self._uvicorn, self._thread = server, thread

    def _halt(self) -> None:
        server, thread = self._uvicorn, self._thread
        self._uvicorn = self._thread = None
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(SHUTDOWN_TIMEOUT)

    def _cancel_comeback(self) -> None:
        if self._comeback is not None:
            self._comeback.cancel()
            self._comeback = None

    # -- faults --------------------------------------------------------------------------------

    def set_faults(
        self,
        rate_429: float = 0.0,
        rate_503: float = 0.0,
        rate_500: float = 0.0,
        *,
        retry_after: float | None = 1,
        retry_after_ms: int | None = None,
        latency: Latency | list[float] = 0.0,
        methods: str | Collection[str] | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Replace the probabilistic faults (seeded draws) applied to matching API requests."""
        self._faults.set_rates(
            FaultRates(
                rate_429=rate_429,
                rate_503=rate_503,
                rate_500=rate_500,
                retry_after=retry_after,
                retry_after_ms=retry_after_ms,
                latency=tuple(latency) if isinstance(latency, list) else latency,  # type: ignore[arg-type]
                where=RequestFilter.of(methods, path_prefix),
            )
        )

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """The next ``n`` matching API requests answer ``status`` (with ``Retry-After`` if given)."""
        if status < 400:
            raise ValueError("status must be an error status (>= 400)")
        self._faults.add_rule(
            CountedRule(n, "status", RequestFilter.of(method, path_prefix), status=status, retry_after=retry_after)
        )

    def drop_next(
        self, n: int = 1, *, when: DropWhen = "before", method: str | None = None, path_prefix: str | None = None
    ) -> None:
        """Drop the connection of the next ``n`` matching requests, before or after doing the work."""
        if when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        self._faults.add_rule(CountedRule(n, f"drop_{when}", RequestFilter.of(method, path_prefix)))  # type: ignore[arg-type]

    def clear_faults(self) -> None:
        self._faults.clear()

    def fail_next_batches(
        self, count: int = 1, code: str = "token_limit_exceeded", message: str = TOKEN_LIMIT_MESSAGE
    ) -> None:
        """The next ``count`` batches are created normally, then fail validation with this error.

        ``{model}`` in ``message`` is replaced by the batch's model.
        """
        self._engine.fail_next_batches(count, code, message)

    # -- batches and configuration -------------------------------------------------------------

    def expire_batch(self, batch_id: str, completed_fraction: float = 0.5) -> dict[str, Any]:
        """End a running batch now as ``expired``, with ``completed_fraction`` of its requests done."""
        self._call(lambda: self._engine.expire(batch_id, completed_fraction))
        return self.batch(batch_id)

    def configure(self, **changes: float | None) -> None:
        """Change timings for batches created from now on (same names as the constructor's)."""
        unknown = set(changes) - set(TIMING_OPTIONS)
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        self._engine.timings = dataclasses.replace(
            self._engine.timings, **{TIMING_OPTIONS[name]: value for name, value in changes.items()}
        )

    def set_responder(self, responder: Responder | None = None, fail_requests: Mapping[str, int] | None = None) -> None:
        """Script the answers of batches created from now on (as the constructor arguments do)."""
        self._engine.runner = RequestRunner(responder, dict(fail_requests or {}))

    def reset(self) -> None:
        """Forget all batches, files, faults, counters and the request log; restore constructor settings."""
        self._engine.clear()
        self._engine.timings = self._timings
        self._engine.runner = self._runner
        self._faults.reset()
        self._recorder.reset()
        self._ids.reset()
        self._webhooks.forget()

    def configure_webhooks(self, **changes: Any) -> None:
        """Change the webhook settings (``url``, ``secret``, ``delay``, ``duplicates``, ``bad_signature``)."""
        self._webhooks.configure(**changes)

    def webhook_deliveries(self) -> list[Delivery]:
        """Every webhook POSTed so far (oldest first), with the receiver's status code."""
        return self._webhooks.deliveries()

    # -- observation ---------------------------------------------------------------------------

    def batch(self, batch_id: str) -> dict[str, Any]:
        return copy.deepcopy(self._call(lambda: self._engine.view(batch_id)))

    def batches(self) -> list[dict[str, Any]]:
        """Every batch as the API would show it now, newest first."""
        listed, _ = self._call(lambda: self._engine.page(None, 2**31))
        return copy.deepcopy(listed)

    def files(self) -> list[dict[str, Any]]:
        return [stored.to_api() for stored in self._files.all()]

    @property
    def requests(self) -> list[RequestRecord]:
        """The API requests received (oldest first), without control routes and without any key."""
        return self._recorder.log()

    def stats(self) -> dict[str, Any]:
        """Requests per ``METHOD /route/{template}``, uploads, batches created, faults injected per kind."""
        return self._recorder.stats(self._faults.counts())

    @staticmethod
    def _call(operation: Callable[[], Any]) -> Any:
        try:
            return settle_sync(operation)
        except ApiError as exc:
            if exc.status == 404:
                raise KeyError(exc.message) from None
            raise ValueError(exc.message) from None
