"""The one place floors 2 and 3 get Airflow names from, on every Airflow 3 minor (3.0 to 3.3).

Airflow moved names into the Task SDK (``airflow.sdk``) over several minors, so an import that
works on 3.3 fails on 3.0 (``BaseHook``) or 3.1 (``AirflowFailException``). The hook, operators,
sensors, triggers, links and plugins import from here, never from ``airflow`` directly (a unit
test walks them), so one file knows each fallback. Names that cost time to import
(``ObjectStoragePath``, ``XCom``, ``conf``) load on first use.

Features that need a newer Airflow are flags (``SUPPORTS_*``), found by looking for the feature
itself; code that uses one calls ``log_degraded`` once when it is missing, so a user on an older
Airflow reads one clear line instead of an ImportError or a silent gap.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from airflow import __version__ as AIRFLOW_VERSION_STRING
from airflow.sdk import BaseOperator, BaseOperatorLink, BaseSensorOperator, PokeReturnValue
from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent
from packaging.version import Version

try:  # Task SDK 1.1 (Airflow 3.1)
    from airflow.sdk import BaseHook
except ImportError:  # Airflow 3.0
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef]

try:  # Task SDK 1.2 (Airflow 3.2)
    from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
except ImportError:  # Airflow 3.0, 3.1
    from airflow.exceptions import AirflowException, AirflowFailException, AirflowSkipException  # type: ignore

if TYPE_CHECKING:
    from airflow.sdk import Connection

log = logging.getLogger(__name__)

AIRFLOW_VERSION = Version(Version(AIRFLOW_VERSION_STRING).base_version)


def airflow_at_least(version: str) -> bool:
    """True when the running Airflow (release candidates counted as their release) is ``version`` or newer."""
    return Version(version) <= AIRFLOW_VERSION


AIRFLOW_V_3_1_PLUS = airflow_at_least("3.1")
AIRFLOW_V_3_2_PLUS = airflow_at_least("3.2")
AIRFLOW_V_3_3_PLUS = airflow_at_least("3.3")

#: FastAPI apps and external views from plugins on the api-server (Airflow 3.1).
SUPPORTS_PLUGINS = AIRFLOW_V_3_1_PLUS
#: The triggerer calls ``BaseTrigger.on_kill`` when a user kills a deferred task (Airflow 3.3).
SUPPORTS_TRIGGER_ON_KILL = callable(getattr(BaseTrigger, "on_kill", None))
#: Sibling event triggers with one ``shared_stream_key`` share one poll (Airflow 3.3).
SUPPORTS_SHARED_EVENT_STREAMS = callable(getattr(BaseEventTrigger, "shared_stream_key", None))
#: The execution API stores an XCom whose value is None (Airflow 3.0 answers 422 to the null body).
SUPPORTS_NULL_XCOM = AIRFLOW_V_3_1_PLUS
#: ``BaseHook.aget_connection``: an event-loop-safe connection lookup (Task SDK 1.1, Airflow 3.1).
SUPPORTS_ASYNC_CONNECTION = callable(getattr(BaseHook, "aget_connection", None))

#: Names loaded on first use (``from airflow_provider_openai_batch.compat import conf`` works as usual).
_LAZY = {
    "Connection": (("airflow.sdk", "Connection"),),
    "ObjectStoragePath": (("airflow.sdk", "ObjectStoragePath"),),
    "XCom": (("airflow.sdk.execution_time.xcom", "XCom"), ("airflow.models.xcom", "XCom")),
    "conf": (("airflow.sdk.configuration", "conf"), ("airflow.configuration", "conf")),
    # The api-server side, used by the plugin (plugins/) only: loaded when its app is first built.
    "AirflowPlugin": (("airflow.plugins_manager", "AirflowPlugin"),),
    "get_user": (("airflow.api_fastapi.core_api.security", "get_user"),),
    "get_auth_manager": (("airflow.api_fastapi.app", "get_auth_manager"),),
    "SessionDep": (("airflow.api_fastapi.common.db.common", "SessionDep"),),
    "Log": (("airflow.models.log", "Log"),),
    "XComModel": (("airflow.models.xcom", "XComModel"),),
    # Server side (the api-server's webhook receiver): the metadata database and its models.
    "AssetManager": (("airflow.assets.manager", "AssetManager"),),
    "ServerConnection": (("airflow.models.connection", "Connection"),),
    "TriggerModel": (("airflow.models.trigger", "Trigger"),),
    "create_session": (("airflow.utils.session", "create_session"),),
}
_loaded: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """Load the costly names on first use, from the first place this Airflow has them."""
    if name in _loaded:
        return _loaded[name]
    places = _LAZY.get(name)
    if places is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    error: Exception | None = None
    for module_name, attr in places:
        try:
            value = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            error = exc
            continue
        _loaded[name] = globals()[name] = value
        return value
    raise ImportError(f"Airflow {AIRFLOW_VERSION_STRING} has no {name} where this provider looks for it") from error


async def get_async_connection(conn_id: str) -> Connection:
    """The connection, looked up without blocking the event loop.

    Airflow 3.1+ has ``BaseHook.aget_connection``; before it the sync lookup runs in a thread
    (it may call the API server or a secrets backend), never on the triggerer's loop.
    """
    if SUPPORTS_ASYNC_CONNECTION:
        return await BaseHook.aget_connection(conn_id)
    return await asyncio.to_thread(BaseHook.get_connection, conn_id)


def asset_state_store_model() -> Any:
    """The per-asset state store table (Airflow 3.3), or None on an Airflow without one."""
    try:
        from airflow.models.asset_state_store import AssetStateStoreModel
    except ImportError:
        return None
    return AssetStateStoreModel


def xcom_push(ti: Any, key: str, value: Any) -> None:
    """Push an XCom; where Airflow cannot store a None (3.0), leave the key out.

    Pulling a key that was never pushed gives None, so a reader sees the same value on every minor.
    """
    if value is None and not SUPPORTS_NULL_XCOM:
        return
    ti.xcom_push(key=key, value=value)


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable``; True when unset (the provider waits deferred)."""
    return __getattr__("conf").getboolean("operators", "default_deferrable", fallback=True)


_said: set[str] = set()


def log_degraded(feature: str, needs: str, instead: str, logger: logging.Logger | None = None) -> bool:
    """Say once per process that ``feature`` needs Airflow ``needs`` and what happens ``instead``.

    Returns True the first time (the line was logged), False after, so a caller in a hot path
    can call it on every use.
    """
    if feature in _said:
        return False
    _said.add(feature)
    message = "OpenAI Batch: %s needs Airflow >= %s (this is Airflow %s); %s."
    (logger or log).warning(message, feature, needs, AIRFLOW_VERSION_STRING, instead)
    return True


__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_VERSION_STRING",
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "SUPPORTS_ASYNC_CONNECTION",
    "SUPPORTS_NULL_XCOM",
    "SUPPORTS_PLUGINS",
    "SUPPORTS_SHARED_EVENT_STREAMS",
    "SUPPORTS_TRIGGER_ON_KILL",
    "AirflowException",
    "AirflowFailException",
    "AirflowSkipException",
    "BaseEventTrigger",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "BaseTrigger",
    "PokeReturnValue",
    "TriggerEvent",
    "airflow_at_least",
    "asset_state_store_model",
    "default_deferrable",
    "get_async_connection",
    "log_degraded",
    "xcom_push",
]
