"""Consumers for ``make test-events``: one asset per path (polling watcher, webhooks), one DAG each.

Each consumer run returns the batch ids of the asset events that triggered it, so the driver can
check through the REST API that every batch started exactly one run.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import Asset, AssetWatcher, dag, task

from airflow_provider_openai_batch import OpenAIBatchEventTrigger

POLLED = Asset(
    name="deploy_events_polled",
    uri="openai-batch://openai_events/polled",
    watchers=[
        AssetWatcher(
            name="deploy_events_polled_watcher",
            trigger=OpenAIBatchEventTrigger(
                conn_id="openai_events",
                metadata_filter={"phase": "poll"},
                poll_interval=float(os.environ.get("OPENAI_EVENTS_POLL", "2")),
            ),
        )
    ],
)
HOOKED = Asset(
    name="deploy_events_webhooks",
    uri="openai-batch://openai_hooks/webhooks",
    watchers=[
        AssetWatcher(
            name="deploy_events_webhooks_watcher",
            # A safety net only: within the test every event of this asset comes from a webhook.
            trigger=OpenAIBatchEventTrigger(
                conn_id="openai_hooks", metadata_filter={"phase": "hooks"}, poll_interval=3600
            ),
        )
    ],
)


def consumer(dag_id: str, asset: Asset) -> None:
    @dag(dag_id=dag_id, schedule=[asset], start_date=datetime(2026, 1, 1), catchup=False, is_paused_upon_creation=False)
    def consume():
        @task
        def batches(triggering_asset_events: Any = None) -> list[str]:
            ids = [event.extra["payload"]["batch_id"] for event in triggering_asset_events[asset]]
            print(f"Consuming batches {ids}")
            return ids

        batches()

    consume()


consumer("events_consume_polled", POLLED)
consumer("events_consume_webhooks", HOOKED)
