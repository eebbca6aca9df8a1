"""``make demo``: run the nightly_eval DAG end to end with real Airflow ``dag.test()``.

With no configuration it starts the bundled fake OpenAI server (no API key, no network),
scripted to answer most eval questions right, two wrong and one with a server error, so
the report shows every path. With ``OPENAI_API_KEY`` set and ``OPENAI_BATCH_DEMO_REAL=1``
the same DAG runs against api.openai.com (a real batch: it costs money and can take up
to 24 hours). It uses a throwaway AIRFLOW_HOME unless AIRFLOW_HOME is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTED_WRONG = {"math-sqrt": "12", "lit-quixote": "I am not sure."}
SCRIPTED_SERVER_ERRORS = {"geo-ocean": 500}


def _prepare_airflow_home() -> Path:
    """Set AIRFLOW_HOME (throwaway unless given) and a DAGs folder holding the example, before Airflow loads."""
    home = Path(os.environ.get("AIRFLOW_HOME") or tempfile.mkdtemp(prefix="openai-batch-demo-"))
    dags = home / "demo_dags"
    dags.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "nightly_eval.py", dags / "nightly_eval.py")
    shutil.copytree(HERE / "data", dags / "data", dirs_exist_ok=True)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("OPENAI_BATCH_EXAMPLES_BASE", f"file://{home / 'artifacts'}")
    return home


def _eval_answers() -> dict[str, str]:
    with (HERE / "data" / "nightly_eval_set.jsonl").open() as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return {row["question"]: SCRIPTED_WRONG.get(row["id"], row["expected"]) for row in rows}


@contextlib.contextmanager
def _openai_target() -> Iterator[str]:
    """Point the ``openai_default`` connection at real OpenAI (opt-in) or at the bundled fake server."""
    if os.environ.get("OPENAI_BATCH_DEMO_REAL") == "1":
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            sys.exit("OPENAI_BATCH_DEMO_REAL=1 needs OPENAI_API_KEY")
        conn = {"conn_type": "openai_batch", "password": key}
        os.environ["AIRFLOW_CONN_OPENAI_DEFAULT"] = json.dumps(conn)
        yield "OpenAI (api.openai.com): a real, billed batch"
        return
    from airflow_provider_openai_batch.testing import FakeOpenAIServer

    answers = _eval_answers()

    def responder(endpoint: str, body: dict, custom_id: str) -> str | None:
        question = body["messages"][-1]["content"]
        return answers.get(question)

    with FakeOpenAIServer(
        responder=responder,
        fail_requests=SCRIPTED_SERVER_ERRORS,
        validating_seconds=1,
        in_progress_seconds=4,
        finalizing_seconds=1,
    ) as server:
        page = server.url.removesuffix("/v1") + "/_fake/batches/{batch_id}"  # the UI link's target
        conn = {
            "conn_type": "openai_batch",
            "password": "demo-key",
            "host": server.url,
            "extra": {"dashboard_url": page},
        }
        os.environ["AIRFLOW_CONN_OPENAI_DEFAULT"] = json.dumps(conn)
        os.environ.setdefault("OPENAI_BATCH_POLL_INTERVAL", "1")
        yield f"the bundled fake OpenAI server at {server.url} (scripted: 2 wrong answers, 1 server error)"


def main() -> int:
    home = _prepare_airflow_home()
    with _openai_target() as target:
        from airflow.dag_processing.dagbag import DagBag
        from airflow.utils import db

        print(f"AIRFLOW_HOME={home}\nTarget: {target}\nMigrating the Airflow DB ...", flush=True)
        db.initdb()
        bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
        if bag.import_errors:
            print(bag.import_errors)
            return 1
        run = bag.get_dag("nightly_eval").test()
        tis = {ti.task_id: ti for ti in run.get_task_instances()}
        print("\n=== nightly_eval", run.run_id, "->", run.state)
        for task_id in ("build_requests", "submit", "wait", "land_results", "score"):
            print(f"  {task_id:<15} {tis[task_id].state}")
        report = tis["score"].xcom_pull(task_ids="score") if "score" in tis else None
        batch_id = tis["submit"].xcom_pull(task_ids="submit", key="batch_id")
        print(f"  batch id: {batch_id}")
        if report:
            print("\n=== Report")
            print(json.dumps(report, indent=2))
        return 0 if str(run.state) == "success" and report else 1


if __name__ == "__main__":
    sys.exit(main())
