"""Airflow's side of the UI API benchmark: a throwaway home and DB, the batch records, the api-server app.

The records are what a real run leaves behind: per batch a DAG run, its ``batch`` task instance
and the two XComs the operator pushes before waiting (``batch_id`` and ``openai_batch``, the one
the page reads), spread over a few DAGs. They are written in bulk through Airflow's ORM models,
so seeding 1,000 batches takes seconds instead of 1,000 real DAG runs. Call :func:`prepare_home`
before anything imports Airflow (Airflow reads its home and config on first import).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

BUNDLE = "bench_ui"
DAGS = 10
USER = "admin"


@contextmanager
def airflow_home(fake_url: str, api_key: str) -> Iterator[Path]:
    """A temporary AIRFLOW_HOME with its own SQLite DB, the simple auth manager and the connection."""
    home = Path(tempfile.mkdtemp(prefix="bench-ui-api-"))
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__API_AUTH__JWT_SECRET": "bench-ui-api-" + "x" * 48,
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_CONN_OPENAI_DEFAULT": json.dumps(
            {"conn_type": "openai_batch", "password": api_key, "host": fake_url, "extra": {"max_retries": 2}}
        ),
    }
    (home / "dags").mkdir()
    os.environ.update(env)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def migrate() -> None:
    from airflow.utils import db

    db.initdb()


def record_batches(batch_ids: list[str], dags: int = DAGS) -> list[str]:
    """One DAG run, ``batch`` task instance and XComs per batch (oldest first), round-robin over ``dags``."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import insert

    from airflow_provider_openai_batch.links import RECORD_XCOM_KEY, batch_record

    dag_ids = [f"nightly_evals_{n:02d}" for n in range(dags)]
    start = datetime.now(timezone.utc) - timedelta(hours=20)
    step = timedelta(hours=20) / max(1, len(batch_ids))
    runs, tis, xcoms = [], [], []
    for n, batch_id in enumerate(batch_ids):
        dag_id, when = dag_ids[n % dags], start + n * step
        run_id = f"scheduled__{when.isoformat()}"
        runs.append(
            {
                "id": n + 1,
                "dag_id": dag_id,
                "run_id": run_id,
                "run_type": "scheduled",
                "logical_date": when,
                "run_after": when,
                "start_date": when,
                "state": "running",
            }
        )
        tis.append(
            {"id": uuid.uuid4(), "dag_id": dag_id, "task_id": "batch", "run_id": run_id, "map_index": -1}
            | {"pool": "default_pool", "state": "deferred", "try_number": 1, "start_date": when}
        )
        for key, value in (("batch_id", batch_id), (RECORD_XCOM_KEY, batch_record(batch_id, "openai_default", None))):
            xcoms.append(
                {"dag_run_id": n + 1, "dag_id": dag_id, "run_id": run_id, "task_id": "batch", "map_index": -1}
                | {"key": key, "value": XComModel.serialize_value(value), "timestamp": when}
            )
    dags_rows = [
        {"dag_id": d, "bundle_name": BUNDLE, "fileloc": f"/dags/{d}.py", "is_paused": False}
        | {"max_active_tasks": 16, "max_consecutive_failed_dag_runs": 0, "has_task_concurrency_limits": False}
        for d in dag_ids
    ]
    from airflow import settings

    settings.Session.remove()  # initdb leaves its session behind, its transaction closed
    for model, rows in ((DagBundleModel, [{"name": BUNDLE}]), (DagModel, dags_rows), (DagRun, runs)):
        with create_session() as session:  # one transaction per table (a DagModel insert ends its own)
            session.execute(insert(model.__table__), rows)
    for model, rows in ((TaskInstance, tis), (XComModel, xcoms)):
        with create_session() as session:
            session.execute(insert(model.__table__), rows)
    return dag_ids


def api_server_app():
    """Airflow's api-server app (core: UI, public API and plugins) and a bearer token for an admin."""
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    app = create_app("core")
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=USER, role="admin"))
    return app, token


def plugin_app(app):
    """The OpenAI Batches app as mounted under ``/openai-batch`` (built on its first request)."""
    [mount] = [route for route in app.routes if getattr(route, "path", "") == "/openai-batch"]
    return mount.app.app


def bare_records_query() -> int:
    """The metadata read every listing starts with, alone: the ``openai_batch`` XComs, decoded."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_provider_openai_batch.links import RECORD_XCOM_KEY

    query = select(
        XComModel.dag_id, XComModel.run_id, XComModel.task_id, XComModel.map_index, XComModel.value, XComModel.timestamp
    ).where(XComModel.key == RECORD_XCOM_KEY)
    with create_session() as session:
        rows = [XComModel.deserialize_value(row) for row in session.execute(query.order_by(XComModel.timestamp.desc()))]
    return len(rows)
