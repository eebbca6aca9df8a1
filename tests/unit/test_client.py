"""The sync client against the bundled fake server over real loopback HTTP.

Every test counts what the server saw (its request log and counters) or reads the fields of the
error it got; none measures time. Retries use a tiny policy so faults cost milliseconds. Where the
fake cannot produce a case (an ``x-should-retry`` header, a body cut after some lines), an
``httpx.MockTransport`` stands in for that one narrow case.
"""

from __future__ import annotations

import email.utils
import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from upath import UPath

from airflow_provider_openai_batch.api.client import ClientConfig, OpenAIBatchClient, error_from_response
from airflow_provider_openai_batch.api.exceptions import OpenAIAPIError, OpenAITransportError
from airflow_provider_openai_batch.api.models import BatchStatus
from airflow_provider_openai_batch.api.retry import RetryPolicy
from airflow_provider_openai_batch.testing import FakeOpenAIServer
from tests.helpers import API_KEY, CHAT, FAST, LIFETIME, WRONG_KEY, ManualClock, chat_line, make_config


class WireLog(httpx.HTTPTransport):
    """The real HTTP transport, keeping every request it is asked to send (so refused attempts count too)."""

    def __init__(self) -> None:
        super().__init__(verify=False)  # plain http to 127.0.0.1; skips loading the CA bundle per test
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return super().handle_request(request)

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.sent if r.method == method and r.url.path == path)


def jsonl_bytes(count: int, prefix: str = "req") -> bytes:
    return b"".join(json.dumps(chat_line(f"{prefix}-{i}", f"question {i}")).encode() + b"\n" for i in range(count))


def route_count(server: FakeOpenAIServer, method: str, route: str) -> int:
    return server.stats()["requests"].get(f"{method} {route}", 0)


@pytest.fixture
def wire() -> WireLog:
    return WireLog()


@pytest.fixture
def client(server: FakeOpenAIServer, wire: WireLog) -> Iterator[OpenAIBatchClient]:
    with OpenAIBatchClient(make_config(server), transport=wire) as c:
        yield c


@pytest.fixture
def input_path(tmp_path: Path) -> Path:
    path = tmp_path / "input.jsonl"
    path.write_bytes(jsonl_bytes(6))
    return path


@pytest.fixture
def batch_file_id(client: OpenAIBatchClient, input_path: Path) -> str:
    return client.upload_file(input_path).id


# Auth and headers ---------------------------------------------------------------------------------


def test_bearer_auth_and_org_project_headers_reach_the_server(server, wire):
    config = make_config(server, organization="org-team", project="proj_nightly")
    with OpenAIBatchClient(config, transport=wire) as client:
        client.list_batches(limit=1)
    [record] = server.requests
    assert (record.method, record.path, record.status) == ("GET", "/v1/batches", 200)
    assert record.auth_accepted is True
    assert (record.organization, record.project) == ("org-team", "proj_nightly")
    [sent] = wire.sent
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert "api-key" not in sent.headers


def test_no_org_or_project_header_unless_configured(server, client):
    client.list_batches(limit=1)
    [record] = server.requests
    assert record.organization is None and record.project is None


def test_api_key_auth_header_sends_api_key_instead_of_bearer(server, wire):
    # The fake only knows Bearer auth (like api.openai.com), so it answers 401 "no API key": proof that
    # no Authorization header went out. The header that did go out is read from the wire.
    client = OpenAIBatchClient(make_config(server, auth_header="api-key"), transport=wire)
    with client, pytest.raises(OpenAIAPIError) as caught:
        client.list_batches(limit=1)
    [sent] = wire.sent
    assert sent.headers["api-key"] == API_KEY
    assert "authorization" not in sent.headers
    assert caught.value.status_code == 401
    assert "didn't provide an API key" in caught.value.message
    [record] = server.requests
    assert record.auth_accepted is False


