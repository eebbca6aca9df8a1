"""``make test-ui``: the "OpenAI Batches" page and task tab in a real deployment, in headless Chromium.

It starts what ``make test-deployment`` starts (the bundled fake OpenAI servers, ``airflow
api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` on a throwaway AIRFLOW_HOME, with
Airflow's simple auth manager) through the same code (``run_deployment.Deployment``, ``harness``),
with two users: ``admin`` and ``viewer`` (a role that cannot edit DAGs). DAGs of
``dags/ui_states.py`` leave batches in every state: failed with ``token_limit_exceeded`` (a
planted <script> in its message and metadata), completed with failed requests, two in flight (a
mapped task), expired with partial results, and one the admin cancels from the page.

Debian's ``chromium`` (``make test-ui`` installs it with apt-get where missing; no browser is
downloaded) is driven by Playwright (``ui_browser.py``); screenshots land in the output folder
printed at the end (``OPENAI_BATCH_UI_OUTPUT``, default ``test-output/ui`` in the repository).

Run from the repository root: ``.venv/bin/python -m tests.deployment.run_ui``.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from tests.deployment.harness import Api, Run, log, require, run_path, run_scenario, wait_for, xcom
from tests.deployment.run_deployment import HERE, REPO, SECRET, Deployment
from tests.deployment.ui_browser import check_pages

OUTPUT = Path(os.environ.get("OPENAI_BATCH_UI_OUTPUT", REPO / "test-output" / "ui"))
DAGS = ["ui_token_limit", "ui_completed_with_failures", "ui_in_flight", "ui_to_expire", "ui_to_cancel"]
PLANTED_ERROR = "<script>window.__planted = 'error'</script> Enqueued token limit reached"
RUN_TIMEOUT = 180.0


def chat_lines(count: int, *, bad_every: int = 0) -> str:
    """Chat requests; every ``bad_every``-th has a role the service rejects per request (a failed count)."""
    lines = []
    for n in range(count):
        role = "robot" if bad_every and n % bad_every == 0 else "user"
        body = {"model": "gpt-4o-mini", "messages": [{"role": role, "content": f"Question {n}?"}]}
        lines.append(json.dumps({"custom_id": f"q-{n}", "method": "POST", "url": "/v1/chat/completions", "body": body}))
    return "\n".join(lines) + "\n"


class UiDeployment(Deployment):
    """The test-deployment stack with the UI DAGs, a viewer user and input files."""

    viewer_password: str = ""

    def dag_sources(self) -> list[Path]:
        return [HERE / "dags" / "ui_states.py"]

    def prepare(self) -> None:
        super().prepare()
        data = self.home / "ui-data"
        data.mkdir()
        for name, text in {
            "small.jsonl": chat_lines(3),
            "mixed.jsonl": chat_lines(12, bad_every=4),
            "shard-0.jsonl": chat_lines(40),
            "shard-1.jsonl": chat_lines(60),
            "large.jsonl": chat_lines(50),
        }.items():
            (data / name).write_text(text)
        self.viewer_password = secrets.token_urlsafe(16)
        passwords = {"admin": self.password, "viewer": self.viewer_password}
        (self.home / "passwords.json").write_text(json.dumps(passwords) + "\n")
        self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin,viewer:viewer"
        self.env["OPENAI_BATCH_UI_DATA"] = str(data)

    def finish(self, api: Api, dag_id: str) -> str:
        """Wait for the run of ``dag_id`` to end; its final state (some are meant to fail)."""

        def ended() -> str | None:
            self.stack.check_alive()
            state = api.get(run_path(dag_id, self.runs[dag_id]))["state"]
            return state if state in ("success", "failed") else None

        state = wait_for(ended, RUN_TIMEOUT, f"the {dag_id} run to end", interval=1.0)
        log(f"{dag_id} -> {state}")
        return state

    def batch_ids(self, api: Api, dag_id: str, map_indexes: tuple[int, ...] = (-1,)) -> list[str]:
        return [xcom(api, dag_id, self.runs[dag_id], "batch", "batch_id", i) for i in map_indexes]


def make_batches(dep: UiDeployment, api: Api) -> dict[str, Any]:
    """Drive the fake and the DAGs until every state exists; what the browser checks should see."""
    default = dep.fakes["nightly"]
    # Fail the next batch created (ui_token_limit's) like a full enqueued-token queue; the message is planted.
    dep.fake("nightly", "POST", "fail_next_batches", {"code": "token_limit_exceeded", "message": PLANTED_ERROR})
    dep.trigger("ui_token_limit")
    require(dep.finish(api, "ui_token_limit") == "failed", "ui_token_limit should fail (token_limit_exceeded)")
    dep.trigger("ui_completed_with_failures")
    require(dep.finish(api, "ui_completed_with_failures") == "success", "ui_completed_with_failures failed")
    # From now on batches stay in progress for an hour: in flight, to expire, to cancel.
    dep.fake("nightly", "POST", "config", {"in_progress_seconds": 3600})
    for dag_id in ("ui_in_flight", "ui_to_expire", "ui_to_cancel"):
        dep.trigger(dag_id)
    for dag_id in ("ui_in_flight", "ui_to_expire", "ui_to_cancel"):
        require(dep.finish(api, dag_id) == "success", f"{dag_id} failed")
    ids = {
        "token_limit": dep.batch_ids(api, "ui_token_limit")[0],
        "with_failures": dep.batch_ids(api, "ui_completed_with_failures")[0],
        "in_flight": dep.batch_ids(api, "ui_in_flight", (0, 1)),
        "to_expire": dep.batch_ids(api, "ui_to_expire")[0],
        "to_cancel": dep.batch_ids(api, "ui_to_cancel")[0],
    }

    def in_progress(batch_id: str) -> bool:
        return dep.fake("nightly", "GET", f"batches/{batch_id}")["status"] == "in_progress"

    for batch_id in [*ids["in_flight"], ids["to_expire"], ids["to_cancel"]]:
        wait_for(lambda b=batch_id: in_progress(b), 60, f"batch {batch_id} in progress")
    dep.fake("nightly", "POST", f"batches/{ids['to_expire']}/expire", {"completed_fraction": 0.4})
    log(f"batches: {json.dumps(ids)}")
    return {"ids": ids, "runs": dict(dep.runs), "fake": default}


def scenario(run: Run) -> None:
    dep = UiDeployment(home=run.home, stack=run.stack, report=run.report)
    run.closers.append(lambda: dep.api and dep.api.close())
    run.report.figures["screenshots"] = str(OUTPUT)
    run.phase("prepare", dep.prepare)
    run.phase("fake servers", dep.setup_fakes)
    run.phase("db migrate", dep.migrate)
    run.phase("start airflow", dep.start_airflow)
    api = run.phase("api-server up", dep.connect_api)
    run.phase("dags parsed", lambda: dep.wait_for_dags(DAGS))
    made = run.phase("batches in every state", lambda: make_batches(dep, api))
    base = f"http://127.0.0.1:{dep.api_port}"
    passwords = {"admin": dep.password, "viewer": dep.viewer_password}
    run.phase("pages", lambda: check_pages(base, passwords, made, OUTPUT, SECRET, run.report.passed, run.report.failed))


def main() -> int:
    return run_scenario(
        "test-ui",
        scenario,
        log_tag="ui",
        home_prefix="openai-batch-ui-",
        timeout_variable="OPENAI_BATCH_UI_TIMEOUT",
        default_timeout=480,
    )


if __name__ == "__main__":
    sys.exit(main())
