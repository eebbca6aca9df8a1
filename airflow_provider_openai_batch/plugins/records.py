"""Where the rows come from: the ``openai_batch`` XComs that Airflow keeps for each task instance.

The operator and the sensor push ``{"batch_id", "conn_id", "dashboard_url"}`` under that key
as soon as they know their batch (before waiting), so Airflow's own metadata ties each batch to
its DAG, run, task and map index. Only rows of DAGs the user may read are loaded.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from airflow_provider_openai_batch.compat import XComModel
from airflow_provider_openai_batch.links import RECORD_XCOM_KEY


@dataclass(frozen=True)
class BatchRecord:
    batch_id: str
    conn_id: str
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    dashboard_url: str | None
    recorded_at: datetime


@dataclass(frozen=True)
class RecordFilter:
    """Narrows the records loaded; ``None`` means any."""

    dag_id: str | None = None
    conn_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None
    since: datetime | None = None


def _record(row: Any) -> BatchRecord | None:
    value = XComModel.deserialize_value(row)
    if not isinstance(value, dict) or not isinstance(value.get("batch_id"), str):
        return None  # someone else's XCom under our key: not a batch we know how to show
    return BatchRecord(
        batch_id=value["batch_id"],
        conn_id=str(value.get("conn_id") or "openai_default"),
        dag_id=row.dag_id,
        run_id=row.run_id,
        task_id=row.task_id,
        map_index=row.map_index,
        dashboard_url=value.get("dashboard_url") or None,
        recorded_at=row.timestamp,
    )


def load_records(session: Session, dag_ids: Collection[str], where: RecordFilter = RecordFilter()) -> list[BatchRecord]:
    """The batch records of ``dag_ids`` matching ``where``, newest first (one per batch id)."""
    if not dag_ids or (where.dag_id is not None and where.dag_id not in dag_ids):
        return []
    query = select(
        XComModel.dag_id,
        XComModel.run_id,
        XComModel.task_id,
        XComModel.map_index,
        XComModel.value,
        XComModel.timestamp,
    ).where(XComModel.key == RECORD_XCOM_KEY)
    query = (
        query.where(XComModel.dag_id == where.dag_id) if where.dag_id else query.where(XComModel.dag_id.in_(dag_ids))
    )
    if where.run_id is not None:
        query = query.where(XComModel.run_id == where.run_id)
    if where.task_id is not None:
        query = query.where(XComModel.task_id == where.task_id)
    if where.map_index is not None:
        query = query.where(XComModel.map_index == where.map_index)
    if where.since is not None:
        query = query.where(XComModel.timestamp >= where.since)
    records: dict[str, BatchRecord] = {}
    for row in session.execute(query.order_by(XComModel.timestamp.desc())):
        record = _record(row)
        if record is None or record.batch_id in records:
            continue
        if where.conn_id is not None and record.conn_id != where.conn_id:
            continue
        records[record.batch_id] = record
    return list(records.values())


def find_record(session: Session, dag_ids: Collection[str], batch_id: str) -> BatchRecord | None:
    """The record of ``batch_id`` if it belongs to one of ``dag_ids`` (else None: the caller answers 404)."""
    for record in load_records(session, dag_ids):
        if record.batch_id == batch_id:
            return record
    return None


def hours_ago(hours: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(hours=hours)