def test_wrong_key_is_401_invalid_api_key_and_the_key_never_shows(server):
    config = ClientConfig(api_key=WRONG_KEY, base_url=server.url, retry=FAST)
    client = OpenAIBatchClient(config)
    with client, pytest.raises(OpenAIAPIError) as caught:
        client.get_batch("batch_abc")
    error = caught.value
    assert error.status_code == 401
    assert error.code == "invalid_api_key"
    assert error.type == "invalid_request_error"
    assert error.request_id and error.request_id.startswith("req_")
    assert error.request_id in str(error)
    assert len(server.requests) == 1, "401 must not be retried"
    for text in (str(error), repr(error), repr(client), repr(config), str(error.args)):
        assert WRONG_KEY not in text
        assert WRONG_KEY[3:12] not in text
    assert server.stats()["auth_failures"] == 1


def test_empty_key_is_refused_before_any_request():
    with pytest.raises(ValueError, match="API key is required"):
        ClientConfig(api_key="", base_url="http://127.0.0.1:9/v1")


# Error mapping ------------------------------------------------------------------------------------


def test_unknown_batch_maps_404_with_message_and_request_id(server, client):
    with pytest.raises(OpenAIAPIError) as caught:
        client.get_batch("batch_missing")
    error = caught.value
    assert error.status_code == 404
    assert error.code is None and error.param is None
    assert error.message == "No batch found with id 'batch_missing'."
    assert error.request_id and error.request_id.startswith("req_")
    assert (error.method, error.path) == ("GET", "/v1/batches/batch_missing")
    assert not error.is_transient
    assert len(server.requests) == 1


def test_unknown_file_maps_404_with_param(server, client):
    with pytest.raises(OpenAIAPIError) as caught:
        client.get_file("file-missing")
    error = caught.value
    assert (error.status_code, error.param, error.code) == (404, "id", None)
    assert error.message == "No such File object: file-missing"
    assert "param=id" in str(error)
    assert len(server.requests) == 1


def test_bad_create_parameter_maps_400_code_and_param(server, client, batch_file_id):
    with pytest.raises(OpenAIAPIError) as caught:
        client.create_batch(batch_file_id, "/v1/not-an-endpoint")
    error = caught.value
    assert (error.status_code, error.code, error.param) == (400, "invalid_value", "endpoint")
    assert route_count(server, "POST", "/v1/batches") == 1
    assert server.stats()["batches_created"] == 0


# Retries ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_status_is_retried_until_success(server, client, status):
    server.fail_next(3, status, method="GET", path_prefix="/v1/batches")
    page = client.list_batches()
    assert page.data == []
    records = server.requests
    assert len(records) == 3 + 1
    assert [r.status for r in records] == [status, status, status, 200]
    assert [r.fault for r in records] == ["fail_next"] * 3 + [None]


def test_dropped_connection_is_retried(server, client, batch_file_id):
    server.drop_next(2, when="before", method="GET", path_prefix="/v1/files/")
    assert client.get_file(batch_file_id).id == batch_file_id
    gets = [r for r in server.requests if r.method == "GET"]
    assert [(r.status, r.fault) for r in gets] == [(None, "drop_before"), (None, "drop_before"), (200, None)]


def test_connection_refused_is_retried_until_the_server_is_back(server, wire):
    patient = RetryPolicy(max_attempts=100, initial_delay=0.01, max_delay=0.02)
    with OpenAIBatchClient(make_config(server, retry=patient), transport=wire) as client:
        server.go_down(0.3)
        page = client.list_batches()
    assert page.data == []
    assert wire.count("GET", "/v1/batches") > 1, "at least one attempt was refused"
    assert route_count(server, "GET", "/v1/batches") == 1, "refused attempts never reach the server"


def test_attempts_are_bounded_for_status_errors(server, client):
    server.fail_next(50, 503, method="GET")
    with pytest.raises(OpenAIAPIError) as caught:
        client.get_batch("batch_any")
    assert caught.value.status_code == 503
    assert len(server.requests) == FAST.max_attempts


def test_attempts_are_bounded_when_refused(server, wire):
    policy = RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.02)
    with OpenAIBatchClient(make_config(server, retry=policy), transport=wire) as client:
        server.go_down()
        with pytest.raises(OpenAITransportError) as caught:
            client.list_batches()
    assert caught.value.request_sent is False
    assert caught.value.status_code is None
    assert "ConnectError" in str(caught.value)
    assert len(wire.sent) == 4


def test_insufficient_quota_429_is_not_retried():
    response = httpx.Response(
        429, json={"error": {"message": "You exceeded your current quota", "type": "x", "code": "insufficient_quota"}}
    )
    error = error_from_response(response, "GET", "/batches")
    assert error.code == "insufficient_quota"
    assert FAST.should_retry(error) is False


def test_retry_after_one_second_is_honoured(server, client, caplog):
    server.fail_next(1, 429, method="GET", retry_after=1)
    with caplog.at_level(logging.WARNING, logger="airflow_provider_openai_batch.api.retry"):
        client.list_batches()
    records = server.requests
    assert [r.status for r in records] == [429, 200]
    # The computed sleep is what the server asked for, not the 0.01 s backoff of the policy.
    assert any("in 1.0s" in message for message in caplog.messages), caplog.messages


def test_retry_after_ms_is_parsed_from_the_server(server, wire):
    policy = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)
    server.set_faults(rate_429=1.0, retry_after_ms=20, methods="GET", path_prefix="/v1/batches")
    client = OpenAIBatchClient(make_config(server, retry=policy), transport=wire)
    with client, pytest.raises(OpenAIAPIError) as caught:
        client.list_batches()
    error = caught.value
    assert (error.status_code, error.code) == (429, "rate_limit_exceeded")
    assert error.retry_after == pytest.approx(0.02)
    assert policy.delay(error, 0) == pytest.approx(0.02)
    assert policy.delay(error, 5) == pytest.approx(0.02), "the server's hint wins over the backoff"
    assert len(server.requests) == 3


def test_retry_after_above_the_cap_is_not_retried(server, wire):
    policy = RetryPolicy(initial_delay=0.01, max_delay=0.05, max_retry_after=0.5)
    server.fail_next(1, 429, method="GET", retry_after=1)
    client = OpenAIBatchClient(make_config(server, retry=policy), transport=wire)
    with client, pytest.raises(OpenAIAPIError) as caught:
        client.list_batches()
    assert caught.value.status_code == 429
    assert caught.value.retry_after == 1.0
    assert len(server.requests) == 1


def test_delay_unit_rules():
    policy = RetryPolicy(initial_delay=0.5, max_delay=8.0, max_retry_after=120)
    hinted = OpenAIAPIError("slow down", status_code=429, retry_after=3)
    assert policy.delay(hinted, 0) == 3.0
    assert policy.delay(OpenAIAPIError("x", status_code=429, retry_after=120), 0) == 120.0
    too_long = OpenAIAPIError("x", status_code=429, retry_after=121)
    assert policy.should_retry(too_long) is False
    assert policy.delay(too_long, 0) <= 0.5, "an out-of-range hint falls back to the backoff"
    for retries in range(8):
        expected = min(0.5 * 2**retries, 8.0)
        for _ in range(20):
            assert 0.75 * expected <= policy.delay(None, retries) <= expected
    zero_hint = OpenAIAPIError("x", status_code=429, retry_after=0)
    assert 0.375 <= policy.delay(zero_hint, 0) <= 0.5


