"""``make demo``: run the nightly_eval DAG end to end with real Airflow ``dag.test()``.

With no configuration it starts the bundled fake OpenAI server (no API key, no network),
scripted to answer most eval questions right, two wrong and one with a server error, so
the report shows every path. With ``OPENAI_API_KEY`` set and ``OPENAI_BATCH_DEMO_REAL=1``
the same DAG runs against api.openai.com (a real batch: it costs money and can take up
to 24 hours). It uses a throwaway AIRFLOW_HOME unless AIRFLOW_HOME is set.

The terminal shows the tasks' states, the batch's progress and the report; Airflow's own logs
go to ``demo-airflow.log`` in AIRFLOW_HOME (its path is printed first). See ``demo_console.py``.
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
from typing import TextIO

from demo_console import RunWatcher, logs_to_file

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


def _real_openai() -> bool:
    """Opt-in: a real, billed batch on api.openai.com (checked before the terminal goes quiet)."""
    if os.environ.get("OPENAI_BATCH_DEMO_REAL") != "1":
        return False
    if not os.environ.get("OPENAI_API_KEY"):
        sys.exit("OPENAI_BATCH_DEMO_REAL=1 needs OPENAI_API_KEY")
    return True


@contextlib.contextmanager
def _openai_target() -> Iterator[str]:
    """Point the ``openai_default`` connection at real OpenAI (opt-in) or at the bundled fake server."""
    if _real_openai():
        conn = {"conn_type": "openai_batch", "password": os.environ["OPENAI_API_KEY"]}
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


def _print_report(out: TextIO, run_id: str, state: str, report: dict | None, batch_id: str | None) -> None:
    out.write(f"=== nightly_eval {run_id}: {state}\n")
    if not report:
        return
    counts, usage = report["result_counts"], report["usage"]
    out.write(
        f"=== Report ({report['report_path']})\n"
        f"  accuracy   {report['correct']}/{report['questions']} = {report['accuracy']:.1%}"
        f"   model {report['model']}, batch {batch_id}\n"
        f"  results    {counts['succeeded']} succeeded, {counts['failed']} failed, {counts['expired']} expired,"
        f" {counts['cancelled']} cancelled\n"
        f"  tokens     {usage['input_tokens']:,} in, {usage['output_tokens']:,} out, {usage['total_tokens']:,} total\n"
    )
    for failure in report["failures"]:
        out.write(f"  wrong      {failure['id']}: expected {failure['expected']!r}, got {failure['got']!r}\n")


def main() -> int:
    _real_openai()
    home = _prepare_airflow_home()
    log_path = home / "demo-airflow.log"
    print("make demo: the nightly_eval example DAG, run by real Airflow (dag.test())", flush=True)
    with logs_to_file(log_path) as out, _openai_target() as target:
        out.write(f"  target        {target}\n  Airflow logs  {log_path} (in AIRFLOW_HOME)\n")
        out.write("Migrating the Airflow DB ...")
        out.flush()
        from airflow.dag_processing.dagbag import DagBag
        from airflow.utils import db

        db.initdb()
        out.write(" done\n")
        bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
        if bag.import_errors:
            out.write(f"The example DAG does not import: {bag.import_errors}\n")
            return 1
        with RunWatcher("nightly_eval", log_path, out):
            run = bag.get_dag("nightly_eval").test()
        tis = {ti.task_id: ti for ti in run.get_task_instances()}
        report = tis["score"].xcom_pull(task_ids="score") if "score" in tis else None
        batch_id = tis["submit"].xcom_pull(task_ids="submit", key="batch_id") if "submit" in tis else None
        _print_report(out, run.run_id, str(run.state), report, batch_id)
        if str(run.state) != "success" or not report:
            out.write(f"The run did not succeed: see the Airflow logs in {log_path}\n")
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main())
