"""``make test-deployment``: the provider in a real Airflow 3 deployment, checked through the REST API.

What it starts, each in its own process group (and stops again, by pid, whatever happens):

* two bundled fake OpenAI servers (``python -m airflow_provider_openai_batch.testing``): one for
  ``nightly_eval`` (connection ``openai_default``), one for the fault-injection DAG
  ``openai_batch_faults`` (connection ``openai_faults``; 20% 429, 5% 503, the first batch failing
  with ``token_limit_exceeded``), so each DAG's server-side counters are its own. Both accept
  only the connection's API key;
* ``airflow api-server``, ``airflow scheduler`` (LocalExecutor), ``airflow dag-processor`` and
  ``airflow triggerer`` on a throwaway AIRFLOW_HOME with a SQLite DB. Connections come from
  ``AIRFLOW_CONN_*`` environment variables holding a recognisable API key.

What it checks (all checks run; every failure is listed at the end):

* both DAG runs, triggered through the REST API, succeed; every task succeeds on its first try;
* the waiting tasks were deferred and their trigger rows (``OpenAIBatchTrigger``, and
  ``OpenAIBatchResubmitTrigger`` for the token-limit wait) were claimed by the triggerer job; the
  triggerer wrote the trigger's progress lines (``Batch batch_...: in_progress ...`` /
  ``completed``) and the sensor's log read through the REST API contains them;
* the triggerer's event loop was never reported blocked ("Triggerer's async thread was blocked");
* XComs through the REST API: ``score`` reports 24 questions, ``submit`` pushed ``batch_id``, the
  extra link's ``batch_url`` XCom exists and the links endpoint lists "OpenAI Batch";
* the fault DAG's server saw one upload, two batches and injected faults;
* 200 batches waiting together in the one triggerer (a third fake, connection ``openai_fleet``; 200
  tasks that start in the triggerer, after the other runs, see ``fleet_poll_cost.py``) cost at most
  ceil(200/100) + 5 API requests per poll interval, counted from that fake's request log, and the
  triggerer reports no blocked loop while they poll;
* the API key is in no file under AIRFLOW_HOME (logs included, read after the stop), no XCom, no
  trigger row and no row of any table of the SQLite DB.

Run from the repository root: ``.venv/bin/python -m tests.deployment.run_deployment``. Environment:
``OPENAI_BATCH_DEPLOY_TIMEOUT`` (hard limit in seconds, default 900), ``OPENAI_BATCH_DEPLOY_KEEP=1``
(keep AIRFLOW_HOME even on success; it is always kept on failure).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from tests.deployment import fleet_poll_cost, key_leaks
from tests.deployment.airflow_deployment import BLOCKED_WARNING, AirflowDeployment
from tests.deployment.harness import (
    Api,
    Run,
    last_lines,
    log,
    require,
    run_path,
    run_scenario,
    task_log,
    xcom,
)

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SECRET = "deploy-secret-key-do-not-leak-91c2"
NIGHTLY = "nightly_eval"
FAULTS = "openai_batch_faults"
DAG_FILES = ("deploy_faults.py", "deploy_fleet.py")
FAULT_REQUESTS = 30
RUN_TIMEOUT = 420.0
FAULT_RATES = {"rate_429": 0.2, "rate_503": 0.05, "retry_after": 1}
TRIGGER_MIN_DELAY = 8
"""Seconds between a deferral and its trigger's event, at least. Airflow 3.3.2 races when a trigger fires
sooner: the worker's supervisor notices the task process's exit after deferral only at its next wake-up
(``[workers] min_heartbeat_interval``, 5 s); if the scheduler has already re-queued the resumed task by
then, the stale "success" event of the deferral makes it mark the task FAILED ("Executor ... reported
that the task instance ... finished with state success, but the task instance's state attribute is
queued"; ``scheduler_job_runner.py`` forgives this only while the task is still SCHEDULED)."""


# The deployment


@dataclass
class Deployment(AirflowDeployment):
    triggers_seen: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    states_seen: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def dag_sources(self) -> list[Path]:
        example = REPO / "example_dags"
        return [example / "nightly_eval.py", example / "data", *(HERE / "dags" / f for f in DAG_FILES)]

    def prepare(self) -> None:
        self.copy_dags(*self.dag_sources())
        self.configure(
            executor="LocalExecutor",
            parallelism=4,
            # The waiting tasks must defer (the checks below); stock Airflow ships this False.
            AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE="True",
            # Only the runs triggered through the API: no scheduled run of the @daily example.
            AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
            # A worker that cannot load the DAG fails at once instead of rescheduling for a minute.
            AIRFLOW__WORKERS__MISSING_DAG_RETRIES="0",
            OPENAI_BATCH_POLL_INTERVAL="2",
            OPENAI_BATCH_EXAMPLES_BASE=f"file://{self.home / 'artifacts'}",
            OPENAI_BATCH_FAULTS_CONN_ID="openai_faults",
            OPENAI_BATCH_FLEET_IDS=str(self.home / "fleet-ids.json"),
            OPENAI_BATCH_FLEET_POLL_INTERVAL=str(fleet_poll_cost.POLL_INTERVAL),
        )

    def setup_fakes(self) -> None:
        # Validation takes 8 s on the faults server so that its first batch fails (token_limit_exceeded) well
        # after the task deferred: see TRIGGER_MIN_DELAY.
        # The fleet's batches stay in_progress for the whole test (see fleet_poll_cost.py).
        timings = {"nightly": (2, 8), "faults": (TRIGGER_MIN_DELAY, 8), "fleet": (0, 3600)}
        self.start_fakes(
            SECRET,
            {
                name: {"validating-seconds": validating, "in-progress-seconds": in_progress, "finalizing-seconds": 1}
                for name, (validating, in_progress) in timings.items()
            },
        )
        fleet_poll_cost.create_batches(self.fakes["fleet"], SECRET, self.home / "fleet-ids.json")
        # The UI link of a batch on the fake: its no-auth control page.
        page = self.fakes["nightly"].removesuffix("/v1") + "/_fake/batches/{batch_id}"
        self.connect_fake("nightly", "openai_default", SECRET, {"dashboard_url": page})
        self.connect_fake("faults", "openai_faults", SECRET)
        self.connect_fake("fleet", "openai_fleet", SECRET)

    def sample_triggers(self) -> None:
        """The trigger table is emptied once triggers finish: read it while the tasks are deferred."""
        with contextlib.suppress(sqlite3.Error), self.read_db() as db:
            for trigger_id, classpath, kwargs, triggerer_id, created in db.execute(
                "SELECT id, classpath, kwargs, triggerer_id, created_date FROM trigger"
            ):
                # SQLite reuses ids of deleted rows: key on the creation time too.
                seen = self.triggers_seen.setdefault(
                    (trigger_id, created), {"classpath": classpath, "triggerer_ids": set(), "samples": 0}
                )
                seen["samples"] += 1
                # The execution API stores a deferred task's trigger kwargs as plain JSON (3.3.2); other
                # paths encrypt them with the Fernet key. Read both.
                seen["encrypted"] = not kwargs.startswith("{")
                seen["kwargs"] = (
                    Fernet(self.fernet_key.encode()).decrypt(kwargs.encode()).decode() if seen["encrypted"] else kwargs
                )
                if triggerer_id is not None:
                    seen["triggerer_ids"].add(triggerer_id)

    def wait_for_runs(self, api: Api) -> dict[str, dict[str, Any]]:
        finished: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + RUN_TIMEOUT
        last_line = ""
        while len(finished) < len(self.runs):
            self.stack.check_alive()
            self.sample_triggers()
            states = []
            for dag_id, run_id in self.runs.items():
                if dag_id in finished:
                    continue
                run = api.get(run_path(dag_id, run_id))
                tis = api.get(run_path(dag_id, run_id) + "/taskInstances")["task_instances"]
                for ti in tis:
                    self.states_seen.setdefault((dag_id, ti["task_id"]), set()).add(str(ti["state"]))
                    if ti["state"] in ("failed", "up_for_retry", "upstream_failed"):
                        with contextlib.suppress(Exception):
                            text = task_log(api, dag_id, run_id, ti["task_id"], max(1, ti["try_number"]))
                            print(f"----- log of {dag_id}.{ti['task_id']} -----\n{last_lines(text, 40)}")
                        require(False, f"{dag_id}.{ti['task_id']} is {ti['state']} (try {ti['try_number']})")
                states.append(f"{dag_id}: " + " ".join(f"{ti['task_id']}={ti['state']}" for ti in tis))
                if run["state"] in ("success", "failed"):
                    finished[dag_id] = run
                    took = ""
                    with contextlib.suppress(Exception):
                        begin, end = (datetime.fromisoformat(run[key]) for key in ("start_date", "end_date"))
                        took = f" ({(end - begin).total_seconds():.1f}s from start to end)"
                    self.report.figures[f"run {dag_id}"] = run_id + took
                    log(f"{dag_id} -> {run['state']}")
            line = " | ".join(states)
            if line and line != last_line:
                log(line)
                last_line = line
            require(time.monotonic() < deadline, f"runs not finished after {RUN_TIMEOUT:.0f}s: {line}")
            time.sleep(1.0)
        return finished


# Checks


def check_runs(dep: Deployment, api: Api, finished: dict[str, dict[str, Any]]) -> None:
    for dag_id, run in finished.items():
        run_id = dep.runs[dag_id]
        tis = api.get(run_path(dag_id, run_id) + "/taskInstances")["task_instances"]
        bad = [f"{ti['task_id']}={ti['state']}" for ti in tis if ti["state"] != "success"]
        retried = [ti["task_id"] for ti in tis if ti["try_number"] != 1]
        ok = dep.expect(run["state"] == "success" and not bad, f"{dag_id} ended {run['state']}: {bad}")
        ok &= dep.expect(not retried, f"{dag_id}: tasks needed a retry: {retried}")
        if ok:
            dep.report.passed.append(f"{dag_id}: run {run['state']}, all {len(tis)} tasks succeeded on the first try")

    night = dep.runs[NIGHTLY]
    report = xcom(api, NIGHTLY, night, "score")
    batch_id = xcom(api, NIGHTLY, night, "submit", "batch_id")
    counts = xcom(api, NIGHTLY, night, "wait", "request_counts")
    output_file_id = xcom(api, NIGHTLY, night, "wait")
    report = report if isinstance(report, dict) else {"unexpected": report}
    ok = all(
        [
            dep.expect(report.get("questions") == 24, f"score XCom: {str(report)[:300]}"),
            dep.expect(str(batch_id).startswith("batch_"), f"submit's batch_id XCom: {batch_id!r}"),
            dep.expect(xcom(api, NIGHTLY, night, "submit") == batch_id, "submit return_value != its batch_id XCom"),
            dep.expect(report.get("batch_ids") == [batch_id], f"report batch_ids {report.get('batch_ids')}"),
            dep.expect(counts == {"total": 24, "completed": 24, "failed": 0}, f"wait request_counts: {counts}"),
            dep.expect(str(output_file_id).startswith("file-"), f"wait return_value: {output_file_id!r}"),
        ]
    )
    for task_id in ("submit", "wait"):
        # The connection's dashboard_url extra points the link at the fake's page for the batch.
        url = xcom(api, NIGHTLY, night, task_id, "batch_url")
        links = api.get(run_path(NIGHTLY, night) + f"/taskInstances/{task_id}/links")["extra_links"]
        expected = dep.fakes["nightly"].removesuffix("/v1") + f"/_fake/batches/{batch_id}"
        ok &= dep.expect(url == expected, f"{task_id}: batch_url XCom {url!r}, expected {expected!r}")
        ok &= dep.expect(links.get("OpenAI Batch") == expected, f"{task_id}: extra links {links}")
        page = httpx.get(expected, timeout=10) if url == expected else None
        ok &= dep.expect(page is not None and page.json().get("id") == batch_id, f"{task_id}: link target {page}")
    if ok:
        dep.report.passed.append(
            f"{NIGHTLY} XComs: batch {batch_id}; score report {report['correct']}/{report['questions']} correct "
            f"(the fake echoes); request_counts {counts}; batch_url XCom + 'OpenAI Batch' link on submit and wait"
        )

    faults_run = dep.runs[FAULTS]
    summary = xcom(api, FAULTS, faults_run, "check")
    stats = dep.fake("faults", "GET", "stats")
    night_stats = dep.fake("nightly", "GET", "stats")
    full = {"total": FAULT_REQUESTS, "completed": FAULT_REQUESTS, "failed": 0}
    operator_log = task_log(api, FAULTS, faults_run, "batch")
    ok = all(
        [
            dep.expect(summary.get("request_counts") == full, f"faults check XCom: {summary}"),
            dep.expect(stats["uploads"] == 1, f"faults server: expected 1 upload, saw {stats['uploads']}"),
            dep.expect(stats["batches_created"] == 2, f"faults server: expected 2 batches: {stats['batches_created']}"),
            dep.expect(sum(stats["faults"].values()) > 0, f"faults server injected no fault: {stats['faults']}"),
            dep.expect("enqueued-token limit is full" in operator_log, "operator log: no token-limit explanation"),
            dep.expect("submitting afresh" in operator_log, "operator log: no resubmission line"),
            dep.expect("Retrying" in operator_log, "operator log (with its triggers): no retry of a faulted call"),
            dep.expect(
                night_stats["uploads"] == 1 and night_stats["batches_created"] == 1,
                f"nightly server: {night_stats['uploads']} uploads, {night_stats['batches_created']} batches",
            ),
            dep.expect(stats["auth_failures"] + night_stats["auth_failures"] == 0, "a fake saw a wrong API key"),
        ]
    )
    if ok:
        dep.report.passed.append(
            f"{FAULTS}: token_limit_exceeded waited out deferred and resubmitted; final batch {summary['batch_id']} "
            f"{summary['request_counts']}; server saw 1 upload, 2 batches, {stats['requests_total']} requests, "
            f"faults injected {stats['faults']}"
        )


def check_triggerer(dep: Deployment, api: Api) -> None:
    by_class: dict[str, int] = {}
    for seen in dep.triggers_seen.values():
        name = seen["classpath"].rsplit(".", 1)[-1]
        by_class[name] = by_class.get(name, 0) + 1
    with dep.read_db() as db:
        jobs = {row[0] for row in db.execute("SELECT id FROM job WHERE job_type = 'TriggererJob'")}
    claimed = [s for s in dep.triggers_seen.values() if s["triggerer_ids"] & jobs]
    # A row read once, just after the task deferred, may not be claimed yet: judge the ones seen 3+ times.
    unclaimed = [s["classpath"] for s in dep.triggers_seen.values() if s["samples"] >= 3 and s not in claimed]
    plain = sum(1 for s in dep.triggers_seen.values() if not s["encrypted"])
    never_deferred = [
        f"{dag_id}.{task_id}"
        for (dag_id, task_id), states in sorted(dep.states_seen.items())
        if task_id in ("wait", "batch") and "deferred" not in states
    ]
    ok = all(
        [
            # The sensor's wait, the operator's two batches and its token-limit wait: each lives 8+ s, the
            # table is read about every second.
            dep.expect(by_class.get("OpenAIBatchTrigger", 0) >= 3, f"trigger rows seen: {by_class}"),
            dep.expect(by_class.get("OpenAIBatchResubmitTrigger", 0) >= 1, f"trigger rows seen: {by_class}"),
            dep.expect(len(claimed) >= 4, f"fewer than 4 trigger rows claimed by the triggerer job {jobs}"),
            dep.expect(not unclaimed, f"trigger rows never claimed by the triggerer job {jobs}: {unclaimed}"),
            dep.expect(not never_deferred, f"tasks never seen deferred: {never_deferred}"),
        ]
    )
    if ok:
        kinds = ", ".join(f"{name} x{count}" for name, count in sorted(by_class.items()))
        dep.report.passed.append(
            f"deferral: trigger rows seen while deferred ({kinds}; {plain} stored as plain JSON, not encrypted), "
            f"{len(claimed)} claimed by triggerer job {sorted(jobs)}"
        )

    def trigger_log(dag_id: str, task_id: str) -> str:
        folder = dep.home / "logs" / f"dag_id={dag_id}" / f"run_id={dep.runs[dag_id]}" / f"task_id={task_id}"
        return "\n".join(path.read_text(errors="replace") for path in sorted(folder.glob("attempt=1.log.trigger.*")))

    wait_lines = trigger_log(NIGHTLY, "wait")
    started_in_triggerer = re.search(r"trigger nightly_eval/\S+/wait/-1/1 \(ID \d+\) starting", wait_lines)
    batch_lines = trigger_log(FAULTS, "batch")
    sensor_log = task_log(api, NIGHTLY, dep.runs[NIGHTLY], "wait")
    ok = all(
        [
            dep.expect(started_in_triggerer, "wait: the trigger log has no 'trigger ... starting' line"),
            dep.expect(re.search(r"Batch batch_\w+: in_progress \d+/24", wait_lines), "wait: no in_progress line"),
            dep.expect(re.search(r"Batch batch_\w+: completed 24/24", wait_lines), "wait: no 'completed 24/24' line"),
            dep.expect(re.search(r"Batch batch_\w+: completed 30/30", batch_lines), "batch: no 'completed' line"),
            dep.expect(
                re.search(r"Batch batch_\w+: in_progress", sensor_log) and "completed 24/24" in sensor_log,
                "the sensor's log read through the REST API lacks the trigger's progress lines",
            ),
        ]
    )
    if ok:
        dep.report.passed.append(
            "trigger progress lines ('Batch batch_...: in_progress n/24', 'completed 24/24') written by the "
            "triggerer (<task log>.trigger.<job>.log) and served in the sensor's log by the REST API"
        )

    triggerer_out = (dep.logs / "triggerer.log").read_text(errors="replace")
    blocked = [line for line in triggerer_out.splitlines() if BLOCKED_WARNING in line]
    ok = dep.expect(
        not blocked,
        f"the triggerer's event loop was blocked {len(blocked)} time(s):\n    "
        + "\n    ".join(line[:160] for line in blocked),
    )
    ok &= dep.expect("Trigger failed" not in triggerer_out, "the triggerer failed to load or run a trigger")
    if ok:
        dep.report.passed.append("triggerer: no blocked-event-loop warning, no trigger failure")


# Main


def scenario(run: Run) -> None:
    dep = Deployment(home=run.home, stack=run.stack, report=run.report)
    run.closers.append(lambda: dep.api and dep.api.close())
    phase = run.phase
    phase("prepare", dep.prepare)
    phase("fake servers", dep.setup_fakes)
    phase("db migrate", dep.migrate)
    phase("start airflow", dep.start_airflow)
    api = phase("api-server up", dep.connect_api)
    # Each DAG is unpaused only when it is triggered: the 200-task fleet DAG stays out of the way until then.
    phase("dags parsed", lambda: dep.wait_for_dags([NIGHTLY, FAULTS, fleet_poll_cost.DAG_ID], unpause=False))
    dep.fake("faults", "POST", "faults", FAULT_RATES)
    dep.fake("faults", "POST", "fail_next_batches", {"count": 1, "code": "token_limit_exceeded"})
    phase("trigger runs", lambda: [(dep.unpause(dag_id), dep.trigger(dag_id)) for dag_id in (NIGHTLY, FAULTS)])
    finished = phase("dag runs", lambda: dep.wait_for_runs(api))
    phase("checks (api)", lambda: check_runs(dep, api, finished))
    phase("checks (triggerer)", lambda: check_triggerer(dep, api))
    phase("checks (xcom leak)", lambda: key_leaks.check_xcoms(dep, api, SECRET))
    phase("fleet", lambda: fleet_poll_cost.check_fleet(dep, api))
    # Stop first, so that every log is complete when it is searched for the key.
    run.stop()
    phase("checks (files+db leak)", lambda: key_leaks.check_at_rest(dep, SECRET))


def main() -> int:
    return run_scenario(
        "test-deployment",
        scenario,
        log_tag="deploy",
        home_prefix="openai-batch-deploy-",
        timeout_variable="OPENAI_BATCH_DEPLOY_TIMEOUT",
        default_timeout=900,
        keep_variable="OPENAI_BATCH_DEPLOY_KEEP",
    )


if __name__ == "__main__":
    sys.exit(main())
