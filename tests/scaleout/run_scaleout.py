"""``make test-scaleout``: the provider on Airflow's own scale-out engine, checked through the REST API.

Brings up, on loopback ports under one temp folder, and stops at the end (every process group,
also on failure, a signal or the hard timeout): PostgreSQL and Redis from Debian's packages
(installed where missing), Airflow with CeleryExecutor (api-server, scheduler, dag-processor, two
Celery workers, two triggerers) and two fake OpenAI servers behind two connections. Inputs,
shards and landed results go through ObjectStoragePath to a shared storage root given as a
``file://`` URI. Then runs the scenarios of ``fleet.py`` (a: a 20-shard backfill and five eval runs;
b: a triggerer SIGKILLed while 20+ batches wait; d: the scheduler SIGKILLed and restarted) and
``kills.py`` (c: a Celery worker SIGKILLed during an upload and during a create whose response is
lost), checks that the "OpenAI Batches" page's API lists every batch under its DAG run, and prints
the total time and the figures: batches and uploads against the expected counts, API
requests per batch, the longest triggerer loop stall, which triggerer ran which trigger.

Run from the repository root: ``.venv/bin/python -m tests.scaleout.run_scaleout``. Environment:
``OPENAI_BATCH_SCALEOUT_TIMEOUT`` (hard limit in seconds, default 900), ``OPENAI_BATCH_SCALEOUT_KEEP=1``
(keep the temp folder even on success; it is always kept on failure).
"""

from __future__ import annotations

import sys

from tests.deployment.harness import Report, Run, log, run_scenario
from tests.scaleout import services
from tests.scaleout.cluster import SECRET, Cluster
from tests.scaleout.fleet import BACKFILL, check_fleet, finish_fleet, start_fleet, wait_until_all_created
from tests.scaleout.kills import DAG as KILL_DAG
from tests.scaleout.kills import run_kills
from tests.scaleout.observe import Observer, longest_stall
from tests.scaleout.ui import check_ui

DAG_IDS = [BACKFILL, "scaleout_eval_a", "scaleout_eval_b", "scaleout_kill"]


def scenario(run: Run) -> None:
    home, stack, report, phase = run.home, run.stack, run.report, run.phase
    cluster = Cluster(home=home, stack=stack, report=report)
    run.closers.append(lambda: cluster.api and cluster.api.close())
    installed = phase("debian packages", services.ensure_packages)
    if installed:
        log(f"installed {installed}")
    pg_port = phase("postgres", lambda: services.start_postgres(stack, cluster.logs, home / "postgres"))
    redis_port = phase("redis", lambda: services.start_redis(stack, cluster.logs, home / "redis"))
    db = services.Services(pg_port, redis_port)
    cluster.prepare(db)
    phase("fake servers", cluster.setup_fakes)
    phase("db migrate", cluster.migrate)
    phase("start airflow", cluster.start_airflow)
    phase("api-server up", cluster.connect_api)
    phase("dags parsed", lambda: cluster.wait_for_dags(DAG_IDS))
    observer = Observer(db.connect, cluster.fernet_key)
    run.closers.insert(0, observer.close)
    outcome = phase("fleet: a starts, b, d", lambda: start_fleet(cluster, observer))
    phase("fleet: all batches created", lambda: wait_until_all_created(cluster, observer, outcome))
    # While the fleet's batches run (3 minutes each), on fake b, whose fleet batches all exist.
    cases = phase("scenario c (worker kills)", lambda: run_kills(cluster, report, observer.sample))
    phase("fleet: a completes", lambda: finish_fleet(cluster, observer, outcome))
    phase("checks (fleet)", lambda: check_fleet(cluster, observer, outcome, report))
    made = {**outcome.batch_ids, **{(KILL_DAG, c.run_id): {b["id"] for b in c.batches} for c in cases}}
    phase("checks (ui page)", lambda: check_ui(cluster, made, report))
    observer.close()
    run.stop()
    phase("checks (logs)", lambda: check_logs(cluster, report))


def main() -> int:
    return run_scenario(
        "test-scaleout",
        scenario,
        log_tag="scaleout",
        home_prefix="openai-batch-scaleout-",
        timeout_variable="OPENAI_BATCH_SCALEOUT_TIMEOUT",
        default_timeout=900,
        keep_variable="OPENAI_BATCH_SCALEOUT_KEEP",
    )


def check_logs(cluster: Cluster, report: Report) -> None:
    """After the stop, so the logs are complete: loop stalls, trigger failures, the key."""
    triggerer_logs = sorted(cluster.logs.glob("triggerer-*.log"))
    worst = longest_stall(triggerer_logs)
    report.figures["longest triggerer loop stall"] = f"{worst[0]:.2f} s ({worst[1]})" if worst else "none"
    failed = [p.stem for p in triggerer_logs if "Trigger failed" in p.read_text(errors="replace")]
    report.expect(not failed, f"a trigger failed in {failed}")
    leaked = [
        str(p.relative_to(cluster.home)) for p in cluster.home.rglob("*.log") if SECRET.encode() in p.read_bytes()
    ]
    if report.expect(not leaked, f"the API key is written in: {leaked}"):
        report.passed.append("no API key in any log under the temp folder; no trigger failure in the triggerers")


if __name__ == "__main__":
    sys.exit(main())
