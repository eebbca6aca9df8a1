"""The example DAGs: they import cleanly, and run to success in dag.test() against the fake server."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from airflow_provider_openai_batch.results.merge import ResultRecord
from tests.e2e.helpers import dag_bag

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
EVAL_SET = [json.loads(line) for line in (EXAMPLES / "data" / "nightly_eval_set.jsonl").read_text().splitlines()]
WRONG = {"math-sqrt": "12"}


def eval_responder(endpoint: str, body: dict, custom_id: str) -> str:
    """Answer like a model that knows every eval answer but one."""
    return WRONG.get(custom_id) or next(row["expected"] for row in EVAL_SET if row["id"] == custom_id)


@pytest.mark.compat
def test_every_example_dag_imports_without_errors_or_warnings(airflow_db):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = dag_bag(str(EXAMPLES))
    assert bag.import_errors == {}
    assert {"nightly_eval", "embeddings_backfill", "nightly_eval_events_submit", "nightly_eval_events_score"} <= set(
        bag.dag_ids
    )
    ours = [
        w for w in caught if "example_dags" in str(w.filename) or "airflow_provider_openai_batch" in str(w.filename)
    ]
    assert ours == [], [str(w.message) for w in ours]
    for dag_id in ("nightly_eval", "embeddings_backfill", "nightly_eval_events_submit", "nightly_eval_events_score"):
        assert bag.get_dag(dag_id).doc_md, f"{dag_id} has no doc_md for the UI"


@pytest.mark.compat
@pytest.mark.fake_server(responder=eval_responder, fail_requests={"geo-ocean": 500})
def test_nightly_eval_scores_the_batch_and_writes_the_report(run_dag, fake_server):
    result = run_dag("nightly_eval")
    assert result.state == "success", result.ti_states
    assert set(result.ti_states.values()) == {"success"}
    report = result.xcom("score")
    assert report["questions"] == 24 and report["correct"] == 22
    assert report["accuracy"] == round(22 / 24, 4)
    assert report["result_counts"]["succeeded"] == 23 and report["result_counts"]["failed"] == 1
    assert report["usage"]["total_tokens"] > 0
    assert {f["id"] for f in report["failures"]} == {"math-sqrt", "geo-ocean"}
    from airflow.sdk import ObjectStoragePath

    written = json.loads(ObjectStoragePath(report["report_path"]).read_text())
    assert written == report
    manifest = result.xcom("land_results")
    lines = ObjectStoragePath(manifest["result_path"]).read_text().splitlines()
    landed = [ResultRecord.model_validate_json(line) for line in lines]
    assert [r.custom_id for r in landed] == [row["id"] for row in EVAL_SET]
    assert fake_server.stats()["batches_created"] == 1


@pytest.mark.fake_server(responder=eval_responder, expire_after_fraction=0.5)
def test_nightly_eval_salvages_an_expired_batch(run_dag, fake_server):
    result = run_dag("nightly_eval")
    assert result.ti_states["wait"] == "failed"
    assert result.ti_states["land_results"] == "success" and result.ti_states["score"] == "success"
    manifest = result.xcom("land_results")
    assert manifest["counts"]["expired"] > 0 and manifest["counts"]["succeeded"] > 0
    assert manifest["counts"]["total"] == 24
    assert result.xcom("wait", "output_file_id").startswith("file-")


@pytest.mark.compat
def test_embeddings_backfill_fans_out_over_shards(run_dag, fake_server):
    result = run_dag("embeddings_backfill")
    assert result.state == "success", result.ti_states
    shards = result.xcom("split")
    assert len(shards) == 3
    assert fake_server.stats()["batches_created"] == 3
    manifest = result.xcom("land")
    assert len(manifest["batch_ids"]) == 3 and manifest["counts"]["succeeded"] == 300
    vectors = result.xcom("write_vectors")
    assert vectors["vectors"] == 300 and vectors["dimensions"] > 0
