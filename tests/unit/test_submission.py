"""Submit exactly once: the idempotency key, re-attaching, and creates that may or may not have landed.

Against the bundled fake server over real loopback HTTP, with a manual clock driving the batch
lifecycle. Each test checks how many batches the server made and whether the upload callable ran.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from airflow_provider_openai_batch.api.client import OpenAIBatchClient
from airflow_provider_openai_batch.api.exceptions import OpenAIAPIError
from airflow_provider_openai_batch.api.models import BatchStatus
from airflow_provider_openai_batch.submitting.submission import (
    FINGERPRINT_KEY,
    IDEMPOTENCY_KEY,
    find_batch,
    idempotency_key,
    stamp_metadata,
    submit_once,
)
from airflow_provider_openai_batch.testing import FakeOpenAIServer
from tests.helpers import CHAT, FAST, LIFETIME, chat_line, make_config

FINGERPRINT = "f" * 64
KEY = idempotency_key("nightly_eval", "submit", "scheduled__2026-01-01T00:00:00+00:00", None)


@pytest.fixture(scope="module")
def client(fake: FakeOpenAIServer) -> Iterator[OpenAIBatchClient]:
    with OpenAIBatchClient(make_config(fake), transport=httpx.HTTPTransport(verify=False)) as c:
        yield c


class Uploader:
    """The lazy ``input_file_id`` callable: uploads on call and counts the calls."""

    def __init__(self, client: OpenAIBatchClient, path: Path) -> None:
        self.client, self.path, self.calls = client, path, 0

    def __call__(self) -> str:
        self.calls += 1
        return self.client.upload_file(self.path).id


class Sleeps(list):
    """Records the delays ``submit_once`` asks for instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def upload(client: OpenAIBatchClient, tmp_path: Path) -> Uploader:
    path = tmp_path / "input.jsonl"
    lines = [chat_line(f"r{i}", "hi") for i in range(3)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return Uploader(client, path)


def submit(client, upload, *, key=KEY, fingerprint=FINGERPRINT, sleep=None, **kwargs):
    return submit_once(
        client,
        key=key,
        fingerprint=fingerprint,
        input_file_id=upload,
        endpoint=CHAT,
        sleep=sleep if sleep is not None else Sleeps(),
        **kwargs,
    )


def created(server: FakeOpenAIServer) -> int:
    return server.stats()["batches_created"]


# The key ---------------------------------------------------------------------------------------------


def test_idempotency_key_is_stable_and_names_the_task_instance():
    base = ("dag", "task", "manual__2026-01-01", 3)
    key = idempotency_key(*base)
    assert key == idempotency_key(*base), "same task instance, any try: same key"
    assert len(key) == 32 and all(c in "0123456789abcdef" for c in key)
    others = {
        idempotency_key("dag", "task", "manual__2026-01-01", 4),
        idempotency_key("dag", "task", "manual__2026-01-02", 3),
        idempotency_key("dag", "other", "manual__2026-01-01", 3),
        idempotency_key("other", "task", "manual__2026-01-01", 3),
        idempotency_key("dag", "task", "manual__2026-01-01", None),
    }
    assert key not in others and len(others) == 5
    # an unmapped task is map_index -1 in Airflow: None and -1 name the same task instance
    assert idempotency_key("dag", "task", "r", None) == idempotency_key("dag", "task", "r", -1)
    # the separator keeps field boundaries: ("a_b", "c") is not ("a", "b_c")
    assert idempotency_key("a_b", "c", "r", 0) != idempotency_key("a", "b_c", "r", 0)
    assert "try" not in idempotency_key.__code__.co_varnames


def test_stamped_metadata_carries_the_two_reserved_keys_and_the_users():
    stamped = stamp_metadata({"team": "evals", "nightly": "yes"}, KEY, FINGERPRINT)
    assert stamped == {"team": "evals", "nightly": "yes", IDEMPOTENCY_KEY: KEY, FINGERPRINT_KEY: FINGERPRINT[:16]}
    assert stamp_metadata(None, KEY, FINGERPRINT) == {IDEMPOTENCY_KEY: KEY, FINGERPRINT_KEY: FINGERPRINT[:16]}


# Submitting and re-attaching -----------------------------------------------------------------------------


def test_first_submit_uploads_and_creates_with_stamped_metadata(server, client, upload):
    result = submit(client, upload, metadata={"team": "evals"})
    assert result.reattached is False
    assert upload.calls == 1 and result.uploaded_file_id is not None
    assert result.batch.input_file_id == result.uploaded_file_id
    assert created(server) == 1
    on_server = server.batch(result.batch.id)["metadata"]
    assert on_server == {"team": "evals", IDEMPOTENCY_KEY: KEY, FINGERPRINT_KEY: FINGERPRINT[:16]}


@pytest.mark.parametrize("advance", [0, 15, LIFETIME + 5], ids=["validating", "in_progress", "completed"])
def test_reattaches_to_a_live_or_completed_batch_without_uploading(server, client, upload, clock, advance):
    first = submit(client, upload)
    clock.advance(advance)
    again = submit(client, upload)
    assert again.reattached is True
    assert again.batch.id == first.batch.id
    assert again.uploaded_file_id is None
    assert upload.calls == 1, "a re-attach uploads nothing"
    assert created(server) == 1
    assert server.stats()["uploads"] == 1
    expected = {0: BatchStatus.VALIDATING, 15: BatchStatus.IN_PROGRESS}.get(advance, BatchStatus.COMPLETED)
    assert again.batch.status == expected


def end_failed(server, client, upload, clock):
    server.fail_next_batches(1)
    batch = submit(client, upload).batch
    clock.advance(11)
    return batch.id


def end_cancelled(server, client, upload, clock):
    batch = submit(client, upload).batch
    client.cancel_batch(batch.id)
    clock.advance(11)
    return batch.id


def end_expired(server, client, upload, clock):
    batch = submit(client, upload).batch
    clock.advance(15)
    server.expire_batch(batch.id, completed_fraction=0.5)
    return batch.id


@pytest.mark.parametrize(
    ("end", "status"),
    [(end_failed, "failed"), (end_cancelled, "cancelled"), (end_expired, "expired")],
    ids=["failed", "cancelled", "expired"],
)
def test_resubmits_after_a_failed_cancelled_or_expired_batch(server, client, upload, clock, end, status):
    old_id = end(server, client, upload, clock)
    assert client.get_batch(old_id).status == status
    again = submit(client, upload)
    assert again.reattached is False
    assert again.batch.id != old_id
    assert upload.calls == 2
    assert created(server) == 2
    assert find_batch(client, KEY).id == again.batch.id, "the newest batch for the key is the new one"


def test_resubmits_when_the_input_changed(server, client, upload):
    first = submit(client, upload)
    changed = submit(client, upload, fingerprint="0" * 64)
    assert changed.reattached is False
    assert changed.batch.id != first.batch.id
    assert upload.calls == 2 and created(server) == 2
    assert changed.batch.metadata[FINGERPRINT_KEY] == "0" * 16
    assert client.get_batch(first.batch.id).status == BatchStatus.VALIDATING, "the earlier batch is left alone"


def test_other_task_instances_do_not_reattach(server, client, upload):
    first = submit(client, upload)
    other_key = idempotency_key("nightly_eval", "submit", "scheduled__2026-01-01T00:00:00+00:00", 0)
    other = submit(client, upload, key=other_key)
    assert other.reattached is False and other.batch.id != first.batch.id
    assert created(server) == 2


def test_find_batch_scans_past_the_first_page(server, client, upload):
    target = submit(client, upload).batch.id
    file_id = upload()
    for _ in range(4):
        client.create_batch(file_id, CHAT, metadata={"unrelated": "yes"})
    assert find_batch(client, KEY, max_scan=10).id == target
    assert find_batch(client, KEY, max_scan=4) is None, "only the max_scan newest are looked at"
    assert find_batch(client, "no-such-key") is None


# Creates that may or may not have landed --------------------------------------------------------------------


def test_create_response_lost_after_the_server_made_the_batch_reattaches(server, client, upload):
    server.drop_next(1, when="after", method="POST", path_prefix="/v1/batches")
    sleeps = Sleeps()
    result = submit(client, upload, sleep=sleeps)
    assert result.reattached is True
    assert created(server) == 1, "exactly one batch on the server"
    assert len(server.batches()) == 1
    assert result.batch.id == server.batches()[0]["id"]
    assert result.uploaded_file_id is not None and upload.calls == 1
    assert sleeps == [], "found at once: no waiting"
    posts = [r for r in server.requests if r.method == "POST" and r.route == "/v1/batches"]
    assert [r.fault for r in posts] == ["drop_after"]


def test_create_dropped_before_the_server_did_anything_creates_once(server, client, upload):
    server.drop_next(1, when="before", method="POST", path_prefix="/v1/batches")
    sleeps = Sleeps()
    result = submit(client, upload, sleep=sleeps)
    assert result.reattached is False
    assert created(server) == 1
    assert len(sleeps) == 1
    assert upload.calls == 1, "the file is uploaded once, whatever the create does"


def test_429_on_create_then_success_makes_one_batch(server, client, upload):
    server.fail_next(1, 429, method="POST", path_prefix="/v1/batches")
    sleeps = Sleeps()
    result = submit(client, upload, sleep=sleeps)
    assert result.reattached is False
    assert created(server) == 1
    posts = [r for r in server.requests if r.method == "POST" and r.route == "/v1/batches"]
    assert [r.status for r in posts] == [429, 200]
    assert len(sleeps) == 1 and 0 < sleeps[0] <= FAST.max_delay


def test_429_with_retry_after_waits_as_asked(server, client, upload):
    server.fail_next(1, 429, method="POST", path_prefix="/v1/batches", retry_after=3)
    sleeps = Sleeps()
    submit(client, upload, sleep=sleeps)
    assert sleeps == [3.0]
    assert created(server) == 1


def test_a_rejected_create_is_raised_at_once(server, client, upload):
    sleeps = Sleeps()
    with pytest.raises(OpenAIAPIError) as caught:
        submit_once(
            client,
            key=KEY,
            fingerprint=FINGERPRINT,
            input_file_id=upload,
            endpoint="/v1/not-an-endpoint",
            sleep=sleeps,
        )
    assert (caught.value.status_code, caught.value.param) == (400, "endpoint")
    assert created(server) == 0 and sleeps == []


def test_create_attempts_are_bounded(server, client, upload):
    server.fail_next(10, 503, method="POST", path_prefix="/v1/batches")
    with pytest.raises(OpenAIAPIError) as caught:
        submit(client, upload, max_create_attempts=3)
    assert caught.value.status_code == 503
    posts = [r for r in server.requests if r.method == "POST" and r.route == "/v1/batches"]
    assert len(posts) == 3
    assert created(server) == 0
    assert upload.calls == 1


def test_no_sleep_after_the_last_create_attempt(server, client, upload):
    # Sleeping after the last attempt would only delay the failure (up to 120 s after a 429 with Retry-After).
    server.fail_next(10, 503, method="POST", path_prefix="/v1/batches")
    sleeps = Sleeps()
    with pytest.raises(OpenAIAPIError):
        submit(client, upload, max_create_attempts=3, sleep=sleeps)
    assert len(sleeps) == 2


# Fleet size: the re-attach look-up is bounded by time, not by a count ------------------------------------


def test_retry_reattaches_after_2000_other_batches_were_created_since_the_lost_create(server, client, upload, clock):
    """A fan-out creates thousands of batches between a create whose response was lost and the retry."""
    file_id = upload()
    older = [client.create_batch(file_id, CHAT, metadata={"older": "yes"}).id for _ in range(150)]
    clock.advance(3600)
    first_try_started = clock()
    server.drop_next(1, when="after", method="POST", path_prefix="/v1/batches")
    with pytest.raises(OpenAIAPIError):  # the first try dies here: the batch exists, its id was never seen
        client.create_batch(file_id, CHAT, metadata=stamp_metadata(None, KEY, FINGERPRINT))
    clock.advance(1)
    with ThreadPoolExecutor(max_workers=8) as pool:
        others = list(
            pool.map(lambda n: client.create_batch(file_id, CHAT, metadata={"shard": str(n)}).id, range(2000))
        )
    assert len(set(others)) == 2000 and created(server) == 2151
    assert find_batch(client, KEY, max_scan=500) is None, "a count-bounded scan misses it"

    before = len(server.requests)
    again = submit(client, upload, created_after=first_try_started - 600)
    assert again.reattached is True
    assert again.batch.metadata[IDEMPOTENCY_KEY] == KEY and again.batch.id not in older + others
    assert created(server) == 2151, "no second batch: one billed batch for the task instance"
    assert [b["id"] for b in server.batches() if (b["metadata"] or {}).get(IDEMPOTENCY_KEY) == KEY] == [again.batch.id]
    lists = [r for r in server.requests[before:] if r.method == "GET" and r.route == "/v1/batches"]
    assert len(lists) == 21, "21 pages reach the batch; nothing older than the bound is read"


def test_the_scan_stops_at_the_first_batch_older_than_the_bound(server, client, upload, clock):
    file_id = upload()
    submit(client, upload)  # this key's batch, made long before the bound
    clock.advance(3600)
    for _ in range(120):
        client.create_batch(file_id, CHAT)
    before = len(server.requests)
    assert find_batch(client, KEY, created_after=clock() - 60) is None, "older than the bound: not ours to re-attach"
    lists = [r for r in server.requests[before:] if r.method == "GET" and r.route == "/v1/batches"]
    assert len(lists) == 2
    assert find_batch(client, KEY, created_after=clock() - 7200) is not None
