"""Merge and landing of batch results: classification, order, duplicates, manifest, atomic writes."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from upath import UPath

from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.results.classify import LineClassifier, loads
from airflow_provider_openai_batch.results.landing import ResultsManifest, land_results, open_atomic
from airflow_provider_openai_batch.results.merge import (
    ResultMerge,
    ResultRecord,
    ResultsInputError,
    ResultStatus,
    iter_results,
)

URL = "/v1/chat/completions"


# Line builders (shapes from reference 4.3) -----------------------------------------------------------------------


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def ok(custom_id: str, text: str = "fine", tokens: int = 10) -> bytes:
    body = {
        "id": f"chatcmpl-{custom_id}",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": tokens, "completion_tokens": 2, "total_tokens": tokens + 2},
    }
    response = {"status_code": 200, "request_id": f"req_{custom_id}", "body": body}
    return dumps({"id": f"batch_req_{custom_id}", "custom_id": custom_id, "response": response, "error": None})


def http_fail(custom_id: str, status: int, code: str, message: str = "nope") -> bytes:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    response = {"status_code": status, "request_id": f"req_{custom_id}", "body": body}
    return dumps({"id": f"batch_req_{custom_id}", "custom_id": custom_id, "response": response, "error": None})


def line_error(custom_id: str, code: str, message: str = "not run") -> bytes:
    error = {"code": code, "message": message}
    return dumps({"id": f"batch_req_{custom_id}", "custom_id": custom_id, "response": None, "error": error})


def make_batch(batch_id: str, status: str = "completed", out: str | None = None, err: str | None = None, **kw) -> Batch:
    return Batch(id=batch_id, status=status, output_file_id=out, error_file_id=err, endpoint=URL, **kw)


class Files:
    """A fetch_lines over an in-memory dict of file id -> lines; records which ids were fetched."""

    def __init__(self, files: dict[str, list[bytes]]):
        self.files = files
        self.fetched: list[str] = []

    def __call__(self, file_id: str) -> Iterator[bytes]:
        self.fetched.append(file_id)
        yield from self.files[file_id]


def write_input(path: Path, custom_ids: Iterable[str]) -> Path:
    lines = [
        {"custom_id": cid, "method": "POST", "url": URL, "body": {"model": "gpt-4o-mini", "messages": [{"x": cid}]}}
        for cid in custom_ids
    ]
    path.write_bytes(b"".join(dumps(line) for line in lines))
    return path


def by_id(records: Iterable[ResultRecord]) -> dict[str | None, ResultRecord]:
    return {r.custom_id: r for r in records}


# Classification -----------------------------------------------------------------------------------------------------


def test_completed_batch_with_failed_requests_keeps_status_codes_and_error_bodies():
    files = Files(
        {
            "file-out": [ok("r-2", tokens=7), ok("r-1")],
            "file-err": [http_fail("r-3", 400, "context_length_exceeded", "too long"), http_fail("r-4", 500, "server")],
        }
    )
    records = list(iter_results([make_batch("b1", out="file-out", err="file-err")], files))

    assert [r.custom_id for r in records] == ["r-2", "r-1", "r-3", "r-4"]  # file order: output, then error file
    got = by_id(records)
    assert got["r-2"].status == ResultStatus.SUCCEEDED == "succeeded"
    assert got["r-2"].status_code == 200
    assert got["r-2"].request_id == "req_r-2"
    assert got["r-2"].response["choices"][0]["message"]["content"] == "fine"
    assert got["r-2"].usage == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    assert got["r-2"].error is None and got["r-2"].batch_id == "b1"
    assert got["r-3"].status == "failed" and got["r-3"].status_code == 400
    assert got["r-3"].error["code"] == "context_length_exceeded" and got["r-3"].error["message"] == "too long"
    assert got["r-3"].response["error"]["type"] == "invalid_request_error"
    assert got["r-3"].usage is None
    assert got["r-4"].status == "failed" and got["r-4"].status_code == 500 and got["r-4"].error["code"] == "server"


def test_expired_batch_partial_output_and_batch_expired_lines():
    files = Files({"o": [ok("r-1")], "e": [line_error("r-2", "batch_expired"), line_error("r-3", "batch_expired")]})
    records = list(iter_results(make_batch("b1", "expired", out="o", err="e"), files))

    assert [(r.custom_id, r.status) for r in records] == [("r-1", "succeeded"), ("r-2", "expired"), ("r-3", "expired")]
    assert records[1].error == {"code": "batch_expired", "message": "not run"}
    assert records[1].status_code is None and records[1].response is None


def test_cancelled_batch_partial_output_and_batch_cancelled_lines():
    files = Files({"o": [ok("r-1")], "e": [line_error("r-2", "batch_cancelled")]})
    records = list(iter_results([make_batch("b1", "cancelled", out="o", err="e")], files))

    assert [(r.custom_id, r.status) for r in records] == [("r-1", "succeeded"), ("r-2", "cancelled")]


def test_other_error_codes_and_odd_lines_are_errored_with_a_reason():
    files = Files(
        {
            "o": [
                b"{not json\n",
                b"[1, 2]\n",
                dumps({"id": "x", "response": {"status_code": 200, "body": {}}, "error": None}),
                b"\n",
                dumps({"id": "y", "custom_id": "r-9", "response": None, "error": None}),
            ],
            "e": [line_error("r-8", "internal_error", "boom")],
        }
    )
    records = list(iter_results([make_batch("b1", out="o", err="e")], files))

    assert [r.status for r in records] == ["errored"] * 5  # the blank line is skipped, not a record
    not_json, not_object, no_id, no_outcome, other = records
    assert not_json.custom_id is None and not_json.error["code"] == "invalid_result_line"
    assert "line 1 of output file o (batch b1) is not JSON" in not_json.error["message"]
    assert not_object.error["code"] == "invalid_result_line" and "line 2" in not_object.error["message"]
    assert no_id.custom_id is None and no_id.error["code"] == "missing_custom_id"
    assert no_outcome.custom_id == "r-9" and no_outcome.error["code"] == "no_outcome"
    assert other.custom_id == "r-8" and other.error == {"code": "internal_error", "message": "boom"}


def test_class_comes_from_the_line_not_from_the_file_it_is_in():
    files = Files({"o": [http_fail("r-1", 429, "rate_limit_exceeded")], "e": [ok("r-2")]})
    got = by_id(iter_results([make_batch("b1", out="o", err="e")], files))

    assert got["r-1"].status == "failed" and got["r-1"].status_code == 429
    assert got["r-2"].status == "succeeded"


def test_a_lone_surrogate_in_model_output_survives_the_round_trip():
    raw = (
        b'{"custom_id": "r-1", "response": {"status_code": 200, "body": {"text": "half \\ud83d emoji"}}, "error": null}'
    )
    (record,) = iter_results([make_batch("b1", out="o")], Files({"o": [raw]}))

    assert record.status == "succeeded" and record.response == {"text": "half \ud83d emoji"}


# Order, missing, duplicates --------------------------------------------------------------------------------------


def test_shuffled_output_comes_back_in_input_order_with_missing_requests(tmp_path):
    order = [f"r-{i}" for i in range(1, 9)]
    input_file = write_input(tmp_path / "in.jsonl", order)
    files = Files(
        {
            "o": [ok("r-7"), ok("r-2"), ok("r-5"), ok("r-1"), ok("r-8")],
            "e": [line_error("r-6", "batch_cancelled"), http_fail("r-3", 400, "bad")],
        }
    )
    records = list(iter_results([make_batch("b1", "cancelled", out="o", err="e")], files, input_source=input_file))

    assert [r.custom_id for r in records] == order
    missing = records[3]
    assert missing.custom_id == "r-4" and missing.status == "missing" and missing.batch_id == "b1"
    assert missing.error["code"] == "missing_result" and "input line 4" in missing.error["message"]
    assert [r.status for r in records] == [
        "succeeded",
        "succeeded",
        "failed",
        "missing",
        "succeeded",
        "cancelled",
        "succeeded",
        "succeeded",
    ]


def test_two_batches_merge_into_the_input_order_of_the_original_file(tmp_path):
    input_file = write_input(tmp_path / "in.jsonl", ["a", "b", "c", "d"])
    files = Files({"o1": [ok("c")], "e1": [line_error("a", "batch_expired")], "o2": [ok("d"), ok("b")]})
    batches = [make_batch("shard-1", "expired", out="o1", err="e1"), make_batch("shard-2", out="o2")]
    merge = ResultMerge(batches, files, input_source=input_file)
    records = [ResultRecord.model_validate_json(line) for _status, line in merge.lines()]

    assert [(r.custom_id, r.status, r.batch_id) for r in records] == [
        ("a", "expired", "shard-1"),
        ("b", "succeeded", "shard-2"),
        ("c", "succeeded", "shard-1"),
        ("d", "succeeded", "shard-2"),
    ]
    assert merge.duplicates == 0 and merge.unmatched == 0
    assert files.fetched == ["o1", "e1", "o2"]  # no error file on shard-2: nothing asked for


def test_duplicate_custom_id_keeps_the_better_outcome_and_is_counted(tmp_path):
    files = Files(
        {
            "o1": [ok("keep-first")],
            "e1": [line_error("retried", "batch_expired"), http_fail("tie", 500, "first")],
            "o2": [ok("retried")],
            "e2": [line_error("keep-first", "batch_expired"), http_fail("tie", 503, "second")],
        }
    )
    batches = [make_batch("b1", "expired", out="o1", err="e1"), make_batch("b2", out="o2", err="e2")]
    merge = ResultMerge(batches, files)
    records = [ResultRecord.model_validate_json(line) for _status, line in merge.lines()]

    # One record per custom_id, at the place of its first sighting.
    assert [r.custom_id for r in records] == ["keep-first", "retried", "tie"]
    got = by_id(records)
    assert got["keep-first"].status == "succeeded" and got["keep-first"].batch_id == "b1"
    assert got["retried"].status == "succeeded" and got["retried"].batch_id == "b2"
    assert got["tie"].status_code == 503 and got["tie"].batch_id == "b2"  # same rank: the later attempt wins
    assert merge.duplicates == 3


def test_records_matching_no_input_request_follow_the_input_ordered_ones(tmp_path):
    input_file = write_input(tmp_path / "in.jsonl", ["a", "b"])
    files = Files({"o": [ok("zz"), ok("b"), b"garbage\n", ok("a")]})
    merge = ResultMerge([make_batch("b1", out="o")], files, input_source=input_file)
    records = [ResultRecord.model_validate_json(line) for _status, line in merge.lines()]

    assert [r.custom_id for r in records] == ["a", "b", "zz", None]
    assert merge.unmatched == 2


def test_a_batch_listed_twice_is_merged_once():
    files = Files({"o": [ok("r-1")]})
    batch = make_batch("b1", out="o")
    merge = ResultMerge([batch, batch], files)

    assert len(list(merge.lines())) == 1 and merge.duplicates == 0 and merge.batch_ids == ["b1"]


def test_custom_id_is_read_wherever_it_sits_in_the_input_line(tmp_path):
    input_file = tmp_path / "in.jsonl"
    input_file.write_bytes(
        b'{"body": {"custom_id": "decoy"}, "method": "POST", "custom_id": "last"}\n'
        b'  {"custom_id" : "quote\\"d", "body": {}}\r\n'
        b"\n"
        b'{"custom_id":"caf\\u00e9","body":{}}'
    )
    files = Files({"o": [ok("caf\u00e9"), ok('quote"d'), ok("last")]})
    records = list(iter_results([make_batch("b1", out="o")], files, input_source=input_file))

    assert [(r.custom_id, r.status) for r in records] == [
        ("last", "succeeded"),
        ('quote"d', "succeeded"),
        ("caf\u00e9", "succeeded"),
    ]


def test_an_input_file_that_is_not_a_batch_input_is_refused(tmp_path):
    bad = tmp_path / "in.jsonl"
    bad.write_bytes(dumps({"custom_id": "a"}) + dumps({"no": "id"}))
    with pytest.raises(ResultsInputError, match="line 2 has no string custom_id"):
        list(iter_results([make_batch("b1", out="o")], Files({"o": [ok("a")]}), input_source=bad))


def test_bad_arguments_fail_at_once_and_files_are_fetched_only_when_iterated():
    files = Files({"o": [ok("a")]})
    with pytest.raises(ValueError, match="No batches"):
        iter_results([], files)
    records = iter_results([make_batch("b1", out="o")], files)
    assert files.fetched == []
    assert [r.custom_id for r in records] == ["a"] and files.fetched == ["o"]


def test_a_merge_runs_once():
    merge = ResultMerge([make_batch("b1", out="o")], Files({"o": [ok("a")]}))
    assert len(list(merge.lines())) == 1
    with pytest.raises(RuntimeError, match="only once"):
        list(merge.lines())


def test_index_size_is_reported_and_grows_with_requests():
    small = ResultMerge([make_batch("b1", out="o")], Files({"o": [ok("r-1")]}))
    large = ResultMerge([make_batch("b1", out="o")], Files({"o": [ok(f"r-{i}") for i in range(500)]}))
    list(small.lines())
    list(large.lines())

    assert 0 < small.index_nbytes < large.index_nbytes


# Landing ------------------------------------------------------------------------------------------------------------


@pytest.fixture
def two_batches() -> tuple[list[Batch], Files]:
    files = Files(
        {
            "o1": [ok("c"), ok("a")],
            "e1": [http_fail("b", 429, "rate_limit_exceeded"), line_error("e", "batch_expired")],
            "o2": [ok("f")],
            "e2": [http_fail("g", 400, "bad"), line_error("h", "weird")],
        }
    )
    usage_1 = {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 40},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 5},
        "total_tokens": 130,
    }
    usage_2 = {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13}
    batches = [
        make_batch(
            "b1",
            "expired",
            out="o1",
            err="e1",
            model="gpt-4o-mini-2024-07-18",
            usage=usage_1,
            created_at=1_700_000_000,
            in_progress_at=1_700_000_010,
            expired_at=1_700_086_400,
        ),
        make_batch(
            "b2",
            "completed",
            out="o2",
            err="e2",
            model="gpt-4o-mini-2024-07-18",
            usage=usage_2,
            created_at="2023-11-14T22:13:10Z",
            completed_at=1_700_000_600,
        ),
        make_batch("b3", "failed", created_at=1_700_000_100, failed_at=1_700_000_200),
    ]
    return batches, files


def test_land_results_writes_input_ordered_jsonl_and_a_small_manifest(tmp_path, two_batches):
    batches, files = two_batches
    input_file = write_input(tmp_path / "in.jsonl", ["a", "b", "c", "d", "e", "f", "g", "h"])
    destination = tmp_path / "out" / "results.jsonl"  # the folder does not exist yet
    manifest = land_results(batches, files, destination, input_source=input_file)

    lines = destination.read_bytes().splitlines()
    records = [ResultRecord.model_validate_json(line) for line in lines]
    assert [(r.custom_id, r.status) for r in records] == [
        ("a", "succeeded"),
        ("b", "failed"),
        ("c", "succeeded"),
        ("d", "missing"),
        ("e", "expired"),
        ("f", "succeeded"),
        ("g", "failed"),
        ("h", "errored"),
    ]
    assert records[3].batch_id is None  # several batches: no single one to blame
    files.fetched.clear()
    assert records == list(iter_results(batches, files, input_source=input_file))

    xcom = manifest.as_xcom()
    assert json.loads(json.dumps(xcom)) == xcom  # plain JSON
    assert xcom == {
        "schema_version": 1,
        "batch_ids": ["b1", "b2", "b3"],
        "result_path": str(destination),
        "counts": {
            "succeeded": 3,
            "failed": 2,
            "expired": 1,
            "cancelled": 0,
            "errored": 1,
            "missing": 1,
            "total": 8,
        },
        "duplicates": 0,
        "unmatched": 0,
        "usage": {
            "input_tokens": 110,
            "cached_tokens": 40,
            "output_tokens": 33,
            "reasoning_tokens": 5,
            "total_tokens": 143,
        },
        "models": ["gpt-4o-mini-2024-07-18"],
        "statuses": {"b1": "expired", "b2": "completed", "b3": "failed"},
        "timings": {
            "created_at": 1_699_999_990,  # b2's ISO created_at (old Azure API versions send those)
            "finished_at": 1_700_086_400,
            "duration_seconds": 86_410,
            "landed_at": xcom["timings"]["landed_at"],
        },
        "input_file": str(input_file),
    }
    assert xcom["timings"]["landed_at"] >= 1_700_086_400
    assert ResultsManifest.model_validate(xcom) == manifest


def test_manifest_without_usage_timestamps_or_input(tmp_path):
    manifest = land_results(make_batch("b1", out="o"), Files({"o": [ok("a")]}), str(tmp_path / "r.jsonl"))

    assert manifest.usage.model_dump() == dict.fromkeys(
        ["input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens", "total_tokens"], 0
    )
    assert manifest.timings.created_at is None and manifest.timings.duration_seconds is None
    assert manifest.input_file is None and manifest.models == []
    assert manifest.counts.succeeded == manifest.counts.total == 1


def _raising_after(lines: list[bytes], n: int) -> Iterator[bytes]:
    yield from lines[:n]
    raise OSError("disk full")


def test_open_atomic_leaves_no_file_under_the_final_name_when_writing_fails(tmp_path):
    destination = tmp_path / "results.jsonl"
    with pytest.raises(OSError, match="disk full"), open_atomic(destination) as handle:
        for line in _raising_after([ok("a"), ok("b"), ok("c")], 2):
            handle.write(line)

    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary file


def test_failed_landing_keeps_the_previous_results_file(tmp_path):
    destination = tmp_path / "results.jsonl"
    destination.write_bytes(b"previous\n")
    input_file = tmp_path / "in.jsonl"
    input_file.write_bytes(dumps({"custom_id": "a"}) + b"not json\n" + dumps({"custom_id": "b"}))

    with pytest.raises(ResultsInputError, match="line 2 is not JSON"):
        land_results(make_batch("b1", out="o"), Files({"o": [ok("a"), ok("b")]}), destination, input_source=input_file)

    assert destination.read_bytes() == b"previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "results.jsonl"]


def test_landing_to_a_memory_storage_path(two_batches):
    batches, files = two_batches
    destination = UPath("memory://results-bucket/run-1/results.jsonl")
    manifest = land_results(batches, files, destination)

    assert manifest.result_path == "memory://results-bucket/run-1/results.jsonl"
    records = [ResultRecord.model_validate_json(line) for line in destination.read_bytes().splitlines()]
    assert [r.custom_id for r in records] == ["c", "a", "b", "e", "f", "g", "h"]  # file order without input
    assert [p.name for p in destination.parent.iterdir()] == ["results.jsonl"]


def test_failed_landing_to_a_storage_path_leaves_nothing_behind():
    destination = UPath("memory://results-bucket/run-2/results.jsonl")
    with pytest.raises(OSError, match="disk full"), open_atomic(destination) as handle:
        for line in _raising_after([ok("a"), ok("b")], 1):
            handle.write(line)

    assert not destination.exists()
    assert list(destination.parent.iterdir()) == []


def test_landing_to_a_file_uri_path(tmp_path):
    destination = UPath(f"file://{tmp_path}/nested/results.jsonl")
    manifest = land_results([make_batch("b1", out="o")], Files({"o": [ok("a")]}), destination)

    assert (tmp_path / "nested" / "results.jsonl").read_bytes().count(b"\n") == 1
    assert manifest.result_path == str(tmp_path / "nested" / "results.jsonl")


def test_a_uri_string_destination_is_refused_instead_of_becoming_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="ObjectStoragePath"):
        land_results([make_batch("b1", out="o")], Files({"o": [ok("a")]}), "s3://bucket/results.jsonl")
    assert list(tmp_path.iterdir()) == []


# One pass without input order, and the fast path of the classifier -------------------------------------------------


def _duplicate_files() -> Files:
    return Files(
        {
            "o1": [ok("keep-first"), ok("plain")],
            "e1": [line_error("retried", "batch_expired"), http_fail("tie", 500, "first")],
            "o2": [ok("retried")],
            "e2": [line_error("keep-first", "batch_expired"), http_fail("tie", 503, "second")],
        }
    )


def _duplicate_batches() -> list[Batch]:
    return [make_batch("b1", "expired", out="o1", err="e1"), make_batch("b2", out="o2", err="e2")]


def test_landing_in_file_order_writes_the_destination_in_one_pass(tmp_path, monkeypatch):
    files = Files({"o": [ok("b"), ok("a")], "e": [line_error("c", "batch_expired")]})
    monkeypatch.setattr(tempfile, "TemporaryFile", None)  # no spool: the records go straight to the destination
    manifest = land_results(make_batch("b1", "expired", out="o", err="e"), files, tmp_path / "results.jsonl")

    lines = (tmp_path / "results.jsonl").read_bytes().splitlines()
    assert [ResultRecord.model_validate_json(line).custom_id for line in lines] == ["b", "a", "c"]
    assert manifest.counts.succeeded == 2 and manifest.counts.expired == 1 and manifest.counts.total == 3
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]
    assert files.fetched == ["o", "e"]  # each file streamed once


@pytest.mark.parametrize("where", ["local", "storage"])
def test_a_later_better_sighting_is_landed_at_the_first_place_without_the_beaten_record(tmp_path, where):
    destination = tmp_path / "results.jsonl" if where == "local" else UPath(f"memory://dups-{tmp_path.name}/r.jsonl")
    manifest = land_results(_duplicate_batches(), _duplicate_files(), destination)

    records = [ResultRecord.model_validate_json(line) for line in destination.read_bytes().splitlines()]
    merged = ResultMerge(_duplicate_batches(), _duplicate_files())
    assert records == [ResultRecord.model_validate_json(line) for _status, line in merged.lines()]
    assert [(r.custom_id, r.status, r.batch_id) for r in records] == [
        ("keep-first", "succeeded", "b1"),
        ("plain", "succeeded", "b1"),
        ("retried", "succeeded", "b2"),
        ("tie", "failed", "b2"),
    ]
    assert manifest.duplicates == 3 and manifest.counts.succeeded == 3 and manifest.counts.total == 4
    assert [p.name for p in destination.parent.iterdir()] == [destination.name]  # the first pass's file is gone


def _general_record(raw: bytes) -> ResultRecord:
    """What the general path alone makes of a line (the fast path must agree with it)."""
    classify = LineClassifier("b1", "output file o (batch b1)")
    _cid, _status, line = classify._general(raw, 1)
    return ResultRecord.model_validate(loads(line))


ODD_SUCCESSES = {
    "non-ASCII text": ok("r-1", text="Grüße, 世界 \u2028"),
    "usage not an object": dumps({"custom_id": "r", "response": {"status_code": 200, "body": {"usage": [1]}}}),
    "no body": dumps({"custom_id": "r", "response": {"status_code": 201}}),
    "body not an object": dumps({"custom_id": "r", "response": {"status_code": 200, "body": "text"}}),
    "status code true": dumps({"custom_id": "r", "response": {"status_code": True, "body": {}}, "error": None}),
    "status code a float": dumps({"custom_id": "r", "response": {"status_code": 200.0, "body": {}}}),
    "request_id a number": dumps({"custom_id": "r", "response": {"status_code": 200, "request_id": 7, "body": {}}}),
    "custom_id repeated": b'{"custom_id": 1, "custom_id": "r", "response": {"status_code": 200, "body": {"a": 1}}}',
    "spaces kept in the body": b'{"custom_id":"r","response":{"status_code":200,"body":{ "a" : [1, 2] }}}',
    "invalid UTF-8 in the custom_id": b'{"custom_id":"r\xff","response":{"status_code":200,"body":{}}}',
    "invalid UTF-8 in the body": b'{"custom_id":"r","response":{"status_code":200,"body":{"t":"\xff"}}}',
    "lone surrogate": b'{"custom_id":"r","response":{"status_code":200,"body":{"t":"\\ud83d"}}}',
}


@pytest.mark.parametrize("name", list(ODD_SUCCESSES))
def test_the_fast_path_and_the_general_path_agree(name):
    raw = ODD_SUCCESSES[name]
    custom_id, status, line = LineClassifier("b1", "output file o (batch b1)")(raw, 1)
    record = ResultRecord.model_validate(loads(line))  # (pydantic's own parser refuses a lone surrogate)

    assert record == _general_record(raw)
    assert (custom_id, status) == (record.custom_id, record.status)
    assert json.loads(line) == record.model_dump(mode="json")  # plain JSON, one line
    assert line.endswith(b"\n") and line.count(b"\n") == 1


def test_a_success_keeps_the_body_and_usage_as_sent():
    raw = ok("r-1", text="fine", tokens=7)
    _cid, status, line = LineClassifier("b1", "output file o (batch b1)")(raw, 1)

    assert status == "succeeded"
    assert b'"object": "chat.completion"' in line  # the body's own bytes, spliced in rather than re-encoded
    assert json.loads(line) == {
        "custom_id": "r-1",
        "status": "succeeded",
        "batch_id": "b1",
        "status_code": 200,
        "request_id": "req_r-1",
        "response": json.loads(raw)["response"]["body"],
        "error": None,
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }
