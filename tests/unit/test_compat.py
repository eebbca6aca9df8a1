"""compat.py is the one door to Airflow: every other module goes through it, on every Airflow 3 minor.

These tests run on each Airflow of ``make test-compat`` (3.0 to 3.3), so a name Airflow moved, or a
feature flag that disagrees with the Airflow it runs on, fails here first.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
from packaging.version import Version

import airflow_provider_openai_batch as package
from airflow_provider_openai_batch import compat

ROOT = Path(package.__file__).parent
DOOR = ROOT / "compat.py"


def airflow_imports(path: Path) -> list[str]:
    """``import airflow...`` / ``from airflow... import`` statements of one module, as ``file:line``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(name == "airflow" or name.startswith("airflow.") for name in names):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_module_but_compat_imports_airflow():
    modules = [path for path in sorted(ROOT.rglob("*.py")) if path != DOOR]
    assert ROOT / "hooks" / "batch.py" in modules
    assert [hit for path in modules for hit in airflow_imports(path)] == []


def test_the_guard_sees_an_airflow_import():
    sample = ROOT / "compat.py"
    assert airflow_imports(sample), "compat.py imports Airflow; the scan must find it"


def test_every_name_resolves_on_this_airflow():
    for name in [*compat.__all__, *compat._LAZY]:
        assert getattr(compat, name) is not None, name
    with pytest.raises(AttributeError):
        _ = compat.NoSuchName


def test_the_names_are_airflows_own():
    """What a task raises and what the triggerer expects are the classes Airflow itself checks."""
    assert issubclass(compat.AirflowFailException, compat.AirflowException)
    assert issubclass(compat.BaseSensorOperator, compat.BaseOperator)
    assert issubclass(compat.BaseEventTrigger, compat.BaseTrigger)
    assert compat.TriggerEvent({"status": "completed"}).payload == {"status": "completed"}
    assert compat.PokeReturnValue(is_done=True, xcom_value="x").xcom_value == "x"
    assert str(compat.ObjectStoragePath("file:///tmp/x.jsonl")).endswith("/tmp/x.jsonl")


@pytest.mark.parametrize(
    ("flag", "since"),
    [
        ("SUPPORTS_PLUGINS", "3.1"),
        ("SUPPORTS_ASYNC_CONNECTION", "3.1"),
        ("SUPPORTS_TRIGGER_ON_KILL", "3.3"),
        ("SUPPORTS_SHARED_EVENT_STREAMS", "3.3"),
    ],
)
def test_feature_flags_match_the_airflow_that_has_them(flag, since):
    """The README's matrix says which minor brings which feature; the flags, found by looking, agree."""
    assert getattr(compat, flag) is compat.airflow_at_least(since)
    assert compat.airflow_at_least(since) is (Version(since) <= compat.AIRFLOW_VERSION)


def test_version_is_the_installed_airflow():
    import importlib.metadata

    installed = Version(importlib.metadata.version("apache-airflow-core"))
    assert Version(installed.base_version) == compat.AIRFLOW_VERSION
    assert compat.AIRFLOW_V_3_3_PLUS is (installed >= Version("3.3"))


def test_default_deferrable_follows_airflows_setting(monkeypatch):
    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    assert compat.default_deferrable() is compat.conf.getboolean("operators", "default_deferrable", fallback=True)
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "false")
    assert compat.default_deferrable() is False
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "true")
    assert compat.default_deferrable() is True


def test_a_missing_feature_is_said_once(caplog, monkeypatch):
    monkeypatch.setattr(compat, "_said", set())
    with caplog.at_level(logging.WARNING, logger=compat.__name__):
        assert compat.log_degraded("cancel on kill while deferred", "3.3", "the batch keeps running") is True
        assert compat.log_degraded("cancel on kill while deferred", "3.3", "the batch keeps running") is False
    [record] = caplog.records
    message = record.getMessage()
    assert "cancel on kill while deferred needs Airflow >= 3.3" in message
    assert compat.AIRFLOW_VERSION_STRING in message
    assert "the batch keeps running" in message


@pytest.mark.parametrize("async_lookup", [True, False], ids=["aget_connection", "sync-in-thread"])
async def test_async_connection_lookup_on_both_paths(monkeypatch, async_lookup):
    """3.1+ looks up with ``aget_connection``; 3.0 runs the sync lookup in a thread, off the loop."""
    if async_lookup and not compat.SUPPORTS_ASYNC_CONNECTION:
        pytest.skip(f"BaseHook.aget_connection needs Airflow >= 3.1 (this is {compat.AIRFLOW_VERSION_STRING})")
    monkeypatch.setattr(compat, "SUPPORTS_ASYNC_CONNECTION", async_lookup)
    monkeypatch.setenv(
        "AIRFLOW_CONN_COMPAT_LOOKUP",
        '{"conn_type": "openai_batch", "password": "sk-compat", "host": "http://127.0.0.1:9/v1"}',
    )
    conn = await compat.get_async_connection("compat_lookup")
    assert (conn.conn_id, conn.password, conn.host) == ("compat_lookup", "sk-compat", "http://127.0.0.1:9/v1")
