"""``make test-events``: event-driven completion in a real Airflow 3 deployment (dag.test() has no watchers).

Starts (and always stops, by process group): the bundled fake OpenAI server in this process (it posts
signed webhooks to the api-server when told to), ``airflow api-server``, ``scheduler``,
``dag-processor`` and ``triggerer`` on a throwaway AIRFLOW_HOME (SQLite, LocalExecutor), with
``tests/deployment/dags/deploy_events.py``: two assets watched by ``OpenAIBatchEventTrigger``
(connection ``openai_events`` polled every 2 s; connection ``openai_hooks`` polled hourly, so its
events come from webhooks) and one consumer DAG per asset.

Checks:

* polling: 5 batches submitted; the triggerer is SIGKILLed while 2 still run, one of them ends
  while it is down, it is restarted; the consumer DAG runs exactly 5 times, once per batch id;
* webhooks (fake server posting to ``/openai-batch/webhooks/openai_hooks``, every delivery sent
  twice with the same ``webhook-id``): each batch starts one consumer run within seconds (the
  latency from the webhook to the run's start is printed); a forged, a stale and a replayed
  webhook get 401/401/200 and start nothing.

Run: ``.venv/bin/python tests/deployment/run_events.py``. ``OPENAI_BATCH_DEPLOY_KEEP=1`` keeps AIRFLOW_HOME.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    Api,
    CheckFailed,
    Interrupted,
    Stack,
    free_port,
    install_stop_handlers,
    log,
    quiet_signals,
    require,
    tail,
    wait_for,
)

from airflow_provider_openai_batch.testing import FakeOpenAIServer
from airflow_provider_openai_batch.testing.webhooks import TEST_WEBHOOK_SECRET, post_signed

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
KEY = "events-deploy-key-do-not-leak-5e1b"
POLLED, HOOKED = "events_consume_polled", "events_consume_webhooks"
HARD_TIMEOUT = float(os.environ.get("OPENAI_BATCH_DEPLOY_TIMEOUT", "480"))
STATE_KEY = "openai_batch.watch"
FIGURES = HERE.parents[1] / "benchmarks" / ".data" / "events_figures.json"
"""Where the measured webhook latency is left for ``make bench`` (benchmarks/fleet_watch.py)."""
QUIET = 12.0
"""Seconds of watching for a run that must not come (six polls of the 2 s watcher)."""


class EventsDeployment:
    def __init__(self, home: Path, stack: Stack) -> None:
        self.home, self.stack = home, stack
        self.failed: list[str] = []
        self.passed: list[str] = []
        self.figures: dict[str, str] = {}
        self.fake: FakeOpenAIServer | None = None
        self.api: Api | None = None
        self.env: dict[str, str] = {}
        self.api_port = free_port()

    def expect(self, condition: Any, message: str) -> bool:
        (self.passed if condition else self.failed).append(message)
        log(("ok: " if condition else "CHECK FAILED: ") + message)
        return bool(condition)

    # Set-up --------------------------------------------------------------------------------------

    def prepare(self) -> None:
        dags = self.home / "dags"
        dags.mkdir(parents=True)
        shutil.copy(HERE / "dags" / "deploy_events.py", dags / "deploy_events.py")
        password = secrets.token_urlsafe(16)
        (self.home / "passwords.json").write_text(json.dumps({"admin": password}) + "\n")
        self.password = password
        self.fake = FakeOpenAIServer(
            api_key=KEY, validating_seconds=1, in_progress_seconds=3, finalizing_seconds=0.5, data_dir=self.home
        ).start()
        base = f"http://127.0.0.1:{self.api_port}"
        conn = {"conn_type": "openai_batch", "password": KEY, "host": self.fake.url, "extra": {"max_retries": 2}}
        hooks = {**conn, "extra": {"max_retries": 2, "webhook_secret": TEST_WEBHOOK_SECRET}}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENAI_"))}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": base,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW_CONN_OPENAI_EVENTS": json.dumps(conn),
                "AIRFLOW_CONN_OPENAI_HOOKS": json.dumps(hooks),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env = env

    def airflow(self, name: str, *args: str) -> None:
        self.stack.start(name, [str(BIN / "airflow"), *args], self.env, self.home / "logs-components" / f"{name}.log")

    def start_airflow(self) -> Api:
        out = self.home / "logs-components" / "db-migrate.log"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as handle:
            code = subprocess.run(
                [str(BIN / "airflow"), "db", "migrate"], env=self.env, stdout=handle, stderr=handle, timeout=240
            ).returncode
        require(code == 0, f"airflow db migrate failed; see {out}")
        self.airflow("api-server", "api-server")
        self.airflow("scheduler", "scheduler", "--skip-serve-logs")
        self.airflow("dag-processor", "dag-processor")
        self.airflow("triggerer", "triggerer", "--skip-serve-logs")
        self.triggerer = self.stack.components[-1]
        api = Api(f"http://127.0.0.1:{self.api_port}")

        def healthy() -> bool:
            self.stack.check_alive()
            try:
                return api.http.get("/api/v2/monitor/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, 180, "the api-server")
        api.login("admin", self.password)
        self.api = api
        return api

    # Reading Airflow's state -------------------------------------------------------------------------

    def db(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(f"file:{self.home / 'airflow.db'}?mode=ro", uri=True, timeout=10) as con:
            return con.execute(sql, args).fetchall()

    def watch_state(self, asset: str) -> dict[str, Any] | None:
        rows = self.db(
            "SELECT s.value FROM asset_state_store s JOIN asset a ON a.id = s.asset_id WHERE a.name = ? AND s.key = ?",
            asset,
            STATE_KEY,
        )
        return json.loads(rows[0][0]) if rows else None

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Finished consumer runs, each with the batch ids it consumed (read from the metadata DB, which
        spares the api-server, busy on a loaded machine)."""
        found = []
        rows = self.db(
            "SELECT r.run_id, r.state, r.start_date, x.value FROM dag_run r LEFT JOIN xcom x ON x.dag_id = r.dag_id "
            "AND x.run_id = r.run_id AND x.task_id = 'batches' AND x.key = 'return_value' WHERE r.dag_id = ?",
            dag_id,
        )
        for run_id, state, start_date, value in rows:
            require(state in ("queued", "running", "success"), f"{dag_id} run {run_id} is {state}")
            if state == "success" and value is not None:
                found.append({"run_id": run_id, "start_date": start_date, "batch_ids": json.loads(value)})
        return found

    def consumed(self, dag_id: str) -> list[str]:
        return [batch_id for run in self.runs(dag_id) for batch_id in run["batch_ids"]]

    def submit(self, phase: str, in_progress: float) -> str:
        assert self.fake is not None
        self.fake.configure(in_progress_seconds=in_progress)
        with httpx.Client(base_url=self.fake.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
            line = {
                "custom_id": "q",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            }
            upload = http.post(
                "/files", files={"file": ("in.jsonl", json.dumps(line) + "\n")}, data={"purpose": "batch"}
            )
            body = {
                "input_file_id": upload.json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"phase": phase},
            }
            return http.post("/batches", json=body).json()["id"]

    def status(self, batch_id: str) -> str:
        assert self.fake is not None
        return self.fake.batch(batch_id)["status"]

    # Phases ------------------------------------------------------------------------------------------

    def resumed(self, conn_id: str) -> bool:
        path = self.home / "logs-components" / "triggerer-restarted.log"
        return f"Resuming the watch of {conn_id}" in path.read_text(errors="replace")

    def polling(self) -> None:
        wait_for(lambda: self.watch_state("deploy_events_polled"), 240, "the polling watcher's first saved state")
        wait_for(lambda: self.watch_state("deploy_events_webhooks"), 60, "the webhook asset's watcher baseline")
        # Three end on their own; the last two run until told: the fourth is ended (expired with all its
        # requests done) while the triggerer is down, the fifth only after the restarted watcher resumed.
        ids = [self.submit("poll", seconds) for seconds in (2, 5, 8, 3600, 3600)]
        log(f"submitted {ids}")
        wait_for(lambda: set(ids[:3]) <= set(self.consumed(POLLED)), 120, "consumer runs for the first 3 batches")
        known = lambda: set(ids[:3]) <= set((self.watch_state("deploy_events_polled") or {}).get("known", {}))  # noqa: E731
        wait_for(known, 60, "the watcher to save the 3 fired batches")
        running = [self.status(b) for b in ids[3:]]
        self.expect(
            all(s in ("validating", "in_progress", "finalizing") for s in running),
            f"2 batches still run when the triggerer is killed ({running})",
        )
        self.stack.kill(self.triggerer)
        log("triggerer killed (SIGKILL)")
        assert self.fake is not None
        self.fake.expire_batch(ids[3], 1.0)
        time.sleep(5)  # ended for a while before anyone looks again
        self.airflow("triggerer-restarted", "triggerer", "--skip-serve-logs")
        begin = time.monotonic()
        wait_for(lambda: self.resumed("openai_events"), 180, "the restarted watcher to resume from its saved state")
        self.figures["restart to watch resumed (s)"] = f"{time.monotonic() - begin:.1f}"
        wait_for(lambda: ids[3] in self.consumed(POLLED), 120, "the run for the batch that ended while down")
        self.fake.expire_batch(ids[4], 1.0)
        wait_for(lambda: set(ids) <= set(self.consumed(POLLED)), 120, "consumer runs for all 5 batches")
        time.sleep(QUIET)
        runs = self.runs(POLLED)
        consumed = [b for run in runs for b in run["batch_ids"]]
        self.expect(len(runs) == 5, f"the polled consumer ran exactly 5 times (ran {len(runs)})")
        self.expect(sorted(consumed) == sorted(ids), f"each batch id consumed exactly once ({consumed})")

    def webhooks(self) -> None:
        assert self.fake is not None
        url = f"http://127.0.0.1:{self.api_port}/openai-batch/webhooks/openai_hooks"
        self.fake.configure_webhooks(url=url, duplicates=1)
        ids = [self.submit("hooks", seconds) for seconds in (3, 10)]  # apart: see EVENT_SPACING in the trigger
        wait_for(lambda: set(ids) <= set(self.consumed(HOOKED)), 90, "webhook-driven consumer runs")
        time.sleep(3)
        deliveries = [d for d in self.fake.webhook_deliveries() if d.batch_id in ids]
        self.expect(
            len(deliveries) == 4 and {d.status_code for d in deliveries} == {200},
            f"each webhook delivered twice (same webhook-id) and answered 200 ({deliveries})",
        )
        latencies = []
        for run in self.runs(HOOKED):
            sent = min(d.sent_at for d in deliveries if d.batch_id in run["batch_ids"])
            started = _epoch(run["start_date"])
            latencies.append(started - sent)
        self.figures["webhook to consumer run start (s)"] = ", ".join(f"{x:.1f}" for x in sorted(latencies))
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        FIGURES.write_text(
            json.dumps(
                {
                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "poll_interval": 3600,
                    "webhook_to_run_start_seconds": [round(x, 2) for x in sorted(latencies)],
                }
            )
        )
        self.expect(
            latencies and max(latencies) < 30, f"consumer runs start within seconds of the webhook ({latencies})"
        )
        self.expect(len(self.runs(HOOKED)) == 2, "one consumer run per batch despite the duplicate deliveries")

        self.fake.configure_webhooks(duplicates=0, bad_signature=True)
        forged = self.submit("hooks", 1)
        wait_for(lambda: any(d.batch_id == forged for d in self.fake.webhook_deliveries()), 60, "the forged webhook")
        codes = {"forged": next(d.status_code for d in self.fake.webhook_deliveries() if d.batch_id == forged)}
        body = json.dumps(
            {"id": "evt_stale", "object": "event", "type": "batch.completed", "created_at": 1, "data": {"id": forged}}
        ).encode()
        with httpx.Client(timeout=30) as http:
            codes["stale"] = post_signed(
                http, url, body, "evt_stale", TEST_WEBHOOK_SECRET, timestamp=int(time.time()) - 600
            )
            replay = json.dumps(
                {"id": "evt_r", "object": "event", "type": "batch.completed", "created_at": 1, "data": {"id": ids[0]}}
            ).encode()
            codes["replayed"] = post_signed(http, url, replay, deliveries[0].webhook_id, TEST_WEBHOOK_SECRET)
        time.sleep(QUIET)
        self.expect(codes == {"forged": 401, "stale": 401, "replayed": 200}, f"answers {codes}")
        runs = self.runs(HOOKED)
        self.expect(len(runs) == 2, f"forged, stale and replayed webhooks started nothing ({len(runs)} runs)")


