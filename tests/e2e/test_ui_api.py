"""The "OpenAI Batches" JSON API inside Airflow's real api-server app (auth manager, DB, plugin).

Batches come from real dag.test() runs against the fake server; users get real JWTs from the
auth manager. Checked: 401 without a token, per-DAG visibility (404 for a hidden batch), a
planted <script> travels only as JSON data, the viewer cannot cancel (403, nothing cancelled),
a cancel is audited, and the API key is in no answer.
"""

from __future__ import annotations

import json
import os

import pytest
from fastapi.testclient import TestClient

from airflow_provider_openai_batch.testing import FakeOpenAIServer
from tests.e2e.conftest import TEST_KEY
from tests.e2e.helpers import write_chat_requests

pytestmark = pytest.mark.e2e

PLANTED_ERROR = "<script>window.__planted = 'error'</script> queue full"
PLANTED_METADATA = "<script>window.__planted = 'metadata'</script>"


def run(dag_id: str, input_file: str) -> str:
    """Run ``dag_id`` with dag.test() and return the batch id its ``batch`` task recorded."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).get_dag(dag_id)
    dag_run = dag.test(run_conf={"input_file": input_file})
    with create_session() as session:
        query = XComModel.get_many(run_id=dag_run.run_id, key="batch_id", task_ids="batch", dag_ids=dag_id)
        return XComModel.deserialize_value(session.scalars(query).one())


@pytest.fixture(scope="module")
def api(airflow_db, tmp_path_factory):
    """Three DAG runs recorded, then Airflow's api-server app with the tests' auth manager.

    Module-scoped (the runs take seconds): the tests that change state (cancel, outage) come last.
    """
    folder = tmp_path_factory.mktemp("ui")
    with FakeOpenAIServer(api_key=TEST_KEY, validating_seconds=0.2, in_progress_seconds=0.4) as fake:
        conn = {"conn_type": "openai_batch", "password": TEST_KEY, "host": fake.url, "extra": {"max_retries": 2}}
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AIRFLOW_CONN_OPENAI_DEFAULT", json.dumps(conn))
            fake.fail_next_batches(1, code="token_limit_exceeded", message=PLANTED_ERROR)
            ids = {"failed": run("e2e_ui_team", str(write_chat_requests(folder / "a.jsonl", 3)))}
            ids["private"] = run("e2e_ui_private", str(write_chat_requests(folder / "b.jsonl", 4)))
            fake.configure(in_progress_seconds=600)
            ids["running"] = run("e2e_ui_submit_only", str(write_chat_requests(folder / "c.jsonl", 5)))

            patch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "tests.e2e.restricted_auth.RestrictedAuthManager")
            patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,viewer:viewer")
            patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "ui-tests-secret-" + "x" * 48)
            from airflow.api_fastapi.app import create_app, get_auth_manager
            from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

            app = create_app()
            manager = get_auth_manager()
            tokens = {n: manager.generate_jwt(SimpleAuthManagerUser(username=n, role=n)) for n in ("admin", "viewer")}
            with TestClient(app) as client:
                live_cache(client).expire()  # the plugin app lives as long as the process: start afresh
                yield client, tokens, ids, fake


def live_cache(client: TestClient):
    """The plugin app's per-connection cache, as mounted in Airflow's app."""
    [mount] = [route for route in client.app.routes if getattr(route, "path", "") == "/openai-batch"]
    return mount.app.app.state.live


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_route_needs_an_airflow_user(api):
    client, tokens, ids, _ = api
    for method, path in [
        ("GET", "/openai-batch/"),
        ("GET", "/openai-batch/static/app.js"),
        ("GET", "/openai-batch/api/batches"),
        ("GET", f"/openai-batch/api/batches/{ids['failed']}"),
        ("POST", f"/openai-batch/api/batches/{ids['running']}/cancel"),
    ]:
        assert client.request(method, path).status_code == 401, path
    page = client.get("/openai-batch/", headers=bearer(tokens["viewer"]))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>OpenAI Batches</title>" in page.text and 'src="static/app.js"' in page.text
    by_cookie = client.get("/openai-batch/api/batches", cookies={"_token": tokens["viewer"]})
    assert by_cookie.status_code == 200 and by_cookie.headers["content-type"] == "application/json"


def test_rows_tie_batches_to_their_task_instances(api):
    client, tokens, ids, _ = api
    body = client.get("/openai-batch/api/batches", headers=bearer(tokens["admin"])).json()
    rows = {row["batch_id"]: row for row in body["batches"]}
    assert set(ids.values()) <= set(rows)
    running = rows[ids["running"]]
    assert running["dag_id"] == "e2e_ui_submit_only" and running["task_id"] == "batch"
    assert running["map_index"] == -1 and running["conn_id"] == "openai_default"
    assert running["in_flight"] and running["request_counts"]["total"] == 5, body["problems"]
    # (no check that "problems" is empty: other e2e tests of the session left records of batches on their
    # own, stopped, fake servers in the shared DB, which cannot be read now)
    assert running["stale"] is False
    assert running["links"]["task_instance"].startswith("/dags/e2e_ui_submit_only/runs/")
    assert running["links"]["task_instance"].endswith("/tasks/batch")
    assert body["batches"][0]["in_flight"], "in-flight batches come first"
    assert rows[ids["failed"]]["status"] == "failed" and rows[ids["private"]]["status"] == "completed"
    assert body["totals"]["in_flight"] >= 1
    only_failed = client.get("/openai-batch/api/batches?status=failed", headers=bearer(tokens["admin"])).json()
    assert {row["status"] for row in only_failed["batches"]} == {"failed"}


def test_a_dag_the_user_may_not_read_is_invisible(api):
    client, tokens, ids, _ = api
    viewer = bearer(tokens["viewer"])
    listed = {row["batch_id"] for row in client.get("/openai-batch/api/batches", headers=viewer).json()["batches"]}
    assert ids["failed"] in listed and ids["private"] not in listed
    assert client.get(f"/openai-batch/api/batches/{ids['private']}", headers=viewer).status_code == 404
    assert client.get("/openai-batch/api/batches?dag_id=e2e_ui_private", headers=viewer).json()["batches"] == []
    admin = bearer(tokens["admin"])
    assert client.get(f"/openai-batch/api/batches/{ids['private']}", headers=admin).status_code == 200


def test_planted_script_is_only_ever_json_data(api):
    client, tokens, ids, _ = api
    answer = client.get(f"/openai-batch/api/batches/{ids['failed']}", headers=bearer(tokens["viewer"]))
    assert answer.headers["content-type"] == "application/json"
    row = answer.json()
    assert row["errors"][0]["message"] == PLANTED_ERROR and row["errors"][0]["code"] == "token_limit_exceeded"
    assert row["metadata"]["note"] == PLANTED_METADATA
    page = client.get("/openai-batch/", headers=bearer(tokens["viewer"]))
    assert "__planted" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = client.get("/openai-batch/static/app.js", headers=bearer(tokens["viewer"])).text
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script


def test_one_api_reading_serves_many_page_loads(api):
    client, tokens, _, fake = api
    admin = bearer(tokens["admin"])
    client.get("/openai-batch/api/batches", headers=admin)
    before = fake.stats()
    for _ in range(10):
        assert client.get("/openai-batch/api/batches", headers=admin).status_code == 200
    assert fake.stats() == before


def test_a_listing_asks_the_auth_manager_once_per_permission(api, monkeypatch):
    """Not once per row: at 1,000 rows that was 1,000 metadata queries, seconds per listing."""
    client, tokens, _, _ = api
    from airflow.api_fastapi.app import get_auth_manager

    manager = get_auth_manager()
    asked: list[str] = []
    real = manager.get_authorized_dag_ids

    def counted(*, user, method="GET", **kwargs):
        asked.append(method)
        return real(user=user, method=method, **kwargs)

    monkeypatch.setattr(manager, "get_authorized_dag_ids", counted)
    body = client.get("/openai-batch/api/batches", headers=bearer(tokens["admin"])).json()
    assert len({row["dag_id"] for row in body["batches"]}) >= 3
    assert any(row["can_cancel"] for row in body["batches"])
    assert sorted(asked) == ["GET", "PUT"]


def test_viewer_cannot_cancel_admin_can_and_it_is_audited(api):
    client, tokens, ids, fake = api
    batch_id = ids["running"]
    forged = client.post(f"/openai-batch/api/batches/{batch_id}/cancel", headers=bearer(tokens["viewer"]))
    assert forged.status_code == 403
    assert fake.batch(batch_id)["status"] == "in_progress"
    row = client.get(f"/openai-batch/api/batches/{batch_id}", headers=bearer(tokens["viewer"])).json()
    assert row["can_cancel"] is False
    assert client.get(f"/openai-batch/api/batches/{batch_id}", headers=bearer(tokens["admin"])).json()["can_cancel"]

    done = client.post(f"/openai-batch/api/batches/{batch_id}/cancel", headers=bearer(tokens["admin"]))
    assert done.status_code == 200, done.text
    assert done.json()["status"] in {"cancelling", "cancelled"}
    assert fake.batch(batch_id)["status"] in {"cancelling", "cancelled"}

    from airflow.models.log import Log
    from airflow.utils.session import create_session

    with create_session() as session:
        entries = session.query(Log).filter(Log.event == "openai_batch.cancel").all()
        assert [(e.owner, e.dag_id, json.loads(e.extra)["batch_id"]) for e in entries] == [
            ("admin", "e2e_ui_submit_only", batch_id)
        ]


def test_the_api_key_is_in_no_answer(api):
    client, tokens, ids, _ = api
    answers = [
        client.get("/openai-batch/", headers=bearer(tokens["admin"])),
        client.get("/openai-batch/static/app.js", headers=bearer(tokens["admin"])),
        client.get("/openai-batch/api/batches", headers=bearer(tokens["admin"])),
        *(client.get(f"/openai-batch/api/batches/{i}", headers=bearer(tokens["admin"])) for i in ids.values()),
        client.post(f"/openai-batch/api/batches/{ids['failed']}/cancel", headers=bearer(tokens["admin"])),
    ]
    for answer in answers:
        assert TEST_KEY not in answer.text and TEST_KEY not in json.dumps(dict(answer.headers))


def test_an_unreadable_batch_keeps_its_last_state_marked_stale(api):
    client, tokens, ids, fake = api
    admin = bearer(tokens["admin"])
    first = {r["batch_id"]: r for r in client.get("/openai-batch/api/batches", headers=admin).json()["batches"]}
    assert first[ids["running"]]["stale"] is False
    fake.go_down()
    live = live_cache(client)
    live.read_timeout = 1.0
    live.expire()
    body = client.get("/openai-batch/api/batches", headers=admin).json()
    rows = {r["batch_id"]: r for r in body["batches"]}
    assert first[ids["running"]]["in_flight"]  # (cancelling by now: the cancel test ran before)
    assert rows[ids["running"]]["stale"] is True and rows[ids["running"]]["status"] == first[ids["running"]]["status"]
    assert rows[ids["running"]]["last_read_at"] == first[ids["running"]]["last_read_at"]
    assert rows[ids["failed"]]["status"] == "failed" and rows[ids["failed"]]["stale"] is False
    assert body["problems"] and TEST_KEY not in json.dumps(body)