def test_retry_after_header_forms():
    def error(headers: dict[str, str]) -> OpenAIAPIError:
        return error_from_response(httpx.Response(429, headers=headers, json={"error": {}}), "GET", "/batches")

    assert error({"retry-after": "7"}).retry_after == 7.0
    assert error({"retry-after": "1.5"}).retry_after == 1.5
    assert error({"retry-after-ms": "250", "retry-after": "9"}).retry_after == 0.25, "ms wins"
    assert error({"retry-after-ms": "junk", "retry-after": "9"}).retry_after == 9.0
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= error({"retry-after": future}).retry_after <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert error({"retry-after": past}).retry_after == 0.0
    assert error({"retry-after": "not a date"}).retry_after is None
    assert error({}).retry_after is None


def test_x_should_retry_overrides_the_status_rule():
    # The fake never sends x-should-retry, so the mapping is checked on hand-built responses.
    no = error_from_response(httpx.Response(503, headers={"x-should-retry": "false"}), "GET", "/batches")
    yes = error_from_response(httpx.Response(400, headers={"x-should-retry": "true"}), "GET", "/batches")
    unset = error_from_response(httpx.Response(503), "GET", "/batches")
    assert FAST.should_retry(no) is False
    assert FAST.should_retry(yes) is True
    assert FAST.should_retry(unset) is True
    assert FAST.should_retry(yes, idempotent=False) is False, "a POST /batches 4xx is never retried"


def test_x_should_retry_false_stops_the_client_retrying():
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, headers={"x-should-retry": "false"}, json={"error": {"message": "no"}})

    config = ClientConfig(api_key=API_KEY, base_url="http://fake.invalid/v1", retry=FAST)
    client = OpenAIBatchClient(config, transport=httpx.MockTransport(handler))
    with client, pytest.raises(OpenAIAPIError) as caught:
        client.get_batch("batch_x")
    assert caught.value.status_code == 503
    assert len(calls) == 1


def test_non_json_error_body_keeps_the_text():
    error = error_from_response(httpx.Response(502, text="<html>Bad gateway</html>"), "GET", "/batches")
    assert error.status_code == 502 and "Bad gateway" in error.message
    assert error.is_transient


# create_batch is not idempotent ---------------------------------------------------------------------


def test_create_batch_is_not_retried_once_the_server_saw_it(server, client, batch_file_id):
    server.drop_next(1, when="after", method="POST", path_prefix="/v1/batches")
    with pytest.raises(OpenAITransportError) as caught:
        client.create_batch(batch_file_id, CHAT)
    assert caught.value.request_sent is True
    assert route_count(server, "POST", "/v1/batches") == 1
    assert server.stats()["batches_created"] == 1, "the server made exactly one batch"
    assert len(server.batches()) == 1


def test_create_batch_dropped_before_work_is_not_blindly_retried_either(server, client, batch_file_id):
    # A drop before the work looks, to the client, exactly like a drop after it (headers, then a cut
    # body): the client cannot know the batch was not made, so it does not retry; submit_once
    # reconciles by looking the batch up (see test_submission.py).
    server.drop_next(1, when="before", method="POST", path_prefix="/v1/batches")
    with pytest.raises(OpenAITransportError) as caught:
        client.create_batch(batch_file_id, CHAT)
    assert caught.value.request_sent is True
    assert route_count(server, "POST", "/v1/batches") == 1
    assert server.stats()["batches_created"] == 0


def test_create_batch_is_retried_when_the_request_never_got_there(server, wire, input_path):
    patient = RetryPolicy(max_attempts=100, initial_delay=0.01, max_delay=0.02)
    with OpenAIBatchClient(make_config(server, retry=patient), transport=wire) as client:
        file_id = client.upload_file(input_path).id
        server.go_down(0.3)
        batch = client.create_batch(file_id, CHAT)
    assert batch.status == BatchStatus.VALIDATING
    assert wire.count("POST", "/v1/batches") > 1, "refused attempts were retried"
    assert route_count(server, "POST", "/v1/batches") == 1
    assert server.stats()["batches_created"] == 1


