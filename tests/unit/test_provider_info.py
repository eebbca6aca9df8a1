"""Provider metadata: the entry point, Airflow's own schema, importable names, and the CLI seeing us."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_provider_openai_batch.get_provider_info import get_provider_info

DISTRIBUTION = "airflow-provider-openai-batch"
SCHEMA = Path(airflow.__file__).parent / "provider_info.schema.json"


@pytest.fixture(scope="module")
def info() -> dict:
    return get_provider_info()


def test_entry_point_resolves_to_get_provider_info():
    ours = [ep for ep in entry_points(group="apache_airflow_provider") if ep.dist and ep.dist.name == DISTRIBUTION]
    assert len(ours) == 1
    [entry] = ours
    assert entry.value == "airflow_provider_openai_batch.get_provider_info:get_provider_info"
    assert entry.load() is get_provider_info


def test_info_validates_against_airflows_schema(info):
    assert SCHEMA.is_file(), SCHEMA
    jsonschema.validate(info, json.loads(SCHEMA.read_text()))
    assert info["package-name"] == DISTRIBUTION


def module_names(info: dict) -> list[str]:
    names = []
    for kind in ("hooks", "operators", "sensors", "triggers"):
        for entry in info.get(kind, []):
            names += entry.get("python-modules", [])
    return names


def class_names(info: dict) -> list[str]:
    names = list(info.get("extra-links", []))
    names += [conn["hook-class-name"] for conn in info.get("connection-types", [])]
    return names


def test_every_named_module_and_class_imports(info):
    modules = module_names(info)
    classes = class_names(info)
    assert modules and classes
    for name in modules:
        importlib.import_module(name)
    for dotted in classes:
        module, _, attr = dotted.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), attr), type), dotted
    assert {"airflow_provider_openai_batch.hooks.batch", "airflow_provider_openai_batch.triggers.batch"} <= set(modules)


def test_connection_type_form(info):
    [conn] = info["connection-types"]
    assert conn["connection-type"] == "openai_batch"
    assert conn["hook-class-name"] == "airflow_provider_openai_batch.hooks.batch.OpenAIBatchHook"
    assert set(conn["conn-fields"]) == {"organization", "project"}
    for field in conn["conn-fields"].values():
        assert field["label"] and field["schema"]["type"]
    behaviour = conn["ui-field-behaviour"]
    assert behaviour["relabeling"] == {"password": "API Key", "host": "Base URL"}
    assert {"login", "port", "schema"} <= set(behaviour["hidden-fields"])
    assert "password" not in behaviour["hidden-fields"] and "host" not in behaviour["hidden-fields"]
    from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook

    assert OpenAIBatchHook.conn_type == conn["connection-type"]
    assert OpenAIBatchHook.hook_name == conn["hook-name"]


def json_list_in(output: str) -> list:
    """The JSON list in the CLI's output; Airflow 3.0 prints log lines (``[2026-...] {plugins.py:37} INFO``) first."""
    for line_start in [0, *(i + 1 for i, char in enumerate(output) if char == "\n")]:
        if output.startswith("[", line_start):
            try:
                value, _ = json.JSONDecoder().raw_decode(output[line_start:])
            except json.JSONDecodeError:
                continue
            if isinstance(value, list):
                return value
    raise AssertionError(f"no JSON list in the output: {output[-2000:]}")


def test_airflow_cli_lists_the_provider():
    bindir = Path(sys.executable).parent
    env = {**os.environ, "AIRFLOW_HOME": os.environ["AIRFLOW_HOME"]}  # the throwaway home of tests/conftest.py
    done = subprocess.run(
        [str(bindir / "airflow"), "providers", "list", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    providers = json_list_in(done.stdout)
    ours = [p for p in providers if p["package_name"] == DISTRIBUTION]
    assert len(ours) == 1, [p["package_name"] for p in providers]
    assert ours[0]["version"] == get_provider_info()["versions"][0]
