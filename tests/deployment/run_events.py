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

Run from the repository root: ``.venv/bin/python -m tests.deployment.run_events``.
``OPENAI_BATCH_DEPLOY_KEEP=1`` keeps AIRFLOW_HOME.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from airflow_provider_openai_batch.testing import FakeOpenAIServer
from airflow_provider_openai_batch.testing.webhooks import TEST_WEBHOOK_SECRET, post_signed
from tests.deployment.airflow_deployment import AirflowDeployment
from tests.deployment.harness import Component, Run, log, require, run_scenario, wait_for

HERE = Path(__file__).resolve().parent
KEY = "events-deploy-key-do-not-leak-5e1b"
POLLED, HOOKED = "events_consume_polled", "events_consume_webhooks"
STATE_KEY = "openai_batch.watch"
FIGURES = HERE.parents[1] / "benchmarks" / ".data" / "events_figures.json"
"""Where the measured webhook latency is left for ``make bench`` (benchmarks/fleet_watch.py)."""
QUIET = 12.0
"""Seconds of watching for a run that must not come (six polls of the 2 s watcher)."""


@dataclass
class EventsDeployment(AirflowDeployment):
    fake_server: FakeOpenAIServer | None = None
    """The fake runs in this process: it posts signed webhooks to the api-server when told to."""
    triggerer: Component | None = None

    def prepare(self) -> None:
        self.copy_dags(HERE / "dags" / "deploy_events.py")
        self.configure(executor="LocalExecutor", parallelism=4, AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1")
        self.fake_server = FakeOpenAIServer(
            api_key=KEY, validating_seconds=1, in_progress_seconds=3, finalizing_seconds=0.5, data_dir=self.home
        ).start()
        self.fakes["events"] = self.fake_server.url
        self.connect_fake("events", "openai_events", KEY, {"max_retries": 2})
        self.connect_fake("events", "openai_hooks", KEY, {"max_retries": 2, "webhook_secret": TEST_WEBHOOK_SECRET})

    def bring_up(self) -> None:
        self.migrate()
        self.start_airflow()
        self.triggerer = self.component("triggerer")
        self.connect_api()

    # Reading Airflow's state -------------------------------------------------------------------------

    def db(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self.read_db(timeout=10) as con:
            return con.execute(sql, args).fetchall()

    def watch_state(self, asset: str) -> dict[str, Any] | None:
        rows = self.db(
            "SELECT s.value FROM asset_state_store s JOIN asset a ON a.id = s.asset_id WHERE a.name = ? AND s.key = ?",
            asset,
            STATE_KEY,
        )
        return json.loads(rows[0][0]) if rows else None

    def consumer_runs(self, dag_id: str) -> list[dict[str, Any]]:
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
        return [batch_id for run in self.consumer_runs(dag_id) for batch_id in run["batch_ids"]]

    def submit(self, phase: str, in_progress: float) -> str:
        assert self.fake_server is not None
        self.fake_server.configure(in_progress_seconds=in_progress)
        with httpx.Client(base_url=self.fakes["events"], headers={"Authorization": f"Bearer {KEY}"}) as http:
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
        assert self.fake_server is not None
        return self.fake_server.batch(batch_id)["status"]

    # Phases ------------------------------------------------------------------------------------------

    def resumed(self, conn_id: str) -> bool:
        path = self.component("triggerer").log_path  # the restarted one
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
        self.confirm(
            all(s in ("validating", "in_progress", "finalizing") for s in running),
            f"2 batches still run when the triggerer is killed ({running})",
        )
        assert self.triggerer is not None
        self.stack.kill(self.triggerer)
        log("triggerer killed (SIGKILL)")
        assert self.fake_server is not None
        self.fake_server.expire_batch(ids[3], 1.0)
        time.sleep(5)  # ended for a while before anyone looks again
        self.start("triggerer")
        begin = time.monotonic()
        wait_for(lambda: self.resumed("openai_events"), 180, "the restarted watcher to resume from its saved state")
        self.report.figures["restart to watch resumed (s)"] = f"{time.monotonic() - begin:.1f}"
        wait_for(lambda: ids[3] in self.consumed(POLLED), 120, "the run for the batch that ended while down")
        self.fake_server.expire_batch(ids[4], 1.0)
        wait_for(lambda: set(ids) <= set(self.consumed(POLLED)), 120, "consumer runs for all 5 batches")
        time.sleep(QUIET)
        runs = self.consumer_runs(POLLED)
        consumed = [b for run in runs for b in run["batch_ids"]]
        self.confirm(len(runs) == 5, f"the polled consumer ran exactly 5 times (ran {len(runs)})")
        self.confirm(sorted(consumed) == sorted(ids), f"each batch id consumed exactly once ({consumed})")

    def webhooks(self) -> None:
        assert self.fake_server is not None
        url = f"http://127.0.0.1:{self.api_port}/openai-batch/webhooks/openai_hooks"
        self.fake_server.configure_webhooks(url=url, duplicates=1)
        ids = [self.submit("hooks", seconds) for seconds in (3, 10)]  # apart: see EVENT_SPACING in the trigger
        wait_for(lambda: set(ids) <= set(self.consumed(HOOKED)), 90, "webhook-driven consumer runs")
        time.sleep(3)
        deliveries = [d for d in self.fake_server.webhook_deliveries() if d.batch_id in ids]
        self.confirm(
            len(deliveries) == 4 and {d.status_code for d in deliveries} == {200},
            f"each webhook delivered twice (same webhook-id) and answered 200 ({deliveries})",
        )
        latencies = []
        for run in self.consumer_runs(HOOKED):
            sent = min(d.sent_at for d in deliveries if d.batch_id in run["batch_ids"])
            started = _epoch(run["start_date"])
            latencies.append(started - sent)
        self.report.figures["webhook to consumer run start (s)"] = ", ".join(f"{x:.1f}" for x in sorted(latencies))
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
        self.confirm(
            latencies and max(latencies) < 30, f"consumer runs start within seconds of the webhook ({latencies})"
        )
        self.confirm(
            len(self.consumer_runs(HOOKED)) == 2, "one consumer run per batch despite the duplicate deliveries"
        )

        self.fake_server.configure_webhooks(duplicates=0, bad_signature=True)
        forged = self.submit("hooks", 1)
        wait_for(
            lambda: any(d.batch_id == forged for d in self.fake_server.webhook_deliveries()), 60, "the forged webhook"
        )
        codes = {"forged": next(d.status_code for d in self.fake_server.webhook_deliveries() if d.batch_id == forged)}
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
        self.confirm(codes == {"forged": 401, "stale": 401, "replayed": 200}, f"answers {codes}")
        runs = self.consumer_runs(HOOKED)
        self.confirm(len(runs) == 2, f"forged, stale and replayed webhooks started nothing ({len(runs)} runs)")


def _epoch(stamp: str) -> float:
    """A naive UTC timestamp as SQLite holds it, in epoch seconds."""
    return datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc).timestamp()


def scenario(run: Run) -> None:
    dep = EventsDeployment(home=run.home, stack=run.stack, report=run.report)
    run.closers += [lambda: dep.fake_server and dep.fake_server.stop(), lambda: dep.api and dep.api.close()]
    run.phase("prepare", dep.prepare)
    run.phase("start airflow", dep.bring_up)
    run.phase("polling", dep.polling)
    run.phase("webhooks", dep.webhooks)


def main() -> int:
    return run_scenario(
        "test-events",
        scenario,
        log_tag="events",
        home_prefix="openai-batch-events-",
        timeout_variable="OPENAI_BATCH_DEPLOY_TIMEOUT",
        default_timeout=480,
        keep_variable="OPENAI_BATCH_DEPLOY_KEEP",
    )


if __name__ == "__main__":
    sys.exit(main())