def test_create_batch_429_is_left_to_the_caller(server, client, batch_file_id):
    server.fail_next(1, 429, method="POST", path_prefix="/v1/batches")
    with pytest.raises(OpenAIAPIError) as caught:
        client.create_batch(batch_file_id, CHAT)
    assert caught.value.status_code == 429
    assert route_count(server, "POST", "/v1/batches") == 1
    assert server.stats()["batches_created"] == 0


def test_create_batch_sends_metadata_and_output_expiry(server, client, batch_file_id):
    batch = client.create_batch(batch_file_id, CHAT, metadata={"team": "evals"}, output_expires_after=7 * 24 * 3600)
    assert batch.metadata == {"team": "evals"}
    assert batch.input_file_id == batch_file_id
    assert server.batch(batch.id)["metadata"] == {"team": "evals"}


# Cancel ---------------------------------------------------------------------------------------------


def test_cancel_running_batch(server, client, batch_file_id):
    batch = client.create_batch(batch_file_id, CHAT)
    cancelled = client.cancel_batch(batch.id)
    assert cancelled.status == BatchStatus.CANCELLING
    assert route_count(server, "POST", "/v1/batches/{batch_id}/cancel") == 1


def test_cancel_completed_batch_is_409_at_once(server, client, clock, batch_file_id):
    batch = client.create_batch(batch_file_id, CHAT)
    clock.advance(LIFETIME + 5)
    assert client.get_batch(batch.id).status == BatchStatus.COMPLETED
    with pytest.raises(OpenAIAPIError) as caught:
        client.cancel_batch(batch.id)
    error = caught.value
    assert error.status_code == 409
    assert error.message == "Cannot cancel a batch with status 'completed'."
    assert route_count(server, "POST", "/v1/batches/{batch_id}/cancel") == 1, "409 on cancel is final"


# Uploads --------------------------------------------------------------------------------------------


def test_upload_of_a_large_file_streams_every_byte(server, client, tmp_path):
    path = tmp_path / "large.jsonl"
    line = json.dumps(chat_line("x", "y" * 900)).encode() + b"\n"
    with open(path, "wb") as handle:
        chunk = line * 1024
        while handle.tell() < 50_000_000:
            handle.write(chunk)
    size = path.stat().st_size
    uploaded = client.upload_file(path)
    assert uploaded.bytes == size
    assert (uploaded.filename, uploaded.purpose) == ("large.jsonl", "batch")
    stored = {f["id"]: f for f in server.files()}[uploaded.id]
    assert stored["bytes"] == size
    assert server.stats()["uploads"] == 1


def test_upload_of_an_open_binary_stream(server, client, input_path):
    with open(input_path, "rb") as handle:
        uploaded = client.upload_file(handle)
        assert not handle.closed, "a caller's stream is left open"
    assert uploaded.bytes == input_path.stat().st_size
    assert uploaded.filename == "input.jsonl"


def test_upload_of_an_in_memory_stream_gets_a_jsonl_name(server, client):
    content = jsonl_bytes(3)
    uploaded = client.upload_file(io.BytesIO(content))
    assert uploaded.bytes == len(content)
    assert uploaded.filename.endswith(".jsonl")
    assert b"\n".join(client.iter_file_lines(uploaded.id)) + b"\n" == content


def test_upload_of_a_storage_path(server, client, input_path):
    uploaded = client.upload_file(UPath(input_path.as_uri()))
    assert uploaded.bytes == input_path.stat().st_size
    assert uploaded.filename == "input.jsonl"


def test_upload_with_expiry(server, client, input_path):
    uploaded = client.upload_file(input_path, expires_after=3600)
    assert uploaded.expires_at == uploaded.created_at + 3600


def test_upload_retried_after_503_resends_the_whole_file(server, client, tmp_path):
    path = tmp_path / "retry.jsonl"
    content = jsonl_bytes(20_000)
    path.write_bytes(content)
    server.fail_next(1, 503, method="POST", path_prefix="/v1/files")
    uploaded = client.upload_file(path)
    assert uploaded.bytes == len(content)
    assert route_count(server, "POST", "/v1/files") == 2
    assert server.stats()["uploads"] == 1
    assert b"\n".join(client.iter_file_lines(uploaded.id)) + b"\n" == content


