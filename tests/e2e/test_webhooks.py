"""The webhook receiver in front of a real Airflow metadata DB and the fake server.

The router is mounted on a bare FastAPI app (the plugin mounts it under ``/openai-batch``);
asset, trigger and watcher rows are written as Airflow writes them for an ``AssetWatcher``,
and what is checked is the asset events Airflow recorded.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from airflow_provider_openai_batch import compat
from airflow_provider_openai_batch.api.webhook_signature import sign
from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook
from airflow_provider_openai_batch.plugins import webhooks
from airflow_provider_openai_batch.plugins.webhooks import router
from airflow_provider_openai_batch.testing import FakeOpenAIServer
from airflow_provider_openai_batch.triggers.events import MARKER_PREFIX, OpenAIBatchEventTrigger
from tests.e2e.conftest import TEST_KEY
from tests.helpers import CHAT, chat_line

pytestmark = pytest.mark.skipif(
    not compat.AIRFLOW_V_3_3_PLUS,
    reason="these tests seed asset-watcher rows (AssetWatcherModel, Airflow >= 3.2) and read the asset state "
    f"store (Airflow >= 3.3); this is Airflow {compat.AIRFLOW_VERSION_STRING}",
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CONN_ID = "openai_webhooks"


@pytest.fixture
def server(monkeypatch) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=TEST_KEY, validating_seconds=0.05, in_progress_seconds=0.1) as fake:
        conn = {
            "conn_type": "openai_batch",
            "password": TEST_KEY,
            "host": fake.url,
            "extra": {"webhook_secret": SECRET, "max_retries": 0},
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
        monkeypatch.setattr(webhooks, "REREAD_DELAY", 0.05)
        yield fake


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    app.include_router(router, prefix="/openai-batch")
    return TestClient(app)


@pytest.fixture
def watched(airflow_db) -> Iterator[dict[str, int]]:
    """Two assets: one watching the connection for pipeline "nightly", one for "other"."""
    from airflow.models.asset import AssetModel, AssetWatcherModel
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session

    ids = {}
    with create_session() as session:
        for name, pipeline in [("nightly_batches", "nightly"), ("other_batches", "other")]:
            asset = AssetModel(name=name, uri=f"openai-batch://{name}", group="asset")
            classpath, kwargs = OpenAIBatchEventTrigger(CONN_ID, {"pipeline": pipeline}, poll_interval=600).serialize()
            trigger = Trigger(classpath=classpath, kwargs=kwargs)
            session.add_all([asset, trigger])
            session.flush()
            session.add(AssetWatcherModel(name=f"{name}_watcher", asset_id=asset.id, trigger_id=trigger.id))
            ids[name] = asset.id
    yield ids
    from airflow.models.asset import AssetEvent
    from airflow.models.asset_state_store import AssetStateStoreModel

    with create_session() as session:
        for model in (AssetEvent, AssetStateStoreModel, AssetWatcherModel, AssetModel, Trigger):
            session.query(model).delete()


def events_of(asset_id: int) -> list[dict]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        return [e.extra for e in session.query(AssetEvent).filter(AssetEvent.asset_id == asset_id)]


def finished_batch(tmp_path: Path, metadata: dict[str, str]) -> str:
    hook = OpenAIBatchHook(CONN_ID)
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(chat_line("q-0")) + "\n")
    batch_id = hook.create_batch(hook.upload_file(path).id, CHAT, metadata=metadata).id
    deadline = time.monotonic() + 10
    while not hook.get_batch(batch_id).status.is_terminal:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return batch_id


def delivery(
    batch_id: str,
    *,
    event_type: str = "batch.completed",
    webhook_id: str = "evt_1",
    timestamp: int | None = None,
    secret: str = SECRET,
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {"id": webhook_id, "object": "event", "type": event_type, "created_at": 1, "data": {"id": batch_id}}
    ).encode()
    stamp = int(time.time()) if timestamp is None else timestamp
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, webhook_id, stamp, body),
        "content-type": "application/json",
    }
    return body, headers


URL = f"/openai-batch/webhooks/{CONN_ID}"


def test_a_signed_batch_webhook_emits_the_watchers_event_once(server, client, watched, tmp_path):
    batch_id = finished_batch(tmp_path, {"pipeline": "nightly"})
    body, headers = delivery(batch_id)
    answer = client.post(URL, content=body, headers=headers)
    assert answer.status_code == 200 and answer.json() == {"status": "accepted", "batch_id": batch_id}
    [extra] = events_of(watched["nightly_batches"])
    payload = extra["payload"]
    assert payload["batch_id"] == batch_id and payload["status"] == "completed"
    assert payload["request_counts"] == {"total": 1, "completed": 1, "failed": 0}
    assert set(payload) >= {"output_file_id", "error_file_id", "errors", "metadata", "completed_at"}
    assert events_of(watched["other_batches"]) == [], "the other pipeline's filter does not match"
    # a replay of the same delivery, and a second delivery of the same batch: 200, no second event
    assert client.post(URL, content=body, headers=headers).status_code == 200
    body2, headers2 = delivery(batch_id, webhook_id="evt_2")
    assert client.post(URL, content=body2, headers=headers2).status_code == 200
    assert len(events_of(watched["nightly_batches"])) == 1


def test_the_payload_is_not_trusted_for_state(server, client, watched, tmp_path):
    """A batch.completed webhook for a batch that still runs emits nothing (state comes from the API)."""
    hook = OpenAIBatchHook(CONN_ID)
    server.configure(in_progress_seconds=60)
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(chat_line("q-0")) + "\n")
    batch_id = hook.create_batch(hook.upload_file(path).id, CHAT, metadata={"pipeline": "nightly"}).id
    body, headers = delivery(batch_id)
    assert client.post(URL, content=body, headers=headers).status_code == 200
    assert events_of(watched["nightly_batches"]) == []


def test_a_batch_the_watcher_already_fired_is_not_emitted_again(server, client, watched, tmp_path):
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session

    batch_id = finished_batch(tmp_path, {"pipeline": "nightly"})
    with create_session() as session:
        session.add(
            AssetStateStoreModel(
                asset_id=watched["nightly_batches"],
                key=MARKER_PREFIX + batch_id,
                value=json.dumps({"at": 1, "by": "watcher"}),
            )
        )
    body, headers = delivery(batch_id)
    assert client.post(URL, content=body, headers=headers).status_code == 200
    assert events_of(watched["nightly_batches"]) == []


def test_other_event_types_are_answered_and_ignored(server, client, watched):
    body, headers = delivery("batch_x", event_type="response.completed")
    answer = client.post(URL, content=body, headers=headers)
    assert answer.status_code == 200 and answer.json()["status"] == "ignored"
    assert events_of(watched["nightly_batches"]) == []


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("unsigned", 401),
        ("forged", 401),
        ("stale", 401),
        ("future", 401),
        ("oversized", 413),
        ("not_json", 400),
        ("no_batch", 400),
    ],
)
def test_refusals_emit_nothing_and_never_show_the_secret(server, client, watched, tmp_path, caplog, case, status):
    batch_id = finished_batch(tmp_path, {"pipeline": "nightly"})
    body, headers = delivery(batch_id)
    if case == "unsigned":
        del headers["webhook-signature"]
    elif case == "forged":
        body, headers = delivery(batch_id, secret="whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=")
    elif case == "stale":
        body, headers = delivery(batch_id, timestamp=int(time.time()) - 301)
    elif case == "future":
        body, headers = delivery(batch_id, timestamp=int(time.time()) + 301)
    elif case == "oversized":
        body = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
        headers["webhook-signature"] = sign(SECRET, "evt_1", int(headers["webhook-timestamp"]), body)
    elif case == "not_json":
        body = b"not json"
        headers["webhook-signature"] = sign(SECRET, "evt_1", int(headers["webhook-timestamp"]), body)
    elif case == "no_batch":
        body = json.dumps({"type": "batch.completed", "data": {}}).encode()
        headers["webhook-signature"] = sign(SECRET, "evt_1", int(headers["webhook-timestamp"]), body)
    with caplog.at_level(logging.INFO):
        answer = client.post(URL, content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert events_of(watched["nightly_batches"]) == []
    secret_text = SECRET.removeprefix("whsec_")
    assert secret_text not in caplog.text and secret_text not in answer.text
    if status != 400:
        assert "Refused webhook" in caplog.text


def test_a_connection_without_a_secret_refuses_webhooks(monkeypatch, client, watched):
    conn = {"conn_type": "openai_batch", "password": TEST_KEY, "host": "http://127.0.0.1:9/v1"}
    monkeypatch.setenv("AIRFLOW_CONN_NO_SECRET", json.dumps(conn))
    body, headers = delivery("batch_x")
    answer = client.post("/openai-batch/webhooks/no_secret", content=body, headers=headers)
    assert answer.status_code == 404 and "webhook_secret" in answer.json()["detail"]
    assert client.post("/openai-batch/webhooks/missing_conn", content=body, headers=headers).status_code == 404


def test_the_plugin_app_serves_the_receiver_without_an_airflow_login(server, watched, tmp_path):
    from airflow_provider_openai_batch.plugins.app import create_app

    app_client = TestClient(create_app())
    assert app_client.get("/api/batches").status_code == 401, "the other routes still need a user"
    batch_id = finished_batch(tmp_path, {"pipeline": "nightly"})
    body, headers = delivery(batch_id)
    answer = app_client.post(f"/webhooks/{CONN_ID}", content=body, headers=headers)
    assert answer.status_code == 200 and answer.json()["batch_id"] == batch_id
    assert len(events_of(watched["nightly_batches"])) == 1
