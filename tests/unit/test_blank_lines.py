"""Blank lines in an input file: refused before upload by default, or left out of a streamed copy on request.

The operator-level tests run the operator against the real fake server and read back the bytes it stored.
"""

from __future__ import annotations

import hashlib
import io
import json
from types import SimpleNamespace

import httpx
import pytest

from airflow_provider_openai_batch import OpenAIBatchOperator
from airflow_provider_openai_batch.api.exceptions import BatchFileValidationError
from airflow_provider_openai_batch.inputs.batchfile import MAX_STORED_PROBLEMS, validate_batch_file
from airflow_provider_openai_batch.inputs.sources import open_binary
from airflow_provider_openai_batch.inputs.without_blank_lines import WithoutBlankLines
from airflow_provider_openai_batch.submitting.submission import FINGERPRINT_CHARS, FINGERPRINT_KEY
from airflow_provider_openai_batch.testing import FakeOpenAIServer

CHAT = "/v1/chat/completions"


def request(custom_id: str) -> bytes:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"question {custom_id}"}]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}).encode() + b"\n"


REQUESTS = [request(f"r{i}") for i in range(4)]
CLEAN = b"".join(REQUESTS)
# Blank lines 1, 3, 4 and 6 sit before a request; lines 8 and 9 trail the last one.
WITH_BLANKS = b"\n" + REQUESTS[0] + b"\n \t\r\n" + REQUESTS[1] + b"\r\n" + REQUESTS[2] + REQUESTS[3] + b"\n  "


def write(tmp_path, data: bytes, name: str = "input.jsonl"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# The validator ------------------------------------------------------------------------------------------------------


def test_a_blank_line_before_a_request_is_refused_naming_its_line(tmp_path):
    with pytest.raises(BatchFileValidationError) as caught:
        validate_batch_file(write(tmp_path, WITH_BLANKS), CHAT)

    error = caught.value
    assert [(p.line, p.field) for p in error.problems] == [(1, None), (3, None), (4, None), (6, None)]
    assert "line 3: blank line" in str(error) and "skip_blank_lines=True" in str(error)
    assert "nothing was uploaded" in str(error)


def test_blank_lines_after_the_last_request_are_tolerated(tmp_path):
    summary = validate_batch_file(write(tmp_path, CLEAN + b"\n\n  \n"), CHAT)
    assert summary.requests == 4 and summary.blank_lines_skipped == 0
    assert summary.fingerprint == hashlib.sha256(CLEAN + b"\n\n  \n").hexdigest()  # uploaded as they are


def test_many_blank_lines_are_all_counted_and_the_stored_problems_capped(tmp_path):
    data = REQUESTS[0] + b"\n" * (MAX_STORED_PROBLEMS + 5) + REQUESTS[1] + REQUESTS[0]  # then a duplicate
    with pytest.raises(BatchFileValidationError) as caught:
        validate_batch_file(write(tmp_path, data), CHAT)
    assert caught.value.total == MAX_STORED_PROBLEMS + 5 + 1
    assert len(caught.value.problems) == MAX_STORED_PROBLEMS
    assert caught.value.problems[0].line == 2


def test_with_skip_blank_lines_the_summary_is_that_of_the_file_without_them(tmp_path):
    summary = validate_batch_file(write(tmp_path, WITH_BLANKS), CHAT, skip_blank_lines=True)
    clean = validate_batch_file(write(tmp_path, CLEAN, "clean.jsonl"), CHAT)

    assert summary.blank_lines_skipped == 6
    assert summary.fingerprint == clean.fingerprint == hashlib.sha256(CLEAN).hexdigest()
    assert (summary.requests, summary.bytes, summary.estimated_tokens) == (4, len(CLEAN), clean.estimated_tokens)


def test_skipping_blank_lines_keeps_every_other_check_and_the_original_line_numbers(tmp_path):
    data = b"\n\n" + REQUESTS[0] + REQUESTS[0]
    with pytest.raises(BatchFileValidationError) as caught:
        validate_batch_file(write(tmp_path, data), CHAT, skip_blank_lines=True)
    assert [(p.line, p.field) for p in caught.value.problems] == [(4, "custom_id")]


# The streamed copy --------------------------------------------------------------------------------------------------


def test_the_copy_streams_exactly_the_validated_bytes_and_can_be_read_again(tmp_path, monkeypatch):
    from airflow_provider_openai_batch.inputs import without_blank_lines

    monkeypatch.setattr(without_blank_lines, "_READ_SIZE", 7)  # lines cut across reads
    path = write(tmp_path, WITH_BLANKS)
    copy = WithoutBlankLines(path, validate_batch_file(path, CHAT, skip_blank_lines=True).bytes)

    assert str(copy) == str(path)
    for _attempt in range(2):  # an upload retry reopens the source
        with open_binary(copy) as handle:
            assert handle.seek(0, io.SEEK_END) == len(CLEAN)  # what httpx asks for the Content-Length
            handle.seek(0)
            chunks = iter(lambda: handle.read(10), b"")
            assert b"".join(chunks) == CLEAN


def test_the_copy_refuses_to_send_a_file_that_changed_after_validation(tmp_path):
    path = write(tmp_path, WITH_BLANKS)
    copy = WithoutBlankLines(path, len(CLEAN))
    path.write_bytes(WITH_BLANKS + REQUESTS[0])
    with open_binary(copy) as handle, pytest.raises(OSError, match="changed since it was validated"):
        handle.read(len(CLEAN) + 1)


def test_the_copy_needs_a_path_or_a_storage_path():
    with pytest.raises(TypeError, match="path or a storage path"):
        WithoutBlankLines(io.BytesIO(CLEAN), len(CLEAN))


# The operator, against the fake server ------------------------------------------------------------------------------


@pytest.fixture
def server(monkeypatch):
    with FakeOpenAIServer() as fake:
        conn = {"conn_type": "openai_batch", "password": "test-key", "host": fake.url}
        monkeypatch.setenv("AIRFLOW_CONN_OPENAI_DEFAULT", json.dumps(conn))
        yield fake


def submit(input_file, **kwargs) -> str:
    ti = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, xcom_push=lambda **_: None)
    operator = OpenAIBatchOperator(task_id="t", input_file=str(input_file), wait_for_completion=False, **kwargs)
    return operator.execute({"ti": ti})