def test_upload_of_a_seekable_stream_is_rewound_on_retry(server, client):
    content = jsonl_bytes(50)
    stream = io.BytesIO(content)
    stream.name = "rewound.jsonl"
    server.fail_next(1, 503, method="POST", path_prefix="/v1/files")
    uploaded = client.upload_file(stream)
    assert uploaded.bytes == len(content)
    assert route_count(server, "POST", "/v1/files") == 2
    assert b"\n".join(client.iter_file_lines(uploaded.id)) + b"\n" == content


def test_upload_of_a_stream_starts_at_the_callers_position(server, client):
    # httpx's multipart field seeks its file to 0 and sizes it from the end; the client must make
    # that "0" the caller's position, on the first attempt and on a retry.
    prefix = b"# a header the caller has already read past\n"
    content = jsonl_bytes(50)
    stream = io.BytesIO(prefix + content)
    stream.name = "from-offset.jsonl"
    stream.seek(len(prefix))
    uploaded = client.upload_file(stream)
    assert uploaded.bytes == len(content)
    assert b"\n".join(client.iter_file_lines(uploaded.id)) + b"\n" == content

    stream.seek(len(prefix))
    server.fail_next(1, 503, method="POST", path_prefix="/v1/files")
    retried = client.upload_file(stream)
    assert retried.bytes == len(content)
    assert route_count(server, "POST", "/v1/files") == 1 + 2


class OneWayStream(io.RawIOBase):
    """A readable stream that cannot seek (a pipe, a socket)."""

    def __init__(self, content: bytes) -> None:
        self._inner = io.BytesIO(content)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def test_upload_of_a_one_way_stream_is_sent_once(server, client):
    server.fail_next(1, 503, method="POST", path_prefix="/v1/files")
    with pytest.raises(OpenAIAPIError) as caught:
        client.upload_file(OneWayStream(jsonl_bytes(5)), filename="pipe.jsonl")
    assert caught.value.status_code == 503
    assert route_count(server, "POST", "/v1/files") == 1, "a stream that cannot be replayed is not retried"
    content = jsonl_bytes(5)
    assert client.upload_file(OneWayStream(content), filename="pipe.jsonl").bytes == len(content)


# Downloads ------------------------------------------------------------------------------------------


def completed_batch(client: OpenAIBatchClient, clock: ManualClock, file_id: str):
    batch = client.create_batch(file_id, CHAT)
    clock.advance(LIFETIME + 5)
    done = client.get_batch(batch.id)
    assert done.status == BatchStatus.COMPLETED
    return done


def test_iter_file_lines_streams_every_line(server, client, clock, batch_file_id):
    batch = completed_batch(client, clock, batch_file_id)
    lines = list(client.iter_file_lines(batch.output_file_id))
    custom_ids = sorted(json.loads(line)["custom_id"] for line in lines)
    assert custom_ids == sorted(f"req-{i}" for i in range(6))


def test_iter_file_lines_survives_a_dropped_connection(server, client, clock, batch_file_id):
    batch = completed_batch(client, clock, batch_file_id)
    expected = list(client.iter_file_lines(batch.output_file_id))
    server.drop_next(2, when="before", method="GET", path_prefix=f"/v1/files/{batch.output_file_id}/content")
    assert list(client.iter_file_lines(batch.output_file_id)) == expected
    downloads = [r for r in server.requests if r.route == "/v1/files/{file_id}/content"]
    assert [r.fault for r in downloads] == [None, "drop_before", "drop_before", None]


def test_iter_file_lines_of_a_missing_file_raises_404_without_retry(server, client):
    with pytest.raises(OpenAIAPIError) as caught:
        list(client.iter_file_lines("file-nope"))
    assert caught.value.status_code == 404
    assert len(server.requests) == 1


