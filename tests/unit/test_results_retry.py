"""The retry remainder: exactly the requests worth sending again, as byte-identical input lines in input order."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from upath import UPath

from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.inputs.batchfile import validate_batch_file
from airflow_provider_openai_batch.results.landing import land_results
from airflow_provider_openai_batch.results.retry_file import write_retry_file

URL = "/v1/chat/completions"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def ok(custom_id: str) -> bytes:
    response = {"status_code": 200, "request_id": "req", "body": {"choices": [], "usage": {"total_tokens": 3}}}
    return dumps({"id": "batch_req", "custom_id": custom_id, "response": response, "error": None})


def http_fail(custom_id: str, status: int) -> bytes:
    body = {"error": {"message": "no", "type": "x", "param": None, "code": f"http_{status}"}}
    return dumps({"id": "batch_req", "custom_id": custom_id, "response": {"status_code": status, "body": body}})


def line_error(custom_id: str, code: str) -> bytes:
    return dumps({"id": "batch_req", "custom_id": custom_id, "response": None, "error": {"code": code, "message": "m"}})


def input_line(custom_id: str, spacing: str = "") -> bytes:
    """Hand-written, non-canonical JSON: a re-serialised line would not be byte-identical."""
    body = (
        f'{{"model":"gpt-4o-mini",{spacing}"messages":[{{"role":"user","content":"caf\u00e9 \\u00e9 {custom_id}"}}]}}'
    )
    return f'{{"custom_id": "{custom_id}",  "method":"POST", "url":"{URL}",{spacing}"body":{body}}}\n'.encode()


# custom_id -> result line (None: in neither result file, i.e. missing)
OUTCOMES: dict[str, bytes | None] = {
    "ok-1": ok("ok-1"),
    "bad-request": http_fail("bad-request", 400),
    "rate-limited": http_fail("rate-limited", 429),
    "expired": line_error("expired", "batch_expired"),
    "server-error": http_fail("server-error", 500),
    "not-implemented": http_fail("not-implemented", 501),
    "cancelled": line_error("cancelled", "batch_cancelled"),
    "lost": None,
    "odd-error": line_error("odd-error", "internal_error"),
    "timeout": http_fail("timeout", 408),
    "ok-2": ok("ok-2"),
}
RETRIED_BY_DEFAULT = ["rate-limited", "expired", "server-error", "cancelled", "lost", "odd-error", "timeout"]


@pytest.fixture
def landed(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    """(results file, input file, custom_id -> input line) for a cancelled batch with every kind of outcome."""
    inputs = {cid: input_line(cid, " " * (i % 3)) for i, cid in enumerate(OUTCOMES)}
    input_file = tmp_path / "in.jsonl"
    input_file.write_bytes(b"".join(inputs.values()))
    result_lines = [line for line in reversed(OUTCOMES.values()) if line is not None]  # out of order on purpose
    files = {"o": [line for line in result_lines if b'"status_code": 200' in line]}
    files["e"] = [line for line in result_lines if line not in files["o"]]

    def fetch_lines(file_id: str) -> Iterator[bytes]:
        return iter(files[file_id])

    batch = Batch(id="b1", status="cancelled", output_file_id="o", error_file_id="e")
    results = tmp_path / "results.jsonl"
    land_results(batch, fetch_lines, results, input_source=input_file)
    return results, input_file, inputs


def test_retry_file_holds_exactly_the_retryable_remainder_byte_identical_in_input_order(tmp_path, landed):
    results, input_file, inputs = landed
    destination = tmp_path / "retry" / "retry.jsonl"
    summary = write_retry_file(results, input_file, destination)

    assert destination.read_bytes() == b"".join(inputs[cid] for cid in RETRIED_BY_DEFAULT)
    assert summary.path == str(destination)
    assert summary.requests == 7
    assert summary.custom_ids_sample == RETRIED_BY_DEFAULT
    assert summary.by_status == {"failed": 3, "expired": 1, "cancelled": 1, "missing": 1, "errored": 1}
    assert validate_batch_file(destination, URL).requests == 7


def test_status_classes_and_the_errored_choice(tmp_path, landed):
    results, input_file, inputs = landed
    destination = tmp_path / "retry.jsonl"
    summary = write_retry_file(
        results, input_file, destination, retry_statuses=["5xx"], classes=("expired", "cancelled", "missing")
    )

    expected = ["expired", "server-error", "not-implemented", "cancelled", "lost"]
    assert destination.read_bytes() == b"".join(inputs[cid] for cid in expected)
    assert summary.by_status == {"failed": 2, "expired": 1, "cancelled": 1, "missing": 1}


def test_no_failed_request_is_retried_with_empty_retry_statuses(tmp_path, landed):
    results, input_file, _ = landed
    summary = write_retry_file(results, input_file, tmp_path / "retry.jsonl", retry_statuses=(), classes=["missing"])

    assert summary.requests == 1 and summary.custom_ids_sample == ["lost"]


def test_results_landed_without_the_input_still_reveal_missing_requests(tmp_path):
    input_file = tmp_path / "in.jsonl"
    input_file.write_bytes(input_line("a") + input_line("b") + input_line("c").rstrip(b"\n"))  # no final newline
    results = tmp_path / "results.jsonl"
    land_results(Batch(id="b1", status="expired", output_file_id="o"), lambda _id: iter([ok("b")]), results)
    summary = write_retry_file(results, input_file, tmp_path / "retry.jsonl")

    assert (tmp_path / "retry.jsonl").read_bytes() == input_line("a") + input_line("c")
    assert summary.by_status == {"missing": 2}


def test_a_request_settled_by_any_of_its_lines_is_not_retried(tmp_path):
    input_file = tmp_path / "in.jsonl"
    input_file.write_bytes(input_line("a") + input_line("b"))
    results = tmp_path / "results.jsonl"
    # A results file concatenated from two landings: "a" expired in one, succeeded in the other.
    land_results(
        Batch(id="b1", status="expired", error_file_id="e"), lambda _: iter([line_error("a", "batch_expired")]), results
    )
    first = results.read_bytes()
    land_results(Batch(id="b2", status="completed", output_file_id="o"), lambda _: iter([ok("a")]), results)
    results.write_bytes(first + results.read_bytes())
    summary = write_retry_file(results, input_file, tmp_path / "retry.jsonl")

    assert summary.custom_ids_sample == ["b"] and summary.by_status == {"missing": 1}


def test_nothing_to_retry_writes_no_file(tmp_path):
    input_file = tmp_path / "in.jsonl"
    input_file.write_bytes(input_line("a"))
    results = tmp_path / "results.jsonl"
    land_results(Batch(id="b1", status="completed", output_file_id="o"), lambda _: iter([ok("a")]), results)
    summary = write_retry_file(results, input_file, tmp_path / "retry.jsonl")

    assert summary.model_dump() == {"path": None, "requests": 0, "custom_ids_sample": [], "by_status": {}}
    assert not (tmp_path / "retry.jsonl").exists()


def test_retry_file_to_a_storage_path(landed):
    results, input_file, inputs = landed
    destination = UPath("memory://retries/run-1/retry.jsonl")
    summary = write_retry_file(UPath(f"file://{results}"), input_file, destination)

    assert summary.path == "memory://retries/run-1/retry.jsonl"
    assert destination.read_bytes() == b"".join(inputs[cid] for cid in RETRIED_BY_DEFAULT)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": ["succeeded"]}, "classes may hold only"),
        ({"classes": ["failed"]}, "chosen by retry_statuses"),
        ({"retry_statuses": ["5xy"]}, "neither an HTTP status nor a class"),
    ],
)
def test_bad_choices_are_refused(tmp_path, landed, kwargs, message):
    results, input_file, _ = landed
    with pytest.raises(ValueError, match=message):
        write_retry_file(results, input_file, tmp_path / "retry.jsonl", **kwargs)
    assert not (tmp_path / "retry.jsonl").exists()


def test_a_file_that_is_not_a_results_file_is_refused(tmp_path, landed):
    _, input_file, _ = landed
    with pytest.raises(ValueError, match="line 1 is not a landed result record"):
        write_retry_file(input_file, input_file, tmp_path / "retry.jsonl")


def test_the_results_layer_imports_no_airflow():
    code = (
        "import sys, airflow_provider_openai_batch.results.merge, airflow_provider_openai_batch.results.landing, "
        "airflow_provider_openai_batch.results.retry_file; "
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert done.stdout.strip() == "[]"
