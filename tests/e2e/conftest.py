"""Real Airflow for end-to-end tests: a migrated SQLite DB, DAGs run with dag.test(), the fake server."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from airflow_provider_openai_batch.testing import FakeOpenAIServer

TEST_KEY = "test-key-must-never-leak-7f3a9c"
"""A recognisable secret: tests grep logs, XComs and trigger rows for it."""


@pytest.fixture(scope="session")
def airflow_db() -> None:
    from airflow.utils import db

    db.initdb()


@pytest.fixture
def fake_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    """A fresh fake server per test; ``@pytest.mark.fake_server(**options)`` passes constructor options."""
    marker = request.node.get_closest_marker("fake_server")
    options = {"validating_seconds": 0.2, "in_progress_seconds": 0.6, "finalizing_seconds": 0.1}
    options.update(marker.kwargs if marker else {})
    with FakeOpenAIServer(api_key=TEST_KEY, **options) as server:
        conn = {"conn_type": "openai_batch", "password": TEST_KEY, "host": server.url, "extra": {"max_retries": 12}}
        monkeypatch.setenv("AIRFLOW_CONN_OPENAI_DEFAULT", json.dumps(conn))
        yield server


@dataclass
class DagResult:
    state: str
    run_id: str
    dag_id: str
    ti_states: dict[str, str]

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            query = XComModel.get_many(
                run_id=self.run_id, key=key, task_ids=task_id, dag_ids=self.dag_id, map_indexes=map_index
            )
            row = session.scalars(query).first()
            return None if row is None else XComModel.deserialize_value(row)

    def all_xcom_values(self) -> list[Any]:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.scalars(XComModel.get_many(run_id=self.run_id, dag_ids=self.dag_id)).all()
            return [XComModel.deserialize_value(row) for row in rows]


@pytest.fixture
def run_dag(airflow_db: None):
    """Run a DAG from the DAGs folder with dag.test() and report its state, task states and XComs."""
    from tests.e2e.helpers import dag_bag

    def _run(dag_id: str, conf: dict[str, Any] | None = None) -> DagResult:
        bag = dag_bag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
        dag = bag.get_dag(dag_id)
        assert dag is not None, f"DAG {dag_id} not found; import errors: {bag.import_errors}"
        run = dag.test(run_conf=conf or {})
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        return DagResult(state=str(run.state), run_id=run.run_id, dag_id=dag_id, ti_states=states)

    return _run