class CutBody(httpx.SyncByteStream):
    def __init__(self, chunks: list[bytes], cut: bool) -> None:
        self.chunks, self.cut = chunks, cut

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.cut:
            raise httpx.ReadError("connection reset by peer")


def test_iter_file_lines_restarts_and_skips_lines_already_yielded():
    # The fake drops a connection only before the body; a cut after some lines needs a scripted transport.
    content = b"".join(b'{"custom_id": "r%d"}\n' % i for i in range(10))
    attempts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) == 1:  # 3 whole lines and half of the 4th, then the connection dies
            return httpx.Response(200, stream=CutBody([content[:50], content[50:70]], cut=True))
        if len(attempts) == 2:  # a cut before anything new arrives
            return httpx.Response(200, stream=CutBody([content[:10]], cut=True))
        return httpx.Response(200, stream=CutBody([content[i : i + 7] for i in range(0, len(content), 7)], cut=False))

    config = ClientConfig(api_key=API_KEY, base_url="http://fake.invalid/v1", retry=FAST)
    with OpenAIBatchClient(config, transport=httpx.MockTransport(handler)) as client:
        lines = list(client.iter_file_lines("file-abc"))
    assert lines == content.splitlines()
    assert len(attempts) == 3


def test_iter_file_lines_gives_up_after_max_attempts():
    attempts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        return httpx.Response(200, stream=CutBody([b"line\n"], cut=True))

    policy = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02)
    config = ClientConfig(api_key=API_KEY, base_url="http://fake.invalid/v1", retry=policy)
    with OpenAIBatchClient(config, transport=httpx.MockTransport(handler)) as client:
        received: list[bytes] = []
        with pytest.raises(OpenAITransportError) as caught:
            received.extend(client.iter_file_lines("file-abc"))
    assert received == [b"line"], "the line is yielded once, not once per attempt"
    assert caught.value.request_sent is True
    assert len(attempts) == 3


# Listing and files --------------------------------------------------------------------------------------


def test_iter_batches_follows_pages_newest_first(server, client, clock, batch_file_id):
    created = []
    for _ in range(5):
        created.append(client.create_batch(batch_file_id, CHAT).id)
        clock.advance(1)
    listed = [batch.id for batch in client.iter_batches(page_size=2)]
    assert listed == created[::-1]
    assert len(set(listed)) == 5
    assert route_count(server, "GET", "/v1/batches") == 3, "5 batches in pages of 2"
    assert [b.id for b in client.iter_batches(page_size=2, max_items=3)] == created[::-1][:3]


def test_list_batches_page_cursor(server, client, batch_file_id):
    created = [client.create_batch(batch_file_id, CHAT).id for _ in range(3)]
    first = client.list_batches(limit=2)
    assert [b.id for b in first.data] == created[::-1][:2]
    assert first.has_more is True
    rest = client.list_batches(limit=2, after=first.data[-1].id)
    assert [b.id for b in rest.data] == [created[0]]
    assert rest.has_more is False


def test_list_get_and_delete_files(server, client, input_path):
    first = client.upload_file(input_path)
    second = client.upload_file(input_path, filename="second.jsonl")
    listed = client.list_files(purpose="batch")
    assert {f.id for f in listed.data} == {first.id, second.id}
    assert client.list_files(purpose="batch", limit=1).has_more is True
    fetched = client.get_file(second.id)
    assert (fetched.id, fetched.filename, fetched.bytes) == (second.id, "second.jsonl", input_path.stat().st_size)
    deleted = client.delete_file(first.id)
    assert (deleted.id, deleted.deleted) == (first.id, True)
    assert [f.id for f in client.list_files().data] == [second.id]
    with pytest.raises(OpenAIAPIError) as caught:
        client.get_file(first.id)
    assert caught.value.status_code == 404