def _epoch(stamp: str) -> float:
    """A naive UTC timestamp as SQLite holds it, in epoch seconds."""
    from datetime import datetime, timezone

    return datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc).timestamp()


def main() -> int:
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="openai-batch-events-"))
    stack = Stack(marker=secrets.token_hex(8))
    dep = EventsDeployment(home, stack)
    aborted: str | None = None

    def stop_everything() -> None:
        quiet_signals()
        for note in stack.stop():
            log(note)
        if dep.fake is not None:
            dep.fake.stop()

    install_stop_handlers(stop_everything, HARD_TIMEOUT)
    try:
        log(f"AIRFLOW_HOME={home}")
        dep.prepare()
        dep.start_airflow()
        dep.polling()
        dep.webhooks()
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
    print("\n=== test-events summary ===")
    for fact in dep.passed:
        print(f"  ok   {fact}")
    for failure in dep.failed:
        print(f"  FAIL {failure}")
    if aborted:
        print(f"  FAIL aborted: {aborted}")
    for name, value in dep.figures.items():
        print(f"  figure {name}: {value}")
    print(f"  total {time.monotonic() - started:.1f}s -> {'PASSED' if ok else 'FAILED'}")
    if ok and os.environ.get("OPENAI_BATCH_DEPLOY_KEEP") != "1":
        shutil.rmtree(home, ignore_errors=True)
    else:
        print(f"  AIRFLOW_HOME kept at {home}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
