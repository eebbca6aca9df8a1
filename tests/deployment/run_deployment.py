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
  tasks that start in the triggerer, after the other runs, see ``fleet.py``) cost at most
  ceil(200/100) + 5 API requests per poll interval, counted from that fake's request log, and the
  triggerer reports no blocked loop while they poll;
* the API key is in no file under AIRFLOW_HOME (logs included, read after the stop), no XCom, no
  trigger row and no row of any table of the SQLite DB.

Run: ``.venv/bin/python tests/deployment/run_deployment.py``. Environment: ``OPENAI_BATCH_DEPLOY_TIMEOUT``
(hard limit in seconds, default 900), ``OPENAI_BATCH_DEPLOY_KEEP=1`` (keep AIRFLOW_HOME even on success;
it is always kept on failure).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import fleet  # this directory's helper (the script's directory is on sys.path)
import httpx
from cryptography.fernet import Fernet
from harness import (
    MARKER,
    Api,
    CheckFailed,
    Interrupted,
    Stack,
    first_line,
    free_port,
    install_stop_handlers,
    last_lines,
    log,
    quiet_signals,
    require,
    run_path,
    tail,
    task_log,
    wait_for,
    xcom,
)

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SECRET = "deploy-secret-key-do-not-leak-91c2"
NIGHTLY = "nightly_eval"
FAULTS = "openai_batch_faults"
FAULT_REQUESTS = 30
HARD_TIMEOUT = float(os.environ.get("OPENAI_BATCH_DEPLOY_TIMEOUT", "900"))
STARTUP_TIMEOUT = 180.0
RUN_TIMEOUT = 420.0
FAULT_RATES = {"rate_429": 0.2, "rate_503": 0.05, "retry_after": 1}
TRIGGER_MIN_DELAY = 8
"""Seconds between a deferral and its trigger's event, at least. Airflow 3.3.2 races when a trigger fires
sooner: the worker's supervisor notices the task process's exit after deferral only at its next wake-up
(``[workers] min_heartbeat_interval``, 5 s); if the scheduler has already re-queued the resumed task by
then, the stale "success" event of the deferral makes it mark the task FAILED ("Executor ... reported
that the task instance ... finished with state success, but the task instance's state attribute is
queued"; ``scheduler_job_runner.py`` forgives this only while the task is still SCHEDULED)."""
BLOCKED_WARNING = "Triggerer's async thread was blocked"


# The deployment