def stored(server: FakeOpenAIServer, batch_id: str) -> tuple[bytes, dict]:
    with httpx.Client(base_url=server.url + "/", headers={"Authorization": "Bearer test-key"}) as http:
        batch = http.get(f"batches/{batch_id}").raise_for_status().json()
        content = http.get(f"files/{batch['input_file_id']}/content").raise_for_status().content
    return content, batch


def test_the_operator_refuses_blank_lines_by_default_and_sends_nothing(server, tmp_path):
    with pytest.raises(BatchFileValidationError, match="line 1: blank line"):
        submit(write(tmp_path, WITH_BLANKS))
    assert server.stats()["uploads"] == 0 and server.stats()["batches_created"] == 0


def test_the_operator_uploads_the_file_without_blank_lines_when_asked(server, tmp_path):
    batch_id = submit(write(tmp_path, WITH_BLANKS), skip_blank_lines=True)

    content, batch = stored(server, batch_id)
    assert content == CLEAN
    assert batch["metadata"][FINGERPRINT_KEY] == hashlib.sha256(CLEAN).hexdigest()[:FINGERPRINT_CHARS]
    assert server.stats()["uploads"] == 1


def test_the_fingerprint_is_the_same_with_or_without_blank_lines(server, tmp_path):
    first = submit(write(tmp_path, WITH_BLANKS), skip_blank_lines=True)
    # A retry of the same task instance with the blank lines removed re-attaches instead of paying twice.
    second = submit(write(tmp_path, CLEAN, "clean.jsonl"), skip_blank_lines=True)

    assert second == first
    assert server.stats()["batches_created"] == 1
