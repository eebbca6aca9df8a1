"""``make test-deployment``'s search for the API key: in every XCom, file, trigger row and DB row.

A key that reached a log, an XCom or a trigger's serialized kwargs would be readable by anyone with
access to the deployment; the runner's connections hold a recognisable key so that it can be
searched for everywhere Airflow writes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tests.deployment.harness import Api, run_path, xcom

if TYPE_CHECKING:
    from tests.deployment.run_deployment import Deployment


def check_xcoms(dep: Deployment, api: Api, secret: str) -> None:
    values = 0
    for dag_id, run_id in dep.runs.items():
        entries = api.get(run_path(dag_id, run_id) + "/taskInstances/~/xcomEntries")["xcom_entries"]
        for entry in entries:
            value = xcom(api, dag_id, run_id, entry["task_id"], entry["key"])
            dep.expect(secret not in json.dumps(value, default=str), f"the key is in XCom {entry['key']}")
            values += 1
    if dep.expect(values >= 10, f"only {values} XComs found through the REST API"):
        dep.report.passed.append(f"no API key in the {values} XComs of both runs (REST API)")


def check_at_rest(dep: Deployment, secret: str) -> None:
    """After the stop, so that every log is complete: files under AIRFLOW_HOME, trigger rows, every DB row."""
    needle = secret.encode()
    files = [p for p in dep.home.rglob("*") if p.is_file()]
    leaked = [str(p.relative_to(dep.home)) for p in files if needle in p.read_bytes()]
    ok = dep.expect(not leaked, f"the API key is written in: {leaked}")
    for seen in dep.triggers_seen.values():
        ok &= dep.expect(secret not in seen["kwargs"], f"a {seen['classpath']} row holds the key")
    rows = 0
    with dep.read_db() as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                rows += 1
                ok &= dep.expect(secret not in repr(row), f"the API key is in a row of table {table}")
    if ok:
        logs = sum(1 for p in files if ".log" in p.name)
        dep.report.passed.append(
            f"no API key in {len(files)} files under AIRFLOW_HOME ({logs} logs), {len(dep.triggers_seen)} "
            f"trigger rows (sampled while deferred), {rows} rows of {len(tables)} DB tables"
        )
