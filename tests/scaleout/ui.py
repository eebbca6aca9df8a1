"""The "OpenAI Batches" page's JSON API lists every batch of the scale-out runs under the right DAG run.

The plugin (``/openai-batch/api/batches`` on the api-server) builds its rows from the XComs the
tasks pushed, on whichever worker they ran, and reads each batch's state from the connection's
server; so after workers, a triggerer and the scheduler died, it must still show each batch once,
with the DAG run that made it.
"""

from __future__ import annotations

from tests.deployment.harness import Report
from tests.scaleout.cluster import Cluster


def check_ui(cluster: Cluster, expected: dict[tuple[str, str], set[str]], report: Report) -> None:
    """``expected``: (dag_id, run_id) -> the batch ids that run reported."""
    assert cluster.api is not None
    response = cluster.api.http.get("/openai-batch/api/batches", params={"limit": 1000, "hours": 48})
    is_json = response.headers.get("content-type", "").startswith("application/json")
    if not report.expect(response.status_code == 200 and is_json, f"plugin API -> {response.status_code}"):
        return
    rows = response.json()["batches"]
    listed: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        listed.setdefault((row["dag_id"], row["run_id"]), set()).add(row["batch_id"])
    wrong = {
        key: (sorted(listed.get(key, set())), sorted(ids)) for key, ids in expected.items() if listed.get(key) != ids
    }
    strangers = sorted(set(listed) - set(expected))
    ok = report.expect(not wrong, f"the page's rows differ from the runs' batches (listed, expected): {wrong}")
    ok &= report.expect(not strangers, f"the page lists runs that made no batch here: {strangers}")
    statuses = sorted({row["status"] for row in rows})
    ok &= report.expect(statuses == ["completed"], f"the page shows statuses {statuses}, expected completed only")
    if ok:
        batches = sum(len(ids) for ids in expected.values())
        report.passed.append(
            f"the 'OpenAI Batches' page API lists all {batches} batches of the {len(expected)} runs, each under "
            f"its DAG run, all completed ({len(rows)} rows)"
        )
