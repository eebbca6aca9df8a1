"""Result bodies per endpoint: realistic shapes, deterministic content, usage summed on the batch."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

from fake_helpers import Api, ManualClock, jsonl


def run(api: Api, clock: ManualClock, endpoint: str, bodies: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Run one batch on ``endpoint``; return the batch and its response bodies by custom_id."""
    lines = [{"custom_id": cid, "method": "POST", "url": endpoint, "body": body} for cid, body in bodies.items()]
    batch_id = api.create(jsonl(lines), endpoint=endpoint)["id"]
    clock.advance(1000)
    batch = api.batch(batch_id)
    assert batch["status"] == "completed"
    results = {line["custom_id"]: line["response"]["body"] for line in api.content(batch["output_file_id"])}
    return {"batch": batch, "bodies": results}


def test_chat_completion_echoes_the_last_user_message(api: Api, clock: ManualClock) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
    ]
    body = run(api, clock, "/v1/chat/completions", {"a": {"model": "gpt-4o-mini", "messages": messages}})["bodies"]["a"]

    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o-mini"
    assert body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "echo: What is 2+2?",
        "refusal": None,
        "annotations": [],
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_responses_output_text(api: Api, clock: ManualClock) -> None:
    bodies = {
        "str": {"model": "gpt-5", "input": "hello there"},
        "items": {"model": "gpt-5", "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]},
    }
    result = run(api, clock, "/v1/responses", bodies)["bodies"]

    for custom_id, expected in (("str", "echo: hello there"), ("items", "echo: hi")):
        body = result[custom_id]
        assert body["object"] == "response"
        assert body["status"] == "completed"
        assert body["output"][0]["content"][0] == {"type": "output_text", "text": expected, "annotations": []}
        assert set(body["usage"]) == {
            "input_tokens",
            "input_tokens_details",
            "output_tokens",
            "output_tokens_details",
            "total_tokens",
        }


def test_embeddings_are_deterministic_unit_vectors(api: Api, clock: ManualClock) -> None:
    bodies = {
        "one": {"model": "text-embedding-3-small", "input": "cat"},
        "same": {"model": "text-embedding-3-small", "input": "cat"},
        "list": {"model": "text-embedding-3-small", "input": ["cat", "dog", "eel"], "dimensions": 4},
        "b64": {"model": "text-embedding-3-small", "input": "cat", "encoding_format": "base64"},
    }
    result = run(api, clock, "/v1/embeddings", bodies)["bodies"]

    one = result["one"]
    assert one["object"] == "list"
    assert one["data"][0]["object"] == "embedding"
    vector = one["data"][0]["embedding"]
    assert len(vector) == 8
    assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-6)
    assert result["same"]["data"][0]["embedding"] == vector
    listed = result["list"]["data"]
    assert [item["index"] for item in listed] == [0, 1, 2]
    assert {len(item["embedding"]) for item in listed} == {4}
    assert listed[0]["embedding"] != listed[1]["embedding"]
    decoded = struct.unpack("<8f", base64.b64decode(result["b64"]["data"][0]["embedding"]))
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(decoded, vector, strict=True))
    assert one["usage"]["prompt_tokens"] == one["usage"]["total_tokens"] > 0


def test_completions_moderations_images_and_videos(api: Api, clock: ManualClock) -> None:
    completion = run(api, clock, "/v1/completions", {"a": {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}})
    moderation = run(api, clock, "/v1/moderations", {"a": {"input": ["fine", "also fine"]}})
    images = run(api, clock, "/v1/images/generations", {"a": {"model": "gpt-image-1", "prompt": "a cat", "n": 2}})
    video = run(api, clock, "/v1/videos", {"a": {"model": "sora-2", "prompt": "waves"}})

    text = completion["bodies"]["a"]
    assert text["object"] == "text_completion"
    assert text["choices"][0]["text"] == "echo: Say hi"
    results = moderation["bodies"]["a"]["results"]
    assert [r["flagged"] for r in results] == [False, False]
    assert not any(results[0]["categories"].values())
    data = images["bodies"]["a"]["data"]
    assert len(data) == 2
    assert base64.b64decode(data[0]["b64_json"]).startswith(b"\x89PNG")
    job = video["bodies"]["a"]
    assert (job["object"], job["status"], job["prompt"]) == ("video", "completed", "waves")


def test_batch_usage_is_the_sum_of_result_usage(api: Api, clock: ManualClock) -> None:
    bodies = {
        f"r{i}": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "word " * i}]} for i in range(1, 6)
    }
    result = run(api, clock, "/v1/chat/completions", bodies)

    usage = result["batch"]["usage"]
    assert usage["input_tokens"] == sum(b["usage"]["prompt_tokens"] for b in result["bodies"].values())
    assert usage["output_tokens"] == sum(b["usage"]["completion_tokens"] for b in result["bodies"].values())
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens_details"] == {"cached_tokens": 0}
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
