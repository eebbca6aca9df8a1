"""Spec conformance: the fake's JSON validates against the OpenAPI component schemas.

The spec subset is OpenAPI 3.1, whose schemas are JSON Schema 2020-12, with two gaps that
are adapted here, and only here:

* ``BatchRequestOutput`` (copied from the mid-2025 spec) still uses OpenAPI 3.0's
  ``nullable: true``, which JSON Schema ignores; it is turned into "or null".
* ``Batch`` and ``OpenAIFile`` declare their optional fields with non-null types, yet the
  spec's own examples (and the real service) send ``null`` for them (``"output_file_id":
  null`` in the create example). Optional properties may therefore be null; required ones
  keep their strict types.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from fake_helpers import CHAT, Api, ManualClock, chat_line, jsonl
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from airflow_provider_openai_batch.testing import FakeOpenAIServer

SPEC_PATH = Path(__file__).resolve().parents[1] / "data" / "openapi-batch-files-subset.yaml"
SPEC_URI = "urn:openai-batch-files-subset"


def or_null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def adapt(node: Any) -> Any:
    """Apply the two adaptations described in the module docstring, recursively."""
    if isinstance(node, list):
        return [adapt(item) for item in node]
    if not isinstance(node, dict):
        return node
    adapted = {key: adapt(value) for key, value in node.items() if key != "nullable"}
    if "properties" in adapted:
        required = set(adapted.get("required", []))
        adapted["properties"] = {
            name: prop if name in required else or_null(prop) for name, prop in adapted["properties"].items()
        }
    return or_null(adapted) if node.get("nullable") is True else adapted


SPEC = yaml.safe_load(SPEC_PATH.read_text())
REGISTRY = Registry().with_resource(SPEC_URI, Resource(contents=adapt(SPEC), specification=DRAFT202012))
COMPONENTS = SPEC["components"]["schemas"]


def conforms(name: str, instance: Any) -> None:
    schema = {"$ref": f"{SPEC_URI}#/components/schemas/{name}"}
    jsonschema.Draft202012Validator(schema, registry=REGISTRY).validate(instance)


def has_every_spec_field(name: str, instance: dict[str, Any]) -> None:
    assert set(instance) == set(COMPONENTS[name]["properties"])


def test_the_adaptation_still_rejects_wrong_types() -> None:
    batch = {"id": "batch_1", "object": "batch", "endpoint": CHAT, "input_file_id": "f", "completion_window": "24h"}
    conforms("Batch", {**batch, "status": "validating", "created_at": 1, "output_file_id": None})

    for broken in (
        {**batch, "status": "paused", "created_at": 1},
        {**batch, "status": "validating", "created_at": None},
    ):
        with pytest.raises(jsonschema.ValidationError):
            conforms("Batch", broken)


@pytest.fixture
def batches_in_every_status(api: Api, clock: ManualClock, server: FakeOpenAIServer) -> dict[str, dict[str, Any]]:
    requests = jsonl(chat_line(f"req-{i}") for i in range(10))
    ids = {
        "completed": api.create(requests)["id"],
        "failed": api.create(b"not json\n")["id"],
        "cancelled": api.create(requests)["id"],
        "expired": api.create(requests)["id"],
        "cancelling": api.create(requests)["id"],
    }
    seen = {"validating": api.batch(ids["completed"])}
    clock.advance(60)
    seen["in_progress"] = api.batch(ids["completed"])
    api.client.post(f"/batches/{ids['cancelled']}/cancel")
    server.expire_batch(ids["expired"], completed_fraction=0.5)
    clock.advance(55)
    seen["finalizing"] = api.batch(ids["completed"])
    api.client.post(f"/batches/{ids['cancelling']}/cancel")
    clock.advance(5)
    for status, batch_id in ids.items():
        seen[status] = api.batch(batch_id)
    return seen


def test_batches_in_every_status_conform(batches_in_every_status: dict[str, dict[str, Any]]) -> None:
    assert {status: batch["status"] for status, batch in batches_in_every_status.items()} == {
        status: status for status in batches_in_every_status
    }
    assert len(batches_in_every_status) == 8
    for batch in batches_in_every_status.values():
        conforms("Batch", batch)
        has_every_spec_field("Batch", batch)


def test_lists_files_and_deletion_conform(api: Api, clock: ManualClock) -> None:
    batch_id = api.create(jsonl([chat_line("a")]))["id"]
    clock.advance(1000)
    output_id = api.batch(batch_id)["output_file_id"]

    batch_list = api.client.get("/batches").json()
    file_list = api.client.get("/files").json()
    output_file = api.client.get(f"/files/{output_id}").json()
    deleted = api.client.delete(f"/files/{output_id}").json()

    conforms("ListBatchesResponse", batch_list)
    conforms("ListFilesResponse", file_list)
    conforms("OpenAIFile", output_file)
    has_every_spec_field("OpenAIFile", output_file)
    conforms("DeleteFileResponse", deleted)


def test_result_lines_conform(api: Api, server: FakeOpenAIServer) -> None:
    batch_id = api.create(jsonl(chat_line(f"req-{i}") for i in range(10)))["id"]
    expired = server.expire_batch(batch_id, completed_fraction=0.5)

    lines = api.content(expired["output_file_id"]) + api.content(expired["error_file_id"])

    assert len(lines) == 10
    for line in lines:
        conforms("BatchRequestOutput", line)
        assert set(line) == set(COMPONENTS["BatchRequestOutput"]["properties"])


def test_batch_errors_conform(batches_in_every_status: dict[str, dict[str, Any]]) -> None:
    errors = batches_in_every_status["failed"]["errors"]["data"]

    assert errors
    for error in errors:
        conforms("BatchError", error)


@pytest.mark.parametrize(
    "make_error",
    [
        lambda client: client.get("/batches/batch_nope"),
        lambda client: client.get("/files/file-nope"),
        lambda client: client.post("/batches", json={"endpoint": CHAT}),
        lambda client: client.get("/no/such/route"),
    ],
    ids=["404-batch", "404-file", "400-missing", "404-route"],
)
def test_error_envelopes_have_the_four_keys(api: Api, make_error: Callable[[Any], Any]) -> None:
    # The subset carries no ErrorResponse schema; this is the spec's Error object, written out.
    response = make_error(api.client)

    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str)
    assert isinstance(body["error"]["type"], str)
    assert all(body["error"][key] is None or isinstance(body["error"][key], str) for key in ("param", "code"))