@dataclass
class Deployment:
    home: Path
    stack: Stack
    env: dict[str, str] = field(default_factory=dict)
    api: Api | None = None
    fakes: dict[str, str] = field(default_factory=dict)
    fernet_key: str = ""
    password: str = ""
    api_port: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    triggers_seen: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    states_seen: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)
    run_seconds: dict[str, float] = field(default_factory=dict)
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def expect(self, condition: Any, message: str) -> bool:
        """A check: record the failure and go on, so that one run reports every problem."""
        if not condition:
            self.failed.append(message)
            log(f"CHECK FAILED: {message}")
        return bool(condition)

    @property
    def component_logs(self) -> Path:
        return self.home / "component-logs"

    def prepare(self) -> None:
        dags = self.home / "dags"
        dags.mkdir(parents=True)
        shutil.copy(REPO / "example_dags" / "nightly_eval.py", dags / "nightly_eval.py")
        shutil.copytree(REPO / "example_dags" / "data", dags / "data")
        shutil.copy(HERE / "dags" / "deploy_faults.py", dags / "deploy_faults.py")
        shutil.copy(HERE / "dags" / "deploy_fleet.py", dags / "deploy_fleet.py")
        self.password = secrets.token_urlsafe(16)
        (self.home / "passwords.json").write_text(json.dumps({"admin": self.password}) + "\n")
        self.fernet_key = Fernet.generate_key().decode()
        self.api_port = free_port()
        base_url = f"http://127.0.0.1:{self.api_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENAI_"))}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,
                # The waiting tasks must defer (the checks below); stock Airflow ships this False.
                "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                # Only the runs triggered through the API: no scheduled run of the @daily example.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                # A worker that cannot load the DAG fails at once instead of rescheduling for a minute.
                "AIRFLOW__WORKERS__MISSING_DAG_RETRIES": "0",
                "OPENAI_BATCH_POLL_INTERVAL": "2",
                "OPENAI_BATCH_EXAMPLES_BASE": f"file://{self.home / 'artifacts'}",
                "OPENAI_BATCH_FAULTS_CONN_ID": "openai_faults",
                "OPENAI_BATCH_FLEET_IDS": str(self.home / "fleet-ids.json"),
                "OPENAI_BATCH_FLEET_POLL_INTERVAL": str(fleet.POLL_INTERVAL),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env = env

    def start_fakes(self) -> None:
        # Validation takes 8 s on the faults server so that its first batch fails (token_limit_exceeded) well
        # after the task deferred: see TRIGGER_MIN_DELAY.
        # The fleet's batches stay in_progress for the whole test (see fleet.py).
        timings = (("nightly", 2, 8), ("faults", TRIGGER_MIN_DELAY, 8), ("fleet", 0, 3600))
        for seed, (name, validating, in_progress) in enumerate(timings):
            data_dir = self.home / f"fake-openai-{name}"
            data_dir.mkdir()
            argv = [sys.executable, "-m", "airflow_provider_openai_batch.testing", "--port", str(free_port())]
            argv += ["--api-key", SECRET, "--seed", str(seed), "--data-dir", str(data_dir)]
            argv += ["--validating-seconds", str(validating), "--in-progress-seconds", str(in_progress)]
            argv += ["--finalizing-seconds", "1"]
            self.stack.start(f"fake-openai-{name}", argv, self.env, self.component_logs / f"fake-openai-{name}.log")
        for name in ("nightly", "faults", "fleet"):
            out = self.component_logs / f"fake-openai-{name}.log"
            self.fakes[name] = wait_for(lambda out=out: self.alive() and first_line(out), 30, f"{name} fake's URL")
            log(f"fake OpenAI ({name}) at {self.fakes[name]}")
        fleet.create_batches(self.fakes["fleet"], SECRET, self.home / "fleet-ids.json")
        for name, conn_id in (("nightly", "OPENAI_DEFAULT"), ("faults", "OPENAI_FAULTS"), ("fleet", "OPENAI_FLEET")):
            conn = {"conn_type": "openai_batch", "password": SECRET, "host": self.fakes[name]}
            if name == "nightly":  # the UI link of a batch on the fake: its no-auth control page
                conn["extra"] = {"dashboard_url": self.fakes[name].removesuffix("/v1") + "/_fake/batches/{batch_id}"}
            self.env[f"AIRFLOW_CONN_{conn_id}"] = json.dumps(conn)

    def alive(self) -> bool:
        self.stack.check_alive()
        return True

    def fake(self, name: str, method: str, route: str, body: dict[str, Any] | None = None) -> Any:
        root = self.fakes[name].removesuffix("/v1")
        response = httpx.request(method, f"{root}/_fake/{route}", json=body, timeout=10)
        require(response.status_code == 200, f"{method} /_fake/{route} -> {response.status_code} {response.text}")
        return response.json()

    def migrate(self) -> None:
        out = self.component_logs / "db-migrate.log"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as handle:
            result = subprocess.run(
                [str(BIN / "airflow"), "db", "migrate"],
                env={**self.env, MARKER: self.stack.marker},
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                timeout=240,
                start_new_session=True,
            )
        require(result.returncode == 0, f"airflow db migrate failed ({result.returncode}); see {out}")

    def start_airflow(self) -> None:
        # The scheduler (LocalExecutor) and the triggerer would serve logs on all interfaces; everything runs
        # on this machine, so the api-server reads the log files directly and no log server is started.
        commands = {
            "api-server": ["api-server"],
            "scheduler": ["scheduler", "--skip-serve-logs"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer", "--skip-serve-logs"],
        }
        for name, args in commands.items():
            self.stack.start(name, [str(BIN / "airflow"), *args], self.env, self.component_logs / f"{name}.log")

    def connect_api(self) -> Api:
        api = Api(f"http://127.0.0.1:{self.api_port}")

        def healthy() -> bool:
            self.stack.check_alive()
            try:
                return api.http.get("/api/v2/monitor/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, STARTUP_TIMEOUT, "the api-server's health endpoint")
        api.login("admin", self.password)
        self.api = api
        return api

    def wait_for_dags(self, api: Api) -> None:
        def parsed() -> bool:
            self.stack.check_alive()
            errors = api.get("/importErrors")["import_errors"]
            require(not errors, f"DAG import errors: {json.dumps(errors)[:2000]}")
            dag_ids = (NIGHTLY, FAULTS, fleet.DAG_ID)
            return all(api.request("GET", f"/dags/{dag_id}").status_code == 200 for dag_id in dag_ids)

        wait_for(parsed, STARTUP_TIMEOUT, "the DAGs to be parsed")

    def trigger(self, api: Api, dag_id: str) -> str:
        response = api.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        require(response.status_code == 200, f"unpause {dag_id} -> {response.status_code} {response.text[:300]}")
        response = api.request("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": {}})
        require(response.status_code == 200, f"trigger {dag_id} -> {response.status_code} {response.text[:300]}")
        run_id = response.json()["dag_run_id"]
        log(f"triggered {dag_id}: {run_id}")
        self.runs[dag_id] = run_id
        return run_id

    def sample_triggers(self) -> None:
        """The trigger table is emptied once triggers finish: read it while the tasks are deferred."""
        with contextlib.suppress(sqlite3.Error), closing_db(self.home / "airflow.db") as db:
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
                    with contextlib.suppress(Exception):
                        begin, end = (datetime.fromisoformat(run[key]) for key in ("start_date", "end_date"))
                        self.run_seconds[dag_id] = (end - begin).total_seconds()
                    log(f"{dag_id} -> {run['state']}")
            line = " | ".join(states)
            if line and line != last_line:
                log(line)
                last_line = line
            require(time.monotonic() < deadline, f"runs not finished after {RUN_TIMEOUT:.0f}s: {line}")
            time.sleep(1.0)
        return finished


@contextlib.contextmanager
def closing_db(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    try:
        yield db
    finally:
        db.close()


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
            dep.passed.append(f"{dag_id}: run {run['state']}, all {len(tis)} tasks succeeded on the first try")

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
        dep.passed.append(
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
        dep.passed.append(
            f"{FAULTS}: token_limit_exceeded waited out deferred and resubmitted; final batch {summary['batch_id']} "
            f"{summary['request_counts']}; server saw 1 upload, 2 batches, {stats['requests_total']} requests, "
            f"faults injected {stats['faults']}"
        )


def check_triggerer(dep: Deployment, api: Api) -> None:
    by_class: dict[str, int] = {}
    for seen in dep.triggers_seen.values():
        name = seen["classpath"].rsplit(".", 1)[-1]
        by_class[name] = by_class.get(name, 0) + 1
    with closing_db(dep.home / "airflow.db") as db:
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
        dep.passed.append(
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
        dep.passed.append(
            "trigger progress lines ('Batch batch_...: in_progress n/24', 'completed 24/24') written by the "
            "triggerer (<task log>.trigger.<job>.log) and served in the sensor's log by the REST API"
        )

    triggerer_out = (dep.component_logs / "triggerer.log").read_text(errors="replace")
    blocked = [line for line in triggerer_out.splitlines() if BLOCKED_WARNING in line]
    ok = dep.expect(
        not blocked,
        f"the triggerer's event loop was blocked {len(blocked)} time(s):\n    "
        + "\n    ".join(line[:160] for line in blocked),
    )
    ok &= dep.expect("Trigger failed" not in triggerer_out, "the triggerer failed to load or run a trigger")
    if ok:
        dep.passed.append("triggerer: no blocked-event-loop warning, no trigger failure")


def check_fleet(dep: Deployment, api: Api) -> None:
    """200 batches waiting in the one triggerer: requests per poll interval from the fleet fake's log.

    After the other checks: the 200 tasks start in the triggerer only now, so the blocked-loop
    warnings of Airflow's start-from-trigger start-up stay out of check_triggerer's verdict.
    """
    triggerer_log = dep.component_logs / "triggerer.log"
    before_fleet = triggerer_log.stat().st_size
    dep.trigger(api, fleet.DAG_ID)
    dep.runs.pop(fleet.DAG_ID)  # its batches never finish, and its XComs are none

    def all_polled() -> bool:
        dep.stack.check_alive()
        return fleet.polled_triggers(dep.home) >= fleet.BATCHES

    wait_for(all_polled, 150, f"{fleet.BATCHES} fleet triggers running and polled once", interval=1.0)
    polling_from = triggerer_log.stat().st_size
    root = dep.fakes["fleet"].removesuffix("/v1")
    counts = fleet.requests_per_interval(root)
    stats = dep.fake("fleet", "GET", "stats")
    raw = triggerer_log.read_bytes()
    startup = raw[before_fleet:polling_from].decode(errors="replace").count(BLOCKED_WARNING)
    polling = raw[polling_from:].decode(errors="replace")
    blocked = [line for line in polling.splitlines() if BLOCKED_WARNING in line]
    ok = dep.expect(0 < max(counts) <= fleet.LIMIT, f"fleet: requests per interval {counts}, limit {fleet.LIMIT}")
    ok &= dep.expect(stats["auth_failures"] == 0, "the fleet's fake saw a wrong API key")
    ok &= dep.expect(not blocked, f"the triggerer's loop was blocked while the fleet polled: {blocked[:3]}")
    if ok:
        dep.passed.append(fleet.summary(counts, stats, startup))


def check_no_leak_in_xcoms(dep: Deployment, api: Api) -> None:
    values = 0
    for dag_id, run_id in dep.runs.items():
        entries = api.get(run_path(dag_id, run_id) + "/taskInstances/~/xcomEntries")["xcom_entries"]
        for entry in entries:
            value = xcom(api, dag_id, run_id, entry["task_id"], entry["key"])
            dep.expect(SECRET not in json.dumps(value, default=str), f"the key is in XCom {entry['key']}")
            values += 1
    if dep.expect(values >= 10, f"only {values} XComs found through the REST API"):
        dep.passed.append(f"no API key in the {values} XComs of both runs (REST API)")


def check_no_leak_at_rest(dep: Deployment) -> None:
    """After the stop, so that every log is complete: files under AIRFLOW_HOME, trigger rows, every DB row."""
    needle = SECRET.encode()
    files = [p for p in dep.home.rglob("*") if p.is_file()]
    leaked = [str(p.relative_to(dep.home)) for p in files if needle in p.read_bytes()]
    ok = dep.expect(not leaked, f"the API key is written in: {leaked}")
    for seen in dep.triggers_seen.values():
        ok &= dep.expect(SECRET not in seen["kwargs"], f"a {seen['classpath']} row holds the key")
    rows = 0
    with closing_db(dep.home / "airflow.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                rows += 1
                ok &= dep.expect(SECRET not in repr(row), f"the API key is in a row of table {table}")
    if ok:
        logs = sum(1 for p in files if ".log" in p.name)
        dep.passed.append(
            f"no API key in {len(files)} files under AIRFLOW_HOME ({logs} logs), {len(dep.triggers_seen)} "
            f"trigger rows (sampled while deferred), {rows} rows of {len(tables)} DB tables"
        )


# Main


def main() -> int:
    started = time.monotonic()
    keep = os.environ.get("OPENAI_BATCH_DEPLOY_KEEP") == "1"
    home = Path(tempfile.mkdtemp(prefix="openai-batch-deploy-"))
    stack = Stack(marker=secrets.token_hex(8))
    dep = Deployment(home=home, stack=stack)
    aborted: str | None = None

    def stop_everything() -> None:
        quiet_signals()
        if stack.stopped:
            return
        begin = time.monotonic()
        for note in stack.stop():
            log(note)
        dep.timings["stop"] = time.monotonic() - begin

    install_stop_handlers(stop_everything, HARD_TIMEOUT)

    def phase(name: str, step: Callable[[], Any]) -> Any:
        begin = time.monotonic()
        log(f"{name} ...")
        value = step()
        dep.timings[name] = time.monotonic() - begin
        return value

    try:
        log(f"AIRFLOW_HOME={home}")
        phase("prepare", dep.prepare)
        phase("fake servers", dep.start_fakes)
        phase("db migrate", dep.migrate)
        phase("start airflow", dep.start_airflow)
        api = phase("api-server up", dep.connect_api)
        phase("dags parsed", lambda: dep.wait_for_dags(api))
        dep.fake("faults", "POST", "faults", FAULT_RATES)
        dep.fake("faults", "POST", "fail_next_batches", {"count": 1, "code": "token_limit_exceeded"})
        phase("trigger runs", lambda: [dep.trigger(api, dag_id) for dag_id in (NIGHTLY, FAULTS)])
        finished = phase("dag runs", lambda: dep.wait_for_runs(api))
        phase("checks (api)", lambda: check_runs(dep, api, finished))
        phase("checks (triggerer)", lambda: check_triggerer(dep, api))
        phase("checks (xcom leak)", lambda: check_no_leak_in_xcoms(dep, api))
        phase("fleet", lambda: check_fleet(dep, api))
        # Stop first, so that every log is complete when it is searched for the key.
        stop_everything()
        phase("checks (files+db leak)", lambda: check_no_leak_at_rest(dep))
    except (CheckFailed, Interrupted, Exception) as error:
        aborted = f"{type(error).__name__}: {error}"
        log(f"ABORTED: {aborted}")
        if not isinstance(error, CheckFailed):
            traceback.print_exc()
        for component in stack.components:
            print(f"\n----- last lines of {component.name} ({component.log_path}) -----\n{tail(component.log_path)}")
    finally:
        stop_everything()
        if dep.api is not None:
            dep.api.close()

    ok = aborted is None and not dep.failed
    print("\n=== test-deployment summary ===")
    for dag_id, run_id in dep.runs.items():
        took = dep.run_seconds.get(dag_id)
        print(f"  run  {dag_id}: {run_id}" + (f" ({took:.1f}s from start to end)" if took else ""))
    for fact in dep.passed:
        print(f"  ok   {fact}")
    for failure in dep.failed:
        print(f"  FAIL {failure}")
    if aborted:
        print(f"  FAIL aborted: {aborted}")
    print("  durations: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in dep.timings.items()))
    print(f"  total {time.monotonic() - started:.1f}s -> {'PASSED' if ok else 'FAILED'}")
    if ok and not keep:
        shutil.rmtree(home, ignore_errors=True)
    else:
        print(f"  AIRFLOW_HOME kept at {home}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
