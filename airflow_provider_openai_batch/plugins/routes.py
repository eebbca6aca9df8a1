"""The JSON API under ``/openai-batch/api``: list, one batch, cancel.

A user sees only batches of DAGs they may read (404 for any other batch id: its existence is
not confirmed); cancelling needs edit permission on the batch's DAG (403) and is written to
Airflow's audit log. Answers carry batch data and links, never a connection's secrets.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from airflow_provider_openai_batch.api.exceptions import OpenAIAPIError
from airflow_provider_openai_batch.compat import Log, SessionDep
from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook
from airflow_provider_openai_batch.plugins.auth import (
    CurrentUser,
    editable_dag_ids,
    may_edit_dag,
    readable_dag_ids,
    user_name,
)
from airflow_provider_openai_batch.plugins.live import Known, LiveStates
from airflow_provider_openai_batch.plugins.records import (
    BatchRecord,
    RecordFilter,
    find_record,
    hours_ago,
    load_records,
)
from airflow_provider_openai_batch.plugins.rows import make_row, sort_key, totals

AUDIT_EVENT = "openai_batch.cancel"
RECENT_HOURS = 24.0
LONGEST_WINDOW_HOURS = 48.0
"""Records older than the view's hours plus this cannot be in flight any more (24 h window + cancelling)."""

router = APIRouter(prefix="/api")


def live_states(request: Request) -> LiveStates:
    return request.app.state.live


async def _states(live: LiveStates, records: list[BatchRecord]) -> tuple[dict[str, Known], list[str]]:
    by_conn: dict[str, list[str]] = {}
    for record in records:
        by_conn.setdefault(record.conn_id, []).append(record.batch_id)
    states: dict[str, Known] = {}
    problems = []
    for conn_id, ids in sorted(by_conn.items()):
        states.update(await live.states(conn_id, ids))
        if problem := live.problem(conn_id):
            problems.append(problem)
    return states, problems


@router.get("/batches")
async def list_batches(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    status: str | None = None,
    dag_id: str | None = None,
    conn_id: str | None = None,
    run_id: str | None = None,
    task_id: str | None = None,
    map_index: int | None = None,
    hours: Annotated[float, Query(gt=0, description="Final batches older than this are left out")] = RECENT_HOURS,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict:
    """Batches recorded by Airflow tasks: in flight first, then those of the last ``hours``."""
    dag_ids = readable_dag_ids(user)
    where = RecordFilter(dag_id, conn_id, run_id, task_id, map_index, since=hours_ago(hours + LONGEST_WINDOW_HOURS))
    records = load_records(session, dag_ids, where)
    states, problems = await _states(live_states(request), records)
    now = time.time()
    editable = editable_dag_ids(user) if records else set()
    rows = [make_row(r, states[r.batch_id], now, can_cancel=r.dag_id in editable) for r in records]
    since = now - hours * 3600
    rows = [r for r in rows if r["in_flight"] or r["status"] == "unknown" or (r["created_at"] or now) >= since]
    statuses = sorted({r["status"] for r in rows})
    if status:
        rows = [r for r in rows if r["status"] == status]
    rows.sort(key=sort_key)
    return {
        "batches": rows[offset : offset + limit],
        "total": len(rows),
        "limit": limit,
        "offset": offset,
        "totals": totals(rows, now),
        "problems": problems,
        "filters": {
            "statuses": statuses,
            "dag_ids": sorted({r.dag_id for r in records}),
            "conn_ids": sorted({r.conn_id for r in records}),
        },
    }


def _readable_record(session, user, batch_id: str) -> BatchRecord:
    record = find_record(session, readable_dag_ids(user), batch_id)
    if record is None:
        raise HTTPException(status_code=404, detail=f"No batch {batch_id} recorded by a DAG you may read")
    return record


@router.get("/batches/{batch_id}")
async def get_batch(request: Request, batch_id: str, user: CurrentUser, session: SessionDep) -> dict:
    """One batch with all its errors."""
    record = _readable_record(session, user, batch_id)
    states, _ = await _states(live_states(request), [record])
    return make_row(
        record, states[batch_id], time.time(), can_cancel=may_edit_dag(user, record.dag_id), all_errors=True
    )


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(request: Request, batch_id: str, user: CurrentUser, session: SessionDep) -> dict:
    """Cancel the batch (edit permission on its DAG); the audit log says who cancelled what."""
    record = _readable_record(session, user, batch_id)
    if not may_edit_dag(user, record.dag_id):
        raise HTTPException(status_code=403, detail=f"Cancelling needs edit permission on DAG {record.dag_id}")
    try:
        batch = await OpenAIBatchHook(record.conn_id).acancel_batch(batch_id)
    except OpenAIAPIError as error:
        code = 409 if error.status_code in (400, 409) else 502  # 400/409: the batch can no longer be cancelled
        raise HTTPException(status_code=code, detail=f"The API refused to cancel {batch_id}: {error}") from error
    session.add(
        Log(
            event=AUDIT_EVENT,
            owner=user_name(user),
            dag_id=record.dag_id,
            run_id=record.run_id,
            task_id=record.task_id,
            map_index=record.map_index,
            extra=json.dumps({"batch_id": batch_id, "conn_id": record.conn_id, "status": batch.status.value}),
        )
    )
    session.commit()
    live = live_states(request)
    live.remember(record.conn_id, batch)
    known = Known(batch, time.time(), stale=False)
    return make_row(record, known, time.time(), can_cancel=True, all_errors=True)
