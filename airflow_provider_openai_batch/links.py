"""OpenAIBatchLink: the "OpenAI Batch" button on a task in the Airflow UI (floor 3).

The worker computes extra links after each run (also one that ends in deferral) from
XCom, so the operator and the sensor push ``batch_url`` as soon as they know the batch.
The URL is empty for a batch that is not on OpenAI's own API (Azure or another compatible
service has no page on platform.openai.com): the button then leads nowhere.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from airflow_provider_openai_batch.client import DEFAULT_BASE_URL

DASHBOARD = "https://platform.openai.com/batches/{batch_id}"
XCOM_KEY = "batch_url"


def dashboard_url(batch_id: str | None, base_url: str) -> str | None:
    """The dashboard page of ``batch_id``, or None when the batch does not live on OpenAI's API."""
    if not batch_id or base_url.rstrip("/") != DEFAULT_BASE_URL:
        return None
    return DASHBOARD.format(batch_id=batch_id)


class OpenAIBatchLink(BaseOperatorLink):
    name = "OpenAI Batch"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return XCom.get_value(key=XCOM_KEY, ti_key=ti_key) or ""
