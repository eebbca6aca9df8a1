"""OpenAIBatchLink: the "OpenAI Batch" button on a task in the Airflow UI (floor 3).

The worker computes extra links after each run (also one that ends in deferral) from
XCom, so the operator and the sensor push ``batch_url`` as soon as they know the batch.
For a batch that is not on OpenAI's own API the URL comes from the connection's
``dashboard_url`` extra (e.g. ``http://127.0.0.1:8765/_fake/batches/{batch_id}`` for the
bundled fake server); without it the URL is empty and the UI shows no button.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_openai_batch.api.client import DEFAULT_BASE_URL
from airflow_provider_openai_batch.compat import BaseOperatorLink

DASHBOARD = "https://platform.openai.com/batches/{batch_id}"
XCOM_KEY = "batch_url"
RECORD_XCOM_KEY = "openai_batch"
"""XCom the operator and the sensor push as soon as they know their batch: ``{"batch_id", "conn_id",
"dashboard_url"}``. The "OpenAI Batches" page reads these to tie each batch to its DAG run, task
and connection (the plain ``batch_id`` XCom says nothing of the connection, and the sensor does
not push it)."""


def batch_record(batch_id: str, conn_id: str, url: str | None) -> dict[str, str | None]:
    """The value of the ``openai_batch`` XCom (no secret: ids and a link only)."""
    return {"batch_id": batch_id, "conn_id": conn_id, "dashboard_url": url or None}


def dashboard_url(batch_id: str | None, base_url: str, template: str | None = None) -> str | None:
    """The page of ``batch_id`` to link to, or None.

    OpenAI's own API links to platform.openai.com; another service (Azure, a gateway, the
    bundled fake server) links where the connection's ``dashboard_url`` extra says, a
    template with ``{batch_id}``, and nowhere when it says nothing.
    """
    if not batch_id:
        return None
    if template:
        return template.format(batch_id=batch_id)
    if base_url.rstrip("/") != DEFAULT_BASE_URL:
        return None
    return DASHBOARD.format(batch_id=batch_id)


class OpenAIBatchLink(BaseOperatorLink):
    name = "OpenAI Batch"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow_provider_openai_batch.compat import XCom

        return XCom.get_value(key=XCOM_KEY, ti_key=ti_key) or ""
