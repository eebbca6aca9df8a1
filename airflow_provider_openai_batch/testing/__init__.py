"""A faithful fake of the OpenAI Files + Batches API, for tests, demos and CI.

It is a real HTTP server on ``127.0.0.1`` (uvicorn in a background thread), so clients are
exercised with their real transport, and it needs no Airflow (plain pytest can use it)::

    from airflow_provider_openai_batch.testing import FakeOpenAIServer

    with FakeOpenAIServer() as server:            # or server.start() ... server.stop()
        client = openai.OpenAI(api_key="sk-test", base_url=server.url)   # http://127.0.0.1:PORT/v1

or, from a shell / another process: ``python -m airflow_provider_openai_batch.testing --port 8765``
(prints the base URL as the first line of stdout, serves until SIGINT/SIGTERM).

What it emulates
----------------
* ``POST/GET /v1/files``, ``GET/DELETE /v1/files/{id}``, ``GET /v1/files/{id}/content``: content
  is streamed to and from disk; ``purpose=batch`` needs a ``.jsonl`` name; optional
  ``expires_after[anchor]``/``expires_after[seconds]``.
* ``POST/GET /v1/batches``, ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``: synchronous
  400s for bad parameters; then a lifecycle driven by elapsed time and advanced lazily on each
  read: ``validating`` -> ``in_progress`` (counts grow linearly) -> ``finalizing`` -> ``completed``,
  or ``failed`` with line-level validation errors, or ``expired`` / ``cancelling`` -> ``cancelled``
  with partial results. Lists are newest first with ``after``/``limit``/``has_more``.
* Result files (purpose ``batch_output``): one ``BatchRequestOutput`` line per request, shuffled
  with the seed; successes in the output file, HTTP failures and ``batch_expired`` /
  ``batch_cancelled`` lines in the error file. Bodies are deterministic and endpoint-shaped with
  ``usage``. Every error uses the ``{"error": {message, type, param, code}}`` envelope; every
  response carries ``x-request-id`` and ``openai-version``.
* Auth: ``Authorization: Bearer <key>``; any non-empty key, or exactly ``api_key`` if given.

Constructor (all keyword-only except ``port``)
----------------------------------------------
``FakeOpenAIServer(port=0, *, host="127.0.0.1", api_key=None, validating_seconds=0.2,
in_progress_seconds=0.5, finalizing_seconds=0.1, cancelling_seconds=0.2, expire_after_fraction=None,
seed=0, allowed_completion_windows=("24h",), responder=None, fail_requests=None, models=None,
accept_any_model=False, max_requests=50_000, max_file_bytes=209_715_200, max_embedding_inputs=50_000, clock=time.time,
data_dir=None, backlog=4096, worker_threads=4)``

* ``fail_next_batches`` messages may contain ``{model}``, replaced by the batch's model.
* ``responder(endpoint, body, custom_id)`` scripts answers: return ``(status_code, body)``, a ``str``
  (the answer text for chat completions, responses and completions), or ``None`` for the default
  (``"echo: <last user text>"``). It is called once per request, from a worker thread, when the
  batch is planned (just after creation). ``fail_requests={"custom-id": 400}`` fails chosen requests.
* Models: a line whose ``body.model`` the fake does not know fails validation with ``model_not_found``
  (line N, param ``body.model``), as on the service. Known by default: the real OpenAI models of
  ``testing.models.DEFAULT_MODELS`` (chat/responses, completions, embeddings, moderation, image,
  video), each also with its dated snapshots (``gpt-4o-mini-2024-07-18``). ``models=[...]``
  replaces that list (CLI: ``--model NAME``, repeatable); ``accept_any_model=True`` (CLI:
  ``--accept-any-model``) turns the check off.
* Request bodies: as on the service, what the endpoint rejects inside a valid line (a chat message
  without ``role`` or ``content``, an empty ``messages`` list, a Responses request without
  ``input``, ...) is answered per request with a 400 line in the error file, before
  ``fail_requests`` and the responder are consulted; see ``testing.request_checks`` for the rules
  and where each comes from.
* ``clock``: a zero-argument callable returning epoch seconds; pass a manual clock to drive the
  lifecycle without sleeping.

Python test API
---------------
``set_faults(rate_429=0, rate_503=0, rate_500=0, *, retry_after=1, retry_after_ms=None, latency=0.0,
methods=None, path_prefix=None)``, ``fail_next(n=1, status=503, *, method=None, path_prefix=None,
retry_after=None)``, ``drop_next(n=1, *, when="before"|"after", method=None, path_prefix=None)``,
``clear_faults()``, ``fail_next_batches(count=1, code="token_limit_exceeded", message=...)``,
``expire_batch(batch_id, completed_fraction=0.5)``, ``configure(validating_seconds=..., ...)`` and
``set_responder(responder=None, fail_requests=None)`` (both for batches created afterwards),
``go_down(seconds=None)`` / ``come_back()``, ``stats()``, ``batch(id)``, ``batches()``, ``files()``,
``requests`` (list of :class:`RequestRecord`), ``reset()``.

Control routes (no auth, never faulted, not logged; JSON bodies = the method's keyword arguments)
---------------------------------------------------------------------------------------------------
========  ================================  ===================================================
GET       ``/_fake/stats``                  ``stats()``
GET       ``/_fake/requests``               ``requests`` as a JSON list
GET       ``/_fake/batches``                ``batches()``
GET       ``/_fake/batches/{id}``           ``batch(id)``: a page to link to (the provider's ``dashboard_url`` extra)
GET       ``/_fake/files``                  ``files()``
POST      ``/_fake/faults``                 ``set_faults(**body)`` (``latency`` may be ``[low, high]``)
DELETE    ``/_fake/faults``                 ``clear_faults()``
POST      ``/_fake/fail_next``              ``fail_next(**body)``
POST      ``/_fake/drop_next``              ``drop_next(**body)``
POST      ``/_fake/fail_next_batches``      ``fail_next_batches(**body)``
POST      ``/_fake/config``                 ``configure(**body)``
POST      ``/_fake/batches/{id}/expire``    ``expire_batch(id, **body)``; returns the batch
POST      ``/_fake/reset``                  ``reset()``
POST      ``/_fake/go_down``                ``{"seconds": S}``: refuse connections for S seconds
========  ================================  ===================================================
"""

from airflow_provider_openai_batch.testing.execution import Responder, ResponderResult
from airflow_provider_openai_batch.testing.observe import RequestRecord
from airflow_provider_openai_batch.testing.server import FakeOpenAIServer

__all__ = ["FakeOpenAIServer", "RequestRecord", "Responder", "ResponderResult"]
