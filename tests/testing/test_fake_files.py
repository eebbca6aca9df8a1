"""Files API of the fake server over real loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fake_helpers import START, Api, chat_line, jsonl

from airflow_provider_openai_batch.testing import FakeOpenAIServer

THIRTY_DAYS = 30 * 24 * 3600


def test_upload_returns_a_complete_file_object(api: Api) -> None:
    content = jsonl([chat_line("a"), chat_line("b")])

    uploaded = api.upload(content, filename="nightly.jsonl")

    assert uploaded["id"].startswith("file-")
    assert uploaded == {
        "id": uploaded["id"],
        "object": "file",
        "bytes": len(content),
        "created_at": int(START),
        "expires_at": int(START) + THIRTY_DAYS,
        "filename": "nightly.jsonl",
        "purpose": "batch",
        "status": "processed",
        "status_details": None,
    }


def test_every_response_carries_request_id_and_version(client: httpx.Client) -> None:
    for response in (client.get("/files"), client.get("/files/file-missing"), client.get("/batches")):
        assert response.headers["x-request-id"].startswith("req_")
        assert response.headers["openai-version"] == "2020-10-01"


def test_retrieve_content_and_delete(api: Api, client: httpx.Client) -> None:
    content = jsonl([chat_line("a")])
    file_id = api.upload(content)["id"]

    assert client.get(f"/files/{file_id}").json()["bytes"] == len(content)
    assert client.get(f"/files/{file_id}/content").content == content
    deleted = client.delete(f"/files/{file_id}")
    assert deleted.json() == {"id": file_id, "object": "file", "deleted": True}
    assert client.get(f"/files/{file_id}").status_code == 404


@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("GET", "/content"), ("DELETE", "")], ids=["get", "content", "delete"]
)
def test_unknown_file_is_404_in_the_openai_envelope(client: httpx.Client, method: str, suffix: str) -> None:
    response = client.request(method, f"/files/file-nope{suffix}")

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "No such File object: file-nope",
            "type": "invalid_request_error",
            "param": "id",
            "code": None,
        }
    }


def test_batch_purpose_needs_a_jsonl_name(client: httpx.Client) -> None:
    response = client.post("/files", files={"file": ("input.csv", b"a,b\n")}, data={"purpose": "batch"})

    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "Invalid file format for Batch API. Must be .jsonl",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_other_purposes_accept_any_name_and_never_expire(api: Api) -> None:
    uploaded = api.upload(b"\x89PNG", filename="cat.png", purpose="vision")

    assert uploaded["purpose"] == "vision"
    assert uploaded["expires_at"] is None


def test_unknown_purpose_is_rejected(client: httpx.Client) -> None:
    response = client.post("/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "batch_output"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_value", "purpose")
    assert "'user_data'" in error["message"]


@pytest.mark.parametrize(
    ("files", "data", "param"),
    [
        ({"file": ("a.jsonl", b"{}\n")}, {}, "purpose"),
        ({"other": ("a.jsonl", b"{}\n")}, {"purpose": "batch"}, "file"),
    ],
    ids=["no-purpose", "no-file"],
)
def test_missing_upload_fields(client: httpx.Client, files: dict, data: dict, param: str) -> None:
    response = client.post("/files", files=files, data=data)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_required_parameter"
    assert response.json()["error"]["param"] == param


def test_upload_expiry_from_bracket_fields(client: httpx.Client) -> None:
    data = {"purpose": "batch", "expires_after[anchor]": "created_at", "expires_after[seconds]": "7200"}

    response = client.post("/files", files={"file": ("a.jsonl", b"{}\n")}, data=data)

    assert response.status_code == 200
    assert response.json()["expires_at"] == int(START) + 7200


@pytest.mark.parametrize(
    ("seconds", "code"), [("60", "integer_below_min_value"), ("9999999", "integer_above_max_value")]
)
def test_upload_expiry_out_of_range(client: httpx.Client, seconds: str, code: str) -> None:
    data = {"purpose": "batch", "expires_after[anchor]": "created_at", "expires_after[seconds]": seconds}

    response = client.post("/files", files={"file": ("a.jsonl", b"{}\n")}, data=data)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["param"] == "expires_after.seconds"


def test_chunked_upload_is_streamed_to_disk(client: httpx.Client, server: FakeOpenAIServer) -> None:
    boundary = "fakeboundary"
    chunk = b"x" * 65536
    count = 64  # 4 MiB: several flushes of the upload buffer

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for _ in range(count):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/files", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )

    assert response.status_code == 200, response.text
    assert response.json()["bytes"] == len(chunk) * count
    downloaded = client.get(f"/files/{response.json()['id']}/content").content
    assert downloaded == chunk * count
    assert server.stats()["uploads"] == 1


def test_list_files_filters_orders_and_pages(api: Api, client: httpx.Client) -> None:
    batch_ids = [api.upload(jsonl([chat_line(str(i))]))["id"] for i in range(3)]
    vision_id = api.upload(b"img", filename="x.png", purpose="vision")["id"]

    newest_first = client.get("/files").json()
    assert [f["id"] for f in newest_first["data"]] == [vision_id, *reversed(batch_ids)]
    assert newest_first["first_id"] == vision_id
    assert newest_first["has_more"] is False

    oldest_first = client.get("/files", params={"order": "asc", "purpose": "batch", "limit": 2}).json()
    assert [f["id"] for f in oldest_first["data"]] == batch_ids[:2]
    assert oldest_first["has_more"] is True
    assert oldest_first["last_id"] == batch_ids[1]

    rest = client.get("/files", params={"order": "asc", "purpose": "batch", "after": batch_ids[1]}).json()
    assert [f["id"] for f in rest["data"]] == batch_ids[2:]
    assert rest["has_more"] is False


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 0}, "integer_below_min_value"),
        ({"limit": 10001}, "integer_above_max_value"),
        ({"order": "up"}, "invalid_value"),
    ],
)
def test_list_files_rejects_bad_parameters(client: httpx.Client, params: dict, code: str) -> None:
    response = client.get("/files", params=params)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
