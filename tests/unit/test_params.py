"""validate_create_params: every create-batch parameter rule, all problems in one error."""

from __future__ import annotations

import pytest

from airflow_provider_openai_batch.api.exceptions import BatchParameterError
from airflow_provider_openai_batch.api.models import ENDPOINTS
from airflow_provider_openai_batch.api.params import output_expires_after_body, validate_create_params

CHAT = "/v1/chat/completions"


def problems(*args: object, **kwargs: object) -> str:
    with pytest.raises(BatchParameterError) as caught:
        validate_create_params(*args, **kwargs)
    return str(caught.value)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_valid_parameters_pass(endpoint):
    metadata = {f"k{i}": "v" * 512 for i in range(15)} | {"k" * 64: ""}
    assert validate_create_params(endpoint, "24h", metadata, 3600) is None
    assert validate_create_params(endpoint, output_expires_after=2_592_000) is None


def test_unknown_endpoint_lists_the_allowed_ones():
    message = problems("/v1/chat")
    assert "endpoint '/v1/chat' is not one the Batch API accepts" in message
    assert all(endpoint in message for endpoint in ENDPOINTS)


def test_completion_window_other_than_24h_needs_the_opt_in():
    message = problems(CHAT, "48h")
    assert "completion_window must be '24h'" in message
    assert "allow_any_completion_window=True" in message
    assert validate_create_params(CHAT, "48h", allow_any_completion_window=True) is None
    assert validate_create_params(CHAT, "7d", allow_any_completion_window=True) is None


@pytest.mark.parametrize("window", ["", "  ", None, 24])
def test_opted_in_window_must_still_be_a_non_empty_string(window):
    assert "completion_window must be a non-empty string" in problems(CHAT, window, allow_any_completion_window=True)


def test_metadata_with_17_pairs_is_rejected():
    message = problems(CHAT, metadata={f"k{i}": "v" for i in range(17)})
    assert "metadata has 17 pairs; at most 16 are allowed" in message
    assert "reserved" not in message


def test_metadata_pairs_reserved_by_the_operator_are_explained():
    metadata = {f"k{i}": "v" for i in range(15)}
    message = problems(CHAT, metadata=metadata, reserved_metadata_pairs=2)
    assert "metadata has 15 pairs; at most 14 are allowed" in message
    assert "2 are reserved for the operator's idempotency key and input fingerprint" in message
    assert validate_create_params(CHAT, metadata=dict(list(metadata.items())[:14]), reserved_metadata_pairs=2) is None


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"k" * 65: "v"}, "is 65 characters; the limit is 64"),
        ({"key": "v" * 513}, "metadata['key'] is 513 characters; the limit is 512"),
        ({"key": 5}, "metadata['key'] must be a string, got int"),
        ({"tags": ["a", "b"]}, "metadata['tags'] must be a string, got list"),
        ({3: "v"}, "metadata key 3 must be a string, got int"),
        (["not", "a", "dict"], "metadata must be a dict of strings, got list"),
    ],
)
def test_bad_metadata(metadata, expected):
    assert expected in problems(CHAT, metadata=metadata)


@pytest.mark.parametrize("seconds", [3599, 2_592_001, 0, -5])
def test_output_expiry_out_of_range(seconds):
    assert f"between 3600 (1 hour) and 2592000 (30 days) seconds, got {seconds}" in problems(
        CHAT, output_expires_after=seconds
    )


@pytest.mark.parametrize("seconds", ["3600", True, 3600.0])
def test_output_expiry_must_be_an_int(seconds):
    assert f"output_expires_after must be an int number of seconds, got {seconds!r}" in problems(
        CHAT, output_expires_after=seconds
    )


def test_every_problem_is_listed_at_once():
    message = problems("/v1/nope", "48h", {"k": 1}, 10)
    assert message.startswith("Invalid batch parameters (4 problems):\n  - endpoint '/v1/nope'")
    for part in ("completion_window", "metadata['k']", "output_expires_after"):
        assert part in message


@pytest.mark.parametrize("reserved", [-1, 17, True, 2.0])
def test_reserved_pairs_must_be_a_count(reserved):
    with pytest.raises(BatchParameterError, match=r"reserved_metadata_pairs must be 0\.\.16"):
        validate_create_params(CHAT, reserved_metadata_pairs=reserved)


def test_output_expires_after_body():
    assert output_expires_after_body(86_400) == {"anchor": "created_at", "seconds": 86_400}
    with pytest.raises(BatchParameterError, match="got 60"):
        output_expires_after_body(60)
