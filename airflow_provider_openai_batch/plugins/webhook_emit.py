"""What a verified batch webhook turns into: one asset event per watching asset, once (floor 3).

Which assets: every asset whose ``AssetWatcher`` runs an ``OpenAIBatchEventTrigger`` on the
same connection and whose ``metadata_filter`` matches the batch - exactly the assets the
watcher would fire for, so a webhook and a poll can never disagree on where an event goes.
To receive webhooks, declare that watcher (a long ``poll_interval`` makes it a safety net).

Once: the marker key ``openai_batch.fired.<batch_id>`` in the asset's state store (a row of
the metadata database, primary key asset + key) is inserted in the same transaction as the
asset event. A second delivery, a replay, another api-server worker or the watcher that
already fired the batch finds the row (the insert fails on the key) and emits nothing.
On Airflow before 3.3 there is no state store: de-duplication is per api-server process.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.compat import AssetManager, TriggerModel, asset_state_store_model, create_session
from airflow_provider_openai_batch.triggers.events import MARKER_PREFIX
from airflow_provider_openai_batch.waiting.watch import batch_event, matches

log = logging.getLogger(__name__)

TRIGGER_CLASSPATH = "airflow_provider_openai_batch.triggers.events.OpenAIBatchEventTrigger"
_fired_in_process: set[tuple[int, str]] = set()


def watching_assets(session: Any, conn_id: str, batch: Batch) -> list[Any]:
    """The assets whose event trigger watches ``conn_id`` with a filter ``batch`` matches."""
    from sqlalchemy import select

    found: dict[int, Any] = {}
    for trigger in session.scalars(select(TriggerModel).where(TriggerModel.classpath == TRIGGER_CLASSPATH)):
        kwargs = trigger.kwargs or {}
        if kwargs.get("conn_id", "openai_default") != conn_id:
            continue
        if not matches(batch, kwargs.get("metadata_filter")):
            continue
        for asset in trigger.assets:
            found[asset.id] = asset
    return list(found.values())


def emit_batch_event(conn_id: str, batch: Batch, webhook_id: str) -> list[str]:
    """Record the asset event of ``batch`` on every watching asset that has not had it yet.

    Returns the names of the assets that got an event (empty: none watch, or all had it).
    """
    payload = batch_event(batch)
    extra = {"from_webhook": True, "webhook_id": webhook_id, "payload": payload}
    emitted: list[str] = []
    with create_session() as session:
        assets = watching_assets(session, conn_id, batch)
    if not assets:
        log.warning(
            "Webhook %s for batch %s: no asset watches connection %s with a matching filter; nothing emitted",
            webhook_id,
            batch.id,
            conn_id,
        )
        return emitted
    for asset in assets:
        if _claim_and_emit(asset, batch.id, extra):
            emitted.append(asset.name)
    return emitted


def _claim_and_emit(asset: Any, batch_id: str, extra: dict[str, Any]) -> bool:
    """Insert the fired marker and the asset event in one transaction; False if already fired."""
    from sqlalchemy.exc import IntegrityError

    model = asset_state_store_model()
    if model is None:
        key = (asset.id, batch_id)
        if key in _fired_in_process:
            return False
        _fired_in_process.add(key)
    try:
        with create_session() as session:
            if model is not None:
                marker = json.dumps({"at": time.time(), "by": "webhook"})
                session.add(model(asset_id=asset.id, key=MARKER_PREFIX + batch_id, value=marker))
                session.flush()  # the primary key decides: a second claim fails here
            AssetManager.register_asset_change(asset=asset, extra=extra, session=session)
    except IntegrityError:
        log.info("Batch %s already fired for asset %s: not emitting again", batch_id, asset.name)
        return False
    log.info("Batch %s ended (%s): asset event for %s", batch_id, extra["payload"]["status"], asset.name)
    return True
