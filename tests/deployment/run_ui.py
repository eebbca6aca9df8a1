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
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import harness
from harness import Api, CheckFailed, Interrupted, Stack, log, require, run_path, tail, wait_for, xcom
from run_deployment import HERE, REPO, SECRET, Deployment
from ui_browser import check_pages

harness.LOG_PREFIX[0] = "ui"
HARD_TIMEOUT = float(os.environ.get("OPENAI_BATCH_UI_TIMEOUT", "480"))
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

    def prepare(self) -> None:
        super().prepare()
        dags = self.home / "dags"
        for path in dags.iterdir():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        shutil.copy(HERE / "dags" / "ui_states.py", dags / "ui_states.py")
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

    def wait_for_dags(self, api: Api) -> None:
        def parsed() -> bool:
            self.stack.check_alive()
            errors = api.get("/importErrors")["import_errors"]
            require(not errors, f"DAG import errors: {json.dumps(errors)[:2000]}")
            return all(api.request("GET", f"/dags/{dag_id}").status_code == 200 for dag_id in DAGS)

        wait_for(parsed, 180, "the UI DAGs to be parsed")

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
    harness.fake_control(
        default, "POST", "fail_next_batches", {"code": "token_limit_exceeded", "message": PLANTED_ERROR}
    )
    dep.trigger(api, "ui_token_limit")
    require(dep.finish(api, "ui_token_limit") == "failed", "ui_token_limit should fail (token_limit_exceeded)")
    dep.trigger(api, "ui_completed_with_failures")
    require(dep.finish(api, "ui_completed_with_failures") == "success", "ui_completed_with_failures failed")
    # From now on batches stay in progress for an hour: in flight, to expire, to cancel.
    harness.fake_control(default, "POST", "config", {"in_progress_seconds": 3600})
    for dag_id in ("ui_in_flight", "ui_to_expire", "ui_to_cancel"):
        dep.trigger(api, dag_id)
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
        return harness.fake_control(default, "GET", f"batches/{batch_id}")["status"] == "in_progress"

    for batch_id in [*ids["in_flight"], ids["to_expire"], ids["to_cancel"]]:
        wait_for(lambda b=batch_id: in_progress(b), 60, f"batch {batch_id} in progress")
    harness.fake_control(default, "POST", f"batches/{ids['to_expire']}/expire", {"completed_fraction": 0.4})
    log(f"batches: {json.dumps(ids)}")
    return {"ids": ids, "runs": dict(dep.runs), "fake": default}


def main() -> int:
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="openai-batch-ui-"))
    stack = Stack(marker=secrets.token_hex(8))
    dep = UiDeployment(home=home, stack=stack)
    aborted: str | None = None
    passed: list[str] = []
    failed: list[str] = []

    def stop_everything() -> None:
        harness.quiet_signals()
        for note in stack.stop():
            log(note)

    harness.install_stop_handlers(stop_everything, HARD_TIMEOUT)
    try:
        log(f"AIRFLOW_HOME={home}")
        dep.prepare()
        dep.start_fakes()
        dep.migrate()
        dep.start_airflow()
        api = dep.connect_api()
        dep.wait_for_dags(api)
        for dag_id in DAGS:
            response = api.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
            require(response.status_code == 200, f"unpause {dag_id} -> {response.status_code}")
        made = make_batches(dep, api)
        base = f"http://127.0.0.1:{dep.api_port}"
        passwords = {"admin": dep.password, "viewer": dep.viewer_password}
        check_pages(base, passwords, made, OUTPUT, SECRET, passed, failed)
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

    ok = aborted is None and not failed
    print("\n=== test-ui summary ===")
    for fact in passed:
        print(f"  ok   {fact}")
    for failure in failed:
        print(f"  FAIL {failure}")
    if aborted:
        print(f"  FAIL aborted: {aborted}")
    print(f"  screenshots: {OUTPUT}")
    print(f"  total {time.monotonic() - started:.1f}s -> {'PASSED' if ok else 'FAILED'}")
    if ok:
        shutil.rmtree(home, ignore_errors=True)
    else:
        print(f"  AIRFLOW_HOME kept at {home}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
